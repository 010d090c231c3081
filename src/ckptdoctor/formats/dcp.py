"""torch.distributed.checkpoint folders: ``.metadata`` (a pickle) + ``*.distcp`` shards.

``.metadata`` is read with the non-executing VM: ``state_dict_metadata`` gives every entry's
dtype and global size (``TensorStorageMetadata``: properties, size, chunks) or marks it as
bytes (``BytesStorageMetadata``: any other object); ``storage_data`` maps each chunk
(``MetadataIndex``: fqn, chunk offsets) to where it lies (``_StorageInfo``: shard file, offset,
length). torch's ``FileSystemWriter`` stores each chunk as a ``torch.save`` archive at that place
(or, with the raw serialization format, as the tensor's bytes), so:

* a tensor saved as one chunk (every single-process save) becomes a normal TensorRecord whose
  storage is the record inside the shard file: listed, hashed, loaded and converted like any other;
* a bytes entry (``step``, a dict, ...) becomes the value its ``torch.save`` archive holds;
* a tensor split into several chunks (a multi-rank save) is put back together without copying:
  its bytes in C order are runs of the chunks' bytes (:func:`_assembled`);
* only chunks that are compressed / transformed or do not tile their tensor leave it listed with
  dtype and shape but no data (device ``dcp-shard``); ``convert`` and ``load`` refuse such folders
  naming torch's tool.

Shard names come from the file: only plain names inside the folder are opened.
"""

from __future__ import annotations

import os
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.errors import TruncatedFile, UnreadableFile
from ckptdoctor.formats.common import record_pickle, run_pickle
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, Storage, TensorRecord
from ckptdoctor.pickle.objects import Global, OrderedDictValue, PickledObject
from ckptdoctor.source import ConcatSource, LocalSource, WindowSource

ZIP_MAGIC = b"PK\x03\x04"


def without_data(ckpt: Checkpoint) -> str | None:
    """Why this DCP folder cannot be turned into tensors here (some listed without data), else None."""
    names = ckpt.details.get("sharded_tensors")
    if not names:
        return None
    return (f"{ckpt.path}: DCP tensors whose chunks are compressed or do not tile them ({', '.join(names[:3])}) "
            f"need torch: torch.distributed.checkpoint.format_utils.dcp_to_torch_save({ckpt.path!r}, 'model.pt')")


def looks_like_dcp(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ".metadata"))


def _attrs(o: Any) -> dict:
    return o.attrs if isinstance(o, PickledObject) else (o if isinstance(o, dict) else {})


def _dtype_of(props: Any) -> dtypes.DType | None:
    """TensorProperties keeps its fields as attributes (older torch) or as a __setstate__ tuple
    (dtype, layout, requires_grad, memory_format, pin_memory)."""
    g = _attrs(props).get("dtype")
    if g is None and isinstance(props, PickledObject) and isinstance(props.state, tuple) and props.state:
        g = props.state[0]
    return dtypes.lookup(g.name) if isinstance(g, Global) else None


def _contiguous_stride(size: tuple[int, ...]) -> tuple[int, ...]:
    stride, acc = [], 1
    for s in reversed(size):
        stride.append(acc)
        acc *= s
    return tuple(reversed(stride))


def _storage_index(md: dict) -> dict[tuple[str, tuple], tuple[str, int, int, Any]]:
    """(fqn, chunk offsets or ()) -> (shard file, offset, length, transform descriptors)."""
    out: dict[tuple[str, tuple], tuple[str, int, int, Any]] = {}
    data = md.get("storage_data")
    for k, v in (data.items() if isinstance(data, dict) else []):
        ka, va = _attrs(k), _attrs(v)
        path, off, n = va.get("relative_path"), va.get("offset"), va.get("length")
        if isinstance(ka.get("fqn"), str) and isinstance(path, str) and isinstance(off, int) and isinstance(n, int):
            chunk = ka.get("offset")
            out[(ka["fqn"], tuple(chunk) if isinstance(chunk, (tuple, list)) else ())] = (
                path, off, n, va.get("transform_descriptors"))
    return out


class _Shards:
    """Shard files opened on first use (kept open with the checkpoint)."""

    def __init__(self, folder: str, ckpt: Checkpoint) -> None:
        self.folder, self.ckpt = folder, ckpt
        self.open: dict[str, LocalSource] = {}

    def get(self, name: str) -> LocalSource:
        if name not in self.open:
            if os.path.basename(name) != name or name in ("", ".", ".."):
                raise UnreadableFile(f"DCP metadata names a shard outside its folder: {name!r:.80}", kind="corrupt")
            path = os.path.join(self.folder, name)
            if not os.path.isfile(path):
                raise UnreadableFile(f"DCP shard {name} is missing from {self.folder}", kind="truncated")
            src = LocalSource(path)
            self.open[name] = src
            self.ckpt.extra_sources.append(src)
        return self.open[name]


def _archive_value(ckpt: Checkpoint, shard: LocalSource, start: int, length: int, label: str,
                   limits: Limits) -> Any:
    """The value of the torch.save archive at [start, start + length) of a shard, its storages
    re-pointed at the shard file itself (so reads are plain ranges of a local file)."""
    from ckptdoctor.formats.zipfamily import read_zip_family
    from ckptdoctor.walk import iter_tensors

    window = WindowSource(shard, start, length, f"{shard.name}@{start}")
    sub = Checkpoint(path=window.name, format="zip", size=length, source=window)
    read_zip_family(sub, window, limits)
    for res_label, res in sub.pickles:
        record_pickle(ckpt, res, f"{label}:{res_label}")
    for _path, t in iter_tensors(sub.root):
        st = t.storage
        if st is not None and st.source is window:
            off, n = st.span()
            st.source, st._span, st.locate = shard, (start + off, n), None
    return sub.root


def read_dcp(path: str, limits: Limits) -> Checkpoint:
    src = LocalSource(os.path.join(path, ".metadata"))
    ckpt = Checkpoint(path=path, format="dcp", size=src.size, source=src)
    try:
        _read(ckpt, path, src, limits)
    except BaseException:
        ckpt.close()
        raise
    return ckpt


def _read(ckpt: Checkpoint, path: str, src: LocalSource, limits: Limits) -> None:
    res = run_pickle(src.read(0, src.size), 0, limits=limits)
    record_pickle(ckpt, res, "object")
    md = _attrs(res.value)
    sdm = md.get("state_dict_metadata") or {}
    where = _storage_index(md)
    shards = _Shards(path, ckpt)
    root = OrderedDictValue()
    sharded: list[str] = []
    for fqn, item in (sdm.items() if isinstance(sdm, dict) else []):
        fqn = str(fqn)
        a = _attrs(item)
        dt = _dtype_of(a.get("properties"))
        size = a.get("size")
        if dt is not None and isinstance(size, tuple) and all(isinstance(s, int) and s >= 0 for s in size):
            root[fqn] = _tensor(ckpt, fqn, dt, size, a.get("chunks"), where, shards, limits)
            if root[fqn].storage is None:
                sharded.append(fqn)
        elif isinstance(item, PickledObject) and item.qualname.endswith("BytesStorageMetadata"):
            root[fqn] = _bytes_item(ckpt, fqn, item, where, shards, limits)
        else:
            root[fqn] = item
    ckpt.root = _unflatten(root, md.get("planner_data"))
    ckpt.details["shards"] = sorted(f for f in os.listdir(path) if f.endswith(".distcp"))
    ckpt.size = src.size + sum(_file_size(os.path.join(path, f)) for f in ckpt.details["shards"])  # the folder
    # every place torch.distributed.checkpoint.load would hand to torch.load (the security scan reads them all)
    chunks = sorted({(name, off, n) for name, off, n, _t in where.values()
                     if os.path.basename(name) == name and name not in ("", ".", "..")})
    ckpt.internal["dcp_chunks"] = chunks
    ckpt.details["chunks"] = len(chunks)
    if sharded:
        ckpt.details["sharded_tensors"] = sharded


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _unflatten(flat: OrderedDictValue, mapping: Any) -> Any:
    """Nest the entries again as the saved state_dict had them (``planner_data``: fqn -> key path),
    the way torch's ``unflatten_state_dict`` does: str keys make dicts, int keys lists."""
    if not isinstance(mapping, dict) or not mapping:
        return flat
    paths = {}
    for fqn in flat:
        path = mapping.get(fqn)
        if not isinstance(path, tuple) or not path or not all(isinstance(k, (str, int)) for k in path):
            return flat  # not a mapping we understand: keep the flat names
        if any(isinstance(k, int) and not 0 <= k < 1_000_000 for k in path):
            return flat
        paths[fqn] = path
    nested: dict = {}
    for fqn, value in flat.items():
        path = paths[fqn]
        cur: Any = nested
        for prev, key in zip(path, path[1:], strict=False):
            fresh: Any = {} if isinstance(key, str) else []
            if isinstance(cur, dict):
                cur = cur.setdefault(prev, fresh)
            else:
                _extend(cur, prev)
                if cur[prev] is None:
                    cur[prev] = fresh
                cur = cur[prev]
            if not isinstance(cur, (dict, list)):
                return flat  # a path runs through a leaf: inconsistent, keep it flat
        last = path[-1]
        if isinstance(cur, list):
            if not isinstance(last, int):
                return flat
            _extend(cur, last)
        elif not isinstance(last, str):
            return flat
        cur[last] = value
    return nested


def _extend(lst: list, idx: int) -> None:
    while len(lst) <= idx:
        lst.append(None)


def _tensor(ckpt: Checkpoint, fqn: str, dt: dtypes.DType, size: tuple[int, ...], chunks: Any,
            where: dict, shards: _Shards, limits: Limits) -> TensorRecord:
    meta_only = TensorRecord(dt, size, _contiguous_stride(size), None, rebuild="dcp", device_override="dcp-shard")
    boxes = _chunk_boxes(chunks, size)
    if boxes is None:
        return meta_only
    if len(boxes) == 1 and all(o == 0 for o in boxes[0][0]) and boxes[0][1] == size:
        t = _chunk_tensor(ckpt, fqn, dt, size, boxes[0][0], where, shards, limits)
    else:
        t = _assembled(ckpt, fqn, dt, size, boxes, where, shards, limits)
    return meta_only if t is None else t


def _chunk_boxes(chunks: Any, size: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]] | None:
    """(offsets, sizes) of each chunk, checked to lie inside the tensor; None if malformed."""
    if not isinstance(chunks, list) or not chunks or len(chunks) > MAX_CHUNKS:
        return None
    boxes = []
    for c in chunks:
        a = _attrs(c)
        o, n = a.get("offsets"), a.get("sizes")
        if not (isinstance(o, tuple) and isinstance(n, tuple) and len(o) == len(n) == len(size)):
            return None
        if not all(isinstance(x, int) and x >= 0 for x in (*o, *n)):
            return None
        if any(oo + nn > ss for oo, nn, ss in zip(o, n, size, strict=True)):
            return None
        boxes.append((o, n))
    return boxes


MAX_CHUNKS = 65_536
MAX_PIECES = 100_000  # byte runs an assembled tensor may consist of (else: listed without data)
MAX_WORK = 2_000_000  # (leading index, chunk) pairs examined to find them


def _assembled(ckpt: Checkpoint, fqn: str, dt: dtypes.DType, size: tuple[int, ...],
               boxes: list[tuple[tuple[int, ...], tuple[int, ...]]], where: dict, shards: _Shards,
               limits: Limits) -> TensorRecord | None:
    """A tensor split into chunks (a sharded save), put back together without copying: its bytes in
    C order are runs of the chunks' bytes, read through a :class:`ConcatSource`.

    ``k`` is the first dimension some chunk does not span from 0 to the end, after which every
    chunk holds whole rows: for each index of the dimensions before ``k`` the chunks that contain
    it, in order along ``k``, each give one contiguous run. Chunks must tile the tensor exactly."""
    from itertools import product

    boxes = [b for b in boxes if all(b[1])]  # empty chunks (ranks with no rows) hold nothing
    numel = 1
    for d in size:
        numel *= d
    if not boxes or sum(_count(n) for _o, n in boxes) != numel:
        return None
    ndim = len(size)
    k = max((d for d in range(ndim) for o, n in boxes if o[d] != 0 or n[d] != size[d]), default=0)
    lead = size[:k]
    if _count(lead) > MAX_PIECES or _count(lead) * len(boxes) > MAX_WORK:
        return None
    tail = _count(size[k + 1:])
    regions = {}
    for o, n in boxes:
        region = _chunk_region(ckpt, fqn, dt, o, n, where, shards, limits)
        if region is None:
            return None
        regions[o] = region
    parts: list[tuple[Any, int, int]] = []
    for idx in product(*(range(d) for d in lead)):
        inside = sorted((o, n) for o, n in boxes
                        if all(o[d] <= idx[d] < o[d] + n[d] for d in range(k)))
        pos = 0
        for o, n in inside:
            if o[k] != pos:
                return None  # a gap or an overlap along k: not a tiling we can read
            src, start, _length = regions[o]
            local = sum((idx[d] - o[d]) * _count(n[d + 1:]) for d in range(k))
            parts.append((src, start + local * dt.itemsize, n[k] * tail * dt.itemsize))
            pos += n[k]
        if pos != size[k]:
            return None
        if len(parts) > MAX_PIECES:
            return None
    concat = ConcatSource(parts, f"{ckpt.path}:{fqn}")
    st = Storage(key=fqn, dtype=dt, numel=numel, location="cpu", source=concat, record=f"{len(boxes)} chunks",
                 _span=(0, concat.size))
    return TensorRecord(dt, size, _contiguous_stride(size), st, 0, rebuild="dcp")


def _count(dims: tuple[int, ...]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _chunk_region(ckpt: Checkpoint, fqn: str, dt: dtypes.DType, offsets: tuple[int, ...], sizes: tuple[int, ...],
                  where: dict, shards: _Shards, limits: Limits) -> tuple[Any, int, int] | None:
    """(source, byte offset, length) of one chunk's values, C-contiguous."""
    t = _chunk_tensor(ckpt, fqn, dt, sizes, offsets, where, shards, limits)
    if t is None or t.storage is None or not t.is_contiguous():
        return None
    off, avail = t.storage.span()
    n = t.numel * dt.itemsize
    start = off + t.offset * dt.itemsize
    if t.offset * dt.itemsize + n > avail:
        return None
    return t.storage.source, start, n


def _chunk_tensor(ckpt: Checkpoint, fqn: str, dt: dtypes.DType, size: tuple[int, ...], offsets: tuple[int, ...],
                  where: dict, shards: _Shards, limits: Limits) -> TensorRecord | None:
    """The tensor stored for chunk ``offsets`` of ``fqn`` (None if its place is unknown or transformed)."""
    info = where.get((fqn, offsets))
    if info is None or info[3]:  # unknown place, or compressed / transformed bytes
        return None
    name, start, length, _ = info
    shard = shards.get(name)
    if start < 0 or length < 0 or start + length > shard.size:
        raise TruncatedFile(f"DCP shard {name} ends at byte {shard.size} but {fqn} needs bytes up to "
                            f"{start + length}", offset=shard.size, needed=start + length)
    if shard.read(start, min(4, length)) == ZIP_MAGIC:
        value = _archive_value(ckpt, shard, start, length, fqn, limits)
        if not isinstance(value, TensorRecord) or value.dtype is not dt or tuple(value.shape) != size:
            raise UnreadableFile(f"DCP entry {fqn}: its shard data is not the {dt.name} {list(size)} tensor "
                                 f"the metadata describes", kind="corrupt")
        return value
    numel = _count(size)
    if length != numel * dt.itemsize:  # raw serialization: exactly the tensor's bytes
        raise UnreadableFile(f"DCP entry {fqn}: {length} bytes in {name} for a {dt.name} {list(size)} tensor",
                             kind="corrupt")
    st = Storage(key=fqn, dtype=dt, numel=numel, location="cpu", source=shard, record=name, _span=(start, length))
    return TensorRecord(dt, size, _contiguous_stride(size), st, 0, rebuild="dcp")


def _bytes_item(ckpt: Checkpoint, fqn: str, item: Any, where: dict, shards: _Shards, limits: Limits) -> Any:
    """A non-tensor entry: the value its torch.save archive holds (read by the VM, never run)."""
    info = where.get((fqn, ()))
    if info is None or info[3]:
        return item
    name, start, length, _ = info
    shard = shards.get(name)
    if start < 0 or length < 4 or start + length > shard.size or shard.read(start, 4) != ZIP_MAGIC:
        return item
    return _archive_value(ckpt, shard, start, length, fqn, limits)
