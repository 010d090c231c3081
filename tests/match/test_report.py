"""The report: one screen for a 500-key mismatch, every key in --json; CLI exit codes and errors. No torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.match.conftest import cli

safetensors_numpy = pytest.importorskip("safetensors.numpy")

NAMES = ["attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "mlp.fc1.weight",
         "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias", "norm1.weight", "norm2.weight"]
TARGET = {f"blocks.{i}.{n}": [4] for i in range(50) for n in NAMES}  # 500 keys


def _write(tmp: Path, name: str, tensors: dict[str, Any]) -> str:
    p = str(tmp / name)
    safetensors_numpy.save_file({k: np.zeros(v, dtype=np.float32) if isinstance(v, list) else v
                                 for k, v in tensors.items()}, p)
    return p


def _target(tmp: Path) -> str:
    p = tmp / "target.json"
    p.write_text(json.dumps(TARGET))
    return str(p)


SCENARIOS = {
    "prefix": lambda: {"module." + k: v for k, v in TARGET.items()},
    "other_names": lambda: {f"encoder.layer.{i}.{n}": [4] for i in range(50)
                            for n in ["q.w", "k.w", "v.w", "o.w", "ln.w", "ffn.in.w", "ffn.out.w", "ffn.in.b",
                                      "ffn.out.b", "ln2.w"]},
    "all_sizes": lambda: {k: [8] for k in TARGET},
    "mixed": lambda: {**{"model." + k: [8] if j % 7 == 0 else v for j, (k, v) in enumerate(TARGET.items())
                         if j % 5}, **{f"model.extra.{i}.w": [2] for i in range(50)}},
    "random_names": lambda: {f"x{i * 7919 % 1000}.y{i % 13}.z{i}": [1] for i in range(500)},
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_500_key_mismatch_fits_one_screen_and_json_has_every_key(name: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _write(tmp_path, f"{name}.safetensors", SCENARIOS[name]())
    _target(tmp_path)
    ck, tgt = f"{name}.safetensors", "target.json"
    code, out, err = cli("match", ck, "--to", tgt)
    assert code == 1, err
    lines = out.splitlines()
    assert len(lines) <= 40, out
    assert max(len(x) for x in lines) <= 160, out
    code, js, _ = cli("match", ck, "--to", tgt, "--json")
    assert code == 1
    d = json.loads(js)
    src = SCENARIOS[name]()
    a = d["as_saved"]
    assert set(a["missing"]) | set(a["matched"]) | {m["key"] for m in a["shape_mismatch"]} == set(TARGET)
    assert set(a["unexpected"]) == set(src) - set(TARGET)
    assert set(d["checkpoint"]["keys"]) == set(src) and set(d["target"]["keys"]) == set(TARGET)
    # the text names each group with its size: the counts add up
    assert f"missing ({len(a['missing'])}" in out or not a["missing"]


def test_prefix_mapping_in_json(tmp_path: Path) -> None:
    ck = _write(tmp_path, "p.safetensors", SCENARIOS["prefix"]())
    code, js, _ = cli("match", ck, "--to", _target(tmp_path), "--json")
    d = json.loads(js)
    assert d["mapping"]["transforms"] == [["module.", ""]]
    assert d["mapping"]["fix_args"] == ["--rename", "module.="]
    assert d["after_mapping"]["loads_strict"] is True
    assert d["mapping"]["command"].startswith("ckptdoctor fix ")


def test_exit_zero_when_everything_matches(tmp_path: Path) -> None:
    ck = _write(tmp_path, "same.safetensors", dict(TARGET))
    code, out, _ = cli("match", ck, "--to", _target(tmp_path))
    assert code == 0 and "all 500 keys match" in out


def test_checkpoint_as_target(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.safetensors", {"module.x.weight": [2, 3], "module.x.bias": [2]})
    b = _write(tmp_path, "b.safetensors", {"x.weight": [2, 3], "x.bias": [2]})
    code, out, _ = cli("match", a, "--to", b)
    assert code == 1 and "--rename module.=" in out


@pytest.mark.parametrize("args, msg", [
    (["nope.pt", "--to", "x.json"], "no such file"),
    (["{ck}", "--to", "missing.json"], "no such file"),
    (["{ck}", "--to", "no_such_module_xyz:build"], "cannot import"),
    (["{ck}", "--to", "match_models:broken"], "config file missing"),
    (["{ck}", "--to", "match_models:not_callable"], "not a torch.nn.Module"),
    (["{ck}", "--to", "match_models:nothing_here"], "has no attribute"),
    (["{ck}", "--to", "{bad_json}"], "not valid JSON"),
    (["{ck}", "--to", "{tgt}", "--torch", "one.two"], "not a version"),
    (["{ck}", "--to", "{tgt}", "--key", "ema"], "no state_dict at 'ema'"),
    (["{junk}", "--to", "{tgt}"], "cannot read"),
])
def test_bad_input_one_line_error(args: list[str], msg: str, tmp_path: Path) -> None:
    ck = _write(tmp_path, "c.safetensors", {"w": [1]})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"<html>not a checkpoint</html>")
    subst = {"{ck}": ck, "{tgt}": _target(tmp_path), "{bad_json}": str(bad), "{junk}": str(junk)}
    if any("match_models" in a for a in args):
        pytest.importorskip("torch")
    code, out, err = cli("match", *[subst.get(a, a) for a in args])
    assert code == 2
    assert msg in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out
