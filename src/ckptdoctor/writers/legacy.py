"""The legacy stream (torch <= 1.5 default), as torch 2.13 writes it with ``_use_new_zipfile_serialization=False``.

Five protocol-2 pickles back to back -- magic number, protocol version 1001,
sys_info, the object (storages as 6-tuple persistent ids), the sorted list of
storage keys -- then, for each key in that order, an i64 little-endian element
count followed by the storage's bytes. torch >= 1.6 still reads it; torch
<= 1.5 reads nothing else. ``mmap=True`` does not work on this format.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.pickle.writer import dumps
from ckptdoctor.writers.stream import OutFile, storage_region
from ckptdoctor.writers.torchpickle import TorchPickler

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
SYS_INFO = {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}


@dataclass
class LegacyLayout:
    """What was written, for reports and tests."""

    pickle_ends: list[int] = field(default_factory=list)  # file offset after each of the 5 pickles
    records: list[tuple[str, int, int]] = field(default_factory=list)  # (key, offset of count, numel)
    storages: int = 0
    storage_bytes: int = 0


def write_legacy(root: Any, out: OutFile, *, numpy_module: str = "numpy.core",
                 note: Callable[[str], None] | None = None) -> LegacyLayout:
    layout = LegacyLayout()
    tp = TorchPickler(legacy=True, numpy_module=numpy_module, note=note)
    obj_pkl = tp.dumps(root)  # before writing anything: a failure leaves nothing half-written
    for blob in (dumps(MAGIC_NUMBER), dumps(PROTOCOL_VERSION), dumps(SYS_INFO), obj_pkl):
        out.write(blob)
        layout.pickle_ends.append(out.pos)
    entries = sorted(tp.storages, key=lambda e: e.key)
    out.write(dumps([e.key for e in entries]))
    layout.pickle_ends.append(out.pos)
    for e in entries:
        src, off, n = storage_region(e.storage, e.nbytes)
        layout.records.append((e.key, out.pos, e.numel))
        out.write(struct.pack("<q", e.numel))
        out.copy_region(src, off, n)
        layout.storage_bytes += n
    layout.storages = len(entries)
    return layout
