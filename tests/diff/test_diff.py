"""`ckptdoctor diff` and `ckptdoctor.save` provenance."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

import ckptdoctor
from ckptdoctor.diff import diff_checkpoints


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ckptdoctor", *args], capture_output=True, text=True)


@pytest.fixture()
def pair(tmp_path, torch):
    g = torch.Generator().manual_seed(1)
    sd = {"a.weight": torch.randn(8, 4, generator=g), "a.bias": torch.randn(8, generator=g),
          "b.weight": torch.randn(3, 8, generator=g).to(torch.bfloat16), "steps": torch.tensor(7)}
    return sd


def test_same_weights_across_containers_are_identical(tmp_path, torch, pair):
    from safetensors.torch import save_file

    torch.save(pair, tmp_path / "z.pt")
    torch.save(pair, tmp_path / "l.pt", _use_new_zipfile_serialization=False)
    save_file(pair, str(tmp_path / "s.safetensors"))
    for other in ("l.pt", "s.safetensors"):
        r = run("diff", str(tmp_path / "z.pt"), str(tmp_path / other))
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.startswith("identical: 4 tensors")


def test_one_changed_tensor_is_reported_with_its_max_difference(tmp_path, torch, pair):
    torch.save(pair, tmp_path / "a.pt")
    changed = dict(pair)
    changed["a.bias"] = pair["a.bias"].clone()
    changed["a.bias"][3] += 0.25
    changed["a.bias"][5] -= 0.5
    torch.save(changed, tmp_path / "b.pt")
    r = run("diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    diffs = [t for t in out["tensors"] if t["status"] != "identical"]
    assert [t["path"] for t in diffs] == ["a.bias"]
    expected = float((changed["a.bias"].double() - pair["a.bias"].double()).abs().max())
    assert diffs[0]["max_abs"] == pytest.approx(expected, rel=1e-6)
    assert diffs[0]["differing_elements"] == 2
    # within tolerance -> exit 0
    assert run("diff", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--atol", "0.6").returncode == 0


def test_bfloat16_difference_and_missing_keys(tmp_path, torch, pair):
    torch.save(pair, tmp_path / "a.pt")
    other = {k: v for k, v in pair.items() if k != "steps"}
    other["b.weight"] = (pair["b.weight"].float() * 2).to(torch.bfloat16)
    other["extra"] = torch.zeros(1)
    torch.save(other, tmp_path / "b.pt")
    with ckptdoctor.open(tmp_path / "a.pt") as a, ckptdoctor.open(tmp_path / "b.pt") as b:
        res = diff_checkpoints(a, b)
    assert res.only_in_a == ["steps"] and res.only_in_b == ["extra"]
    bw = next(t for t in res.tensors if t.path == "b.weight")
    want = float((other["b.weight"].float() - pair["b.weight"].float()).abs().max())
    assert bw.status == "different" and bw.max_abs == pytest.approx(want)


def test_whole_model_against_its_state_dict(tmp_path, torch):
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.save(m, tmp_path / "model.pt")
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    r = run("diff", str(tmp_path / "model.pt"), str(tmp_path / "sd.pt"))
    assert r.returncode == 0 and "stripped 'state_dict.'" in r.stdout


def test_save_with_provenance_loads_in_stock_torch_and_shows_in_inspect(tmp_path, torch):
    obj = {"w": torch.arange(6.0).reshape(2, 3), "epoch": 3}
    ckptdoctor.save(obj, tmp_path / "m.pt", provenance={"run": "unit-test"})
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert torch.equal(loaded["w"], obj["w"]) and loaded["epoch"] == 3
    assert torch.equal(torch.load(tmp_path / "m.pt", weights_only=True, mmap=True)["w"], obj["w"])
    r = run("inspect", str(tmp_path / "m.pt"), "--json")
    prov = json.loads(r.stdout)["details"]["provenance"]
    assert prov["torch"] == torch.__version__ and prov["user"] == {"run": "unit-test"}
    text = run("inspect", str(tmp_path / "m.pt")).stdout
    assert "provenance" in text and torch.__version__ in text
    # the same for safetensors (its __metadata__)
    pytest.importorskip("safetensors")
    ckptdoctor.save({"w": obj["w"]}, tmp_path / "m.safetensors", provenance={"run": "st"})
    with ckptdoctor.open(tmp_path / "m.safetensors") as c:
        assert c.details["provenance"]["user"] == {"run": "st"}
    assert shutil.which("ckptdoctor")
