"""``ckptdoctor convert`` and ``fix``: the console script's direct dispatch (no typer, click or
pydantic) prints what typer's path prints, writes the same file, and exits the same way."""

from __future__ import annotations

import json
import os
import re

import pytest

from ckptdoctor.__main__ import parse_fast


def normalise(text: str) -> str:
    return re.sub(r" in \d+\.\d+s", " in <t>s", text)


def assert_same_output(fast, slow, *, as_json: bool) -> None:
    """Both runs printed the same, up to the time they took."""
    if as_json:
        a, b = json.loads(fast.stdout), json.loads(slow.stdout)
        a.pop("seconds"), b.pop("seconds")
        assert a == b
    else:
        assert normalise(fast.stdout) == normalise(slow.stdout)
    assert fast.stderr == slow.stderr


@pytest.mark.parametrize("suffix,args", [
    (".safetensors", []), (".pt", ["--to", "legacy", "--json"]), (".pt", ["--torch", "1.4"]),
    (".pt", ["--to", "zip", "--record"]),
])
def test_direct_dispatch_matches_typer(fixtures, tmp_path, run_main, suffix, args):
    src = str(fixtures["views"]["zip"])
    out = str(tmp_path / f"out{suffix}")
    fast, fast_modules = run_main("convert", src, "-o", out, *args)
    fast_bytes = open(out, "rb").read()
    slow, slow_modules = run_main("convert", src, f"--output={out}", *args)
    assert not {"typer", "click", "pydantic"} & fast_modules
    assert "pydantic" in slow_modules
    assert fast.returncode == slow.returncode == 0, fast.stderr
    assert_same_output(fast, slow, as_json="--json" in args)
    assert open(out, "rb").read() == fast_bytes  # both runs wrote the same bytes


def test_errors_match_typer(tmp_path, run_main):
    missing = str(tmp_path / "nope.pt")
    out = str(tmp_path / "o.pt")
    fast, _ = run_main("convert", missing, "-o", out)
    slow, _ = run_main("convert", missing, f"--output={out}")
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert fast.returncode == 2


@pytest.mark.parametrize("argv", [
    ["convert", "a.pt"], ["convert", "a.pt", "-o"], ["convert", "a.pt", "-o", "b", "--output", "c"],
    ["convert", "a.pt", "-o", "b", "--help"], ["convert", "a.pt", "--output=b"],
    ["fix", "a.pt", "-o", "b", "--rename"], ["fix", "a.pt", "-o", "b", "--plan", "--plan"], ["fix", "a.pt"],
])
def test_other_spellings_go_through_typer(argv):
    assert parse_fast(argv) is None


@pytest.mark.parametrize("args", [
    [], ["--plan"], ["--json"], ["--step", "to-cpu", "--step", "weights-only-safe"],
    ["--rename", "re:^=model.", "--rename", "model.=net."], ["--torch", "1.4", "--record"],
    ["--key", "x"],  # a usage error (--key without --extract-state-dict): same message and code
])
def test_fix_direct_dispatch_matches_typer(fixtures, tmp_path, run_main, args):
    src = str(fixtures["views"]["zip"])
    out = str(tmp_path / "out.pt")
    fast, fast_modules = run_main("fix", src, "-o", out, *args)
    fast_bytes = open(out, "rb").read() if os.path.exists(out) else None
    if os.path.exists(out):
        os.unlink(out)
    slow, slow_modules = run_main("fix", src, f"--output={out}", *args)
    assert not {"typer", "click", "pydantic"} & fast_modules
    assert "pydantic" in slow_modules
    assert fast.returncode == slow.returncode, (fast.stderr, slow.stderr)
    assert_same_output(fast, slow, as_json="--json" in args)
    slow_bytes = open(out, "rb").read() if os.path.exists(out) else None
    assert fast_bytes == slow_bytes
