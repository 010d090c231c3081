"""Acceptance: match reports exactly what torch's load_state_dict reports, and its mapping makes it load.

Each case saves a small model (torch 2.13) the way real training code does, runs ``match`` against the
model built by ``match_models:<callable>``, compares with torch's own ``load_state_dict(strict=False)``
on the same state_dict, then applies the inferred mapping with ``ckptdoctor fix`` and loads the result
with ``strict=True`` wherever the architectures agree.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.match.conftest import cli, tload, torch_verdict

torch = pytest.importorskip("torch", reason="torch (test extra) not installed")
nn = torch.nn

import match_models as mm  # noqa: E402  (tests/match is on sys.path via conftest)


@dataclass
class Case:
    name: str
    save: Callable[[Any, str], None]  # (trained Net, path)
    target: str  # match_models callable
    agree: bool  # architectures agree: the mapping must make strict loading work
    expect_rules: list[tuple[str, str]] | None = None
    expect_extract: str | None = None


def _trained() -> Any:
    torch.manual_seed(1)
    m = mm.Net()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))
    m.train()
    m(torch.randn(2, 3, 6, 6))  # BatchNorm running stats and num_batches_tracked move
    return m


def _save_ddp(model: Any, path: str) -> None:
    """A real DistributedDataParallel wrapper (gloo, one process, a file store beside the checkpoint)."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    store = os.path.join(os.path.dirname(path), "ddp-store")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        torch.save(nn.parallel.DistributedDataParallel(model).state_dict(), path)
    finally:
        dist.destroy_process_group()


def _lit(model: Any, path: str) -> None:
    lit = mm.Lit()
    lit.model = model
    opt = torch.optim.Adam(lit.parameters())
    torch.save({"epoch": 3, "global_step": 12, "pytorch-lightning_version": "2.4.0",
                "state_dict": lit.state_dict(), "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
                "hparams_name": "kwargs"}, path)


def _mangled(model: Any, path: str) -> None:
    sd = nn.DataParallel(model).state_dict()
    torch.save({k.replace("module.", ""): v for k, v in sd.items()}, path)  # the classic bug


def _nbt_plain(model: Any, path: str) -> None:
    # a torch-0.4.0-like state_dict: plain dict (no _metadata), no num_batches_tracked
    torch.save({k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}, path)


def _nbt_v2(model: Any, path: str) -> None:
    sd = model.state_dict()
    for k in [k for k in sd if k.endswith("num_batches_tracked")]:
        del sd[k]  # keeps _metadata (version 2): torch will not fill these in
    torch.save(sd, path)


def _torchscript(model: Any, path: str) -> None:
    torch.jit.save(torch.jit.script(model.eval()), path)


CASES = [
    Case("plain", lambda m, p: torch.save(m.state_dict(), p), "build", True, []),
    Case("dataparallel", lambda m, p: torch.save(nn.DataParallel(m).state_dict(), p), "build", True,
         [("module.", "")]),
    Case("ddp", _save_ddp, "build", True, [("module.", "")]),
    Case("compiled", lambda m, p: torch.save(torch.compile(m).state_dict(), p), "build", True,
         [("_orig_mod.", "")]),
    Case("lightning", _lit, "build", True, [("model.", "")], "state_dict"),
    Case("stacked_dp_compiled", lambda m, p: torch.save(nn.DataParallel(torch.compile(m)).state_dict(), p),
         "build", True, [("module._orig_mod.", "")]),
    Case("stacked_compiled_dp", lambda m, p: torch.save(torch.compile(nn.DataParallel(m)).state_dict(), p),
         "build", True, [("_orig_mod.module.", "")]),
    Case("nested_wrappers", lambda m, p: torch.save({"model": {"module": nn.DataParallel(m).state_dict()},
                                                     "epoch": 1}, p), "build", True, [("module.", "")],
         "model.module"),
    Case("ema_beside_model", lambda m, p: torch.save({"model": m.state_dict(),
                                                      "ema": nn.DataParallel(m).state_dict()}, p),
         "build", True, [], "model"),
    Case("whole_model", lambda m, p: torch.save(m, p), "build", True, [], ""),
    Case("torchscript", _torchscript, "build", True, [], ""),
    Case("add_prefix", lambda m, p: torch.save(m.state_dict(), p), "build_renamed", True, [("", "backbone.")]),
    Case("replace_bug_mangled", _mangled, "build", True),
    Case("nbt_legacy_plain_dict", _nbt_plain, "build", True, []),
    Case("changed_head", lambda m, p: torch.save(m.state_dict(), p), "build_head", False, []),
    Case("added_layer", lambda m, p: torch.save(m.state_dict(), p), "build_extra", False, []),
    Case("dp_changed_head", lambda m, p: torch.save(nn.DataParallel(m).state_dict(), p), "build_head", False,
         [("module.", "")]),
    Case("gray_input", lambda m, p: torch.save(m.state_dict(), p), "build_gray", False, []),
    Case("nbt_deleted_v2", _nbt_v2, "build", False, []),
]


def _file_state_dict(path: str, rep: Any) -> Any:
    """The state_dict torch would be given: the same entry match used, loaded by torch itself."""
    if rep.checkpoint.format == "torchscript":
        return torch.jit.load(path).state_dict()
    obj = tload(path, weights_only=False)  # our own test file
    for p in rep.source.path:
        obj = obj[p]
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    return obj


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_match_agrees_with_torch_and_mapping_loads(case: Case, tmp_path: Any) -> None:
    from ckptdoctor.match import match

    trained = _trained()
    path = str(tmp_path / f"{case.name}.pt")
    case.save(trained, path)
    rep = match(path, f"match_models:{case.target}")

    # 1. as saved: exactly torch's missing / unexpected / size mismatches
    sd = _file_state_dict(path, rep)
    target = getattr(mm, case.target)()
    missing, unexpected, sizes = torch_verdict(target, sd)
    assert set(rep.as_saved.missing) == missing
    assert set(rep.as_saved.unexpected) == unexpected
    assert {k for k, _, _ in rep.as_saved.shape_mismatch} == sizes
    assert len(rep.as_saved.missing) == len(missing) and len(rep.as_saved.unexpected) == len(unexpected)
    if case.expect_rules is not None:
        assert rep.mapping.transforms() == case.expect_rules
    if case.expect_extract is not None:
        assert rep.mapping.extract == case.expect_extract

    # 2. the mapping, applied by `ckptdoctor fix`, gives what match predicted; strict loading where it should
    if rep.mapping.is_identity:
        fixed = sd
    else:
        out = str(tmp_path / "fixed.pt")
        code, stdout, stderr = cli("fix", path, "-o", out, *rep.mapping.to_fix_args())
        assert code == 0, stderr + stdout
        fixed = tload(out, weights_only=True)
    fresh = getattr(mm, case.target)()
    f_missing, f_unexpected, f_sizes = torch_verdict(fresh, fixed)
    assert set(rep.final.missing) == f_missing
    assert set(rep.final.unexpected) == f_unexpected
    assert {k for k, _, _ in rep.final.shape_mismatch} == f_sizes
    if case.agree:
        model = getattr(mm, case.target)()
        model.load_state_dict(fixed, strict=True)  # raises if anything is off
        assert rep.final.loads_strict
        ref = trained.state_dict()
        got = model.state_dict()
        for k, v in got.items():
            if k in rep.final.filled_nbt:
                continue  # torch set it to 0 itself: not in the file
            src = k.removeprefix("backbone.")
            assert torch.equal(v, ref[src]), k
    else:
        assert not rep.final.loads_strict
        assert not rep.ok


def test_replace_bug_is_named(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    m = _trained()
    p = str(tmp_path / "dp.pt")
    torch.save(nn.DataParallel(m).state_dict(), p)
    rep = match(p, "match_models:build")
    risk = [f for f in rep.findings if f.id == "CKD-MATCH-REPLACE-RISK"]
    assert risk and "layer1.submodule.weight" in str(risk[0].evidence["keys"])
    assert "layer1.subweight" in risk[0].evidence["would_become"]
    bad = str(tmp_path / "bad.pt")
    _mangled(m, bad)
    rep = match(bad, "match_models:build")
    mangled = [f for f in rep.findings if f.id == "CKD-MATCH-REPLACE-MANGLED"]
    assert mangled and mangled[0].evidence["renames"]["layer1.subweight"] == "layer1.submodule.weight"
    assert rep.final.loads_strict


def test_num_batches_tracked_explained(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    m = _trained()
    p = str(tmp_path / "old.pt")
    _nbt_plain(m, p)
    rep = match(p, "match_models:build")
    assert rep.as_saved.loads_strict and rep.ok  # torch fills them in, as it does for 0.4.0 files
    assert [f.id for f in rep.findings] == ["CKD-MATCH-NBT-FILLED"]
    p2 = str(tmp_path / "v2.pt")
    _nbt_v2(m, p2)
    rep = match(p2, "match_models:build")
    f = next(f for f in rep.findings if f.id == "CKD-MATCH-NBT-MISSING")
    assert f.fix is not None and "--step add-num-batches-tracked" in (f.fix.command or "")
    out = str(tmp_path / "v2fixed.pt")
    code, _, err = cli("fix", p2, "-o", out, "--step", "add-num-batches-tracked")
    assert code == 0, err
    mm.Net().load_state_dict(tload(out, weights_only=True), strict=True)


def test_shape_explanations(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    m = _trained()
    p = str(tmp_path / "m.pt")
    torch.save(m.state_dict(), p)
    ids = {f.id for f in match(p, "match_models:build_head").findings}
    assert "CKD-MATCH-SHAPE-HEAD" in ids
    ids = {f.id for f in match(p, "match_models:build_gray").findings}
    assert "CKD-MATCH-SHAPE-IN-CHANS" in ids


def test_safetensors_and_json_targets(tmp_path: Any) -> None:
    """Targets without torch: another checkpoint's keys (safetensors) and a {key: shape} JSON."""
    import json

    from safetensors.torch import save_file

    from ckptdoctor.match import match

    m = _trained()
    st = str(tmp_path / "ref.safetensors")
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, st)
    js = str(tmp_path / "keys.json")
    with open(js, "w") as f:
        json.dump({k: list(v.shape) for k, v in m.state_dict().items()}, f)
    ck = str(tmp_path / "dp.pt")
    torch.save(nn.DataParallel(m).state_dict(), ck)
    for target in (st, js):
        rep = match(ck, target)
        assert rep.mapping.transforms() == [("module.", "")]
        assert rep.final.loads_strict
        missing, unexpected, _ = torch_verdict(mm.Net(), tload(ck, weights_only=True))
        # a key list knows no layer types; BatchNorm is recognised by running_mean/running_var
        assert set(rep.as_saved.missing) == missing and set(rep.as_saved.unexpected) == unexpected


def test_ema_key_option(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    m = _trained()
    p = str(tmp_path / "ema.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"model": m.state_dict(), "ema": nn.DataParallel(m).state_dict()}, p)
    rep = match(p, "match_models:build")
    assert rep.source.where == "model"
    assert any(f.id == "CKD-MATCH-ALTERNATIVE" for f in rep.findings)
    rep = match(p, "match_models:build", key="ema")
    assert rep.source.where == "ema" and rep.mapping.transforms() == [("module.", "")]


def test_cli_with_model_target_and_file_path(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    m = _trained()
    p = str(tmp_path / "m.pt")
    torch.save(m.state_dict(), p)
    code, out, err = cli("match", p, "--to", "match_models:build")
    assert code == 0, err + out
    assert "all 22 keys match" in out
    src = os.path.join(os.path.dirname(__file__), "match_models.py")
    code, out, _ = cli("match", p, "--to", f"{src}:build_extra")
    assert code == 1 and "extra.weight" in out


@settings(max_examples=40, deadline=None)
@given(drop=st.sets(st.integers(0, 21), max_size=6), extra=st.lists(st.sampled_from(
    ["layer1", "layer1.bn.extra", "fc.weight.x", "zzz.w", "layer2.submodule", "stem.bias.0"]), max_size=3, unique=True),
    resize=st.sets(st.integers(0, 21), max_size=3), prefix=st.sampled_from(["", "module.", "model.", "_orig_mod."]),
    plain=st.booleans())
def test_random_state_dicts_agree_with_torch(drop: set, extra: list, resize: set, prefix: str, plain: bool) -> None:
    import tempfile
    from collections import OrderedDict

    from ckptdoctor.match import match

    base = mm.Net().state_dict()
    sd = OrderedDict()
    for i, (k, v) in enumerate(base.items()):
        if i in drop:
            continue
        if i in resize and v.dim() > 0:
            v = torch.zeros(v.shape[0] + 1, *v.shape[1:], dtype=v.dtype)
        sd[prefix + k] = v
    for k in extra:
        sd[prefix + k] = torch.zeros(2)
    if not plain:
        sd._metadata = OrderedDict((prefix + k if k else k, m) for k, m in base._metadata.items())  # type: ignore
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.pt")
        torch.save(sd if not plain else dict(sd), p)
        rep = match(p, "match_models:build")
        missing, unexpected, sizes = torch_verdict(mm.Net(), tload(p, weights_only=True))
        assert set(rep.as_saved.missing) == missing
        assert set(rep.as_saved.unexpected) == unexpected
        assert {k for k, _, _ in rep.as_saved.shape_mismatch} == sizes
        if not rep.mapping.is_identity:
            out = os.path.join(d, "y.pt")
            code, o, e = cli("fix", p, "-o", out, *rep.mapping.to_fix_args())
            assert code == 0, e + o
            fm, fu, fs = torch_verdict(mm.Net(), tload(out, weights_only=True))
            assert (set(rep.final.missing), set(rep.final.unexpected)) == (fm, fu)
            assert {k for k, _, _ in rep.final.shape_mismatch} == fs


def test_model_load_hooks_are_asked(tmp_path: Any) -> None:
    """weight_norm's parametrization converts old weight_g/weight_v keys: torch loads it, so must match."""
    from ckptdoctor.match import match

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = mm.Vocoder(new=False)
    for name, sd in (("plain", old.state_dict()), ("dp", nn.DataParallel(old).state_dict())):
        p = str(tmp_path / f"{name}.pt")
        torch.save(sd, p)
        rep = match(p, "match_models:build_vocoder")
        new = mm.build_vocoder()
        missing, unexpected, _ = torch_verdict(new, tload(p, weights_only=True))
        assert (set(rep.as_saved.missing), set(rep.as_saved.unexpected)) == (missing, unexpected)
        assert any(f.id == "CKD-MATCH-TORCH-HOOKS" for f in rep.findings)
        if name == "plain":
            assert rep.ok and rep.mapping.is_identity
        else:
            assert rep.mapping.transforms() == [("module.", "")] and rep.final.loads_strict
            out = str(tmp_path / "fixed.pt")
            code, o, e = cli("fix", p, "-o", out, *rep.mapping.to_fix_args())
            assert code == 0, e + o
            mm.build_vocoder().load_state_dict(tload(out, weights_only=True), strict=True)
