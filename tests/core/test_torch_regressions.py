"""Focused regressions for core bugs the torch 2.13 fixture comparison found (test_fixtures_torch.py)."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest

import ckptdoctor
from ckptdoctor.pickle.values import NumpyArray

torch = pytest.importorskip("torch", reason="torch (test extra) not installed")


def _save_open(obj: object, path: Path, **kw: object) -> ckptdoctor.model.Checkpoint:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(obj, path, **kw)
    return ckptdoctor.open(path)


@pytest.mark.parametrize("zip_", [True, False])
def test_float_qparams_qscheme_is_what_torch_loads(zip_: bool, tmp_path: Path) -> None:
    """torch writes float_qparams with the per_channel_affine tag; float zero points make it float_qparams again."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = torch.randn(3, 4)
        fq = torch.quantize_per_channel(x, torch.rand(3) + 0.1, torch.randn(3), 0, torch.quint8)
        pc = torch.quantize_per_channel(x, torch.rand(3).double() + 0.1, torch.zeros(3, dtype=torch.long), 0,
                                        torch.qint8)
    with _save_open({"fq": fq, "pc": pc}, tmp_path / "q.pt", _use_new_zipfile_serialization=zip_) as ckpt:
        got = dict(ckpt.tensors())
    assert got["fq"].quantizer["qscheme"] == "per_channel_affine_float_qparams" == str(fq.qscheme())[6:]
    assert got["pc"].quantizer["qscheme"] == "per_channel_affine" == str(pc.qscheme())[6:]


@pytest.mark.parametrize("protocol", [4, 5])
def test_numpy_arrays_in_protocol_5(protocol: int, tmp_path: Path) -> None:
    """Protocol 5 pickles ndarrays as numpy._core.numeric._frombuffer(buffer, dtype, shape, order)."""
    arrays = {"c": np.arange(12, dtype=np.float32).reshape(3, 4), "f": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
              "b": np.array([True, False, True]), "be": np.arange(3, dtype=">i2"), "e": np.zeros((0, 2))}
    with _save_open(arrays, tmp_path / "np.pt", pickle_protocol=protocol) as ckpt:
        for k, want in arrays.items():
            got = ckpt.root[k]
            assert isinstance(got, NumpyArray), k
            arr = got.to_numpy()
            assert arr.shape == want.shape, k
            np.testing.assert_array_equal(arr, want, err_msg=k)


def test_packed_quantized_bytes_are_int_repr(tmp_path: Path) -> None:
    """quint4x2/quint2x4 pack 2/4 elements per byte: bytes and nbytes are int_repr()'s."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qs = {
            "q4": torch.quantize_per_channel(torch.randn(4, 6), torch.rand(4) + 0.05, torch.zeros(4), 0, torch.quint4x2),
            "q4_odd": torch.quantize_per_tensor(torch.randn(7), 0.1, 3, torch.quint4x2),
            "q2": torch.quantize_per_tensor(torch.randn(9), 0.2, 1, torch.quint2x4),
        }
    with _save_open(qs, tmp_path / "packed.pt") as ckpt:
        got = dict(ckpt.tensors())
        for k, q in qs.items():
            rep = q.int_repr().numpy().tobytes()
            assert got[k].nbytes == len(rep), k
            assert got[k].sha256() == hashlib.sha256(rep).hexdigest(), k
