"""Unit tests without torch: grouping, mapping inference, torch's comparison rules, shape classes, facts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.version import Version

from ckptdoctor.fixes.rename import RenameRule
from ckptdoctor.match import optim_facts as F
from ckptdoctor.match.compare import compare
from ckptdoctor.match.group import summarize
from ckptdoctor.match.keys import Candidate, Entry
from ckptdoctor.match.mapping import Mapping, Rule, infer, replace_bug
from ckptdoctor.match.shapes import Mismatch, classify, explain

E = Entry((2, 2), "float32")


def cand(keys, shape=(2, 2), **kw) -> Candidate:
    return Candidate([], {k: Entry(shape, "float32") for k in keys}, "test", **kw)


BASE = ["stem.weight", "layer1.0.conv.weight", "layer1.0.bn.weight", "layer2.0.conv.weight", "fc.weight", "fc.bias"]


@pytest.mark.parametrize("src_prefix, tgt_prefix, rules", [
    ("module.", "", [("module.", "")]),
    ("_orig_mod.", "", [("_orig_mod.", "")]),
    ("module._orig_mod.", "", [("module._orig_mod.", "")]),
    ("_orig_mod.module.", "", [("_orig_mod.module.", "")]),
    ("model.", "", [("model.", "")]),
    ("net.", "", [("net.", "")]),
    ("ema.module.", "", [("ema.module.", "")]),
    ("", "backbone.", [("", "backbone.")]),
    ("encoder.", "backbone.", [("encoder.", "backbone.")]),
    ("module.model.", "model.", [("module.", "")]),
])
def test_prefix_rules(src_prefix: str, tgt_prefix: str, rules: list) -> None:
    inf = infer([cand([src_prefix + k for k in BASE])], cand([tgt_prefix + k for k in BASE]))
    assert inf.mapping.transforms() == rules
    assert inf.score.good == len(BASE)


def test_rules_never_collide() -> None:
    # stripping 'module.' would give two 'a.w': the rule must not be chosen
    src = cand(["module.a.w", "a.w", "module.b.w"])
    tgt = cand(["a.w", "b.w"])
    inf = infer([src], tgt)
    mapped = [inf.mapping.key(k) for k in src.entries]
    assert len(set(mapped)) == len(mapped)


def test_shape_decides_between_equal_names() -> None:
    src = Candidate([], {"fc.w": Entry((10, 4)), "aux.w": Entry((3, 4))}, "s")
    tgt = Candidate([], {"head.w": Entry((10, 4)), "aux_head.w": Entry((3, 4))}, "t")
    inf = infer([src], tgt)
    assert inf.mapping.key("fc.w") == "head.w" and inf.mapping.key("aux.w") == "aux_head.w"


def test_best_candidate_and_preference() -> None:
    a = Candidate(["state_dict"], {f"model.{k}": E for k in BASE}, "state_dict", rank=(0,))
    b = Candidate(["ema"], {f"model.{k}": E for k in BASE}, "state_dict", rank=(50,))
    c = Candidate(["other"], {"x.y": E}, "state_dict", rank=(30,))
    inf = infer([c, b, a], cand(BASE))
    assert inf.candidate is a and inf.mapping.extract == "state_dict"
    assert inf.mapping.to_fix_args() == ["--extract-state-dict", "--key", "state_dict", "--rename", "model.="]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["module.", "a=b.", "x.", "", "m", ".", "a.b."]), min_size=1, max_size=3),
       st.lists(st.text(alphabet="abm.=x_", min_size=1, max_size=12), min_size=1, max_size=10))
def test_rule_semantics_equal_fix_rename(prefixes: list[str], keys: list[str]) -> None:
    """What match predicts is what `ckptdoctor fix --rename` does."""
    rules = [Rule(p, q) for p, q in zip(prefixes, reversed(prefixes), strict=True) if p or q]
    for r in rules:
        fix = RenameRule.parse(r.fix_rule)
        for k in keys:
            assert fix.fn(k) == r.apply(k), (r, k)
    m = Mapping(rules, {"a.b": "c=d.\\e"})
    args = m.to_fix_args()
    parsed = [RenameRule.parse(a) for a in args[1::2]]
    for k in [*keys, "a.b"]:
        want = m.key(k)
        got = k
        for p in parsed:
            got = p.fn(got)
        if m.rules and _apply_rules(m.rules, k) != "a.b":
            continue  # explicit renames only touch the exact key
        assert got == want


def _apply_rules(rules, k):
    for r in rules:
        k = r.apply(k)
    return k


def test_replace_bug_detection() -> None:
    tgt = cand(["enc.submodule.w", "enc.x.w"])
    bugs = replace_bug(["module.enc.submodule.w", "module.enc.x.w"], [Rule("module.", "")], tgt.entries)
    assert bugs[0].at_risk == [("module.enc.submodule.w", "enc.subw")]
    inf = infer([cand(["enc.subw", "enc.x.w"])], tgt)
    assert inf.mapping.renames == {"enc.subw": "enc.submodule.w"}
    assert inf.score.good == 2
    assert inf.mapping.to_fix_args() == ["--rename", r"re:^enc\.subw$=enc.submodule.w"]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b1", "b2", "0", "1", "12", "weight", "x"]), min_size=1, max_size=5)
                .map(".".join), min_size=1, max_size=300, unique=True), st.integers(1, 8))
def test_summarize_covers_every_key_once(keys: list[str], budget: int) -> None:
    groups = summarize(keys, budget)
    assert len(groups) <= budget
    covered = [k for g in groups for k in g.keys]
    assert sorted(covered) == sorted(keys)
    assert sum(g.count for g in groups) == len(keys)


def test_summarize_patterns() -> None:
    keys = [f"blocks.{i}.{n}" for i in range(12) for n in ("attn.w", "mlp.w")]
    assert [str(g) for g in summarize(keys, 2)] == ["blocks.{0..11}.attn.w (12)", "blocks.{0..11}.mlp.w (12)"]
    assert [str(g) for g in summarize(keys, 1)] == ["blocks.{0..11}.* (24)"]


def test_compare_follows_torch_rules() -> None:
    tgt = Candidate([], {"bn.weight": E, "bn.running_mean": E, "bn.running_var": E,
                         "bn.num_batches_tracked": Entry((), "int64"), "s": Entry((), "float32"),
                         "fc.w": Entry((3, 2))}, "t")
    src = {"bn.weight": E, "bn.running_mean": E, "bn.running_var": Entry((2, 2), "float16"), "s": Entry((1,)),
           "fc.w": Entry((5, 2)), "extra": E}
    for meta, filled in ((None, True), ({"bn": 1}, True), ({"bn": 2}, False), ({}, True)):
        c = compare(src, meta, tgt)
        assert (c.filled_nbt == ["bn.num_batches_tracked"]) is filled
        assert ("bn.num_batches_tracked" in c.missing) is not filled
    assert c.legacy_scalars == ["s"] and c.shape_mismatch == [("fc.w", (5, 2), (3, 2))]
    assert c.unexpected == ["extra"] and c.dtype_diff == [("bn.running_var", "float16", "float32")]
    tgt.norm_prefixes = set()  # a model whose norm layers do not track stats: no filling
    assert compare(src, None, tgt).missing == ["bn.num_batches_tracked"]


@pytest.mark.parametrize("key, a, b, kind", [
    ("head.weight", (1000, 768), (10, 768), "head"),
    ("patch_embed.proj.weight", (768, 3, 16, 16), (768, 1, 16, 16), "in_chans"),
    ("pos_embed", (1, 197, 768), (1, 577, 768), "posgrid"),
    ("embed_tokens.weight", (32000, 64), (32001, 64), "vocab"),
    ("attn.c_attn.weight", (64, 192), (192, 64), "transposed"),
    ("temperature", (1,), (), "scalar"),
    ("blocks.0.mlp.fc1.weight", (3072, 768), (1536, 768), "size"),
    ("proj.weight", (8, 4, 1, 1), (8, 4), "reshape"),
])
def test_shape_classes(key: str, a: tuple, b: tuple, kind: str) -> None:
    entries = {"patch_embed.proj.weight": Entry((768, 3, 16, 16)), "blocks.0.mlp.fc1.weight": Entry((3072, 768)),
               "blocks.0.mlp.fc2.weight": Entry((768, 3072)), "head.weight": Entry((10, 768)),
               key: Entry(b)}
    tgt = Candidate([], entries, "t")
    got, detail = classify(Mismatch(key, a, b), tgt, "patch_embed.proj.weight", {"head"})
    assert got == kind
    if kind == "posgrid":
        assert detail == {"ckpt_grid": (14, 1), "target_grid": (24, 1)}
    (f,) = explain([Mismatch(key, a, b)], tgt)
    assert f.blocks_load and f.fix is not None


def test_optim_facts_ranges() -> None:
    assert F.in_ranges(Version("1.11.0"), [["1.0.0", "1.11.0"]])
    assert F.in_ranges(Version("1.11.1"), [["1.0.0", "1.11.0"]])  # patch releases follow their minor
    assert not F.in_ranges(Version("1.12.0"), [["1.0.0", "1.11.0"]])
    assert F.in_ranges(Version("1.3"), [["1.2.0", None]])
    assert F.facts("AdamW", Version("1.1")).present is False
    assert F.identify({"lr", "momentum", "dampening", "weight_decay", "nesterov", "params", "initial_lr"}) == ["SGD"]
    assert F.saved_by("SGD", {"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"}) == "1.11.0"
