"""Acceptance: for every corpus file, check predicts what torch 2.13 did (MANIFEST.tsv), for the same cause.

The manifest's outcomes are torch.load(f, map_location='cpu', weights_only=True/False) with torch 2.13.0;
the target below is exactly that. A mismatch is any file where the prediction (loads or not), the
cause (the global / class / impostor kind named in the manifest) or torch's own words differ.
"""

from __future__ import annotations

import re

import pytest
from tests.conftest import CORPUS, corpus_params

from ckptdoctor.check import Target, check
from ckptdoctor.rules._common import ansi_strip

CONTAINER_KIND = {"torchscript-zip": "torchscript"}


def _norm(s: str) -> str:
    return " ".join(ansi_strip(s).split())


def expected_cause(row: dict[str, str], outcome: str) -> tuple[str, str] | None:
    """What the manifest says stopped torch: ("global", name) | ("class", name) | ("kind", kind)."""
    if outcome == "ok":
        return None
    if row["container"] not in ("legacy", "zip", "tar"):
        return "kind", CONTAINER_KIND.get(row["container"], row["container"])
    m = re.search(r"Can't get attribute '(\w+)' on <module '([\w.]+)'", outcome)
    if m:
        return "class", f"{m.group(2)}.{m.group(1)}"
    m = re.search(r"Unsupported global: GLOBAL (\S+) was not an allowed global", row["notes"])
    if m:
        return "global", m.group(1)
    raise AssertionError(f"no cause understood for {row['file']}: {outcome} / {row['notes']}")


def mismatches(row: dict[str, str], weights_only: bool) -> list[str]:
    col = "torch2.13_weights_only" if weights_only else "torch2.13_full"
    outcome = row[col]
    target = Target.current(torch="2.13", weights_only=weights_only, device="cpu", map_location="cpu")
    res = check(CORPUS / "files" / row["file"], target)
    problems = []
    if res.loads != (outcome == "ok"):
        problems.append(f"predicted loads={res.loads}, torch 2.13: {outcome[:80]}")
        return problems
    cause = expected_cause(row, outcome)
    if cause is None:
        return problems
    first = res.first_cause
    assert first is not None
    what, name = cause
    key = {"global": "global", "class": "class", "kind": "kind"}[what]
    if first.evidence.get(key) != name:
        problems.append(f"first cause {first.id} {first.evidence.get(key)!r}, manifest: {what} {name!r}")
    if what == "global" and not any(f.evidence.get("global") == name for f in res.blocking()):
        problems.append(f"{name} not among the blocking findings")
    said = _norm(res.predicted_error or "")
    if not said.startswith(_norm(outcome)):
        problems.append(f"torch would say {outcome[:90]!r}, predicted {said[:90]!r}")
    return problems


@pytest.mark.parametrize("row", corpus_params())
@pytest.mark.parametrize("weights_only", [True, False], ids=["weights-only", "no-weights-only"])
def test_check_predicts_torch_2_13(row, weights_only):
    assert mismatches(row, weights_only) == []


def test_zero_mismatches_overall():
    """The whole corpus at once, so the count is visible in one place (0 expected)."""
    from tests.conftest import corpus_rows

    rows = corpus_rows()
    if not rows:
        pytest.skip("corpus absent")
    bad = {(r["file"], wo): m for r in rows for wo in (True, False) if (m := mismatches(r, wo))}
    assert bad == {}, f"{len(bad)} mismatches: {bad}"
