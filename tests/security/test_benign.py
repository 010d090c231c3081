"""No false alarms: the real corpus and generated training artefacts are never judged dangerous."""

from __future__ import annotations

import pytest

from ckptdoctor.findings import Severity
from ckptdoctor.security import analyze_path
from conftest import CORPUS, corpus_params

SAFE = ("sd-", "opt-", "scaler", "attrs-tensor", "misc-tensors", "list-of-tensors", "shared-storage",
        "pickled-tensor", "weights.safetensors")
NEEDS_ALLOWLIST = ("train-ckpt", "numpy-things", "whole-sequential", "whole-weight-norm", "whole-optimizer",
                   "scripted", "traced", "lightning-omegaconf", "yacs-config", "hf-config")


@pytest.mark.parametrize("row", corpus_params())
def test_corpus_file_is_not_dangerous(row):
    r = analyze_path(CORPUS / "files" / row["file"])
    crit = [f"{f.id}: {f.title}" for f in r.findings if f.severity == Severity.CRITICAL]
    assert r.verdict != "dangerous" and not crit, crit
    if row["content"].startswith("state_dict") and row["container"] in ("zip", "legacy"):
        assert r.verdict == "safe", [f.title for f in r.findings]
    if row["content"].startswith("whole-model"):
        assert r.verdict in ("suspicious", "needs-allowlist")


def test_generated_benign_fixtures(benign_files, tripwire):
    seen = set()
    for p in benign_files:
        r = analyze_path(p)
        crit = [f"{f.id}: {f.explanation}" for f in r.findings if f.severity == Severity.CRITICAL]
        assert r.verdict != "dangerous" and not crit, (p.name, crit)
        if p.name.startswith(SAFE):
            assert r.verdict == "safe", (p.name, [f.title for f in r.findings])
            seen.add("safe")
        if p.name.startswith(NEEDS_ALLOWLIST):
            assert r.verdict == "needs-allowlist", (p.name, [f.title for f in r.findings])
            seen.add("allow")
        if p.name.startswith(("whole-model", "whole-bound")):  # user classes: code to review, not a threat
            assert r.verdict == "suspicious"
            assert {f.id for f in r.findings} >= {"CKD-SEC-UNKNOWN"}
    assert seen == {"safe", "allow"}


def test_allowlist_finding_gives_the_line(benign_files):
    p = next(p for p in benign_files if p.name == "train-ckpt.pth.tar")
    f = next(f for f in analyze_path(p).findings if f.id == "CKD-SEC-ALLOWLIST")
    assert "argparse.Namespace" in f.fix.python and f.fix.python.startswith("torch.serialization.add_safe_globals")


def test_distributed_checkpoint_folder(torch, tmp_path):
    import warnings

    dcp = pytest.importorskip("torch.distributed.checkpoint")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"w": torch.ones(3), "step": 7}, checkpoint_id=str(tmp_path / "ckpt"))
    r = analyze_path(tmp_path / "ckpt")
    assert r.format == "dcp" and r.verdict == "needs-allowlist", [f.title for f in r.findings]
