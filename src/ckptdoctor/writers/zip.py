"""The torch >= 1.6 zip container, written as torch 2.13's PyTorchStreamWriter (miniz) writes it.

Record list (all under one root folder, every record *stored*)::

    data.pkl, .format_version ("1"), .storage_alignment ("64"), byteorder ("little"),
    data/0, data/1, ...  (storages in first-use order), version ("3\\n"), .data/serialization_id

Each local header carries sizes 0 and the data-descriptor flag (0x0808; 0x0800
for empty records, which get no descriptor), then an ``FB`` extra field padded
with ``Z`` so the record's data starts on a 64-byte boundary. Records or
offsets at or beyond 4 GiB get a zip64 extra field first and a 24-byte data
descriptor; the zip64 end records are always written. CRC32 is computed while
the bytes stream through.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.writers.stream import OutFile, storage_region
from ckptdoctor.writers.torchpickle import TorchPickler

U32 = 0xFFFFFFFF
U64 = (1 << 64) - 1
ALIGNMENT = 64
FILE_FORMAT_VERSION = "3\n"  # what torch.save writes (kMinProducedFileFormatVersion)


@dataclass(slots=True)
class _Entry:
    name: bytes
    size: int
    crc: int
    offset: int
    flags: int
    zip64_local: bool


@dataclass
class ZipLayout:
    """What was written, for reports and tests."""

    root: str
    records: list[tuple[str, int, int]] = field(default_factory=list)  # (name, data offset, size)
    storages: int = 0
    storage_bytes: int = 0


def archive_root(out_path: str) -> str:
    """The root folder torch would use when saving to ``out_path`` (basename without extension)."""
    base = os.path.basename(out_path)
    stem = base[: base.rfind(".")] if "." in base else base
    if not stem or not stem.isascii():
        return "archive"
    return stem


def _hash_combine(seed: int, value: int) -> int:
    return (seed ^ ((value + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & U64)) & U64


class ZipWriter:
    """Append stored records to an :class:`OutFile`, then finish with the central directory."""

    def __init__(self, out: OutFile, root: str, alignment: int = ALIGNMENT) -> None:
        if not root or "/" in root:
            raise ValueError(f"invalid archive root {root!r}")
        self.out = out
        self.root = root
        self.alignment = alignment
        self.entries: list[_Entry] = []
        self.names: set[str] = set()
        self.layout = ZipLayout(root)
        self._crc_seed = 0

    # ------------------------------------------------------------------ records
    def add(self, name: str, data: bytes) -> None:
        self.add_stream(name, len(data), lambda: self._write_crc(data))

    def _write_crc(self, data: bytes) -> int:
        self.out.write(data)
        return zlib.crc32(data)

    def add_stream(self, name: str, size: int, fill: Callable[[], int]) -> None:
        """A record of ``size`` bytes that ``fill()`` writes to ``self.out`` (returning their CRC32)."""
        if name in self.names:
            raise ValueError(f"record {name!r} written twice")
        self.names.add(name)
        full = f"{self.root}/{name}".encode()
        offset = self.out.pos
        big = size >= U32 or offset >= U32
        extra = b""
        if big:
            fields = (struct.pack("<QQ", size, 0) if size >= U32 else b"") + (
                struct.pack("<Q", offset) if offset >= U32 else b"")
            extra = struct.pack("<HH", 1, len(fields)) + fields
        start = offset + 30 + len(full) + 4 + len(extra)
        pad = (-start) % self.alignment
        extra += b"FB" + struct.pack("<H", pad) + b"Z" * pad
        flags = 0x0808 if size else 0x0800
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 0, flags, 0, 0, 0, 0, 0, 0, len(full), len(extra))
        self.out.write(header + full + extra)
        data_at = self.out.pos
        crc = fill() if size else 0
        if self.out.pos - data_at != size:
            raise RuntimeError(f"record {name}: wrote {self.out.pos - data_at} bytes, expected {size}")
        if size:
            if big:
                self.out.write(struct.pack("<IIQQ", 0x08074B50, crc, size, size))
            else:
                self.out.write(struct.pack("<IIII", 0x08074B50, crc, size, size))
            self._crc_seed = _hash_combine(self._crc_seed, crc)
        self.entries.append(_Entry(full, size, crc, offset, flags, big))
        self.layout.records.append((name, data_at, size))

    # ------------------------------------------------------------------ end
    def _serialization_id(self) -> str:
        seed = 0
        for name in sorted(self.names):
            h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")
            seed = _hash_combine(seed, h)
        return f"{seed:020d}{self._crc_seed:020d}"

    def finish(self) -> None:
        self.add(".data/serialization_id", self._serialization_id().encode())
        cd_offset = self.out.pos
        cd = bytearray()
        for e in self.entries:
            fields = b""
            if e.size >= U32:
                fields += struct.pack("<QQ", e.size, e.size)
            if e.offset >= U32:
                fields += struct.pack("<Q", e.offset)
            extra = struct.pack("<HH", 1, len(fields)) + fields if fields else b""
            cd += struct.pack(
                "<IHHHHHHIIIHHHHHII", 0x02014B50, 0, 0, e.flags, 0, 0, 0, e.crc, min(e.size, U32),
                min(e.size, U32), len(e.name), len(extra), 0, 0, 0, 0, min(e.offset, U32),
            )
            cd += e.name + extra
        self.out.write(cd)
        n = len(self.entries)
        eocd64_at = self.out.pos
        self.out.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 0x002D, 0, 0, n, n, len(cd), cd_offset))
        self.out.write(struct.pack("<IIQI", 0x07064B50, 0, eocd64_at, 1))
        self.out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                                   min(len(cd), U32), min(cd_offset, U32), 0))


def write_zip(root: Any, out: OutFile, *, archive_name: str, numpy_module: str = "numpy.core",
              note: Callable[[str], None] | None = None) -> ZipLayout:
    """Write ``root`` as torch.save (zip) would: data.pkl, then every storage, streamed."""
    tp = TorchPickler(legacy=False, numpy_module=numpy_module, note=note)
    data_pkl = tp.dumps(root)
    z = ZipWriter(out, archive_name)
    z.add("data.pkl", data_pkl)
    z.add(".format_version", b"1")
    z.add(".storage_alignment", str(ALIGNMENT).encode())
    z.add("byteorder", b"little")
    for e in tp.storages:
        src, off, n = storage_region(e.storage, e.nbytes)
        z.add_stream(f"data/{e.key}", n, lambda src=src, off=off, n=n: out.copy_region(src, off, n, crc=True))
        z.layout.storage_bytes += n
    z.layout.storages = len(tp.storages)
    z.add("version", FILE_FORMAT_VERSION.encode())
    z.finish()
    return z.layout
