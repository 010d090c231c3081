"""Shared test fixtures.

The real-world corpus lives in ../shared/corpus (beside the repository). A
fresh clone has no ../shared: corpus tests then skip with a clear message.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path(os.environ.get("CKPTDOCTOR_CORPUS", REPO.parent / "shared" / "corpus"))
NO_CORPUS = "../shared/corpus is not present (fresh clone): corpus tests skipped; set CKPTDOCTOR_CORPUS to run them"


def corpus_rows() -> list[dict[str, str]]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def corpus_truth(name: str) -> dict | None:
    p = CORPUS / "truth" / f"{name}.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(NO_CORPUS)
    return CORPUS / "files"


def corpus_params() -> list:
    rows = corpus_rows()
    if not rows:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_CORPUS), id="no-corpus")]
    return [pytest.param(r, id=r["file"]) for r in rows]


@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch", reason="torch (test extra) not installed")
