"""Each fix step on generated checkpoints: what it changes, and that torch 2.13 loads the result."""

from __future__ import annotations

import argparse
import collections
import warnings

import numpy as np
import pytest

from ckptdoctor.fixes.apply import fix_file
from ckptdoctor.fixes.plan import FixError
from ckptdoctor.fixes.steps import make_step
from fix.fixmodels import Thing, make_model, small_bn_state_dict
from fix.helpers import assert_same, leftovers, load, run_cli, torch


def save(obj, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(obj, path, **kw)
    return str(path)


def fix(src, out, *steps, **kw):
    return fix_file(str(src), str(out), [make_step(s, **kw) for s in steps] if steps else None)


# ---------------------------------------------------------------- extract-state-dict
def test_whole_model_state_dict_equals_torch_state_dict(tmp_path):
    model = make_model()
    src = save(model, tmp_path / "whole.pt")
    r = fix(src, tmp_path / "sd.pt", "extract-state-dict")
    got = load(tmp_path / "sd.pt")
    want = model.state_dict()
    assert_same(want, got)  # keys, order, bytes, _metadata (BatchNorm version 2), no non-persistent buffer
    assert "stem.scratch" not in got and got["tied.weight"].untyped_storage().data_ptr() == \
        got["layers.0.weight"].untyped_storage().data_ptr()  # tied weights stay one storage
    assert r.changes[0].action == "extracted"
    fresh = make_model(seed=5)
    fresh.load_state_dict(got)  # strict


def test_torchscript_state_dict(tmp_path):
    m = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    src = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(m), str(src))
    fix(src, tmp_path / "sd.pt", "extract-state-dict")
    assert_same(dict(m.state_dict()), dict(load(tmp_path / "sd.pt")), dict_types=False)


@pytest.mark.parametrize(("key", "expect"), [(None, "model"), ("ema", "ema"), ("ema.module", "ema.module")])
def test_wrappers(tmp_path, key, expect):
    a, b = make_model(1), make_model(2)
    lightning = {"epoch": 3, "state_dict": a.state_dict(), "hyper_parameters": {"lr": 0.1},
                 "optimizer_states": [{}], "pytorch-lightning_version": "2.1.0"}
    yolo = {"model": a, "ema": {"module": b}, "optimizer": None, "epoch": 9}
    src_l, src_y = save(lightning, tmp_path / "l.ckpt"), save(yolo, tmp_path / "y.pt")
    fix(src_l, tmp_path / "l.pt", "extract-state-dict")
    assert_same(a.state_dict(), load(tmp_path / "l.pt"))
    fix_file(src_y, str(tmp_path / "y_out.pt"), [make_step("extract-state-dict", key=key)])
    want = (b if expect.startswith("ema") else a).state_dict()
    assert_same(want, load(tmp_path / "y_out.pt"))


def test_extract_without_a_model_is_refused(tmp_path):
    src = save({"epoch": 1, "notes": "x"}, tmp_path / "x.pt")
    with pytest.raises(FixError, match="no model or state_dict found"):
        fix(src, tmp_path / "o.pt", "extract-state-dict")
    assert not (tmp_path / "o.pt").exists() and not leftovers(tmp_path)


# ---------------------------------------------------------------- weights-only-safe
def test_weights_only_safe_replaces_objects_by_data(tmp_path):
    ckpt = {
        "args": argparse.Namespace(lr=0.1, name="run"),
        "best": np.float64(0.5), "step": np.int64(7), "flag": np.bool_(True),
        "hist": np.array([[1.0, 2.0]], dtype=np.float32), "names": np.array(["a", "bc"]),
        "thing": Thing(), "cls": Thing, "np_dtype": np.dtype("float32"),
        "dd": collections.defaultdict(list, {"a": [1]}), "counter": collections.Counter("aab"),
        "model": make_model(), "weights": torch.ones(2),
    }
    src = save(ckpt, tmp_path / "c.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load(src)
    r = fix(src, tmp_path / "o.pt")  # automatic plan
    assert [s for s, _ in r.steps] == ["weights-only-safe", "container"]
    got = load(tmp_path / "o.pt")
    assert got["args"] == {"lr": 0.1, "name": "run"}
    assert (got["best"], got["step"], got["flag"]) == (0.5, 7, True) and type(got["step"]) is int
    assert torch.equal(got["hist"], torch.tensor([[1.0, 2.0]]))
    assert got["names"] == ["a", "bc"]
    assert got["thing"] == {"__class__": "fix.fixmodels.Thing", "name": "thing", "values": [1, 2]}
    assert got["cls"] == "fix.fixmodels.Thing" and got["np_dtype"] == "float32"
    assert got["dd"] == {"a": [1]} and got["counter"] == {"a": 2, "b": 1}
    assert_same(ckpt["model"].state_dict(), got["model"])
    assert torch.equal(got["weights"], torch.ones(2))


def test_weights_only_safe_respects_older_targets(tmp_path):
    src = save({"s": {1, 2}, "c": 1 + 2j, "d": torch.device("cpu"), "w": torch.ones(1)}, tmp_path / "c.pt")
    r = fix_file(src, str(tmp_path / "o.pt"), [make_step("weights-only-safe")], target="2.3")
    got = load(tmp_path / "o.pt")
    assert got["s"] == [1, 2] and got["c"] == (1.0, 2.0) and got["d"] == "cpu"
    assert len(r.changes) >= 3


# ---------------------------------------------------------------- rename / strip-prefixes
def _ddp_state_dict():
    m = make_model()
    sd = collections.OrderedDict((f"module.{k}", v) for k, v in m.state_dict().items())
    sd._metadata = collections.OrderedDict([("", {"version": 1})] + [
        (f"module.{k}" if k else "module", v) for k, v in m.state_dict()._metadata.items()])
    return m, sd


def test_rename_strips_prefix_and_metadata(tmp_path):
    m, sd = _ddp_state_dict()
    src = save(sd, tmp_path / "ddp.pt")
    res = run_cli("fix", src, "-o", str(tmp_path / "o.pt"), "--rename", "module.=")
    assert res.returncode == 0, res.stderr
    assert_same(m.state_dict(), load(tmp_path / "o.pt"))


def test_strip_prefixes_stacked(tmp_path):
    m = make_model()
    sd = collections.OrderedDict((f"_orig_mod.module.{k}", v) for k, v in m.state_dict().items())
    src = save(sd, tmp_path / "c.pt")
    fix(src, tmp_path / "o.pt", "strip-prefixes")
    assert list(load(tmp_path / "o.pt")) == list(m.state_dict())


def test_rename_add_prefix_and_regex(tmp_path):
    src = save(collections.OrderedDict([("a.weight", torch.ones(1)), ("b.bias", torch.zeros(1))]), tmp_path / "c.pt")
    fix_file(src, str(tmp_path / "o.pt"), [make_step("rename", rules=["=model.", r"re:\.weight$=.w"])])
    assert list(load(tmp_path / "o.pt")) == ["model.a.w", "model.b.bias"]
    fix_file(src, str(tmp_path / "m.pt"), [make_step("rename", mapping={"b.bias": "c.bias"})])
    assert list(load(tmp_path / "m.pt")) == ["a.weight", "c.bias"]


def test_rename_collision_is_refused(tmp_path):
    src = save({"module.a": torch.ones(1), "a": torch.ones(1)}, tmp_path / "c.pt")
    res = run_cli("fix", src, "-o", str(tmp_path / "o.pt"), "--rename", "module.=")
    assert res.returncode == 2 and "two entries the key 'a'" in res.stderr
    assert not (tmp_path / "o.pt").exists() and not leftovers(tmp_path)


# ---------------------------------------------------------------- num_batches_tracked, optimizer, cpu
def test_num_batches_tracked_drop_and_add(tmp_path):
    m, sd = small_bn_state_dict()
    src = save(sd, tmp_path / "bn.pt")
    fix(src, tmp_path / "old.pt", "drop-num-batches-tracked")
    dropped = load(tmp_path / "old.pt")
    assert "1.num_batches_tracked" not in dropped and len(dropped) == len(sd) - 1
    fix(tmp_path / "old.pt", tmp_path / "new.pt", "add-num-batches-tracked")
    added = load(tmp_path / "new.pt")
    assert list(added) == list(sd) and added["1.num_batches_tracked"].item() == 0
    assert added["1.num_batches_tracked"].dtype == torch.int64 and added["1.num_batches_tracked"].dim() == 0
    m.load_state_dict(added)  # strict


def test_torch_040_target_drops_num_batches_tracked_and_writes_legacy(tmp_path):
    _m, sd = small_bn_state_dict()
    src = save(sd, tmp_path / "bn.pt")
    r = fix_file(src, str(tmp_path / "old.pt"), target="0.4.0")
    assert r.container == "legacy" and "drop-num-batches-tracked" in [s for s, _ in r.steps]
    assert open(tmp_path / "old.pt", "rb").read(2) == b"\x80\x02"  # the legacy stream, not a zip


def test_drop_optimizer(tmp_path):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    src = save({"model": model.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": {"x": 1}, "epoch": 2},
               tmp_path / "c.pt")
    r = fix(src, tmp_path / "o.pt", "drop-optimizer")
    assert list(load(tmp_path / "o.pt")) == ["model", "epoch"]
    assert {c.path for c in r.changes if c.action == "dropped"} == {"optimizer", "lr_scheduler"}


def test_to_cpu(tmp_path, fixtures):
    import os

    import ckptdoctor
    from ckptdoctor.writers import OutFile, write_tree

    gpu = tmp_path / "gpu.pt"
    with ckptdoctor.open(fixtures["views"]["zip"]) as ck:
        for _p, t in ck.tensors():
            t.storage.location = "cuda:0"
        fd = os.open(gpu, os.O_WRONLY | os.O_CREAT, 0o644)
        write_tree(ck.root, "zip", OutFile(fd), archive_name="gpu")
        os.close(fd)
    with pytest.raises(RuntimeError, match="CUDA"):
        torch.load(gpu, weights_only=True)
    r = fix(gpu, tmp_path / "cpu.pt")  # automatic plan moves the tags
    assert "to-cpu" in [s for s, _ in r.steps]
    assert_same(load(fixtures["views"]["zip"]), torch.load(tmp_path / "cpu.pt", weights_only=True))


# ---------------------------------------------------------------- numpy-core, py2 strings
def test_numpy_core_remap_with_kept_objects(tmp_path):
    src = save({"x": np.float64(1.5), "a": np.arange(3)}, tmp_path / "np.pt")  # numpy 2 writes numpy._core
    fix(src, tmp_path / "o.pt", "numpy-core")
    import zipfile

    data = zipfile.ZipFile(tmp_path / "o.pt").read("o/data.pkl")
    assert b"numpy.core.multiarray" in data and b"numpy._core" not in data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = torch.load(tmp_path / "o.pt", weights_only=False)  # our own test file
    assert got["x"] == 1.5 and list(got["a"]) == [0, 1, 2]


def test_py2_strings_step_on_the_tree():
    from ckptdoctor.fixes.plan import Tree
    from ckptdoctor.fixes.steps import Py2Strings
    from ckptdoctor.pickle.vm import Py2Bytes, Py2Str

    tree = Tree(root={Py2Str("k"): [Py2Bytes(b"\xff\xfe"), Py2Str("ok")]}, format="legacy", container="zip")
    changes = Py2Strings().apply(tree)
    assert tree.root == {"k": ["\xff\xfe", "ok"]} and type(next(iter(tree.root))) is str
    assert any("latin-1" in c.detail for c in changes)


def test_python2_corpus_file_is_written_without_py2_strings(tmp_path):
    from conftest import CORPUS

    src = CORPUS / "files" / "richzhang__PerceptualSimilarity__alex.pth"
    if not src.exists():
        pytest.skip("corpus not present")
    fix(src, tmp_path / "o.pt")
    import pickletools

    data = open(tmp_path / "o.pt", "rb").read()
    ops = {op.name for op, _a, _p in pickletools.genops(data[data.index(b"\x80\x02", 140):])}
    assert not ops & {"SHORT_BINSTRING", "BINSTRING", "STRING"}
    assert list(load(tmp_path / "o.pt")) == list(load(src))


def test_tensor_subclass_becomes_a_plain_tensor_and_attributes_stay(tmp_path):
    from fix.fixmodels import TaggedTensor

    sub = torch.ones(3).as_subclass(TaggedTensor)
    attr = torch.arange(4.0)
    attr.note = "keep me"
    grad = torch.zeros(2).as_subclass(TaggedTensor).requires_grad_()
    src = save({"sub": sub, "attr": attr, "grad": grad}, tmp_path / "c.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load(src)
    r = fix(src, tmp_path / "o.pt")
    got = load(tmp_path / "o.pt")
    assert type(got["sub"]) is torch.Tensor and torch.equal(got["sub"], torch.ones(3))
    assert got["attr"].note == "keep me" and torch.equal(got["attr"], attr)
    assert got["grad"].requires_grad and type(got["grad"]) is torch.Tensor
    assert sum("TaggedTensor -> torch.Tensor" in c.detail for c in r.changes) == 2
