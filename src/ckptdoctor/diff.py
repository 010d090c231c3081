"""Tensor-by-tensor comparison of two checkpoints in any supported formats, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ckptdoctor.model import Checkpoint, TensorRecord


@dataclass(slots=True)
class TensorDiff:
    path: str
    status: str  # identical | close | different | dtype-changed | shape-changed | unreadable
    dtype: tuple[str, str] = ("", "")
    shape: tuple[list[int], list[int]] = ([], [])
    max_abs: float | None = None
    max_rel: float | None = None
    differing_elements: int = 0
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "dtype": list(self.dtype), "shape": list(self.shape),
                "max_abs": self.max_abs, "max_rel": self.max_rel, "differing_elements": self.differing_elements,
                "detail": self.detail}


@dataclass(slots=True)
class DiffResult:
    a: str
    b: str
    tensors: list[TensorDiff] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    key_mapping: str | None = None  # e.g. "stripped 'state_dict.' from a"

    @property
    def identical(self) -> bool:
        return not self.only_in_a and not self.only_in_b and all(t.status == "identical" for t in self.tensors)

    @property
    def equal_within_tolerance(self) -> bool:
        return not self.only_in_a and not self.only_in_b and all(t.status in ("identical", "close")
                                                                 for t in self.tensors)

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.status] = counts.get(t.status, 0) + 1
        return {"a": self.a, "b": self.b, "identical": self.identical, "counts": counts,
                "only_in_a": self.only_in_a, "only_in_b": self.only_in_b, "key_mapping": self.key_mapping,
                "tensors": [t.to_dict() for t in self.tensors]}


def _as_float(chunk: bytes | memoryview, t: TensorRecord) -> np.ndarray | None:
    """Numeric view of a chunk of C-ordered tensor bytes (float64), or None if not comparable numerically."""
    name = t.dtype.name
    if name == "bfloat16":
        u = np.frombuffer(chunk, dtype="<u2").astype(np.uint32) << 16
        return u.view(np.float32).astype(np.float64)
    if t.dtype.numpy is None or name == "bool":
        return None
    arr = np.frombuffer(chunk, dtype=t.dtype.carrier)
    if arr.dtype.kind == "c":
        return None
    return arr.astype(np.float64)


def compare_tensors(path: str, a: TensorRecord, b: TensorRecord, rtol: float, atol: float) -> TensorDiff:
    d = TensorDiff(path, "identical", (a.dtype.name, b.dtype.name), (list(a.shape), list(b.shape)))
    if a.dtype.name != b.dtype.name:
        d.status = "dtype-changed"
        return d
    if tuple(a.shape) != tuple(b.shape):
        d.status = "shape-changed"
        return d
    try:
        ia, ib = a.iter_contiguous_bytes(), b.iter_contiguous_bytes()
        max_abs = 0.0
        max_rel = 0.0
        numeric = True
        within_tol = True
        for ca, cb in zip(ia, ib, strict=True):
            if memoryview(ca).cast("B") == memoryview(cb).cast("B"):
                continue
            fa, fb = _as_float(ca, a), _as_float(cb, b)
            if fa is None or fb is None:
                numeric = False
                raw_a = np.frombuffer(ca, dtype=np.uint8)
                raw_b = np.frombuffer(cb, dtype=np.uint8)
                d.differing_elements += int(np.count_nonzero(raw_a != raw_b))
                continue
            diff = np.abs(fa - fb)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(np.abs(fb) > 0, diff / np.abs(fb), np.where(diff > 0, np.inf, 0.0))
            nan_mismatch = np.isnan(fa) != np.isnan(fb)
            both_nan = np.isnan(fa) & np.isnan(fb)
            diff = np.where(both_nan, 0.0, diff)
            rel = np.where(both_nan, 0.0, rel)
            d.differing_elements += int(np.count_nonzero((diff > 0) | nan_mismatch))
            within_tol = within_tol and not nan_mismatch.any() and bool(np.all(diff <= atol + rtol * np.abs(fb)))
            if diff.size:
                max_abs = max(max_abs, float(np.nanmax(diff)))
                max_rel = max(max_rel, float(np.nanmax(rel)))
            if nan_mismatch.any():
                max_abs = max_rel = float("inf")
        if d.differing_elements == 0:
            return d
        if numeric:
            d.max_abs, d.max_rel = max_abs, max_rel
            d.status = "close" if within_tol else "different"
        else:
            d.status = "different"
    except Exception as e:  # noqa: BLE001 - a damaged tensor is reported, not fatal
        d.status = "unreadable"
        d.detail = str(e)
    return d


def _strip_common(paths: set[str]) -> str | None:
    firsts = {p.split(".", 1)[0] for p in paths if "." in p}
    if len(firsts) == 1 and all("." in p for p in paths):
        return firsts.pop() + "."
    return None


def diff_checkpoints(a: Checkpoint, b: Checkpoint, *, rtol: float = 0.0, atol: float = 0.0) -> DiffResult:
    ta: dict[str, TensorRecord] = dict(a.tensors())
    tb: dict[str, TensorRecord] = dict(b.tensors())
    res = DiffResult(a.path, b.path)
    if ta and tb and not set(ta) & set(tb):
        # e.g. a whole-model pickle ("state_dict.x") against its plain state_dict ("x")
        for side, table, other in (("a", ta, tb), ("b", tb, ta)):
            pre = _strip_common(set(table))
            if pre and {k[len(pre):] for k in table} & set(other):
                stripped = {k[len(pre):]: v for k, v in table.items()}
                if side == "a":
                    ta = stripped
                else:
                    tb = stripped
                res.key_mapping = f"stripped {pre!r} from {side}"
                break
    for path in ta:
        if path in tb:
            res.tensors.append(compare_tensors(path, ta[path], tb[path], rtol, atol))
        else:
            res.only_in_a.append(path)
    res.only_in_b = [p for p in tb if p not in ta]
    return res


def iter_changes(res: DiffResult) -> Iterator[TensorDiff]:
    return (t for t in res.tensors if t.status != "identical")
