"""`ckptdoctor inspect --load`: one line about what torch objects were built."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str, block_torch: bool = False):
    """In-process (torch is already imported by the tests); in a subprocess with torch blocked."""
    if block_torch:
        code = ("import sys; sys.modules['torch'] = None; from ckptdoctor.cli import main; "
                f"sys.argv = ['ckptdoctor', *{list(args)!r}]; main()")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    from typer.testing import CliRunner

    from ckptdoctor.cli import app

    try:
        runner = CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:
        runner = CliRunner()
    r = runner.invoke(app, list(args))
    r.returncode = r.exit_code
    return r


@pytest.fixture(scope="module")
def files(tmp_path_factory, torch):
    d = tmp_path_factory.mktemp("cli")
    nn = torch.nn
    torch.save({"w": torch.ones(3), "p": nn.Parameter(torch.zeros(2))}, d / "sd.pt")
    torch.save(nn.Sequential(nn.Linear(2, 2)), d / "model.pt", _use_new_zipfile_serialization=False)
    return d


def test_load_prints_one_summary_line(files):
    r = run("inspect", str(files / "sd.pt"), "--load")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("loaded zip into torch in ")
    assert "2 tensors (1 Parameters) in 2 storages" in last and "2 zero-copy" in last


def test_load_names_what_was_replaced(files):
    r = run("inspect", str(files / "model.pt"), "--load")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("loaded legacy into torch")
    assert "torch.nn.modules.container.Sequential -> its state_dict()" in r.stderr


def test_json_stays_pure(files):
    r = run("inspect", str(files / "sd.pt"), "--json", "--load")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)
    assert "loaded zip into torch" in r.stderr


def test_without_torch_says_what_to_install(files):
    r = run("inspect", str(files / "sd.pt"), "--load", block_torch=True)
    assert r.returncode == 2
    assert "ckptdoctor[torch]" in r.stderr
    assert "w" in r.stdout  # the inspect report itself still printed
