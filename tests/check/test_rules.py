"""Each rule family on files written by the real torch (or edited byte-wise), against torch's own verdict."""

from __future__ import annotations

import os
import pickle

import pytest
from tests.check.conftest import torch_outcome
from tests.conftest import CORPUS

import ckptdoctor
from ckptdoctor.check import Target, check, diagnose_for_scan
from ckptdoctor.rules import ALL_RULES, catalog
from ckptdoctor.rules._common import ansi_strip


def T(torch, **kw):
    return Target.current(torch=torch.__version__, **kw)


def norm(s):
    return " ".join(ansi_strip(s or "").split())


def legacy_with(torch, tmp_path, old: bytes, new: bytes, obj=None, name="edited.pt"):
    p = tmp_path / name
    torch.save(obj if obj is not None else {"w": torch.ones(2)}, p, _use_new_zipfile_serialization=False)
    data = p.read_bytes()
    assert old in data
    p.write_bytes(data.replace(old, new, 1))
    return p


def test_registry_ids_unique_and_prefixed():
    ids = [fid for r in ALL_RULES for fid in r.findings]
    assert len(ids) == len(set(ids)) and all(i.startswith("CKD-") for i in ids)
    assert set(catalog()) == set(ids)


# ---------------------------------------------------------------- container
def test_torchscript_weights_only(torch, tmp_path):
    p = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), p)
    res = check(p, T(torch, weights_only=True))
    assert not res.loads and res.first_cause.id == "CKD-CONTAINER-TORCHSCRIPT-WO"
    ok, said = torch_outcome(torch, p, weights_only=True)
    assert not ok and norm(said) == norm(res.predicted_error)
    assert check(p, T(torch, weights_only=False)).loads
    res = check(p, Target.current(torch="2.5", weights_only=True))  # before 2.6: handed to torch.jit.load
    assert res.loads and "CKD-CONTAINER-TORCHSCRIPT" in [f.id for f in res.findings]


def test_torchscript_json_corpus():
    p = CORPUS / "files" / "abc3698__Libtorch_MNIST__mnist_cnn.pt"
    if not p.exists():
        pytest.skip("corpus absent")
    f = check(p, Target.current(torch="2.3")).first_cause
    assert f.id == "CKD-CONTAINER-TORCHSCRIPT-JSON" and f.evidence["jit_load_reads_it"] is True
    assert check(p, Target.current(torch="2.4")).first_cause.evidence["jit_load_reads_it"] is False


def test_plain_pickle(torch, tmp_path):
    p = tmp_path / "plain.pkl"
    p.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    res = check(p, T(torch, weights_only=False))
    assert not res.loads and res.first_cause.id == "CKD-CONTAINER-PICKLE"
    ok, said = torch_outcome(torch, p, weights_only=False)
    assert not ok and said == res.predicted_error


def test_safetensors_dispatch(torch, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    p = tmp_path / "m.safetensors"
    st.save_file({"w": torch.ones(2)}, str(p))
    assert check(p, T(torch)).loads
    assert torch_outcome(torch, p, weights_only=True)[0]
    res = check(p, Target.current(torch="2.12"))
    assert not res.loads and res.first_cause.id == "CKD-CONTAINER-SAFETENSORS"
    q = tmp_path / "m.bin"
    q.write_bytes(p.read_bytes())
    res = check(q, T(torch))
    assert not res.loads
    ok, said = torch_outcome(torch, q, weights_only=True)
    assert not ok and "Unsupported operand" in said


def test_tar_under_weights_only(torch, tmp_path):
    from tests.fix.test_tar_input import make_tar

    p = tmp_path / "old.tar"
    make_tar(p)
    res = check(p, T(torch, weights_only=True))
    assert not res.loads and res.first_cause.id == "CKD-CONTAINER-TAR-WO"
    ok, said = torch_outcome(torch, p, weights_only=True)
    assert not ok and norm(said) == norm(res.predicted_error)
    assert check(p, T(torch, weights_only=False)).loads == torch_outcome(torch, p, weights_only=False)[0]


# ---------------------------------------------------------------- impostors
@pytest.mark.parametrize(("name", "data", "fid"), [
    ("page.pt", b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>", "CKD-IMPOSTOR-HTML"),
    ("k.pt", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64, "CKD-IMPOSTOR-FORMAT"),
    ("g.pt", b"GGUF\x03\x00\x00\x00" + b"\x00" * 32, "CKD-IMPOSTOR-FORMAT"),
    ("e.pt", b"", "CKD-DAMAGE-EMPTY"),
])
@pytest.mark.parametrize("wo", [True, False])
def test_impostors_and_torch_words(torch, tmp_path, name, data, fid, wo):
    p = tmp_path / name
    p.write_bytes(data)
    res = check(p, T(torch, weights_only=wo))
    assert not res.loads and not res.readable and res.exit_code == 2 and res.first_cause.id == fid
    ok, said = torch_outcome(torch, p, weights_only=wo)
    assert not ok
    if res.predicted_error:
        assert norm(said).startswith(norm(res.predicted_error)[:120])


def test_truncated_zip_and_legacy(torch, tmp_path):
    for zipfile in (True, False):
        p = tmp_path / f"cut{zipfile}.pt"
        torch.save({"w": torch.ones(100_000)}, p, _use_new_zipfile_serialization=zipfile)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        res = check(p, T(torch))
        assert not res.loads and res.first_cause.id == "CKD-DAMAGE-TRUNCATED"
        assert res.first_cause.evidence["bytes_present"] == len(data) // 2
        ok, said = torch_outcome(torch, p, weights_only=True)
        assert not ok
        if not zipfile:
            assert said == res.predicted_error


def test_lfs_pointer(tmp_path):
    p = tmp_path / "w.pt"
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "b" * 64 + "\nsize 999\n")
    res = check(p, Target(torch="2.13"))
    f = res.first_cause
    assert f.id == "CKD-IMPOSTOR-LFS" and f.fix.command == "git lfs pull" and f.evidence["expected_size"] == 999
    assert res.predicted_error.endswith("Unsupported operand 118") or "Unsupported operand 118" in res.predicted_error


# ---------------------------------------------------------------- weights_only: dangerous globals
def test_dangerous_globals(torch, tmp_path):
    p = legacy_with(torch, tmp_path, b"ccollections\nOrderedDict\n", b"cposix\nsystem\n")
    res = check(p, T(torch, weights_only=True))
    f = res.first_cause
    assert f.id == "CKD-WO-BLOCKED-MODULE" and f.severity.label == "critical"
    ok, said = torch_outcome(torch, p, weights_only=True)  # torch refuses before calling anything
    assert not ok and norm(said) == norm(res.predicted_error)
    res = check(p, Target.current(torch="2.4", weights_only=True))  # no blocklist yet
    assert res.first_cause.id == "CKD-WO-DANGEROUS"
    summary = next(f for f in res.findings if f.id == "CKD-WO-ALLOWLIST")
    assert summary.evidence["never_allow"] == ["posix.system"] and summary.fix is None or summary.fix.python is None
    q = legacy_with(torch, tmp_path, b"ccollections\nOrderedDict\n", b"csubprocess\nPopen\n", name="p.pt")
    res = check(q, T(torch, weights_only=True))
    assert res.first_cause.id == "CKD-WO-DANGEROUS" and "must never be allowed" in res.first_cause.title


def test_every_global_listed_with_offsets(torch, tmp_path):
    import argparse
    import collections

    import numpy as np

    p = tmp_path / "many.pt"
    torch.save({"a": argparse.Namespace(x=1), "b": np.float32(1), "c": collections.deque([1]),
                "d": torch.nn.Linear(1, 1)}, p)
    res = check(p, T(torch, weights_only=True))
    found = [f.evidence["global"] for f in res.blocking() if f.id == "CKD-WO-GLOBAL"]
    assert found[:3] == ["argparse.Namespace", "numpy._core.multiarray.scalar", "numpy.dtype"]
    assert "collections.deque" in found and "torch.nn.modules.linear.Linear" in found
    offs = [f.evidence["offset"] for f in res.blocking()]
    assert offs == sorted(offs)
    data = p.read_bytes()
    for f in res.blocking():
        mod, _, name = f.evidence["global"].rpartition(".")
        assert data[f.evidence["offset"]:].startswith(f"c{mod}\n{name}\n".encode())


def test_before_2_4_no_add_safe_globals(torch, tmp_path):
    import argparse

    p = tmp_path / "ns.pt"
    torch.save({"a": argparse.Namespace(x=1)}, p)
    res = check(p, Target.current(torch="2.3", weights_only=True))
    f = res.first_cause
    assert f.fix.python == "torch.load(f, weights_only=False)" and "weights-only-safe" in f.fix.command
    assert "Unsupported class argparse.Namespace" in res.predicted_error  # the pre-2.4 wording
    res = check(p, Target.current(torch="2.4", weights_only=True))
    assert "add_safe_globals([argparse.Namespace])" in res.first_cause.fix.python


# ---------------------------------------------------------------- py2
def test_py2_bytes(torch, tmp_path):
    p = legacy_with(torch, tmp_path, b"X\x01\x00\x00\x00w", b"U\x01\xff")
    for wo in (True, False):
        res = check(p, T(torch, weights_only=wo))
        assert not res.loads and res.first_cause.id == "CKD-PY2-BYTES"
        ok, said = torch_outcome(torch, p, weights_only=wo)
        assert not ok and said == res.predicted_error
    assert "encoding='latin1'" in res.first_cause.fix.python
    assert torch_outcome(torch, p, weights_only=False, encoding="latin1")[0]
    q = legacy_with(torch, tmp_path, b"X\x01\x00\x00\x00w", b"U\x01w", name="ok.pt")
    res = check(q, T(torch))
    assert res.loads and "CKD-PY2-PICKLE" in [f.id for f in res.findings]


# ---------------------------------------------------------------- whole models
def test_nn_attribute_changes(torch, tmp_path):
    conv = torch.nn.Conv2d(1, 1, 1)
    del conv.padding_mode  # what a torch 1.0 Conv2d looked like
    up = torch.nn.Upsample(scale_factor=2)
    del up.recompute_scale_factor  # before 1.11
    p = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(conv, up), p)
    ids = lambda v: {(f.evidence["class"].rpartition(".")[2], f.evidence["attribute"])  # noqa: E731
                     for f in check(p, Target(torch=v, weights_only=False)).findings
                     if f.id == "CKD-MODEL-ATTR-MISSING"}
    assert ("Conv2d", "padding_mode") in ids("1.1")
    assert ("Conv2d", "padding_mode") not in ids("1.2")  # __setstate__ fills it from 1.2
    assert ("Upsample", "recompute_scale_factor") in ids("1.11")
    assert ("Upsample", "recompute_scale_factor") not in ids("2.1")
    assert not ids(torch.__version__)
    m = torch.load(p, weights_only=False)  # torch 2.13 agrees: its __setstate__ restores both
    assert m[0].padding_mode == "zeros" and hasattr(m[1], "recompute_scale_factor")


def test_removed_torch_name(torch, tmp_path):
    p = legacy_with(torch, tmp_path, b"ccollections\nOrderedDict\n", b"ctorch.nn.modules.adaptive\nlog_softmax\n")
    res = check(p, T(torch, weights_only=False))
    f = res.first_cause
    assert f.id == "CKD-MODEL-TORCH-NAME" and f.evidence["span"] == ["1.0", "2.4"]
    ok, said = torch_outcome(torch, p, weights_only=False)
    assert not ok and said.startswith(res.predicted_error[:-1])
    assert check(p, Target.current(torch="2.4", weights_only=False)).first_cause is None or \
        check(p, Target.current(torch="2.4", weights_only=False)).first_cause.id != "CKD-MODEL-TORCH-NAME"


def test_main_class_with_python_path(torch, tmp_path):
    p = legacy_with(torch, tmp_path, b"ccollections\nOrderedDict\n", b"c__main__\nMyNet\n")
    res = check(p, T(torch, weights_only=False))
    assert res.first_cause.id == "CKD-MODEL-MAIN"
    import subprocess
    import sys

    script = tmp_path / "load.py"
    script.write_text(f"import torch\ntorch.load({str(p)!r}, weights_only=False)\n")
    said = subprocess.run([sys.executable, str(script)], capture_output=True, text=True).stderr.strip().splitlines()[-1]
    assert said == res.predicted_error.replace("<path>", str(script))
    src = tmp_path / "code"
    (src / "models").mkdir(parents=True)
    (src / "models" / "__init__.py").write_text("")
    (src / "models" / "net.py").write_text("class MyNet:\n    pass\n")
    res = check(p, T(torch, weights_only=False, python_path=(str(src),)))
    f = res.first_cause
    assert f.evidence["defined_in"].endswith("models/net.py")
    assert f.fix.python.startswith("from models.net import MyNet")


# ---------------------------------------------------------------- numpy, dtypes, scan hook, API
def test_numpy_object_paths(torch, tmp_path):
    import numpy as np

    p = tmp_path / "np.pt"
    torch.save({"epoch": 3, "best": {"acc": np.float64(0.9)}, "w": torch.ones(1)}, p)
    f = next(f for f in check(p, T(torch)).findings if f.id == "CKD-NUMPY-OBJECTS")
    assert f.evidence["paths"]["numpy._core.multiarray.scalar"] == "best.acc"


def test_float8_for_old_torch(torch, tmp_path):
    p = tmp_path / "f8.pt"
    torch.save({"w": torch.ones(2).to(torch.float8_e4m3fn)}, p)
    res = check(p, Target(torch="2.0", weights_only=False))
    assert {"CKD-TYPE-REBUILD", "CKD-TYPE-DTYPE"} <= {f.id for f in res.blocking()}
    res = check(p, Target(torch="2.1", weights_only=False))  # float8 dtypes exist in 2.1, _rebuild_tensor_v3 not
    assert {f.id for f in res.blocking()} == {"CKD-TYPE-REBUILD"}
    assert check(p, Target.current(torch="2.2", weights_only=False)).loads


def test_open_checkpoint_and_scan_hook(torch, tmp_path):
    import argparse

    p = tmp_path / "x.pt"
    torch.save({"a": argparse.Namespace()}, p)
    with ckptdoctor.open(p) as ck:
        res = check(ck, T(torch, weights_only=True))
        assert not res.loads
        fs = diagnose_for_scan(ck, None, torch="2.13", weights_only=True)
        assert any(f.id == "CKD-WO-GLOBAL" for f in fs)
    from ckptdoctor.errors import UnreadableFile

    q = tmp_path / "h.pt"
    q.write_bytes(b"<html><body>nope</body></html>")
    try:
        ckptdoctor.open(q)
    except UnreadableFile as e:
        e.fields.setdefault("path", os.fspath(q))
        fs = diagnose_for_scan(None, e, torch="2.13", weights_only=True)
        assert [f.id for f in fs] == ["CKD-IMPOSTOR-HTML"]


def test_check_reads_no_tensor_data(torch, tmp_path, monkeypatch):
    from ckptdoctor.model import Storage, TensorRecord

    p = tmp_path / "big.pt"
    torch.save({"w": torch.ones(1000), "n": torch.nn.Linear(3, 3)}, p, _use_new_zipfile_serialization=False)

    def boom(*a, **k):
        raise AssertionError("check read tensor data")

    monkeypatch.setattr(Storage, "buffer", boom)
    monkeypatch.setattr(TensorRecord, "to_numpy", boom)
    for wo in (True, False):
        check(p, T(torch, weights_only=wo))


def test_conditional_and_extra_attributes(torch, tmp_path):
    conv = torch.nn.Conv2d(1, 1, 1)
    del conv._reversed_padding_repeated_twice  # before 1.6
    conv._backend = None  # what torch <= 1.1 modules carried
    p = tmp_path / "c.pt"
    torch.save(conv, p)
    res = check(p, Target.current(torch=torch.__version__, weights_only=False))
    miss = next(f for f in res.findings if f.id == "CKD-MODEL-ATTR-MISSING")
    assert miss.severity.label == "info" and "padding_mode != 'zeros'" in miss.title
    m = torch.load(p, weights_only=False)
    m(torch.ones(1, 1, 2, 2))  # zeros padding: torch 2.13 never reads it
    extra = next(f for f in res.findings if f.id == "CKD-MODEL-ATTR-EXTRA")
    assert "Conv2d._backend" in extra.evidence["attributes"]


def test_eager_file_given_to_jit_load(torch, tmp_path):
    for zipfile in (True, False):
        p = tmp_path / f"e{zipfile}.pt"
        torch.save({"w": torch.ones(2)}, p, _use_new_zipfile_serialization=zipfile)
        res = check(p, T(torch, loader="torch.jit.load"))
        assert not res.loads and res.first_cause.id == "CKD-CONTAINER-NOT-TORCHSCRIPT"
        try:
            torch.jit.load(p)
            raise AssertionError("torch.jit.load read an eager file")
        except RuntimeError as e:
            assert norm(f"RuntimeError: {e}").startswith(norm(res.predicted_error)[:90])
    ts = tmp_path / "ts.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(1, 1)), ts)
    assert check(ts, T(torch, loader="torch.jit.load", weights_only=True)).loads
