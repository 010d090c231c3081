"""Byte sources: one interface for local files (mmap) and remote files (ranged reads).

Readers only ever ask for ``read(offset, n)`` or ``view(offset, n)``, so an
fsspec file turns each request into one ranged read and nothing grows with
the size of the file.
"""

from __future__ import annotations

import mmap
import os
from typing import Protocol

from ckptdoctor.errors import TruncatedFile, UnreadableFile


class ByteSource(Protocol):
    name: str
    size: int

    def read(self, offset: int, n: int) -> bytes: ...
    def view(self, offset: int, n: int) -> memoryview: ...
    def close(self) -> None: ...


class _Base:
    name: str
    size: int
    bytes_read: int = 0

    def _check(self, offset: int, n: int) -> None:
        if offset < 0 or n < 0:
            raise TruncatedFile(f"{self.name}: invalid read at {offset} of {n} bytes", offset=max(offset, 0))
        if offset + n > self.size:
            raise TruncatedFile(
                f"{self.name}: file ends at byte {self.size} but data is expected up to byte {offset + n} "
                f"(truncated download or corrupt file)",
                offset=self.size,
                needed=offset + n,
            )


class LocalSource(_Base):
    """A local file, memory-mapped read-only (pages are touched only when read)."""

    def __init__(self, path: str) -> None:
        self.name = path
        if os.path.isdir(path):
            raise UnreadableFile(f"{path} is a directory, not a checkpoint file", kind="directory")
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.size = os.fstat(self._fh.fileno()).st_size
        self._mm: mmap.mmap | None = None
        if self.size:
            try:
                self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):  # e.g. special files; fall back to reads
                self._mm = None

    def read(self, offset: int, n: int) -> bytes:
        # pread, not a slice of the mmap: a copy is made either way, and touching the mapping would
        # map the whole page-cache folio around each small read into our RSS (up to 2 MiB each on
        # kernels with large folios: 401 record headers of a 1 GB legacy file cost ~200 MB of RSS).
        self._check(offset, n)
        self.bytes_read += n
        data = os.pread(self._fh.fileno(), n, offset)
        if len(data) < n and data:  # Linux returns at most ~2 GiB per call
            parts = [data]
            got = len(data)
            while got < n:
                more = os.pread(self._fh.fileno(), n - got, offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        if len(data) != n:
            raise TruncatedFile(f"{self.name}: short read at {offset}", offset=offset + len(data),
                                needed=offset + n)
        return data

    def view(self, offset: int, n: int) -> memoryview:
        self._check(offset, n)
        if self._mm is not None:
            return memoryview(self._mm)[offset : offset + n]
        return memoryview(self.read(offset, n))

    def close(self) -> None:
        # A live numpy view may still export the mmap buffer; then leave it to the GC.
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                pass
        self._fh.close()


class FileObjSource(_Base):
    """Any seekable binary file object (fsspec files, BytesIO): ranged reads, counted."""

    def __init__(self, fileobj, name: str = "<stream>", size: int | None = None) -> None:
        self.name = name
        self._f = fileobj
        if size is None:
            fileobj.seek(0, os.SEEK_END)
            size = fileobj.tell()
        self.size = size

    def read(self, offset: int, n: int) -> bytes:
        self._check(offset, n)
        self._f.seek(offset)
        data = self._f.read(n)
        self.bytes_read += len(data)
        if len(data) != n:
            raise TruncatedFile(f"{self.name}: short read at {offset}", offset=offset + len(data), needed=offset + n)
        return data

    def view(self, offset: int, n: int) -> memoryview:
        return memoryview(self.read(offset, n))

    def close(self) -> None:
        close = getattr(self._f, "close", None)
        if close:
            close()


class WindowSource(_Base):
    """A byte range of another source seen as a file of its own (a torch.save archive inside a DCP
    shard). Closing it leaves the parent open."""

    def __init__(self, parent: ByteSource, start: int, length: int, name: str) -> None:
        self.parent, self.start, self.size, self.name = parent, start, length, name
        self.bytes_read = 0

    def read(self, offset: int, n: int) -> bytes:
        self._check(offset, n)
        self.bytes_read += n
        return self.parent.read(self.start + offset, n)

    def view(self, offset: int, n: int) -> memoryview:
        self._check(offset, n)
        return self.parent.view(self.start + offset, n)

    def close(self) -> None:
        pass


class ConcatSource(_Base):
    """Byte ranges of other sources, one after the other, seen as one file (a tensor a distributed
    save split into chunks: the chunks' runs in the whole tensor's C order). Reads are pieced
    together from the parts; nothing is held in memory."""

    def __init__(self, parts: list[tuple[ByteSource, int, int]], name: str) -> None:
        import bisect

        self._bisect = bisect.bisect_right
        self.parts = [p for p in parts if p[2] > 0]
        self.starts: list[int] = []
        pos = 0
        for _src, _off, n in self.parts:
            self.starts.append(pos)
            pos += n
        self.size, self.name, self.bytes_read = pos, name, 0

    def read(self, offset: int, n: int) -> bytes:
        self._check(offset, n)
        self.bytes_read += n
        out = []
        i = self._bisect(self.starts, offset) - 1
        while n > 0:
            src, off, length = self.parts[i]
            inner = offset - self.starts[i]
            k = min(n, length - inner)
            out.append(src.read(off + inner, k))
            offset, n, i = offset + k, n - k, i + 1
        return b"".join(out)

    def view(self, offset: int, n: int) -> memoryview:
        return memoryview(self.read(offset, n))

    def close(self) -> None:
        pass


def open_source(path_or_file) -> ByteSource:
    if isinstance(path_or_file, (str, os.PathLike)):
        path = os.fspath(path_or_file)
        if "://" in path and not path.startswith("file://"):
            try:
                import fsspec  # optional extra
            except ImportError as e:  # pragma: no cover
                raise UnreadableFile(f"{path}: remote paths need `pip install ckptdoctor[s3]`") from e
            f = fsspec.open(path, "rb").open()
            return FileObjSource(f, name=path, size=getattr(f, "size", None))
        return LocalSource(path.removeprefix("file://"))
    return FileObjSource(path_or_file, name=getattr(path_or_file, "name", "<stream>"))
