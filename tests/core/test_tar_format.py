"""torch 0.1.x tar checkpoints (written by tests/core/tar_writer.py): ckptdoctor reads them
bit-exactly, and torch 2.13 itself loads the same files to the same tensors (which proves the writer)."""

from __future__ import annotations

import collections
import hashlib
import tarfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tar_writer import TarStorage, TarStorageView, TarTensor, write_tar

import ckptdoctor
from ckptdoctor.model import Storage, TensorRecord

PROTOCOLS = (2, 3, 4, 5)


def sample() -> tuple[dict, dict[str, TarTensor]]:
    """An object with tar tensors of every 0.1.x dtype (plus bool/bfloat16), views, a storage view and
    a bare storage; returns (object, {dotted path: TarTensor})."""
    rng = np.random.default_rng(7)
    w = TarStorage(rng.standard_normal(24).astype("<f4"), "float32")
    d = TarStorage(np.array([1.5, -2.0, 3.25, 4.0, 8.5, -0.0], "<f8"), "float64")
    view = TarStorageView(d, 1, 4)  # d[1:5]
    tensors = {
        "weight": TarTensor(w, (4, 6)),
        "weight_t": TarTensor(w, (6, 4), (1, 6)),
        "row": TarTensor(w, (6,), (1,), 12),
        "step": TarTensor(w, (2, 3), (12, 2), 1),
        "scalar": TarTensor(w, (), (), 5),
        "empty": TarTensor(TarStorage(np.zeros(0, "<f4"), "float32"), (0, 3)),
        "double": TarTensor(d, (6,)),
        "in_view": TarTensor(view, (2, 2), (2, 1)),
        "in_view_tail": TarTensor(view, (2,), (1,), 2),
    }
    for name, np_dtype in ([("float16", "<f2"), ("int64", "<i8"), ("int32", "<i4"), ("int16", "<i2"),
                                          ("int8", "i1"), ("uint8", "u1"), ("bool", "u1"), ("bfloat16", "<u2")]):
        raw = rng.integers(0, 256, 6 * np.dtype(np_dtype).itemsize, dtype=np.uint8)
        if name == "bool":
            raw &= 1
        tensors[f"dtypes.{name}"] = TarTensor(TarStorage(raw.view(np_dtype), name), (2, 3))
    obj = {
        "state_dict": collections.OrderedDict((k, v) for k, v in tensors.items() if not k.startswith("dtypes.")),
        "dtypes": {k.split(".")[1]: v for k, v in tensors.items() if k.startswith("dtypes.")},
        "nested": [tensors["weight"], (tensors["row"], {3: tensors["double"]})],
        "storage": w,
        "epoch": 12, "arch": "lenet", "best": 0.987,
    }
    paths = {f"state_dict.{k}": v for k, v in tensors.items() if not k.startswith("dtypes.")}
    paths.update({k: v for k, v in tensors.items() if k.startswith("dtypes.")})
    paths.update({"nested.0": tensors["weight"], "nested.1.0": tensors["row"], "nested.1.1.3": tensors["double"]})
    return obj, paths


def check_against_writer(path: Path, expected: dict[str, TarTensor]) -> dict[str, TensorRecord]:
    """What ckptdoctor reads equals what the writer put in (numpy arithmetic only, no torch)."""
    with ckptdoctor.open(path) as ckpt:
        assert ckpt.format == "tar"
        got = dict(ckpt.tensors())
        assert sorted(got) == sorted(expected)
        for p, t in expected.items():
            rec = got[p]
            assert rec.dtype.name == t.storage.dtype, p
            assert rec.shape == t.size and rec.stride == t.stride and rec.offset == t.offset, p
            assert rec.sha256() == hashlib.sha256(t.expected_bytes()).hexdigest(), p
        for a in expected:  # one Storage object per storage (or storage view) in the file
            for b in expected:
                assert (got[a].storage is got[b].storage) == (expected[a].storage is expected[b].storage), (a, b)
        assert isinstance(ckpt.root["storage"], Storage) and ckpt.root["storage"] is got["nested.0"].storage
        assert (ckpt.root["epoch"], ckpt.root["arch"], ckpt.root["best"]) == (12, "lenet", 0.987)
        return got


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tar_reads_what_was_written(protocol: int, tmp_path: Path) -> None:
    obj, expected = sample()
    path = tmp_path / "old.pth.tar"
    write_tar(path, obj, protocol=protocol)
    with tarfile.open(path) as tf:
        assert tf.getnames() == ["sys_info", "pickle", "tensors", "storages"]
    check_against_writer(path, expected)


def test_tar_with_python2_strings(tmp_path: Path) -> None:
    obj, expected = sample()
    path = tmp_path / "py2.tar"
    write_tar(path, obj, py2_strings=True)
    check_against_writer(path, expected)


# ------------------------------------------------------------------ torch 2.13 agrees
@pytest.fixture
def tf_mod() -> Any:
    pytest.importorskip("torch", reason="torch (test extra) not installed")
    import torch_fixtures

    return torch_fixtures


def torch_load(path: Path) -> Any:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_torch_loads_the_tar_file_to_the_same_tensors(protocol: int, tmp_path: Path, tf_mod: Any) -> None:
    obj, expected = sample()
    path = tmp_path / "old.tar"
    write_tar(path, obj, protocol=protocol)
    loaded = torch_load(path)
    want = tf_mod.torch_tensors(loaded)
    assert sorted(want) == sorted(expected)
    for p, t in expected.items():  # torch's view of the file is the writer's
        assert tuple(want[p].shape) == t.size and want[p].stride() == t.stride, p
        assert tf_mod.sha256(want[p]) == hashlib.sha256(t.expected_bytes()).hexdigest(), p
    with ckptdoctor.open(path) as ckpt:  # and ckptdoctor's is torch's
        got = dict(ckpt.tensors())
        for p in want:
            tf_mod.assert_tensor(p, want[p], got[p])
        tf_mod.assert_sharing(want, got)


@pytest.mark.parametrize("protocol", [2, 5])
def test_whole_model_tar(protocol: int, tmp_path: Path, tf_mod: Any) -> None:
    """A pickled nn.Module: its classes are ``(cls, source_file, source)`` persistent ids the first time."""
    import torch

    torch.manual_seed(3)
    model = tf_mod.Net()
    path = tmp_path / "model.tar"
    write_tar(path, {"model": model, "epoch": 1}, protocol=protocol)
    loaded = torch_load(path)
    assert type(loaded["model"]) is tf_mod.Net
    want = tf_mod.torch_tensors(loaded)
    assert [k.removeprefix("model.state_dict.") for k in want] == list(model.state_dict())
    with ckptdoctor.open(path) as ckpt:
        got = dict(ckpt.tensors())
        assert list(got) == list(want)
        for p in want:
            tf_mod.assert_tensor(p, want[p], got[p])
        tf_mod.assert_sharing(want, got)
        assert "torch_fixtures.Net" in ckpt.globals


def test_a_tar_of_many_members_is_refused_without_listing_them(tmp_path):
    import io

    import ckptdoctor
    from ckptdoctor.errors import UnreadableFile
    from ckptdoctor.formats.tar import MAX_TAR_MEMBERS

    p = tmp_path / "many.tar"
    with tarfile.open(p, "w") as t:
        for i in range(MAX_TAR_MEMBERS + 50):
            t.addfile(tarfile.TarInfo(f"junk{i}"), io.BytesIO(b""))
    with pytest.raises(UnreadableFile, match=f"more than {MAX_TAR_MEMBERS} members") as e:
        ckptdoctor.open(str(p))
    assert e.value.kind == "unknown"
