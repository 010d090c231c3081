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


# The installed console script's entry (ckptdoctor.__main__:main) in a child process that records,
# at exit, which modules it imported: the direct-dispatch tests compare it with typer's path.
_MAIN_CHILD = r"""
import atexit, json, os, sys
atexit.register(lambda: open(os.environ["CKD_MODULES"], "w").write(json.dumps(sorted(sys.modules))))
sys.argv[0] = "ckptdoctor"
from ckptdoctor.__main__ import main
main()
"""


@pytest.fixture
def run_main(tmp_path):
    """``run_main(*args) -> (CompletedProcess, set of imported module names)``."""
    import subprocess
    import sys

    def run(*args: str):
        out = tmp_path / "modules.json"
        r = subprocess.run([sys.executable, "-c", _MAIN_CHILD, *args], capture_output=True, text=True,
                           env={**os.environ, "CKD_MODULES": str(out), "COLUMNS": "120"})
        return r, set(json.loads(out.read_text()))

    return run
