"""Checkpoints generated with torch 2.13, and torch's own view of them, for tests/core.

Everything here is test-only and small (KBs): the machine is shared. The
``case_*`` builders return the object to ``torch.save``; :func:`torch_tensors`
walks what ``torch.load`` gives back with the dotted-path convention of the
corpus truth files (dict keys and list/tuple indices joined by ``.``, a
``nn.Module`` contributing ``state_dict.<key>``), and the ``assert_*`` helpers
compare torch's tensors and values with what ckptdoctor reads.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import ckptdoctor
from ckptdoctor.model import TensorRecord
from ckptdoctor.pickle.objects import PickledObject
from ckptdoctor.pickle.values import NumpyArray
from ckptdoctor.walk import is_module

CONTAINERS = ("zip", "legacy")
PROTOCOLS = (2, 3, 4, 5)

# Dtypes with a typed-storage class: both containers can hold them and torch loads both.
TYPED_DTYPES = ("float64", "float32", "float16", "bfloat16", "complex64", "complex128", "bool", "int8", "int16",
                "int32", "int64", "uint8")
# Dtypes saved as an untyped storage + _rebuild_tensor_v3 (zip). torch 2.13 writes them in the legacy
# container too, but cannot load them back from it (see case_new_dtypes_legacy).
NEW_DTYPES = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu",
              "float4_e2m1fn_x2", "complex32", "uint16", "uint32", "uint64", "bits8", "bits16", "bits1x8",
              "bits2x4", "bits4x2")
SIGNED_BY_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64, 16: torch.complex128}


# ------------------------------------------------------------------ models pickled whole
class Block(nn.Module):
    """A parameter set to None, a bias-less Linear, a persistent and a non-persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 3, bias=False)
        self.norm = nn.BatchNorm1d(3)
        self.register_buffer("scale", torch.full((3,), 0.5))
        self.register_buffer("cache", torch.arange(2.0), persistent=False)
        self.register_buffer("absent", None)
        self.register_parameter("unused", None)


class Net(nn.Module):
    """Nested blocks, a tied weight (one Parameter at two paths) and a None submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Linear(3, 4)
        self.embed = nn.Embedding(4, 3)
        self.embed.weight = nn.Parameter(self.head.weight.detach().t().contiguous())
        self.tied = nn.Linear(3, 4, bias=False)
        self.tied.weight = self.head.weight
        self.register_module("missing", None)
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)


class ScriptNet(nn.Module):
    """For TorchScript: a buffer and a submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.sub = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
        self.register_buffer("offset", torch.tensor([0.25, -0.5]))
        self.last = nn.Linear(2, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.sub(x) + self.offset)


# ------------------------------------------------------------------ cases
def random_bits(dtype: torch.dtype, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """A tensor of ``dtype`` filled with random bit patterns (works for dtypes without arithmetic)."""
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    raw = torch.randint(0, 256, (n * dtype.itemsize,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        return (raw[:n] & 1).bool().reshape(shape)
    return raw.view(dtype).reshape(shape)


def _dtype_cases(names: tuple[str, ...]) -> dict:
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        t = random_bits(getattr(torch, name), (3, 4), i)
        out[name] = {"t": t, "col": t[:, 1], "tr": t.t(), "scalar": random_bits(t.dtype, (), 50 + i)}
    return out


def case_dtypes() -> dict:
    return _dtype_cases(TYPED_DTYPES + NEW_DTYPES)


def case_views() -> dict:
    base = torch.arange(48, dtype=torch.float32).reshape(6, 8)
    return {
        "base": base, "row": base[2], "col": base[:, 3], "t": base.t(), "narrow": base.narrow(1, 2, 5),
        "step": base[1::2, ::3], "rev_free": base[4:, 5:], "expand": torch.ones(3, 1).expand(3, 4),
        "channels_last": torch.arange(120.0).reshape(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "permuted": torch.arange(24, dtype=torch.int64).reshape(2, 3, 4).permute(2, 0, 1),
        "tail": torch.arange(10, dtype=torch.int16)[7:], "zero_d": torch.tensor(3.5),
        "zero_d_view": base[5, 7], "empty": torch.empty(0, 5), "empty_view": base[6:], "empty_1d": torch.empty(0),
    }


def case_shared() -> dict:
    w = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    b = torch.arange(7.0)
    return {"enc": {"weight": w}, "dec": {"weight": w}, "list": [w, b[2:], b], "tuple": (b[:3], w.t()),
            "halves": [b[:4], b[4:]], "other": torch.zeros(2)}


def case_params() -> dict:
    p = nn.Parameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(4)))
    frozen = nn.Parameter(torch.ones(2), requires_grad=False)
    tagged = nn.Parameter(torch.zeros(4))
    tagged.tag = "tied"
    leaf = torch.randn(2, 2).requires_grad_()
    attrs = torch.arange(3.0)
    attrs.foo = 1
    attrs.label = "positions"
    return {"p": p, "frozen": frozen, "tagged": tagged, "leaf": leaf, "attrs": attrs, "again": p, "data": p.data[1]}


def case_quantized() -> dict:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 6, generator=g)
    scales = torch.rand(4, generator=g).double() + 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "qint8": torch.quantize_per_tensor(x, 0.05, 3, torch.qint8),
            "quint8": torch.quantize_per_tensor(x, 0.1, 128, torch.quint8),
            "qint32": torch.quantize_per_tensor(x, 0.001, -5, torch.qint32),
            "per_channel": torch.quantize_per_channel(x, scales, torch.randint(-3, 3, (4,), generator=g), 0,
                                                      torch.qint8),
            "per_channel_axis1": torch.quantize_per_channel(x, torch.rand(6, generator=g).double() + 0.1,
                                                            torch.zeros(6, dtype=torch.long), 1, torch.quint8),
            "float_qparams": torch.quantize_per_channel(x, scales.float(), torch.randn(4, generator=g), 0,
                                                        torch.quint8),
            "quint4x2": torch.quantize_per_channel(x, scales.float(), torch.zeros(4), 0, torch.quint4x2),
            "quint4x2_odd": torch.quantize_per_tensor(torch.randn(7, generator=g), 0.1, 3, torch.quint4x2),
            "quint2x4": torch.quantize_per_tensor(torch.randn(9, generator=g), 0.2, 1, torch.quint2x4),
        }
    out["qint8_t"] = out["qint8"].t()
    out["qint8_row"] = out["qint8"][1]
    return out


def case_sparse() -> dict:
    dense = torch.tensor([[0.0, 1, 0, 2], [3, 0, 0, 0], [0, 0, 4, 5], [0, 6, 0, 0]])
    idx = torch.tensor([[0, 2, 0], [1, 3, 1]])
    return {
        "coo": dense.to_sparse(),
        "coo_uncoalesced": torch.sparse_coo_tensor(idx, torch.tensor([1.0, 2, 3]), (3, 4)),
        "coo_int": torch.tensor([[0, 7], [8, 0]], dtype=torch.int32).to_sparse(),
        "csr": dense.to_sparse_csr(), "csc": dense.to_sparse_csc(),
        "bsr": dense.to_sparse_bsr((2, 2)), "bsc": dense.to_sparse_bsc((2, 2)),
    }


def case_bits() -> dict:
    g = torch.Generator().manual_seed(9)
    z = torch.randn(3, 2, dtype=torch.complex64, generator=g)
    w = torch.randn(4, dtype=torch.complex128, generator=g)
    return {"z": z, "conj": z.conj(), "conj_row": z[1].conj(), "neg": w.conj().imag}


def case_containers() -> dict:
    t = torch.arange(4.0)
    rng = np.random.default_rng(0)
    return {
        "nested": [1, (t, [t[1:], {"k": torch.ones(2, 2)}]), {0: torch.zeros(1), 5: {"x": torch.full((2,), 7)}}],
        "int_keys": {0: torch.tensor([1, 2]), -3: "neg", 10: (torch.tensor(True), None)},
        "tuple": (1, 2.5, "three", None, True, b"\x00\xff"),
        "floats": {"nan": float("nan"), "inf": float("-inf"), "neg_zero": -0.0, "big": 1 << 70},
        "numpy": {"f32": rng.standard_normal((3, 4)).astype(np.float32), "i64": np.arange(6).reshape(2, 3),
                  "fortran": np.asfortranarray(rng.standard_normal((3, 2))), "bool": np.array([True, False]),
                  "big_endian": np.arange(4, dtype=">f4"), "zero_d": np.array(2.5), "empty": np.zeros((0, 3))},
        "np_scalars": {"f64": np.float64(1.25), "i32": np.int32(-7), "b": np.bool_(True), "f16": np.float16(0.5),
                       "u8": np.uint8(200)},
        "args": argparse.Namespace(lr=0.1, layers=[64, 64], name="run-1", nested=argparse.Namespace(seed=3)),
        "unicode": "naïve ✓", "set": {1, 2}, "od": collections.OrderedDict(b=2, a=1),
    }


def case_optimizer() -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    sgd.step()
    return {"epoch": 3, "model": model.state_dict(), "optimizer": opt.state_dict(), "sgd": sgd.state_dict()}


def case_whole_model() -> dict:
    torch.manual_seed(1)
    return {"model": Net(), "plain": nn.Sequential(nn.Linear(2, 2), nn.ReLU()), "dp": nn.DataParallel(Block())}


def case_prefixes() -> dict:
    torch.manual_seed(2)
    sd = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).state_dict()
    return {"state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
            "compiled": collections.OrderedDict(("_orig_mod." + k, v) for k, v in sd.items()),
            "both": collections.OrderedDict(("module._orig_mod." + k, v) for k, v in sd.items())}


CASES: dict[str, Callable[[], Any]] = {
    "dtypes": case_dtypes, "views": case_views, "shared": case_shared, "params": case_params,
    "quantized": case_quantized, "sparse": case_sparse, "bits": case_bits, "containers": case_containers,
    "optimizer": case_optimizer, "whole_model": case_whole_model, "prefixes": case_prefixes,
}
# The legacy container cannot hold the untyped-storage dtypes in a form torch reads back.
LEGACY_SKIP = {"dtypes": NEW_DTYPES}


def build(name: str, container: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # beta-feature and deprecation notices from sparse/quantized builders
        obj = CASES[name]()
    if container == "legacy" and name in LEGACY_SKIP:
        obj = {k: v for k, v in obj.items() if k not in LEGACY_SKIP[name]}
    return obj


def save(obj: Any, path: Path, container: str, protocol: int) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(obj, path, pickle_protocol=protocol, _use_new_zipfile_serialization=(container == "zip"))
    return path


def load(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=False)


def save_script(how: str, path: Path) -> Any:
    """``torch.jit.script`` or ``torch.jit.trace`` a ScriptNet, ``torch.jit.save`` it, and return
    ``torch.jit.load(path)`` (TorchScript APIs are deprecated in 2.13 but still write and read)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ScriptNet()
        module = torch.jit.script(model) if how == "script" else torch.jit.trace(model, torch.randn(1, 3))
        torch.jit.save(module, str(path))
        return torch.jit.load(str(path), map_location="cpu")


# ------------------------------------------------------------------ torch's side of the comparison
def torch_tensors(obj: Any, path: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in ``obj`` by dotted path (the corpus truth convention)."""
    out: dict[str, torch.Tensor] = {}
    sep = "." if path else ""
    if isinstance(obj, torch.Tensor):
        out[path] = obj
    elif isinstance(obj, nn.Module):
        out.update(torch_tensors(obj.state_dict(keep_vars=True), f"{path}{sep}state_dict"))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(torch_tensors(v, f"{path}{sep}{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(torch_tensors(v, f"{path}{sep}{i}"))
    return out


def physical(t: torch.Tensor) -> torch.Tensor:
    """The tensor with conj/neg bits toggled off: the values as stored in the file."""
    if t.is_conj():
        t = t.conj()
    if t.is_neg():
        t = torch._neg_view(t)
    return t


def tensor_bytes(t: torch.Tensor) -> bytes:
    """C-order bytes of ``t.contiguous()`` (quantized: ``int_repr()``; conj/neg: the stored values)."""
    t = physical(t.detach())
    if t.is_quantized:
        t = t.int_repr()
    carrier = SIGNED_BY_SIZE[t.element_size()]
    flat = t.view(carrier) if t.dtype != carrier else t
    return flat.contiguous().numpy().tobytes()


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(tensor_bytes(t)).hexdigest()


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def qscheme_facts(t: torch.Tensor) -> dict[str, Any]:
    scheme = dtype_name(t.qscheme())
    if scheme in ("per_tensor_affine", "per_tensor_symmetric"):
        return {"qscheme": scheme, "scale": t.q_scale(), "zero_point": t.q_zero_point()}
    return {"qscheme": scheme, "scales": t.q_per_channel_scales().numpy(),
            "zero_points": t.q_per_channel_zero_points().numpy(), "axis": t.q_per_channel_axis()}


def storage_id(t: torch.Tensor) -> int | None:
    """Identity of the storage a strided tensor uses (None when it has no bytes to share)."""
    if t.layout != torch.strided:
        return None
    st = t.untyped_storage()
    return st.data_ptr() if st.nbytes() else None


# ------------------------------------------------------------------ comparisons with ckptdoctor
def assert_quantizer(path: str, want: Any, got: TensorRecord) -> None:
    facts = qscheme_facts(want)
    q = got.quantizer or {}
    assert q.get("qscheme") == facts["qscheme"], path
    if "scale" in facts:
        assert q["scale"] == facts["scale"], path
        assert q["zero_point"] == facts["zero_point"], path
        return
    assert q["axis"] == facts["axis"], path
    for key in ("scales", "zero_points"):
        rec = q[key]
        assert isinstance(rec, TensorRecord), (path, key)
        np.testing.assert_array_equal(rec.to_numpy(), facts[key], err_msg=f"{path} {key}")
        assert rec.to_numpy().dtype == facts[key].dtype, (path, key)


def assert_sparse(path: str, want: Any, got: TensorRecord) -> None:
    layout = dtype_name(want.layout)
    assert got.layout == layout, path
    parts = got.sparse_parts or ()
    if layout == "sparse_coo":
        expected = [want._indices(), want._values()]
        assert bool(parts[3]) == want.is_coalesced(), path
    elif layout in ("sparse_csr", "sparse_bsr"):
        expected = [want.crow_indices(), want.col_indices(), want.values()]
    else:  # sparse_csc, sparse_bsc
        expected = [want.ccol_indices(), want.row_indices(), want.values()]
    for i, w in enumerate(expected):
        assert_tensor(f"{path}#part{i}", w, parts[i])


def assert_tensor(path: str, want: Any, got: Any) -> None:
    assert isinstance(got, TensorRecord), path
    assert got.dtype.name == dtype_name(want.dtype), path
    assert got.shape == tuple(want.shape), path
    assert got.requires_grad == want.requires_grad, path
    assert got.is_parameter == isinstance(want, torch.nn.Parameter), path
    if want.layout != torch.strided:
        assert_sparse(path, want, got)
        return
    assert got.layout == "strided", path
    assert got.stride == tuple(want.stride()), path
    assert got.offset == want.storage_offset(), path
    assert got.device == str(want.device), path
    assert got.sha256() == sha256(want), path
    meta = got.metadata or {}
    assert bool(meta.get("conj")) == want.is_conj(), path
    assert bool(meta.get("neg")) == want.is_neg(), path
    attrs = {k: v for k, v in vars(want).items() if not k.startswith("_")}
    if attrs:
        assert meta.get("attrs", meta.get("state")) == attrs, path
    if want.is_quantized:
        assert_quantizer(path, want, got)


def assert_sharing(expected: dict[str, Any], got: dict[str, TensorRecord]) -> None:
    """Tensors share a Storage object in ckptdoctor exactly when they share one in torch."""
    paths = [p for p, t in expected.items() if storage_id(t) is not None]
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            same_torch = storage_id(expected[a]) == storage_id(expected[b])
            same_ours = got[a].storage is got[b].storage
            assert same_torch == same_ours, (a, b, same_torch)


def assert_tensors(expected: dict[str, Any], got: dict[str, TensorRecord]) -> None:
    assert list(got) == list(expected)
    for path, want in expected.items():
        assert_tensor(path, want, got[path])
    assert_sharing(expected, got)


def assert_same_value(want: Any, got: Any, path: str = "") -> None:
    """Non-tensor data decodes to what torch.load gives (tensors are checked by assert_tensor)."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, TensorRecord), path
    elif isinstance(want, torch.nn.Module):
        assert is_module(got), path
        assert got.qualname == f"{type(want).__module__}.{type(want).__qualname__}", path
    elif isinstance(want, np.ndarray):
        assert isinstance(got, NumpyArray), path
        arr = got.to_numpy()
        # numpy >= 2.x turns a protocol-2 big-endian array into a native one on unpickling; the file
        # (and ckptdoctor) keep the byte order as saved, so compare the type up to byte order.
        assert arr.dtype.newbyteorder("=") == want.dtype.newbyteorder("=") and arr.shape == want.shape, path
        np.testing.assert_array_equal(arr, want, err_msg=path)
    elif isinstance(want, np.generic):
        assert type(got) is type(want) and got == want, path
    elif isinstance(want, argparse.Namespace):
        assert isinstance(got, PickledObject) and got.qualname == "argparse.Namespace", path
        assert_same_value(vars(want), got.attrs, path)
    elif isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), path
        for k in want:
            assert_same_value(want[k], got[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, type(want)) and len(got) == len(want), path
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            assert_same_value(w, g, f"{path}.{i}")
    elif isinstance(want, float) and math.isnan(want):
        assert isinstance(got, float) and math.isnan(got), path
    else:
        assert type(got) is type(want) and got == want, path
        if isinstance(want, float):
            assert math.copysign(1, got) == math.copysign(1, want), path


def check_file(path: Path, want_obj: Any, fmt: str, protocol: int | None) -> None:
    expected = torch_tensors(want_obj)
    with ckptdoctor.open(path) as ckpt:
        assert ckpt.format == fmt
        if protocol is not None:
            assert ckpt.pickle_protocol == protocol
        got = dict(ckpt.tensors())
        assert_tensors(expected, got)
        assert_same_value(want_obj, ckpt.root)
