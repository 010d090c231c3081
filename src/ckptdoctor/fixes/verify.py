"""Verification: every tensor of the written file, re-read by ckptdoctor, against the tree we wrote.

Signatures are (dtype, shape, sha256 of the C-order bytes). Hashing runs on a
small thread pool (``hashlib`` and ``pread`` release the GIL), reading with a
fixed buffer per thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.model import TensorRecord
from ckptdoctor.walk import iter_tensors
from ckptdoctor.writers.safetensors import resolved_chunks, stored_dtype, value_flags
from ckptdoctor.writers.stream import sha256_tensor

WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class Signature:
    dtype: str
    shape: tuple[int, ...]
    sha256: Future | str

    def digest(self) -> str:
        return self.sha256 if isinstance(self.sha256, str) else self.sha256.result()


@dataclass
class Verification:
    tensors: int = 0
    matched: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        if self.ok:
            return f"{self.tensors} tensors re-read from the output, every sha256 identical"
        parts = []
        for label, items in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("different", self.mismatched)):
            if items:
                parts.append(f"{len(items)} {label} (e.g. {items[0]!r})")
        return "verification failed: " + "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tensors": self.tensors, "matched": self.matched, "bytes": self.bytes,
                "missing": self.missing[:50], "unexpected": self.unexpected[:50], "mismatched": self.mismatched[:50]}


class Hasher:
    """Hash tensors in the background; one job per distinct tensor object."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ckptdoctor-hash")
        self._jobs: dict[tuple[int, bool], tuple[TensorRecord, Future]] = {}

    def signatures(self, items: Iterable[tuple[str, TensorRecord]], *, container: str | None = None
                   ) -> dict[str, Signature]:
        out: dict[str, Signature] = {}
        for path, t in items:
            resolve = container == "safetensors" and any(value_flags(t))
            key = (id(t), resolve)
            job = self._jobs.get(key)
            if job is None:
                job = (t, self.pool.submit(_sha256_values if resolve else sha256_tensor, t))
                self._jobs[key] = job
            dt = stored_dtype(t) if container == "safetensors" else t.dtype.name
            out[path] = Signature(dt, tuple(t.shape), job[1])
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _sha256_values(t: TensorRecord) -> str:
    import hashlib

    h = hashlib.sha256()
    for piece in resolved_chunks(t):
        h.update(piece)
    return h.hexdigest()


def expected_signatures(root: Any, hasher: Hasher, container: str) -> dict[str, Signature]:
    """Signatures of what the output must contain (tensors only; safetensors stores quantized as ints)."""
    return hasher.signatures(iter_tensors(root), container=container)


def compare(expected: dict[str, Signature], got: dict[str, Signature]) -> Verification:
    v = Verification(tensors=len(expected))
    v.missing = [p for p in expected if p not in got]
    v.unexpected = [p for p in got if p not in expected]
    for p, e in expected.items():
        g = got.get(p)
        if g is None:
            continue
        if (e.dtype, e.shape) != (g.dtype, g.shape) or e.digest() != g.digest():
            v.mismatched.append(p)
        else:
            v.matched += 1
    return v


def verify_file(path: str, expected: dict[str, Signature], hasher: Hasher) -> Verification:
    """Open the written file with ckptdoctor and compare every tensor with ``expected``."""
    import ckptdoctor

    with ckptdoctor.open(path) as out:
        got = hasher.signatures(out.tensors())
        result = compare(expected, got)
        seen: set[int] = set()
        for _p, t in out.tensors():
            if id(t) not in seen:
                seen.add(id(t))
                result.bytes += t.nbytes
    return result
