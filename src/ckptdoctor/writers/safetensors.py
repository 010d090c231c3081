"""safetensors: u64 header length, a JSON header (space-padded to 8 bytes), then the tensors' bytes.

Tensors are named by their dotted path in the tree (``ckptdoctor inspect``
shows the same names). Every tensor gets its own C-contiguous copy: views and
tensors that share a storage are written separately (noted), because the
format has no strides and no sharing. Data is laid out largest element size
first so that every tensor is aligned, as ``safetensors`` itself does; the
header keeps the tree's order. ``__metadata__`` holds strings only.

Quantized tensors are written as their integer representation with the
quantization parameters in ``__metadata__["ckptdoctor.quantization"]``
(JSON); sparse and storage-less tensors cannot be stored and are refused.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.model import TensorRecord
from ckptdoctor.walk import iter_tensors
from ckptdoctor.writers.stream import OutFile, source_fd
from ckptdoctor.writers.torchpickle import WriteError

QUANT_CARRIER = {"qint8": "int8", "quint8": "uint8", "qint32": "int32", "quint4x2": "uint8", "quint2x4": "uint8"}
QUANT_KEY = "ckptdoctor.quantization"
COPY_THREADS = 2


@dataclass
class SafetensorsLayout:
    header_size: int = 0
    tensors: list[tuple[str, str, int, int]] = field(default_factory=list)  # (name, code, begin, end)
    duplicates: list[str] = field(default_factory=list)
    storage_bytes: int = 0


def stored_dtype(t: TensorRecord) -> str:
    """The dtype name a tensor has once written as safetensors (quantized -> integer carrier)."""
    return QUANT_CARRIER.get(t.dtype.name, t.dtype.name)


def value_flags(t: TensorRecord) -> tuple[bool, bool]:
    """(conj, neg): lazy conjugate / negative bits torch keeps beside the stored values."""
    m = t.metadata or {}
    return bool(m.get("conj")), bool(m.get("neg"))


def resolved_chunks(t: TensorRecord) -> Iterator[bytes]:
    """The tensor's *values* in C order (conj/neg bits applied): safetensors has no such flags."""
    import numpy as np

    conj, neg = value_flags(t)
    carrier = t.dtype.carrier
    for piece in t.iter_contiguous_bytes():
        arr = np.frombuffer(piece, dtype=carrier)
        if conj:
            arr = np.conj(arr)
        if neg:
            arr = np.negative(arr)
        yield arr.tobytes()


def _plan(root: Any, note: Callable[[str], None]) -> tuple[list[tuple[str, TensorRecord]], dict[str, Any]]:
    items = list(iter_tensors(root))
    seen_names: set[str] = set()
    quant: dict[str, Any] = {}
    for name, t in items:
        if name in seen_names:
            raise WriteError(f"two tensors would both be named {name!r} in safetensors")
        seen_names.add(name)
        if t.layout != "strided":
            raise WriteError(f"{name}: {t.layout} tensors cannot be stored in safetensors; use --to zip")
        if t.storage is None:
            raise WriteError(f"{name}: a tensor without data ({t.device}) cannot be stored in safetensors")
        if stored_dtype(t) not in dtypes.TO_SAFETENSORS:
            raise WriteError(f"{name}: dtype {t.dtype.name} has no safetensors code; use --to zip")
        if t.quantizer:
            quant[name] = _qinfo(t)
        if any(value_flags(t)) and t.dtype.numpy is None:
            raise WriteError(f"{name}: a negated {t.dtype.name} view cannot be resolved here; use --to zip")
    return items, quant


def _qinfo(t: TensorRecord) -> dict[str, Any]:
    q = t.quantizer or {}
    info: dict[str, Any] = {"dtype": t.dtype.name, "qscheme": q.get("qscheme")}
    if "scale" in q:
        info.update(scale=q["scale"], zero_point=q["zero_point"])
    else:
        info["axis"] = q.get("axis")
        for k in ("scales", "zero_points"):
            v = q.get(k)
            info[k] = v.to_numpy().tolist() if isinstance(v, TensorRecord) else v
    return info


def _note_sharing(items: list[tuple[str, TensorRecord]], layout: SafetensorsLayout,
                  note: Callable[[str], None]) -> None:
    by_obj: dict[int, str] = {}
    by_storage: dict[int, str] = {}
    for name, t in items:
        first = by_obj.get(id(t))
        if first is not None:
            layout.duplicates.append(name)
            note(f"{name} is the same tensor as {first}: stored twice")
            continue
        by_obj[id(t)] = name
        if t.storage is None:
            continue
        other = by_storage.get(id(t.storage))
        if other is not None:
            layout.duplicates.append(name)
            note(f"{name} shares its storage with {other}: stored as its own copy")
        else:
            by_storage[id(t.storage)] = name


def write_safetensors(root: Any, out: OutFile, *, metadata: dict[str, Any] | None = None,
                      note: Callable[[str], None] | None = None) -> SafetensorsLayout:
    note = note or (lambda msg: None)
    layout = SafetensorsLayout()
    items, quant = _plan(root, note)
    _note_sharing(items, layout, note)
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    if quant:
        meta[QUANT_KEY] = json.dumps(quant, sort_keys=True)
        note(f"{len(quant)} quantized tensor(s) stored as integers; parameters in __metadata__[{QUANT_KEY!r}]")
    order = sorted(range(len(items)), key=lambda i: -items[i][1].dtype.itemsize)  # stable: keeps tree order
    offsets: dict[int, tuple[int, int]] = {}
    pos = 0
    for i in order:
        n = items[i][1].nbytes
        offsets[i] = (pos, pos + n)
        pos += n
    header: dict[str, Any] = {"__metadata__": meta} if meta else {}
    for i, (name, t) in enumerate(items):
        code = dtypes.TO_SAFETENSORS[stored_dtype(t)]
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": list(offsets[i])}
        layout.tensors.append((name, code, *offsets[i]))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * ((-(8 + len(raw))) % 8)
    layout.header_size = len(raw)
    out.write(struct.pack("<Q", len(raw)) + raw)
    base = out.pos
    # Every tensor's place is known. Local files are copied in the kernel on one thread (two threads
    # writing one file contend for its inode lock and burn CPU spinning); anything else is copied
    # on two threads, each with its own pread/pwrite buffer.
    threads = 1 if all(source_fd(t.storage.source) is not None for _n, t in items) else COPY_THREADS
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ckptdoctor-copy") as pool:
        jobs = []
        for i in order:
            name, t = items[i]
            begin, end = offsets[i]
            if any(value_flags(t)):
                job = pool.submit(out.write_at, base + begin, resolved_chunks(t))
            else:
                job = pool.submit(out.tensor_at, t, base + begin)
            jobs.append((name, base + end, job))
        for name, want_end, job in jobs:
            got_end = job.result()
            if got_end != want_end:
                raise WriteError(f"{name}: wrote up to byte {got_end}, expected {want_end}")
    out.seek(base + pos)
    layout.storage_bytes = pos
    return layout
