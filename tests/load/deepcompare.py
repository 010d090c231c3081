"""A deep, bit-exact comparison of two loaded objects (ours vs torch.load's).

``assert_same(ours, ref)`` walks both trees in parallel and checks:
types; container keys, order and instance attributes (``_metadata``); tensors'
dtype, layout, device, shape, stride, storage offset, requires_grad, conj/neg
bits, Python attributes, quantizer and the bytes of their whole storage;
numpy values bit for bit; floats bit for bit; object identity (what torch
shares, we share, and nothing more); and the storage-sharing pattern: tensors
whose storages have the same ``data_ptr()`` in torch's result must have equal
``data_ptr()`` in ours, and only those.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

ATOMS = (str, bytes, bool, int, type(None), slice)


class Mismatch(AssertionError):
    pass


def assert_same(ours: Any, ref: Any) -> None:
    c = _Compare()
    c.same(ours, ref, "<root>")
    c.check_sharing()


class _Compare:
    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.ref_to_ours: dict[int, int] = {}
        self.ours_to_ref: dict[int, int] = {}
        self.keep: list[Any] = []
        self.ptrs: list[tuple[str, int, int]] = []  # (path, ours data_ptr, ref data_ptr)

    def fail(self, path: str, msg: str) -> None:
        raise Mismatch(f"{path}: {msg}")

    def same(self, a: Any, b: Any, path: str) -> None:
        if type(a) is not type(b):
            self.fail(path, f"type {type(a).__name__} != {type(b).__name__} ({a!r:.80} vs {b!r:.80})")
        if isinstance(b, ATOMS):
            if a != b:
                self.fail(path, f"{a!r:.80} != {b!r:.80}")
            return
        if isinstance(b, float):
            if struct.pack("<d", a) != struct.pack("<d", b) and not (math.isnan(a) and math.isnan(b)):
                self.fail(path, f"{a!r} != {b!r}")
            return
        if isinstance(b, complex):
            self.same(a.real, b.real, path + ".real")
            self.same(a.imag, b.imag, path + ".imag")
            return
        # identity: the same object twice in torch's result is the same object twice in ours
        ia, ib = id(a), id(b)
        if ib in self.ref_to_ours or ia in self.ours_to_ref:
            if self.ref_to_ours.get(ib) != ia or self.ours_to_ref.get(ia) != ib:
                self.fail(path, "object identity differs (shared in one result, not in the other)")
            return
        self.ref_to_ours[ib] = ia
        self.ours_to_ref[ia] = ib
        self.keep += [a, b]
        torch = self.torch
        if isinstance(b, torch.Tensor):
            self.tensor(a, b, path)
        elif isinstance(b, dict):
            self.mapping(a, b, path)
        elif isinstance(b, (list, tuple)):
            if len(a) != len(b):
                self.fail(path, f"length {len(a)} != {len(b)}")
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                self.same(x, y, f"{path}.{i}")
        elif isinstance(b, (set, frozenset)):
            if not all(isinstance(x, (*ATOMS, float)) for x in b):
                self.fail(path, "set of non-atomic values: cannot pair them up")
            if a != b:
                self.fail(path, f"{a!r:.80} != {b!r:.80}")
        elif isinstance(b, np.ndarray):
            self.ndarray(a, b, path)
        elif isinstance(b, np.generic):
            if a.dtype != b.dtype or a.tobytes() != b.tobytes():
                self.fail(path, f"numpy scalar {a!r} != {b!r}")
        elif isinstance(b, (np.dtype, torch.dtype, torch.device, torch.layout, torch.qscheme, torch.Size)):
            if a != b:
                self.fail(path, f"{a!r} != {b!r}")
        elif isinstance(b, bytearray):
            if a != b:
                self.fail(path, "bytearray differs")
        elif isinstance(b, torch.storage.TypedStorage):
            if a.dtype != b.dtype:
                self.fail(path, f"storage dtype {a.dtype} != {b.dtype}")
            self.storage(a._untyped_storage, b._untyped_storage, path)
        elif isinstance(b, type) or callable(b) and not hasattr(b, "__dict__"):
            if a is not b:
                self.fail(path, f"{a!r} is not {b!r}")
        elif hasattr(b, "__dict__"):
            self.attrs(a, b, path)
        elif a != b:
            self.fail(path, f"{a!r:.80} != {b!r:.80}")

    def attrs(self, a: Any, b: Any, path: str, skip: tuple[str, ...] = ()) -> None:
        da = {k: v for k, v in vars(a).items() if k not in skip}
        db = {k: v for k, v in vars(b).items() if k not in skip}
        if sorted(da) != sorted(db):
            self.fail(path, f"attributes {sorted(da)} != {sorted(db)}")
        for k in db:
            self.same(da[k], db[k], f"{path}.{k}")

    def mapping(self, a: dict, b: dict, path: str) -> None:
        ka, kb = list(a.keys()), list(b.keys())
        if len(ka) != len(kb) or any(type(x) is not type(y) or x != y for x, y in zip(ka, kb, strict=True)):
            self.fail(path, f"keys {ka[:8]!r} != {kb[:8]!r}")
        for k in kb:
            self.same(a[k], b[k], f"{path}.{k}")
        if hasattr(b, "__dict__") or hasattr(a, "__dict__"):
            self.attrs(a, b, path + "[attrs]")
        if hasattr(b, "default_factory") and a.default_factory is not b.default_factory:
            self.fail(path, "defaultdict factory differs")

    def ndarray(self, a: np.ndarray, b: np.ndarray, path: str) -> None:
        if a.dtype != b.dtype or a.shape != b.shape or a.strides != b.strides:
            self.fail(path, f"ndarray {a.dtype}{a.shape}{a.strides} != {b.dtype}{b.shape}{b.strides}")
        if a.flags.writeable != b.flags.writeable:
            self.fail(path, "ndarray writeable flag differs")
        if b.dtype.hasobject:
            for i, (x, y) in enumerate(zip(a.ravel(order="A"), b.ravel(order="A"), strict=True)):
                self.same(x, y, f"{path}[{i}]")
        elif a.tobytes(order="A") != b.tobytes(order="A"):
            self.fail(path, "ndarray bytes differ")

    def storage(self, a: Any, b: Any, path: str) -> None:
        torch = self.torch
        if a.device != b.device or a.nbytes() != b.nbytes():
            self.fail(path, f"storage {a.device}/{a.nbytes()} bytes != {b.device}/{b.nbytes()} bytes")
        if b.device.type == "meta" or b.nbytes() == 0:
            return
        ua = torch.empty(0, dtype=torch.uint8).set_(a)
        ub = torch.empty(0, dtype=torch.uint8).set_(b)
        if not torch.equal(ua, ub):
            self.fail(path, "storage bytes differ")
        self.ptrs.append((path, a.data_ptr(), b.data_ptr()))

    def tensor(self, a: Any, b: Any, path: str) -> None:
        torch = self.torch
        for what in ("is_nested", "dtype", "layout", "device", "requires_grad", "is_leaf", "is_quantized"):
            if getattr(a, what) != getattr(b, what):
                self.fail(path, f"{what} {getattr(a, what)} != {getattr(b, what)}")
        if not b.is_nested and a.shape != b.shape:
            self.fail(path, f"shape {a.shape} != {b.shape}")
        if b.is_nested:
            for what in ("_nested_tensor_size", "_nested_tensor_strides", "_nested_tensor_storage_offsets"):
                if not torch.equal(getattr(a, what)(), getattr(b, what)()):
                    self.fail(path, f"nested {what} differs")
            self.storage(a.untyped_storage(), b.untyped_storage(), path + "[storage]")
        elif b.layout == torch.sparse_coo:
            if a.is_coalesced() != b.is_coalesced():
                self.fail(path, "is_coalesced differs")
            self.tensor(a._indices(), b._indices(), path + "[indices]")
            self.tensor(a._values(), b._values(), path + "[values]")
        elif b.layout in (torch.sparse_csr, torch.sparse_bsr):
            self.tensor(a.crow_indices(), b.crow_indices(), path + "[crow]")
            self.tensor(a.col_indices(), b.col_indices(), path + "[col]")
            self.tensor(a.values(), b.values(), path + "[values]")
        elif b.layout in (torch.sparse_csc, torch.sparse_bsc):
            self.tensor(a.ccol_indices(), b.ccol_indices(), path + "[ccol]")
            self.tensor(a.row_indices(), b.row_indices(), path + "[row]")
            self.tensor(a.values(), b.values(), path + "[values]")
        else:
            if a.stride() != b.stride() or a.storage_offset() != b.storage_offset():
                self.fail(path, f"stride/offset {a.stride()}+{a.storage_offset()} != {b.stride()}+{b.storage_offset()}")
            if a.is_conj() != b.is_conj() or a.is_neg() != b.is_neg():
                self.fail(path, "conj/neg bit differs")
            if b.is_quantized:
                self.quantizer(a, b, path)
            self.storage(a.untyped_storage(), b.untyped_storage(), path + "[storage]")
        skip = ("_backward_hooks",)
        self.attrs(a, b, path + "[attrs]", skip)

    def quantizer(self, a: Any, b: Any, path: str) -> None:
        torch = self.torch
        if a.qscheme() != b.qscheme():
            self.fail(path, f"qscheme {a.qscheme()} != {b.qscheme()}")
        if b.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            if (a.q_scale(), a.q_zero_point()) != (b.q_scale(), b.q_zero_point()):
                self.fail(path, "scale/zero_point differ")
        else:
            if a.q_per_channel_axis() != b.q_per_channel_axis():
                self.fail(path, "axis differs")
            for what in ("q_per_channel_scales", "q_per_channel_zero_points"):
                x, y = getattr(a, what)(), getattr(b, what)()
                if x.dtype != y.dtype or not torch.equal(x, y):
                    self.fail(path, f"{what} differ")

    def check_sharing(self) -> None:
        first_a: dict[int, int] = {}
        first_b: dict[int, int] = {}
        for i, (path, pa, pb) in enumerate(self.ptrs):
            ga = first_a.setdefault(pa, i)
            gb = first_b.setdefault(pb, i)
            if ga != gb:
                other = self.ptrs[gb][0] if ga == i else self.ptrs[ga][0]
                raise Mismatch(f"{path}: storage sharing differs from torch's (compare with {other})")
