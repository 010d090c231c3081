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
* a tensor split into several chunks (a sharded save) is listed with dtype and shape but no data
  (device ``dcp-shard``): assembling it is ``torch.distributed.checkpoint``'s job, and ``convert``
  refuses such folders with that advice.

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
from ckptdoctor.source import LocalSource, WindowSource

ZIP_MAGIC = b"PK\x03\x04"


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
    # every place torch.distributed.checkpoint.load would hand to torch.load (the security scan reads them all)
    ckpt.details["chunks"] = sorted({(name, off, n) for name, off, n, _t in where.values()
                                     if os.path.basename(name) == name and name not in ("", ".", "..")})
    if sharded:
        ckpt.details["sharded_tensors"] = sharded


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
    if not isinstance(chunks, list) or len(chunks) != 1:
        return meta_only
    c = _attrs(chunks[0])
    offsets, sizes = c.get("offsets"), c.get("sizes")
    if not isinstance(offsets, tuple) or any(o != 0 for o in offsets) or sizes != size:
        return meta_only
    info = where.get((fqn, offsets))
    if info is None or info[3]:  # unknown place, or compressed / transformed bytes
        return meta_only
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
    numel = meta_only.numel
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
