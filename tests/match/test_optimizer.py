"""Acceptance: optimizer state vs the model (layers added after saving) and vs a target torch release."""

from __future__ import annotations

from typing import Any

import pytest
from tests.match.conftest import cli, tload

torch = pytest.importorskip("torch", reason="torch (test extra) not installed")

import match_models as mm  # noqa: E402

ADAM_1_11 = {"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"}  # torch 1.11.0 adam.py: defaults = dict(...)


def _train(model: Any, opt: Any, steps: int = 3) -> None:
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(2, model.stem.in_channels, 6, 6)).sum().backward()
        opt.step()


def _saved(tmp_path: Any, opt_cls: Any = torch.optim.Adam, name: str = "ckpt.pt", **kw: Any) -> tuple[str, Any]:
    torch.manual_seed(0)
    m = mm.Net()
    opt = opt_cls(m.parameters(), **kw)
    _train(m, opt)
    p = str(tmp_path / name)
    torch.save({"model": m.state_dict(), "optimizer": opt.state_dict(), "epoch": 3}, p)
    return p, opt.state_dict()


def test_layer_added_after_saving_is_named(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    p, saved = _saved(tmp_path)
    rep = match(p, "match_models:build_extra")
    (o,) = rep.optimizers
    assert o.saved_sizes == [16] and o.target_params == 18
    assert o.added == ["extra.weight", "extra.bias"] and o.removed == [] and o.resized == []
    f = next(f for f in rep.findings if f.id == "CKD-OPT-PARAMS")
    assert f.blocks_load and "extra" in f.explanation
    assert f.fix is not None and "--extract-state-dict" in (f.fix.command or "")  # load weights, drop optimizer
    # torch agrees: the optimizer of the new model refuses the saved state
    new = mm.build_extra()
    with pytest.raises(ValueError, match="doesn't match the size"):
        torch.optim.Adam(new.parameters()).load_state_dict(saved)
    assert not rep.ok


def test_same_count_different_shapes_would_load_then_fail(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    p, saved = _saved(tmp_path)
    rep = match(p, "match_models:build_head")  # fc: 3 -> 7 classes, same parameter count
    (o,) = rep.optimizers
    assert o.resized == ["fc.weight", "fc.bias"]
    f = next(f for f in rep.findings if f.id == "CKD-OPT-STATE-SHAPES")
    assert f.blocks_load and "fc.weight" in f.title
    # torch: load_state_dict succeeds (it checks counts only), step() fails
    new = mm.build_head()
    opt = torch.optim.Adam(new.parameters())
    opt.load_state_dict(saved)
    with pytest.raises(RuntimeError):
        _train(new, opt, 1)


def test_matching_optimizer_is_quiet(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    p, _ = _saved(tmp_path)
    rep = match(p, "match_models:build")
    assert rep.optimizers[0].findings == []
    assert all(s.ok for s in rep.optimizers[0].slots)
    assert rep.ok  # extract-only mapping: the state_dict under 'model' matches as saved


def test_adam_2_13_state_for_torch_1_11_explained_and_fixed(tmp_path: Any) -> None:
    from ckptdoctor.match import match
    from ckptdoctor.match import optim_facts as F

    assert F.facts("Adam", F.Version("1.11")).known == ADAM_1_11
    p, saved = _saved(tmp_path)
    assert torch.is_tensor(saved["state"][0]["step"])
    rep = match(p, "match_models:build", torch="1.11")
    ids = {f.id: f for f in rep.findings}
    assert "CKD-OPT-STEP-TENSOR" in ids
    new_keys = set(ids["CKD-OPT-KEYS-NEW"].evidence["keys"])
    assert new_keys == set(saved["param_groups"][0]) - ADAM_1_11 - {"params"}
    assert {"foreach", "capturable", "differentiable", "fused"} <= new_keys
    cmd = ids["CKD-OPT-STEP-TENSOR"].fix.command
    assert cmd.endswith("--torch 1.11 --step optimizer-compat")
    assert not rep.ok

    out = str(tmp_path / "for111.pt")
    code, stdout, err = cli("fix", p, "-o", out, "--torch", "1.11", "--step", "optimizer-compat")
    assert code == 0, err + stdout
    fixed = tload(out, weights_only=True)
    g = fixed["optimizer"]["param_groups"][0]
    assert set(g) == ADAM_1_11 | {"params"}
    for i, s in fixed["optimizer"]["state"].items():
        assert type(s["step"]) is float and s["step"] == float(saved["state"][i]["step"])
        assert torch.equal(s["exp_avg"], saved["state"][i]["exp_avg"])
    assert all(torch.equal(v, tload(p, weights_only=True)["model"][k]) for k, v in fixed["model"].items())
    # explained again for 1.11: nothing left to say
    rep2 = match(out, "match_models:build", torch="1.11")
    assert not {f.id for f in rep2.findings} & {"CKD-OPT-STEP-TENSOR", "CKD-OPT-KEYS-NEW", "CKD-OPT-KEYS-MISSING"}
    assert rep2.ok
    # and new torch still resumes from it (its __setstate__ turns the float step back into a tensor)
    m = mm.build()
    m.load_state_dict(fixed["model"])
    opt = torch.optim.Adam(m.parameters())
    opt.load_state_dict(fixed["optimizer"])
    assert torch.is_tensor(opt.state_dict()["state"][0]["step"])
    _train(m, opt, 1)
    assert float(opt.state_dict()["state"][0]["step"]) == float(saved["state"][0]["step"]) + 1


def test_lightning_optimizer_states_list(tmp_path: Any) -> None:
    from ckptdoctor.match import match

    torch.manual_seed(0)
    lit = mm.Lit()
    opt = torch.optim.SGD(lit.parameters(), lr=0.1, momentum=0.9)
    _train(lit.model, opt)
    p = str(tmp_path / "lit.ckpt")
    torch.save({"state_dict": lit.state_dict(), "optimizer_states": [opt.state_dict()], "epoch": 1}, p)
    rep = match(p, "match_models:build_extra", torch="1.10")
    (o,) = rep.optimizers
    assert o.path == "optimizer_states.0" and o.kind == ["SGD"]
    assert o.added == ["extra.weight", "extra.bias"]  # names through the inferred 'model.' strip
    keys = next(f for f in rep.findings if f.id == "CKD-OPT-KEYS-NEW").evidence["keys"]
    assert set(keys) == {"maximize", "foreach", "differentiable", "fused"}  # SGD 1.10: no maximize yet


def test_old_state_missing_key_new_torch_reads(tmp_path: Any) -> None:
    """Adagrad got 'eps' in torch 1.4 without a __setstate__ default: a 1.2 state fails in new torch."""
    from ckptdoctor.match import match

    torch.manual_seed(0)
    m = mm.Net()
    opt = torch.optim.Adagrad(m.parameters())
    _train(m, opt)
    sd = opt.state_dict()
    for g in sd["param_groups"]:  # what torch 1.2 saved: no eps, foreach, maximize, differentiable, fused
        for k in ("eps", "foreach", "maximize", "differentiable", "fused"):
            g.pop(k, None)
    for s in sd["state"].values():
        s["step"] = int(s["step"])
    p = str(tmp_path / "old_adagrad.pt")
    torch.save({"model": m.state_dict(), "optimizer": sd}, p)
    with pytest.raises(KeyError, match="eps"):  # torch agrees
        o2 = torch.optim.Adagrad(mm.build().parameters())
        o2.load_state_dict(sd)
        o2.step()
    rep = match(p, "match_models:build", torch="2.13")
    ids = {f.id: f for f in rep.findings}
    assert ids["CKD-OPT-KEYS-MISSING"].evidence["keys"] == ["eps"]
    assert "CKD-OPT-STEP-NUMBER" in ids and "CKD-OPT-KEYS-FILLED" in ids
    out = str(tmp_path / "new_adagrad.pt")
    code, _, err = cli("fix", p, "-o", out, "--torch", "2.13", "--step", "optimizer-compat")
    assert code == 0, err
    fixed = tload(out, weights_only=True)
    assert fixed["optimizer"]["param_groups"][0]["eps"] == 1e-10
    m2 = mm.build()
    o3 = torch.optim.Adagrad(m2.parameters())
    o3.load_state_dict(fixed["optimizer"])
    _train(m2, o3, 1)


def test_optim_versions_table_has_sources() -> None:
    from ckptdoctor.match import optim_facts as F

    t = F.table()
    assert set(t["releases"]) <= set(t["sources"]["wheels"])
    assert F.step_tensor_since("Adam") == "1.12.0"
    assert F.key_since("Adam", "fused") == "1.13.0" and F.key_since("SGD", "maximize") == "1.11.0"
    assert F.step_cast_exempt_since() == "1.12.0"
