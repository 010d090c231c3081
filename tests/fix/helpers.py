"""Shared helpers for the fix/convert/writer tests (torch is only used here, to check outputs)."""

from __future__ import annotations

import os
import subprocess
import warnings
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="torch (test extra) not installed")
warnings.filterwarnings("ignore", message=".*(TypedStorage|quantize).*")


def load(path: Any, **kw: Any) -> Any:
    """torch.load with weights_only=True (the point of every output) and no device surprises."""
    kw.setdefault("weights_only", True)
    kw.setdefault("map_location", "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, **kw)


def raw_bytes(t: Any) -> bytes:
    if t.is_quantized:
        t = t.int_repr()
    t = t.detach().contiguous()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def assert_same(a: Any, b: Any, path: str = "", *, dict_types: bool = True) -> None:
    """Structure, types, dtypes, shapes and exact bytes (quantizer parameters included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert (a.dtype, tuple(a.shape), a.device) == (b.dtype, tuple(b.shape), b.device), path
        if a.device.type == "meta":  # no bytes to compare
            assert a.stride() == b.stride() and a.requires_grad == b.requires_grad, path
            return
        assert a.is_quantized == b.is_quantized, path
        if a.is_quantized:
            assert a.qscheme() == b.qscheme(), path
            if a.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                assert (a.q_scale(), a.q_zero_point()) == (b.q_scale(), b.q_zero_point()), path
            else:
                assert torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales()), path
                assert torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points()), path
                assert a.q_per_channel_axis() == b.q_per_channel_axis(), path
        elif a.layout == torch.strided:
            assert a.stride() == b.stride() and a.storage_offset() == b.storage_offset(), path
            assert a.is_conj() == b.is_conj() and a.is_neg() == b.is_neg(), path
        assert raw_bytes(a.resolve_conj().resolve_neg() if a.layout == torch.strided and not a.is_quantized else
                         (a.to_dense() if a.layout != torch.strided else a)) == raw_bytes(
            b.resolve_conj().resolve_neg() if b.layout == torch.strided and not b.is_quantized else
            (b.to_dense() if b.layout != torch.strided else b)), path
        assert a.requires_grad == b.requires_grad, path
        assert type(a) is type(b), (path, type(a), type(b))
        return
    if isinstance(a, dict):
        assert isinstance(b, dict), path
        if dict_types:
            assert type(a) is type(b), (path, type(a), type(b))
        assert list(a) == list(b), path
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}", dict_types=dict_types)
        assert getattr(a, "_metadata", None) == getattr(b, "_metadata", None), f"{path}._metadata"
        return
    if isinstance(a, (list, tuple, set)):
        assert type(a) is type(b) and len(a) == len(b), (path, type(a), type(b))
        if isinstance(a, set):
            assert a == b, path
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}.{i}", dict_types=dict_types)
        return
    if isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, path
        return
    assert type(a) is type(b) and a == b, (path, a, b)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(["ckptdoctor", *args], capture_output=True, text=True, env=env)


def leftovers(directory: Any) -> list[str]:
    """Temporary files a failed write might have left."""
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Tensors by dotted path, as ckptdoctor names them (dict keys, list/tuple indices)."""
    out: dict[str, Any] = {}
    sep = "." if prefix else ""
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            key = k.decode("latin-1") if isinstance(k, bytes) else str(k)
            out.update(flatten(v, f"{prefix}{sep}{key}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{sep}{i}"))
    return out


def assert_safetensors_match(path: Any, expected: dict[str, Any]) -> None:
    """``safetensors`` (numpy and torch loaders) gives every tensor with identical bytes."""
    from safetensors import safe_open
    from safetensors.torch import load_file as load_pt

    got = load_pt(str(path))
    assert sorted(got) == sorted(expected)
    for k, want in expected.items():
        want = want.int_repr() if want.is_quantized else want.detach().resolve_conj().resolve_neg()
        assert got[k].dtype == want.dtype and tuple(got[k].shape) == tuple(want.shape), k
        assert raw_bytes(got[k]) == raw_bytes(want), k
    numpy_ok = {k for k, v in got.items() if v.dtype not in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2)}
    with safe_open(str(path), "np") as f:  # safetensors.numpy, tensor by tensor (numpy has no bfloat16)
        for k in numpy_ok:
            assert f.get_tensor(k).tobytes() == raw_bytes(got[k]), k
