"""The pre-commit hook, run by pre-commit itself in a temporary git repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

_CMD = b"touch CANARY_CREATED"
# PROTO 2, GLOBAL posix.system, BINUNICODE cmd, TUPLE1, REDUCE, STOP: what pickling os.system(cmd) produces
CANARY_PAYLOAD = b"\x80\x02cposix\nsystem\nX" + len(_CMD).to_bytes(4, "little") + _CMD + b"\x85R."


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env)


@pytest.mark.timeout(900)
def test_precommit_blocks_payload_and_passes_state_dict(tmp_path):
    if shutil.which("pre-commit") is None:
        pytest.skip("pre-commit is not installed (test extra)")
    torch = pytest.importorskip("torch")
    pytest.importorskip("ckptdoctor.security", reason="security analysis not built yet")
    head = git(REPO, "rev-parse", "HEAD").stdout.strip()
    if not head:
        pytest.skip("the repository has no commit to install the hook from")
    work = tmp_path / "work"
    work.mkdir()
    assert git(work, "init", "-q").returncode == 0
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {REPO}\n  rev: {head}\n  hooks:\n  - id: ckptdoctor\n    args: [--torch, '2.6']\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pc-home"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    r = subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=work, capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr

    # a plain state_dict passes
    torch.save({"w": torch.ones(3)}, work / "good.pt")
    git(work, "add", ".")
    r = subprocess.run(["git", "commit", "-qm", "good"], cwd=work, capture_output=True, text=True,
                       env={**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x.invalid"})
    assert r.returncode == 0, r.stdout + r.stderr

    # a canary payload is blocked, and the canary is never created
    (work / "evil.pt").write_bytes(CANARY_PAYLOAD)
    git(work, "add", "evil.pt")
    r = subprocess.run(["git", "commit", "-qm", "evil"], cwd=work, capture_output=True, text=True,
                       env={**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x.invalid"})
    assert r.returncode != 0, r.stdout + r.stderr
    assert "evil.pt" in r.stdout + r.stderr
    assert not (work / "CANARY_CREATED").exists()
    assert git(work, "log", "--oneline").stdout.count("\n") == 1
