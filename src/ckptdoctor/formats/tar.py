"""torch 0.1.x tar archives: members ``sys_info``, ``pickle``, ``tensors``, ``storages``.

``storages``: pickle N, then N x (pickle (key, location, storage_type) + raw
record), then a pickle list of views (view_key, root_key, offset, size).
``tensors``: pickle T, then T x (pickle (key, storage_key, tensor_type) + i32
ndim, 4 pad bytes, ndim i64 sizes, ndim i64 strides, i64 storage offset).
``pickle``: the object, tensors/storages as persistent ids ``str(key)``.
"""

from __future__ import annotations

import io
import struct
import tarfile
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.errors import TruncatedFile, UnreadableFile
from ckptdoctor.formats.common import record_pickle, run_pickle, storage_dtype
from ckptdoctor.formats.legacy import pickle_buffer
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, Storage, TensorRecord
from ckptdoctor.pickle.objects import Global

MAX_TAR_MEMBERS = 1024  # torch 0.1.x wrote 4; a bound on what we list before giving up


class _SourceFile(io.RawIOBase):
    """Read-only file object over a ByteSource, for :mod:`tarfile`."""

    def __init__(self, source) -> None:
        self.source = source
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else (self.pos + offset if whence == 1 else self.source.size + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b) -> int:
        n = max(0, min(len(b), self.source.size - self.pos))
        b[:n] = self.source.read(self.pos, n)
        self.pos += n
        return n


def read_tar(ckpt: Checkpoint, source, limits: Limits) -> None:
    members: dict[str, tarfile.TarInfo] = {}
    try:
        tf = tarfile.open(fileobj=io.BufferedReader(_SourceFile(source)), mode="r:")
        for i, m in enumerate(tf):  # not getmembers(): a tar of a million entries must not be listed
            if i >= MAX_TAR_MEMBERS:
                raise UnreadableFile(f"a tar archive with more than {MAX_TAR_MEMBERS} members: not a torch 0.1.x "
                                     f"checkpoint (those hold 4: sys_info, pickle, tensors, storages)", kind="unknown")
            members[m.name] = m
    except tarfile.TarError as e:
        raise UnreadableFile(f"corrupt tar archive: {e}", kind="corrupt") from None
    need = {"sys_info", "pickle", "tensors", "storages"}
    if not need <= set(members):
        raise UnreadableFile(f"a tar archive, but not a torch 0.1.x checkpoint (members: {sorted(members)[:6]})",
                             kind="unknown")
    ckpt.format = "tar"
    for name in need:
        m = members[name]
        if m.offset_data + m.size > source.size:
            raise TruncatedFile(f"tar member {name} extends beyond the end of the file", offset=source.size,
                                needed=m.offset_data + m.size)

    # Every member is read in place from one buffer (the file's mmap when local: storage data is
    # never copied), with file offsets as positions.
    buf = pickle_buffer(source)

    def member(name: str) -> tuple[int, int]:
        m = members[name]
        return m.offset_data, m.offset_data + m.size

    objects: dict[int, Any] = {}
    # ---- storages
    start, end = member("storages")
    res = run_pickle(buf, start, limits=limits, end=end)
    n, pos = res.value, res.end
    if not isinstance(n, int) or n < 0:
        raise UnreadableFile("tar storages member is corrupt", kind="corrupt")
    for _ in range(n):
        r = run_pickle(buf, pos, limits=limits, end=end)
        key, location, storage_type = _fields(r.value, 3, "storage")
        pos = r.end
        dt = storage_dtype(storage_type)
        if pos + 8 > end:
            raise TruncatedFile("tar storage record cut short", offset=end)
        (count,) = struct.unpack("<q", buf[pos : pos + 8])
        if count < 0:
            raise UnreadableFile("tar storage record has a negative size", kind="corrupt")
        st = Storage(key=str(key), dtype=dt, numel=count, location=str(location), source=source,
                     record="storages", _span=(pos + 8, count * dt.itemsize))
        if pos + 8 + st.nbytes > end:
            raise TruncatedFile("tar storage data cut short", offset=end, needed=pos + 8 + st.nbytes)
        objects[_int_key(key)] = st
        pos += 8 + st.nbytes
    r = run_pickle(buf, pos, limits=limits, end=end)
    views = r.value or []
    if not isinstance(views, list):
        raise UnreadableFile("tar storage view list is corrupt", kind="corrupt")
    for view in views:
        view_key, root_key, offset, size = _fields(view, 4, "storage view")
        root = objects.get(_int_key(root_key))
        if not isinstance(root, Storage) or not _nonneg(offset) or not _nonneg(size):
            raise UnreadableFile(f"tar storage view {view_key} is corrupt", kind="corrupt")
        it = root.dtype.itemsize
        objects[_int_key(view_key)] = Storage(key=str(view_key), dtype=root.dtype, numel=size, location=root.location,
                                         source=source, record="storages",
                                         _span=(root.span()[0] + offset * it, size * it))
    # ---- tensors
    start, end = member("tensors")
    res = run_pickle(buf, start, limits=limits, end=end)
    pos = res.end
    if not isinstance(res.value, int) or res.value < 0:
        raise UnreadableFile("tar tensors member is corrupt", kind="corrupt")
    for _ in range(res.value):
        r = run_pickle(buf, pos, limits=limits, end=end)
        key, storage_key, tensor_type = _fields(r.value, 3, "tensor")
        pos = r.end
        if pos + 8 > end:
            raise UnreadableFile("tar tensor record is corrupt", kind="corrupt")
        (ndim,) = struct.unpack("<i", buf[pos : pos + 4])
        pos += 8
        if ndim < 0 or ndim > 64 or pos + 16 * ndim + 8 > end:
            raise UnreadableFile("tar tensor record is corrupt", kind="corrupt")
        sizes = struct.unpack(f"<{ndim}q", buf[pos : pos + 8 * ndim])
        strides = struct.unpack(f"<{ndim}q", buf[pos + 8 * ndim : pos + 16 * ndim])
        (offset,) = struct.unpack("<q", buf[pos + 16 * ndim : pos + 16 * ndim + 8])
        pos += 16 * ndim + 8
        st = objects.get(_int_key(storage_key))
        name = tensor_type.name if isinstance(tensor_type, Global) else str(tensor_type)
        dt = dtypes.from_storage_class(name.replace("Tensor", "Storage")) or (st.dtype if st else None)
        if st is None or dt is None:
            raise UnreadableFile(f"tar tensor {key} refers to unknown storage {storage_key}", kind="corrupt")
        objects[_int_key(key)] = TensorRecord(dt, tuple(sizes), tuple(strides), st, offset,
                                         rebuild="tar", requires_grad=False)

    # ---- the object
    def persistent_load(saved_id: Any) -> Any:
        if isinstance(saved_id, tuple) and saved_id:
            return saved_id[0]  # (module class, source file, source)
        try:
            return objects[int(saved_id)]
        except (KeyError, ValueError, TypeError, OverflowError):
            raise UnreadableFile(f"tar pickle refers to unknown object {saved_id!r:.40}", kind="corrupt") from None

    start, end = member("pickle")
    res = run_pickle(buf, start, limits=limits, end=end, persistent_load=persistent_load)
    record_pickle(ckpt, res, "object")
    ckpt.root = res.value
    start, end = member("sys_info")
    try:
        si = run_pickle(buf, start, limits=limits, end=end).value
        if isinstance(si, dict):
            ckpt.details["sys_info"] = {str(k): v for k, v in si.items()}
    except UnreadableFile:
        pass
    ckpt.details["storages"] = n


def _fields(value: Any, n: int, what: str) -> tuple:
    """A record tuple of ``n`` fields, or a one-line corrupt-file error."""
    if not isinstance(value, (tuple, list)) or len(value) != n:
        raise UnreadableFile(f"tar {what} record is corrupt: {value!r:.80}", kind="corrupt")
    return tuple(value)


def _int_key(key: Any) -> int:
    try:
        return int(key)
    except (TypeError, ValueError, OverflowError):
        raise UnreadableFile(f"tar record key {key!r:.40} is not a number", kind="corrupt") from None


def _nonneg(x: Any) -> bool:
    return isinstance(x, int) and x >= 0
