"""``ckptdoctor inspect``: the console script's direct dispatch of ``inspect FILE [--json] [--hash] [--all]``
(``ckptdoctor.__main__``: no typer, no click, no pydantic) gives exactly what typer's path gives, and
reading a structure imports no numpy."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def sample(tmp_path_factory, torch):
    p = tmp_path_factory.mktemp("cli") / "sample.pt"
    torch.save({"a": {"w": torch.arange(6.0).reshape(2, 3)}, "b": [torch.ones(2, dtype=torch.bfloat16)], "n": 3}, p)
    return p


@pytest.mark.parametrize("flags", [["--json"], [], ["--all", "--json", "--hash"]])
def test_direct_dispatch_matches_typer(flags, sample, run_main):
    fast, fast_modules = run_main("inspect", str(sample), *flags)
    slow, slow_modules = run_main("inspect", str(sample), *flags, "--tree-depth", "4")  # the default, via typer
    assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
    assert fast.returncode == 0
    assert "pydantic" in slow_modules  # typer's path really is the other one
    assert not {"typer", "click", "pydantic"} & fast_modules
    assert ("numpy" in fast_modules) == ("--hash" in flags)  # structure needs no numpy; hashing bytes does


@pytest.mark.parametrize("target", ["missing", "empty"])
def test_direct_dispatch_errors_match_typer(target, tmp_path, run_main):
    p = tmp_path / "empty.pt"
    p.write_bytes(b"")
    path = str(p) if target == "empty" else str(tmp_path / "nope.pt")
    for flags in (["--json"], []):
        fast, _ = run_main("inspect", path, *flags)
        slow, _ = run_main("inspect", path, *flags, "--tree-depth", "4")
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr)
        assert fast.returncode == 2 and fast.stderr.startswith("ckptdoctor:")


def test_other_spellings_go_through_typer(run_main):
    r, modules = run_main("inspect", "--help")
    assert r.returncode == 0 and "Usage" in r.stdout and "numpy" not in modules


def test_console_script_is_the_fast_entry():
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "ckptdoctor"]
    assert ep.value == "ckptdoctor.__main__:main"
