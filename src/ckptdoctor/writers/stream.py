"""Bounded-memory byte movement: source regions -> output file, and streaming sha256.

Local sources are read with ``pread`` into one fixed buffer per thread, on a
file descriptor of their own, never through the reader's mmap, so the pages
we stream do not count towards our resident memory; nothing grows with the
size of the file.
"""

from __future__ import annotations

import hashlib
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ckptdoctor.model import Storage, TensorRecord
from ckptdoctor.source import LocalSource

# Bytes per pread (hashing, CRC, fallback copies): 1 MiB stays in the CPU caches between the read
# and its use. Local copies stay in the kernel (sendfile when appending, copy_file_range at an
# offset): on the benchmark machine that was ~6x faster than pread/pwrite through a buffer, and
# steadier (user-space write() stalled behind writeback for seconds at a time).
CHUNK = 1 << 20
COPY_CHUNK = 64 << 20  # per sendfile / copy_file_range call: the progress bar moves at least every 64 MiB
_local = threading.local()
_fds: dict[int, tuple[Any, int]] = {}
_fds_lock = threading.Lock()


def _buffer() -> memoryview:
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = memoryview(bytearray(CHUNK))
        _local.buf = buf
    return buf


def source_fd(source: Any) -> int | None:
    """A read-only descriptor of a local source's file (opened once, kept until :func:`close_fds`)."""
    if not isinstance(source, LocalSource):
        return None
    with _fds_lock:
        hit = _fds.get(id(source))
        if hit is not None and hit[0] is source:
            return hit[1]
        try:
            fd = os.open(source.name, os.O_RDONLY)
        except OSError:
            return None
        if os.fstat(fd).st_size != source.size:  # replaced under us: do not trust it
            os.close(fd)
            return None
        _fds[id(source)] = (source, fd)
        return fd


def close_fds() -> None:
    with _fds_lock:
        for _src, fd in _fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        _fds.clear()


def storage_region(st: Storage, nbytes: int | None = None) -> tuple[Any, int, int]:
    """(source, file offset, length) of a storage's bytes; checks they are all there."""
    n = st.nbytes if nbytes is None else nbytes
    if st.source is None:
        from ckptdoctor.errors import TruncatedFile

        raise TruncatedFile(f"storage {st.key!r} has no data in the file", offset=0)
    off, avail = st.span()
    if avail < n:
        from ckptdoctor.errors import TruncatedFile

        raise TruncatedFile(f"storage {st.key!r} needs {n} bytes but the file has {avail}", offset=off + avail,
                            needed=n)
    return st.source, off, n


def tensor_region(t: TensorRecord) -> tuple[Any, int, int] | None:
    """The file region holding a C-contiguous strided tensor's bytes, or None if it is not one run."""
    if t.layout != "strided" or t.storage is None or not t.is_contiguous():
        return None
    if t.extent() * t.dtype.itemsize > t.storage.nbytes:
        return None
    src, off, _n = storage_region(t.storage, 0)
    return src, off + t.offset * t.dtype.itemsize, t.nbytes


def iter_region(source: Any, offset: int, n: int):
    """Yield the bytes of a region in chunks (memoryviews of one reused buffer for local files)."""
    fd = source_fd(source)
    if fd is None:
        pos, end = offset, offset + n
        while pos < end:
            k = min(CHUNK, end - pos)
            yield source.read(pos, k)
            pos += k
        return
    buf = _buffer()
    pos, end = offset, offset + n
    while pos < end:
        k = os.preadv(fd, [buf[: min(CHUNK, end - pos)]], pos)
        if k <= 0:
            from ckptdoctor.errors import TruncatedFile

            raise TruncatedFile(f"{source.name}: file ends at byte {pos} while copying", offset=pos, needed=end)
        yield buf[:k]
        pos += k


def crc_region(source: Any, offset: int, n: int) -> int:
    value = 0
    for piece in iter_region(source, offset, n):
        value = zlib.crc32(piece, value)
    return value


_crc_pool: ThreadPoolExecutor | None = None


def _crc_worker() -> ThreadPoolExecutor:
    global _crc_pool
    if _crc_pool is None:
        _crc_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckptdoctor-crc")
    return _crc_pool


class OutFile:
    """An output file written through its descriptor, with the position we are at."""

    def __init__(self, fd: int, on_bytes: Any = None) -> None:
        self.fd = fd
        self.pos = os.lseek(fd, 0, os.SEEK_CUR)
        self.on_bytes = on_bytes or (lambda n: None)  # progress: every byte written passes here once
        self._sendfile = hasattr(os, "sendfile")
        self._copy_range = hasattr(os, "copy_file_range")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        mv = memoryview(data).cast("B")
        n = mv.nbytes
        while len(mv):
            k = os.write(self.fd, mv)
            mv = mv[k:]
            self.pos += k
        self.on_bytes(n)

    def copy_region(self, source: Any, offset: int, n: int, *, crc: bool = False) -> int:
        """Append ``n`` bytes of ``source`` at ``offset``; returns their CRC32 if ``crc`` (else 0).

        Local files: sendfile, with the CRC computed from the source by a second thread meanwhile.
        """
        fd = source_fd(source)
        if fd is not None and self._sendfile and n:
            pending = _crc_worker().submit(crc_region, source, offset, n) if crc else None
            done = self._kernel_copy(fd, offset, n)
            if done < n:
                for piece in iter_region(source, offset + done, n - done):
                    self.write(piece)
            return pending.result() if pending is not None else 0
        value = 0
        for piece in iter_region(source, offset, n):
            if crc:
                value = zlib.crc32(piece, value)
            self.write(piece)
        return value

    def _kernel_copy(self, fd: int, offset: int, n: int) -> int:
        done = 0
        try:
            while done < n:
                k = os.sendfile(self.fd, fd, offset + done, min(COPY_CHUNK, n - done))
                if k <= 0:
                    break
                done += k
                self.pos += k
                self.on_bytes(k)
        except OSError:  # not supported for this pair of files: fall back to pread/write
            self._sendfile = False
            os.lseek(self.fd, self.pos, os.SEEK_SET)
        return done

    def write_at(self, pos: int, pieces: Any) -> int:
        """pwrite ``pieces`` from ``pos`` on (no shared file position: safe from several threads).

        Returns the end offset. Does not move :attr:`pos`; see :meth:`seek`.
        """
        for piece in pieces:
            mv = memoryview(piece).cast("B")
            n = mv.nbytes
            while len(mv):
                k = os.pwrite(self.fd, mv, pos)
                mv = mv[k:]
                pos += k
            self.on_bytes(n)
        return pos

    def seek(self, pos: int) -> None:
        self.pos = os.lseek(self.fd, pos, os.SEEK_SET)

    def tensor_at(self, t: TensorRecord, pos: int) -> int:
        """Write a tensor's C-order bytes at ``pos`` (thread-safe); returns the end offset.

        A contiguous tensor of a local file is copied in the kernel (``copy_file_range``, which
        takes both offsets, so threads do not share a file position); the fallback is pread/pwrite.
        """
        region = tensor_region(t)
        if region is None:
            return self.write_at(pos, t.iter_contiguous_bytes(CHUNK))
        source, offset, n = region
        fd = source_fd(source)
        done = self._kernel_copy_at(fd, offset, n, pos) if fd is not None else 0
        return self.write_at(pos + done, iter_region(source, offset + done, n - done))

    def _kernel_copy_at(self, fd: int, offset: int, n: int, pos: int) -> int:
        if not self._copy_range:
            return 0
        done = 0
        try:
            while done < n:
                k = os.copy_file_range(fd, self.fd, min(COPY_CHUNK, n - done), offset + done, pos + done)
                if k <= 0:
                    break
                done += k
                self.on_bytes(k)
        except OSError:  # EXDEV, EINVAL, ENOSYS...: this pair of files cannot; pwrite the rest
            self._copy_range = False
        return done

    def copy_tensor(self, t: TensorRecord, *, crc: bool = False) -> int:
        """Append a tensor's bytes in C order (contiguous: one region; else row blocks)."""
        region = tensor_region(t)
        if region is not None:
            return self.copy_region(*region, crc=crc)
        value = 0
        for piece in t.iter_contiguous_bytes(CHUNK):
            if crc:
                value = zlib.crc32(piece, value)
            self.write(piece)
        return value


def sha256_tensor(t: TensorRecord) -> str:
    """sha256 of a tensor's C-order bytes (as :meth:`TensorRecord.sha256`), read with pread when possible.

    Sparse tensors hash their parts (indices, values ...) one after the other;
    storage-less (meta) tensors have no bytes and hash as ``"meta"``.
    """
    if t.layout != "strided":
        h = hashlib.sha256()
        for part in t.sparse_parts or ():
            if isinstance(part, TensorRecord):
                h.update(bytes.fromhex(sha256_tensor(part)))
        return h.hexdigest()
    if t.storage is None:
        return "meta"
    region = tensor_region(t)
    if region is None:
        return t.sha256()
    h = hashlib.sha256()
    for piece in iter_region(*region):
        h.update(piece)
    return h.hexdigest()
