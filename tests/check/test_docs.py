"""docs/findings.md documents every finding id of check's rule families, each with an example."""

from __future__ import annotations

from pathlib import Path

from ckptdoctor.rules import ALL_RULES

DOCS = Path(__file__).resolve().parents[2] / "docs"
MINE = ("impostors", "container", "weights_only", "whole_model", "numpy", "py2", "dtypes", "devices", "batchnorm",
        "producer")


def test_every_finding_documented_with_an_example():
    text = (DOCS / "findings.md").read_text()
    sections = {s.split("\n", 1)[0].strip(): s for s in text.split("\n### ")[1:]}
    for rule in ALL_RULES:
        if rule.family not in MINE:
            continue
        for fid in rule.findings:
            assert fid in sections, fid
            assert "Example:" in sections[fid] and "```" in sections[fid], fid


def test_check_doc_names_every_option():
    text = (DOCS / "check.md").read_text()
    for opt in ("--torch", "--numpy", "--python-path", "--weights-only", "--device", "--map-location", "--json",
                "--sarif"):
        assert opt in text
