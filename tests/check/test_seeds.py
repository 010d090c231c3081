"""The seed cases of issue #4, each written by the real torch and each prediction checked against torch
where torch 2.13 can say (older torch releases are not installable here: their verdicts come from the
tables derived from their source)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.check.conftest import torch_outcome

from ckptdoctor.check import Target, check
from ckptdoctor.rules._common import ansi_strip


def ids(res):
    return [f.id for f in res.findings]


def bn_model(torch):
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())


def test_num_batches_tracked_file_for_torch_0_4_0(torch, save):
    path = save(bn_model(torch).state_dict(), "bn.pt", _use_new_zipfile_serialization=False)
    res = check(path, Target(torch="0.4.0", numpy="1.14"))
    assert res.loads  # torch.load works; the strict load_state_dict is what fails
    f = next(f for f in res.findings if f.id == "CKD-BN-NBT-UNEXPECTED")
    assert f.evidence["keys"] == ["1.num_batches_tracked"]
    assert "drop-num-batches-tracked" in f.fix.command
    # the same file is fine for 0.4.1+
    assert "CKD-BN-NBT-UNEXPECTED" not in ids(check(path, Target(torch="0.4.1")))


def test_pre_0_4_1_state_dict_for_new_torch(torch, save):
    sd = bn_model(torch).state_dict()
    del sd["1.num_batches_tracked"]
    sd._metadata = {k: {"version": 1} for k in ("", "0", "1", "2")}  # what 0.4.0 would have written
    path = save(sd, "old_bn.pt")
    res = check(path, Target.current(torch=torch.__version__))
    assert res.loads and "CKD-BN-NBT-FILLED" in ids(res)
    model = bn_model(torch)
    model.load_state_dict(torch.load(path, weights_only=True))  # torch agrees: it fills the counter in
    sd._metadata["1"]["version"] = 2  # claims to be from 0.4.1+, yet lacks the counter
    res = check(save(sd, "bad_bn.pt"), Target.current(torch=torch.__version__))
    assert "CKD-BN-NBT-MISSING" in ids(res)
    with pytest.raises(RuntimeError, match="Missing key"):
        bn_model(torch).load_state_dict(torch.load(save(sd, "bad_bn2.pt"), weights_only=True))


def test_dataparallel_prefix(torch, save):
    dp = torch.nn.DataParallel(bn_model(torch))
    path = save(dp.state_dict(), "dp.pt")
    res = check(path, Target.current(torch=torch.__version__))
    assert res.loads
    f = next(f for f in res.findings if f.id == "CKD-SD-PREFIX")
    assert f.evidence["prefix"] == "module." and f.fix.command.endswith("--step strip-prefixes")
    sd = torch.load(path, weights_only=True)
    with pytest.raises(RuntimeError, match="Missing key"):
        bn_model(torch).load_state_dict(sd)
    exec(f.fix.python, {"torch": torch, "sd": sd})  # noqa: S102 - the printed fix, as is
    bn_model(torch).load_state_dict(sd)


@pytest.fixture
def cuda_tagged(torch, save, monkeypatch):
    """A file whose storages carry the location tag 'cuda:0', exactly as a save on a GPU writes it.

    torch.save records ``location_tag(storage)``; we make that function answer 'cuda:0' (the bytes
    are those of the CPU tensors, as they would be after the device-to-host copy torch.save does)."""
    import torch.serialization as ser

    def write(name, **kw):
        monkeypatch.setattr(ser, "location_tag", lambda storage: "cuda:0")
        try:
            return save({"w": torch.arange(4.0)}, name, **kw)
        finally:
            monkeypatch.undo()

    return write


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_cuda_file_on_cpu_target(torch, cuda_tagged, zipfile):
    path = cuda_tagged("cuda.pt", _use_new_zipfile_serialization=zipfile)
    assert not torch.cuda.is_available()
    res = check(path, Target.current(torch=torch.__version__, device="cpu"))
    assert not res.loads and res.first_cause.id == "CKD-DEVICE-CUDA"
    ok, said = torch_outcome(torch, path, weights_only=True)
    assert not ok and said == res.predicted_error
    assert "map_location='cpu'" in res.first_cause.fix.python
    # with the fix (map_location) both agree it loads
    res = check(path, Target.current(torch=torch.__version__, device="cpu", map_location="cpu"))
    assert res.loads and "CKD-DEVICE-MAPPED" in ids(res)
    assert torch_outcome(torch, path, weights_only=True, map_location="cpu")[0]
    # a machine with one GPU loads it; cuda:1 on it would not
    assert check(path, Target(torch="2.13", device="cuda:0")).loads


def test_numpy2_file_for_numpy1_target(torch, save):
    path = save({"acc": np.float64(0.5), "w": torch.ones(1)}, "np2.pt")
    assert any(g.startswith("numpy._core.") for g in check(path, Target.current()).findings[0].evidence.get(
        "globals", ["numpy._core.multiarray.scalar"]))
    full = dict(weights_only=False)
    res = check(path, Target.current(torch=torch.__version__, numpy="1.24.4", **full))
    assert not res.loads and res.first_cause.id == "CKD-NUMPY-CORE"
    assert res.predicted_error == "ModuleNotFoundError: No module named 'numpy._core'"
    assert "numpy-core" in res.first_cause.fix.command
    assert not check(path, Target.current(torch=torch.__version__, numpy="1.26.0", **full)).loads
    assert check(path, Target.current(torch=torch.__version__, numpy="1.26.4", **full)).loads  # 1.26.1+ shims
    assert check(path, Target.current(torch=torch.__version__, numpy="2.1", **full)).loads
    assert torch_outcome(torch, path, weights_only=False)[0]  # numpy 2 here: torch agrees


def test_protocol_4_pickle_for_older_weights_only(torch, save):
    path = save({"w": torch.ones(2), "lr": 0.1}, "p4.pt", pickle_protocol=4)
    for v in ("1.13", "2.0", "2.4", "2.6", "2.13"):
        res = check(path, Target.current(torch=v, weights_only=True))
        assert not res.loads, v
        f = res.first_cause
        assert f.id == "CKD-WO-OPCODE" and f.evidence["opcode"] == "FRAME" and f.evidence["code"] == 149, v
        assert f.evidence["protocol"] == 4
    ok, said = torch_outcome(torch, path, weights_only=True)
    assert not ok and "Unsupported operand 149" in said
    assert " ".join(ansi_strip(said).split()) == " ".join(ansi_strip(
        check(path, Target.current(torch=torch.__version__, weights_only=True)).predicted_error).split())
    # without weights_only every release reads protocol 4
    assert check(path, Target.current(torch="1.13", weights_only=False)).loads


def test_binfloat_refused_by_1_13_weights_only(torch, save):
    path = save({"w": torch.ones(2), "lr": 0.1}, "float.pt")
    res = check(path, Target.current(torch="1.13", weights_only=True))
    assert not res.loads and res.first_cause.evidence["opcode"] == "BINFLOAT"
    assert res.predicted_error.endswith("Unsupported operand 71")
    assert check(path, Target.current(torch="2.0", weights_only=True)).loads


def test_zip_file_for_torch_1_5_and_older(torch, save):
    path = save(bn_model(torch).state_dict(), "zip.pt")
    res = check(path, Target(torch="1.5", numpy="1.18"))
    assert res.loads, [f.id for f in res.blocking()]  # 1.5 reads zip files up to version 3; torch.save writes 3
    res = check(path, Target(torch="1.4", numpy="1.18"))
    assert not res.loads and res.first_cause.id == "CKD-CONTAINER-ZIP-VERSION"
    assert "version 3, but the maximum supported version for reading is 2" in res.predicted_error
    res = check(path, Target(torch="1.3", numpy="1.18"))
    assert not res.loads and res.first_cause.id == "CKD-CONTAINER-ZIP-TOO-NEW"
    assert "is a zip archive (did you mean to use torch.jit.load()?)" in res.predicted_error
    assert "--torch 1.3" in res.first_cause.fix.command


def test_uint16_needs_torch_2_3(torch, save):
    path = save({"w": torch.ones(2, dtype=torch.uint16)}, "u16.pt")
    res = check(path, Target(torch="2.2", numpy="1.26", weights_only=False))
    assert not res.loads
    assert {f.id for f in res.blocking()} >= {"CKD-TYPE-DTYPE"}
    assert check(path, Target.current(torch="2.3", weights_only=False)).loads
    res = check(path, Target(torch="2.1", weights_only=False))
    assert "CKD-TYPE-REBUILD" in {f.id for f in res.blocking()}  # _rebuild_tensor_v3 is 2.2+
