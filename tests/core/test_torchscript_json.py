"""Legacy TorchScript archives (model.json + tensors/, torch 1.0-1.2), which torch 2.13 refuses to load.

The real corpus file is checked against its own raw records and model.json, read here with the
stdlib (zipfile + json + numpy), independently of ckptdoctor's zip reader; synthetic archives
cover the data types, quantized tensors and shared records the corpus file lacks.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ckptdoctor
from ckptdoctor.errors import UnreadableFile

MNIST = "abc3698__Libtorch_MNIST__mnist_cnn.pt"
NUMPY = {"FLOAT": "<f4", "DOUBLE": "<f8", "FLOAT16": "<f2", "INT64": "<i8", "INT32": "<i4", "INT16": "<i2",
         "INT8": "i1", "UINT8": "u1", "BOOL": "?"}
CODES = {1: "FLOAT", 10: "INT64"}  # caffe2 TensorProto.DataType numbers the synthetic archives use


def expected_from_archive(path: Path) -> dict[str, dict[str, Any]]:
    """state_dict.<module path>.<name> -> facts, straight from model.json and the tensors/<n> records."""
    with zipfile.ZipFile(path) as z:
        root = z.namelist()[0].split("/")[0]
        model = json.loads(z.read(f"{root}/model.json"))
        tensors = model["tensors"]
        out: dict[str, dict[str, Any]] = {}

        def walk(m: dict[str, Any], prefix: str) -> None:
            for p in m.get("parameters", []):
                t = tensors[int(p["tensorId"])]
                shape = tuple(int(d) for d in t["dims"])
                stride = tuple(int(s) for s in t["strides"])
                offset = int(t.get("offset", 0))
                np_dtype = np.dtype(NUMPY[CODES.get(t["dataType"], t["dataType"])])
                flat = np.frombuffer(z.read(f"{root}/{t['data']['key']}"), dtype=np_dtype)
                it = flat.dtype.itemsize
                arr = np.lib.stride_tricks.as_strided(flat[offset:], shape, tuple(s * it for s in stride))
                out[f"state_dict.{prefix}{p['name']}"] = {
                    "dtype": np_dtype, "shape": shape, "stride": stride, "offset": offset,
                    "requires_grad": bool(t.get("requiresGrad", False)), "device": t.get("device", "cpu"),
                    "parameter": not p.get("isBuffer", False), "array": arr,
                }
            for sub in m.get("submodules", []):
                walk(sub, f"{prefix}{sub['name']}.")

        walk(model["mainModule"], "")
        return out


def check(path: Path, expected: dict[str, dict[str, Any]]) -> None:
    with ckptdoctor.open(path) as ckpt:
        assert ckpt.format == "torchscript-json"
        got = dict(ckpt.tensors())
        assert list(got) == list(expected)
        for p, want in expected.items():
            t = got[p]
            assert np.dtype(t.dtype.numpy) == want["dtype"], p
            assert (t.shape, t.stride, t.offset) == (want["shape"], want["stride"], want["offset"]), p
            assert (t.requires_grad, t.is_parameter, t.device) == (want["requires_grad"], want["parameter"],
                                                                   want["device"]), p
            np.testing.assert_array_equal(t.to_numpy(), want["array"], err_msg=p)
            assert t.sha256() == hashlib.sha256(np.ascontiguousarray(want["array"]).tobytes()).hexdigest(), p


def test_corpus_mnist_cnn(corpus_dir: Path) -> None:
    path = corpus_dir / MNIST
    expected = expected_from_archive(path)
    assert list(expected) == [f"state_dict.{m}.{n}" for m in ("conv1", "conv2", "fc1", "fc2")
                              for n in ("weight", "bias")]
    assert expected["state_dict.conv1.weight"]["shape"] == (20, 1, 5, 5)
    assert expected["state_dict.fc1.weight"]["shape"] == (500, 800)
    assert all(e["device"] == "cuda:0" and e["dtype"] == np.float32 for e in expected.values())
    assert all(np.isfinite(e["array"]).all() and e["array"].std() > 0 for e in expected.values())
    check(path, expected)
    with ckptdoctor.open(path) as ckpt:
        assert ckpt.details["producer_version"] == "1.0"
        assert ckpt.details["module_class"] == "mnist_cnn"


# ------------------------------------------------------------------ synthetic archives
def write_archive(path: Path, tensors: list[dict[str, Any]], records: dict[str, bytes],
                  main: dict[str, Any]) -> None:
    model = {"protoVersion": "2", "mainModule": main, "producerName": "pytorch", "producerVersion": "1.1",
             "tensors": tensors}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("m/version", "1\n")
        for key, data in records.items():
            z.writestr(f"m/{key}", data)
        z.writestr("m/model.json", json.dumps(model))


def tdef(key: str, dims: list[int], dtype: str, strides: list[int] | None = None, offset: int = 0,
         **extra: Any) -> dict[str, Any]:
    if strides is None:
        strides, acc = [], 1
        for d in reversed(dims):
            strides.insert(0, acc)
            acc *= d
    return {"dims": [str(d) for d in dims], "strides": [str(s) for s in strides], "offset": str(offset),
            "dataType": dtype, "data": {"key": key}, "device": "cpu", **extra}


def test_synthetic_dtypes_views_and_buffers(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal(12).astype("<f8")
    records = {"tensors/0": w.tobytes(), "tensors/1": np.arange(5, dtype="<i8").tobytes(),
               "tensors/2": rng.integers(0, 256, 6, dtype=np.uint8).tobytes(),
               "tensors/3": np.array([1, 0, 1], dtype="?").tobytes(),
               "tensors/4": rng.standard_normal(4).astype("<f2").tobytes()}
    tensors = [tdef("tensors/0", [3, 4], "DOUBLE", requiresGrad=True),
               tdef("tensors/0", [4, 3], "DOUBLE", strides=[1, 4]),  # a transposed view of the same record
               tdef("tensors/0", [2], "DOUBLE", offset=9),
               tdef("tensors/1", [5], 10),  # the enum as a number (INT64)
               tdef("tensors/2", [2, 3], "UINT8"), tdef("tensors/3", [3], "BOOL"), tdef("tensors/4", [], "FLOAT16")]
    main = {"name": "Top", "parameters": [{"tensorId": "0", "name": "weight"},
                                          {"isBuffer": True, "tensorId": "3", "name": "steps"}],
            "submodules": [{"name": "sub", "parameters": [
                {"isBuffer": True, "tensorId": "1", "name": "weight_t"}, {"tensorId": "2", "name": "tail"},
                {"isBuffer": True, "tensorId": "4", "name": "u8"}, {"isBuffer": True, "tensorId": "5", "name": "flags"},
                {"isBuffer": True, "tensorId": "6", "name": "half"}]}]}
    path = tmp_path / "synthetic.pt"
    write_archive(path, tensors, records, main)
    expected = expected_from_archive(path)
    check(path, expected)
    with ckptdoctor.open(path) as ckpt:
        got = dict(ckpt.tensors())
        assert got["state_dict.sub.weight_t"].storage is got["state_dict.weight"].storage
        assert got["state_dict.sub.tail"].storage is got["state_dict.weight"].storage


def test_synthetic_quantized(tmp_path: Path) -> None:
    """torch 1.2's TensorDef.is_quantized/scale/zero_point: UINT8 -> quint8, per-tensor affine."""
    raw = bytes(range(10, 16))
    tensors = [tdef("tensors/0", [2, 3], "UINT8", isQuantized=True, scale=0.25, zeroPoint="3"),
               tdef("tensors/1", [2], "INT8", isQuantized=True, scale=0.5, zeroPoint="-1")]
    main = {"name": "Q", "parameters": [{"tensorId": "0", "name": "w"}, {"tensorId": "1", "name": "v"}]}
    path = tmp_path / "q.pt"
    write_archive(path, tensors, {"tensors/0": raw, "tensors/1": b"\x05\xfb"}, main)
    with ckptdoctor.open(path) as ckpt:
        got = dict(ckpt.tensors())
        assert got["state_dict.w"].dtype.name == "quint8" and got["state_dict.v"].dtype.name == "qint8"
        assert got["state_dict.w"].quantizer == {"qscheme": "per_tensor_affine", "scale": 0.25, "zero_point": 3}
        assert got["state_dict.v"].quantizer == {"qscheme": "per_tensor_affine", "scale": 0.5, "zero_point": -1}
        assert got["state_dict.w"].to_numpy().tobytes() == raw
        assert got["state_dict.v"].to_numpy().tolist() == [5, -5]


@pytest.mark.parametrize("dtype", ["STRING", "NOPE", 4, {"isQuantized": True, "dataType": "FLOAT"}])
def test_synthetic_unknown_dtype_is_a_clear_error(dtype: Any, tmp_path: Path) -> None:
    """An unknown data type is refused with a one-line error, not read as float32."""
    extra = dtype if isinstance(dtype, dict) else {"dataType": dtype}
    t = {**tdef("tensors/0", [2], "FLOAT"), **extra}
    path = tmp_path / "bad.pt"
    write_archive(path, [t], {"tensors/0": b"\0" * 8}, {"name": "B", "parameters": [{"tensorId": "0", "name": "x"}]})
    with pytest.raises(UnreadableFile, match="data type"):
        ckptdoctor.open(path)


@pytest.mark.parametrize("change,match", [
    ({"dims": ["1000000000000000", "2"], "strides": ["2", "1"]}, "tensor elements"),  # a shape bomb
    ({"dims": ["4", "2"], "strides": ["2", "1"]}, "needs 32 bytes"),  # more than its record holds
    ({"dims": "2"}, "malformed"), ({"dims": ["2"], "strides": []}, "malformed"),
    ({"offset": "-1"}, "malformed"), ({"dims": ["x"]}, "malformed"), ({"data": "tensors/0"}, "malformed"),
])
def test_synthetic_malformed_entries_are_refused(change: dict[str, Any], match: str, tmp_path: Path) -> None:
    """model.json is data from the file: every entry is validated before a tensor is built from it."""
    from ckptdoctor.errors import CkptdoctorError

    t = {**tdef("tensors/0", [2], "FLOAT"), **change}
    path = tmp_path / "bad.pt"
    write_archive(path, [t], {"tensors/0": b"\0" * 8}, {"name": "B", "parameters": [{"tensorId": "0", "name": "x"}]})
    with pytest.raises(CkptdoctorError, match=match):
        ckptdoctor.open(path)


def test_synthetic_entry_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    write_archive(path, [[1, 2]], {"tensors/0": b"\0" * 8}, {"name": "B", "parameters": []})
    with pytest.raises(UnreadableFile, match="malformed"):
        ckptdoctor.open(path)
