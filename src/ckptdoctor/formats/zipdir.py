"""A small zip reader that works through ranged reads and tolerates what torch writes.

Python's :mod:`zipfile` checks CRCs (torch may write 0) and reads through a
file object; we only need the central directory and each member's data
offset, so we read those directly: a few KB of I/O whatever the file size.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

from ckptdoctor.errors import LimitExceeded, TruncatedFile, UnreadableFile
from ckptdoctor.limits import DEFAULT_LIMITS, Limits
from ckptdoctor.source import ByteSource

EOCD = b"PK\x05\x06"
EOCD64 = b"PK\x06\x06"
EOCD64_LOC = b"PK\x06\x07"
CDH = b"PK\x01\x02"
LFH = b"PK\x03\x04"


@dataclass(slots=True)
class ZipEntry:
    name: str
    method: int
    csize: int
    usize: int
    crc: int
    header_offset: int
    flags: int
    _data_offset: int | None = None

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


class ZipArchive:
    """Central directory of a zip file, read lazily from a :class:`ByteSource`."""

    def __init__(self, source: ByteSource, limits: Limits = DEFAULT_LIMITS) -> None:
        self.source = source
        self.limits = limits
        self.entries: list[ZipEntry] = []
        self.by_name: dict[str, ZipEntry] = {}
        self.duplicates: list[str] = []
        self.cd_offset = 0
        self.comment = b""
        self._read_directory()

    # -------------------------------------------------------------- directory
    def _read_directory(self) -> None:
        src = self.source
        size = src.size
        tail_len = min(size, 22 + 65535 + 20)
        tail = src.read(size - tail_len, tail_len)
        pos = tail.rfind(EOCD)
        if pos < 0 or pos + 22 > len(tail):
            raise TruncatedFile(
                f"{src.name}: zip archive has no end-of-central-directory record: the file is cut short "
                f"({size} bytes present)",
                offset=size,
            )
        eocd_at = size - tail_len + pos
        (_sig, _disk, _cd_disk, _n_here, n_total, cd_size, cd_off, clen) = struct.unpack(
            "<4sHHHHIIH", tail[pos : pos + 22]
        )
        self.comment = tail[pos + 22 : pos + 22 + clen]
        # zip64?
        loc_at = eocd_at - 20
        if loc_at >= 0:
            loc = src.read(loc_at, 20)
            if loc[:4] == EOCD64_LOC:
                (eocd64_off,) = struct.unpack("<Q", loc[8:16])
                rec = src.read(eocd64_off, 56)
                if rec[:4] != EOCD64:
                    raise UnreadableFile(f"{src.name}: bad zip64 end record", kind="corrupt")
                n_total, cd_size, cd_off = struct.unpack("<QQQ", rec[32:56])
        if n_total > self.limits.max_zip_entries:
            raise LimitExceeded("zip entries", self.limits.max_zip_entries, n_total)
        if cd_off + cd_size > size:
            raise TruncatedFile(
                f"{src.name}: zip central directory points past the end of the file", offset=size,
                needed=cd_off + cd_size,
            )
        self.cd_offset = cd_off
        cd = src.read(cd_off, cd_size)
        p = 0
        for _ in range(n_total):
            if cd[p : p + 4] != CDH or p + 46 > len(cd):
                raise UnreadableFile(f"{src.name}: corrupt zip central directory at byte {cd_off + p}", kind="corrupt")
            (flags, method, _t, _d, crc, csize, usize, nlen, xlen, klen) = struct.unpack(
                "<HHHHIIIHHH", cd[p + 8 : p + 34]
            )
            (hoff,) = struct.unpack("<I", cd[p + 42 : p + 46])
            raw_name = cd[p + 46 : p + 46 + nlen]
            extra = cd[p + 46 + nlen : p + 46 + nlen + xlen]
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
            if 0xFFFFFFFF in (csize, usize, hoff):
                usize, csize, hoff = _zip64_extra(extra, usize, csize, hoff)
            e = ZipEntry(name, method, csize, usize, crc, hoff, flags)
            if name in self.by_name:
                self.duplicates.append(name)
            else:
                self.by_name[name] = e
            self.entries.append(e)
            p += 46 + nlen + xlen + klen

    # -------------------------------------------------------------- members
    def prefetch_header(self, e: ZipEntry) -> None:
        """Hint the OS to read a member's local header soon (local files; async, a no-op otherwise).

        Storages' data offsets need their local headers; hinting each one as the pickle names it
        lets a cold page cache fetch them all in parallel instead of one round trip per storage.
        """
        fh = getattr(self.source, "_fh", None)
        advise = getattr(os, "posix_fadvise", None)
        if fh is None or advise is None or e._data_offset is not None:
            return
        try:
            advise(fh.fileno(), e.header_offset, 30 + len(e.name.encode()) + 64, os.POSIX_FADV_WILLNEED)
        except (OSError, ValueError):
            pass

    def data_offset(self, e: ZipEntry) -> int:
        if e._data_offset is None:
            head = self.source.read(e.header_offset, 30)
            if head[:4] != LFH:
                raise UnreadableFile(f"{self.source.name}: bad local header for {e.name}", kind="corrupt")
            nlen, xlen = struct.unpack("<HH", head[26:30])
            e._data_offset = e.header_offset + 30 + nlen + xlen
        return e._data_offset

    def span(self, e: ZipEntry) -> tuple[int, int]:
        """(data offset, stored size) of a member; stored members only."""
        off = self.data_offset(e)
        if off + e.csize > self.source.size:
            raise TruncatedFile(
                f"{self.source.name}: member {e.name} ends at byte {off + e.csize} but the file has "
                f"{self.source.size} bytes (truncated)",
                offset=self.source.size,
                needed=off + e.csize,
            )
        return off, e.csize

    def read(self, name_or_entry: str | ZipEntry, limit: int | None = None) -> bytes:
        e = self.by_name[name_or_entry] if isinstance(name_or_entry, str) else name_or_entry
        limit = limit if limit is not None else self.limits.max_pickle_record
        off, csize = self.span(e)
        if e.method == 0:
            if csize > limit:
                raise LimitExceeded(f"size of zip member {e.name}", limit, csize)
            return self.source.read(off, csize)
        if e.method == 8:
            cap = min(limit, self.limits.max_inflate)
            if e.usize > cap:
                raise LimitExceeded(f"inflated size of {e.name}", cap, e.usize)
            if csize and e.usize // max(csize, 1) > self.limits.max_inflate_ratio:
                raise LimitExceeded("zip compression ratio", self.limits.max_inflate_ratio, e.usize // csize)
            d = zlib.decompressobj(-15)
            try:  # never inflate past the declared size: a directory that lies small is a zip bomb
                out = d.decompress(self.source.read(off, csize), e.usize + 1)
            except zlib.error as err:
                raise UnreadableFile(f"{self.source.name}: corrupt deflate data in {e.name}: {err}", kind="corrupt") from None
            if len(out) > e.usize:
                raise UnreadableFile(
                    f"{self.source.name}: member {e.name} inflates to more than the {e.usize} bytes its header "
                    f"declares (a corrupt archive or a zip bomb)", kind="corrupt")
            return out
        raise UnreadableFile(f"{self.source.name}: zip member {e.name} uses unsupported compression {e.method}",
                             kind="corrupt")

    @property
    def root(self) -> str:
        """The archive root: the folder of the first entry (how torch finds it)."""
        if not self.entries:
            return ""
        first = self.entries[0].name
        return first.split("/", 1)[0] if "/" in first else ""

    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def _zip64_extra(extra: bytes, usize: int, csize: int, hoff: int) -> tuple[int, int, int]:
    p = 0
    while p + 4 <= len(extra):
        hid, ln = struct.unpack("<HH", extra[p : p + 4])
        body = extra[p + 4 : p + 4 + ln]
        if hid == 1:
            q = 0
            if usize == 0xFFFFFFFF and q + 8 <= len(body):
                (usize,) = struct.unpack("<Q", body[q : q + 8])
                q += 8
            if csize == 0xFFFFFFFF and q + 8 <= len(body):
                (csize,) = struct.unpack("<Q", body[q : q + 8])
                q += 8
            if hoff == 0xFFFFFFFF and q + 8 <= len(body):
                (hoff,) = struct.unpack("<Q", body[q : q + 8])
            break
        p += 4 + ln
    return usize, csize, hoff
