"""The ``ckptdoctor`` console script (and ``python -m ckptdoctor``).

The spellings scripts run once per file go straight to the typer-free functions that do the work:

* ``inspect FILE [--json] [--hash] [--all]`` -> :func:`ckptdoctor.report.inspect_command.run_inspect`
* ``check FILE [--torch V] [--numpy V] [--weights-only | --no-weights-only] [--device D]
  [--map-location L] [--loader L] [--json | --sarif] [-v]`` -> :func:`ckptdoctor.report.check_command.run_check`
* ``convert IN -o OUT [--to C] [--torch V] [--keep-objects] [--no-verify] [--record] [--json]``
  -> :func:`ckptdoctor.report.fix_command.run_convert`
* ``fix IN -o OUT [--torch V] [--plan] [--step S]... [--extract-state-dict [--key K]] [--rename R]...
  [--to C] [--record] [--json] [--no-verify]`` -> :func:`ckptdoctor.report.fix_command.run_fix`

Importing typer and click (~30 ms) and typer's pydantic-based parameter coercion (~100 ms) would
otherwise be most of their run time. Every other command line (``--help``, ``--opt=value``, other
options or commands) goes to the typer app in :mod:`ckptdoctor.cli`, whose commands call the same
functions; ``tests/core/test_inspect_cli.py`` and ``tests/check/test_check_cli_fast.py`` check that
both paths give identical output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FastCommand:
    """A command's direct spelling: one positional FILE, flags (option -> (keyword, value)), and
    options that take one value (option -> keyword), each given at most once."""

    module: str
    function: str
    flags: dict[str, tuple[str, Any]] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    required: tuple[str, ...] = ()  # keywords that must be given (else typer reports the usage error)
    multi: dict[str, str] = field(default_factory=dict)  # repeatable options, collected into a tuple


FAST_COMMANDS = {
    "inspect": FastCommand(
        "ckptdoctor.report.inspect_command", "run_inspect",
        flags={"--json": ("as_json", True), "--hash": ("with_hash", True), "--all": ("show_all", True)},
    ),
    "check": FastCommand(
        "ckptdoctor.report.check_command", "run_check",
        flags={"--json": ("as_json", True), "--sarif": ("as_sarif", True), "-v": ("verbose", True),
               "--verbose": ("verbose", True), "--weights-only": ("weights_only", True),
               "--no-weights-only": ("weights_only", False)},
        options={"--torch": "torch_version", "--numpy": "numpy_version", "--device": "device",
                 "--map-location": "map_location", "--loader": "loader"},
    ),
    "convert": FastCommand(
        "ckptdoctor.report.fix_command", "run_convert",
        flags={"--json": ("as_json", True), "--record": ("record", True), "--no-verify": ("no_verify", True),
               "--keep-objects": ("keep_objects", True)},
        options={"-o": "output", "--output": "output", "--to": "to", "--torch": "torch_version"},
        required=("output",),
    ),
    "fix": FastCommand(
        "ckptdoctor.report.fix_command", "run_fix",
        flags={"--json": ("as_json", True), "--record": ("record", True), "--no-verify": ("no_verify", True),
               "--plan": ("plan", True), "--extract-state-dict": ("extract", True)},
        options={"-o": "output", "--output": "output", "--to": "to", "--torch": "torch_version", "--key": "key"},
        multi={"--step": "steps", "--rename": "renames"},
        required=("output",),
    ),
}


def parse_fast(argv: list[str]) -> tuple[FastCommand, str, dict[str, Any]] | None:
    """(command, FILE, keyword arguments) for a direct spelling, else None (typer parses it)."""
    if not argv or argv[0] not in FAST_COMMANDS:
        return None
    cmd = FAST_COMMANDS[argv[0]]
    paths: list[str] = []
    kwargs: dict[str, Any] = {}
    rest = iter(argv[1:])
    for arg in rest:
        if arg in cmd.multi:
            value = next(rest, None)
            if value is None or value.startswith("-"):
                return None
            kwargs[cmd.multi[arg]] = (*kwargs.get(cmd.multi[arg], ()), value)
            continue
        if arg in cmd.flags:
            key, value = cmd.flags[arg]
        elif arg in cmd.options:
            key, value = cmd.options[arg], next(rest, None)
            if value is None or value.startswith("-"):
                return None
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            paths.append(arg)
            continue
        if key in kwargs:  # repeated or contradictory: let typer decide what that means
            return None
        kwargs[key] = value
    if len(paths) != 1 or not all(k in kwargs for k in cmd.required):
        return None
    return cmd, paths[0], kwargs


def fast_dispatch(argv: list[str]) -> Callable[[], None] | None:
    """The direct call for a direct spelling (see :func:`parse_fast`), else None."""
    parsed = parse_fast(argv)
    if parsed is None:
        return None
    cmd, path, kwargs = parsed

    def run() -> None:
        import importlib

        func = getattr(importlib.import_module(cmd.module), cmd.function)
        sys.exit(func(path, **kwargs))

    return run


def main() -> None:
    """Console-script entry point. Never lets a traceback reach the user."""
    from ckptdoctor.edge import guarded

    run = fast_dispatch(sys.argv[1:])
    if run is None:
        from ckptdoctor.cli import app

        run = app
    sys.exit(guarded(run))


if __name__ == "__main__":
    main()
