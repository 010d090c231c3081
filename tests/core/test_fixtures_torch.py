"""The core reader against torch 2.13 itself, on checkpoints torch writes here and now.

Every case is saved in both containers (zip and legacy) with pickle protocols
2-5, loaded back with ``torch.load(weights_only=False)``, and every tensor
ckptdoctor finds must match torch's: same dotted paths, dtype, shape, stride,
storage offset, requires_grad, bytes (sha256), storage sharing, quantizer and
sparse parts. Non-tensor values (numbers, strings, numpy, Namespace, modules)
must decode to the same data.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch (test extra) not installed")

import torch_fixtures as tf  # noqa: E402  (needs torch)

import ckptdoctor  # noqa: E402
from ckptdoctor.model import TensorRecord  # noqa: E402
from ckptdoctor.pickle.objects import PickledObject  # noqa: E402
from ckptdoctor.pickle.values import NumpyArray  # noqa: E402
from ckptdoctor.walk import is_module  # noqa: E402

PARAMS = [pytest.param(case, container, proto, id=f"{case}-{container}-p{proto}")
          for case in tf.CASES for container in tf.CONTAINERS for proto in tf.PROTOCOLS]


# ------------------------------------------------------------------ comparisons
def assert_quantizer(path: str, want: Any, got: TensorRecord) -> None:
    facts = tf.qscheme_facts(want)
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
    layout = tf.dtype_name(want.layout)
    assert got.layout == layout, path
    parts = got.sparse_parts or ()
    if layout == "sparse_coo":
        expected = [want._indices(), want._values()]
        assert bool(parts[3]) == want.is_coalesced(), path
    elif layout in ("sparse_csr", "sparse_bsr"):
        expected = [want.crow_indices(), want.col_indices(), want.values()]
    else:
        expected = [want.ccol_indices(), want.row_indices(), want.values()]
    for i, w in enumerate(expected):
        assert_tensor(f"{path}#part{i}", w, parts[i])


def assert_tensor(path: str, want: Any, got: Any) -> None:
    assert isinstance(got, TensorRecord), path
    assert got.dtype.name == tf.dtype_name(want.dtype), path
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
    assert got.sha256() == tf.sha256(want), path
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
    paths = [p for p, t in expected.items() if tf.storage_id(t) is not None]
    for i, a in enumerate(paths):
        for b in paths[i + 1 :]:
            same_torch = tf.storage_id(expected[a]) == tf.storage_id(expected[b])
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
    expected = tf.torch_tensors(want_obj)
    with ckptdoctor.open(path) as ckpt:
        assert ckpt.format == fmt
        if protocol is not None:
            assert ckpt.pickle_protocol == protocol
        got = dict(ckpt.tensors())
        assert_tensors(expected, got)
        assert_same_value(want_obj, ckpt.root)


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize(("case", "container", "protocol"), PARAMS)
def test_reads_like_torch(case: str, container: str, protocol: int, tmp_path: Path) -> None:
    path = tf.save(tf.build(case, container), tmp_path / f"{case}.pt", container, protocol)
    check_file(path, tf.load(path), container, protocol)


@pytest.mark.parametrize("protocol", tf.PROTOCOLS)
def test_new_dtypes_in_legacy_container(protocol: int, tmp_path: Path) -> None:
    """torch 2.13 writes untyped-storage dtypes into the legacy container but cannot load them back
    (``UntypedStorage`` has no ``dtype``); ckptdoctor reads them: compare with the tensors saved."""
    obj = tf._dtype_cases(tf.NEW_DTYPES)
    path = tf.save(obj, tmp_path / "new.pt", "legacy", protocol)
    check_file(path, obj, "legacy", protocol)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(how: str, tmp_path: Path) -> None:
    """A scripted/traced module with a buffer and a submodule: tensors of torch.jit.load(f).state_dict()."""
    path = tmp_path / f"{how}.pt"
    loaded = tf.save_script(how, path)
    expected = tf.torch_tensors({"state_dict": loaded.state_dict(keep_vars=True)})
    assert len(expected) == 4
    with ckptdoctor.open(path) as ckpt:
        assert ckpt.format == "torchscript"
        got = dict(ckpt.tensors())
        assert list(got) == list(expected)  # module.state_dict() order
        for p, want in expected.items():
            assert_tensor(p, want, got[p])
        assert_sharing(expected, got)
