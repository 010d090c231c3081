"""``ckptdoctor check``: the console script's direct dispatch (``ckptdoctor.__main__``: no typer, no
click, no pydantic) gives exactly what typer's path gives for every direct spelling."""

from __future__ import annotations

import argparse
import json

import pytest

from ckptdoctor.__main__ import parse_fast


@pytest.fixture(scope="module")
def files(tmp_path_factory, torch):
    d = tmp_path_factory.mktemp("checkcli")
    plain, ns = d / "plain.pt", d / "namespace.pt"
    torch.save({"w": torch.ones(2, 3)}, plain)
    torch.save({"w": torch.ones(2), "args": argparse.Namespace(lr=0.1)}, ns)
    return {"plain": plain, "namespace": ns}


def typer_spelling(args: list[str]) -> list[str]:
    """The same request in a spelling the direct path leaves to typer (``--opt=value``)."""
    out, it = [], iter(args)
    for a in it:
        out.append(f"{a}={next(it)}" if a in ("--torch", "--numpy", "--device", "--map-location") else a)
    if out == args:
        out.append("--torch=2.13")
    return out


CASES = [
    ("plain", ["--torch", "2.13"]),
    ("plain", ["--torch", "2.13", "--json"]),
    ("namespace", ["--torch", "2.6"]),
    ("namespace", ["--torch", "2.6", "--json"]),
    ("namespace", ["--torch", "2.4", "--no-weights-only", "--device", "cpu", "-v"]),
    ("namespace", ["--torch", "2.13", "--sarif"]),
]


@pytest.mark.parametrize("name,args", CASES)
def test_direct_dispatch_matches_typer(files, run_main, name, args):
    fast, fast_modules = run_main("check", str(files[name]), *args)
    slow, slow_modules = run_main("check", str(files[name]), *typer_spelling(args))
    assert not {"typer", "click", "pydantic"} & fast_modules
    assert "pydantic" in slow_modules  # typer's path really is the other one
    if "--sarif" in args:  # the SARIF log records the command line, which differs by construction
        a, b = json.loads(fast.stdout), json.loads(slow.stdout)
        for log in (a, b):
            for r in log["runs"]:
                for inv in r.get("invocations", []):
                    inv.pop("commandLine", None)
        assert a == b
    else:
        assert fast.stdout == slow.stdout
    assert (fast.returncode, fast.stderr) == (slow.returncode, slow.stderr)
    assert fast.returncode == (0 if name == "plain" or "--no-weights-only" in args else 1)


def test_errors_match_typer(tmp_path, run_main):
    missing = str(tmp_path / "nope.pt")
    for args in (["--torch", "2.6"], ["--torch", "nonsense"], ["--json", "--sarif"]):
        fast, _ = run_main("check", missing, *args)
        slow, _ = run_main("check", missing, *typer_spelling(args))
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
        assert fast.returncode == 2


@pytest.mark.parametrize("argv", [
    ["check"], ["check", "a.pt", "b.pt"], ["check", "a.pt", "--torch"], ["check", "a.pt", "--torch", "--json"],
    ["check", "a.pt", "--json", "--json"], ["check", "a.pt", "--weights-only", "--no-weights-only"],
    ["check", "a.pt", "--python-path", "src"], ["check", "--help"], ["check", "a.pt", "--torch=2.6"],
    ["inspect", "a.pt", "--depth", "2"], ["fix", "a.pt"],
])
def test_other_spellings_go_through_typer(argv):
    assert parse_fast(argv) is None


def test_direct_spellings_parse():
    cmd, path, kw = parse_fast(["check", "m.pt", "--torch", "2.6", "--no-weights-only", "--json"])
    assert (cmd.function, path, kw) == ("run_check", "m.pt", {"torch_version": "2.6", "weights_only": False,
                                                              "as_json": True})
