"""The legacy stream: five pickles then raw storage records (torch 0.1.10 .. 1.5 default).

Layout (see docs/formats.md): magic number, protocol version (1001), sys_info,
the object pickle (storages as persistent ids), the list of storage keys, and
then one record per key: little-endian i64 element count + the elements.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from ckptdoctor.errors import TruncatedFile, UnreadableFile
from ckptdoctor.formats.common import StorageTable, record_pickle, run_pickle, storage_dtype
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, Storage
from ckptdoctor.source import ByteSource

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001


def pickle_buffer(source: ByteSource) -> Any:
    """Something the VM can index and ``find`` in: the mmap for local files, else bytes."""
    mm = getattr(source, "_mm", None)
    if mm is not None:
        return mm
    return source.read(0, source.size)


def read_legacy(ckpt: Checkpoint, source: ByteSource, limits: Limits) -> None:
    if getattr(source, "_mm", None) is not None:
        _read_legacy(ckpt, source, limits, source._mm, source.size)  # type: ignore[attr-defined]
        return
    # Remote/stream sources: the pickles sit at the start; read a growing prefix, never the whole file.
    n = min(source.size, 1 << 16)
    while True:
        head = source.read(0, n)
        try:
            _read_legacy(ckpt, source, limits, head, n)
            return
        except TruncatedFile as e:
            if n >= source.size or e.offset < n:
                raise
            n = min(source.size, n * 8)


def _read_legacy(ckpt: Checkpoint, source: ByteSource, limits: Limits, buf: Any, end: int) -> None:
    magic = run_pickle(buf, 0, limits=limits, end=end)
    if magic.value != MAGIC_NUMBER:
        raise UnreadableFile(f"{ckpt.path}: not a legacy torch file (bad magic number)", kind="pickle")
    proto = run_pickle(buf, magic.end, limits=limits, end=end)
    sysinfo = run_pickle(buf, proto.end, limits=limits, end=end)
    ckpt.details["protocol_version"] = proto.value
    if isinstance(sysinfo.value, dict):
        ckpt.details["sys_info"] = {str(k): v for k, v in sysinfo.value.items() if isinstance(v, (bool, int, dict))}
    if proto.value != PROTOCOL_VERSION:
        ckpt.details["unexpected_protocol_version"] = proto.value

    table = StorageTable()
    views: list[tuple[Storage, Storage, int]] = []

    def persistent_load(pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise UnreadableFile(f"unexpected persistent id {pid!r:.100}", kind="corrupt")
        if pid[0] == "module":
            ckpt.details.setdefault("module_sources", []).append(pid[2] if len(pid) > 2 else None)
            return pid[1] if len(pid) > 1 else None
        if pid[0] != "storage" or len(pid) != 6:
            raise UnreadableFile(f"unexpected persistent id {pid!r:.100}", kind="corrupt")
        _, storage_type, key, location, numel, view_metadata = pid
        key = str(key)
        if not isinstance(numel, int) or numel < 0:
            raise UnreadableFile(f"storage {key!r} has an invalid size {numel!r}", kind="corrupt")
        root = table.get(key, lambda: Storage(key=key, dtype=storage_dtype(storage_type), numel=numel,
                                              location=str(location), source=source, record=f"storage {key}"))
        if view_metadata is None:
            return root
        if (not isinstance(view_metadata, tuple) or len(view_metadata) != 3
                or not all(isinstance(x, int) and x >= 0 for x in view_metadata[1:])):
            raise UnreadableFile(f"storage {key!r} has a malformed view {view_metadata!r:.100}", kind="corrupt")
        view_key, v_off, v_size = view_metadata
        view = Storage(key=str(view_key), dtype=root.dtype, numel=v_size, location=root.location, source=source,
                       record=f"view {view_key} of storage {key}")
        views.append((view, root, v_off))
        return table.get(str(view_key), lambda: view)

    obj = run_pickle(buf, sysinfo.end, limits=limits, end=end, persistent_load=persistent_load)
    record_pickle(ckpt, obj, "object")
    keys_p = run_pickle(buf, obj.end, limits=limits, end=end)
    ckpt.root = obj.value
    keys = keys_p.value
    if not isinstance(keys, list):
        raise UnreadableFile(f"{ckpt.path}: storage key list is missing or corrupt", kind="corrupt")

    # Walk the raw records: each is an i64 count followed by count * itemsize bytes.
    pos = keys_p.end
    _prefetch_headers(source, pos, [table.by_key.get(str(k)) for k in keys])
    for k in keys:
        st = table.by_key.get(str(k))
        if st is None:
            raise UnreadableFile(f"{ckpt.path}: storage {k!r} is listed but never used", kind="corrupt")
        if pos + 8 > source.size:
            raise TruncatedFile(
                f"{ckpt.path}: file ends at byte {source.size} inside the storage records "
                f"(storage {k!r} expected at byte {pos}); the download was cut short",
                offset=source.size,
                needed=_expected_end(table, keys, keys_p.end),
            )
        (count,) = struct.unpack("<q", source.read(pos, 8))
        if count != st.numel:
            raise UnreadableFile(f"{ckpt.path}: storage {k!r} record says {count} elements, pickle says {st.numel}",
                                 kind="corrupt")
        data_at = pos + 8
        nbytes = st.nbytes
        if data_at + nbytes > source.size:
            raise TruncatedFile(
                f"{ckpt.path}: file ends at byte {source.size} but storage {k!r} needs bytes up to "
                f"{data_at + nbytes}; the download was cut short",
                offset=source.size,
                needed=_expected_end(table, keys, keys_p.end),
            )
        st._span = (data_at, nbytes)
        pos = data_at + nbytes
    for view, root, v_off in views:
        if root._span is not None:
            view._span = (root._span[0] + v_off * root.dtype.itemsize, root._span[1] - v_off * root.dtype.itemsize)
    ckpt.details["storages"] = len(keys)
    ckpt.details["data_end"] = pos
    if pos < source.size:
        ckpt.details["bytes_after_data"] = source.size - pos


def _prefetch_headers(source: ByteSource, pos: int, storages: list[Storage | None]) -> None:
    """Hint the OS to read every record header at once (where they are if each count matches the pickle).

    On a cold page cache this turns one disk round trip per storage into about one for all of
    them; the headers are still read and checked one by one below. Local files only.
    """
    fh = getattr(source, "_fh", None)
    advise = getattr(os, "posix_fadvise", None)
    if fh is None or advise is None:
        return
    try:
        fd = fh.fileno()
        for st in storages[:100_000]:
            if st is None or pos >= source.size:
                return
            advise(fd, pos, 8, os.POSIX_FADV_WILLNEED)
            pos += 8 + st.nbytes
    except (OSError, ValueError):
        return


def _expected_end(table: StorageTable, keys: list, start: int) -> int:
    total = start
    for k in keys:
        st = table.by_key.get(str(k))
        if st is not None:
            total += 8 + st.nbytes
    return total
