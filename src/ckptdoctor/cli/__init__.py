"""ckptdoctor command line.

Each command lives in its own module with a ``register(app)`` function; this
file only lists them. Heavy imports happen inside the commands so that
``ckptdoctor --help`` starts fast.
"""

from __future__ import annotations

import sys

import typer

import ckptdoctor.cli.env_cmd as env_cmd
import ckptdoctor.cli.identify_cmd as identify_cmd
from ckptdoctor.cli import check_cmd, convert_cmd, diff_cmd, fix_cmd, inspect_cmd, match_cmd, scan_cmd

app = typer.Typer(
    name="ckptdoctor",
    help=(
        "Open, diagnose and repair PyTorch checkpoints without executing pickle code.\n\n"
        "Examples:\n\n"
        "  ckptdoctor inspect model.pt\n\n"
        "  ckptdoctor inspect model.pt --json --hash\n\n"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

# One line per command module; each adds its own command(s) to `app`.
COMMAND_MODULES = [
    inspect_cmd,
    scan_cmd,
    diff_cmd,
    fix_cmd,
    convert_cmd,
    match_cmd,
    check_cmd,
    env_cmd,
    identify_cmd,
]



@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """Open, diagnose and repair PyTorch checkpoints without executing pickle code."""
    if version:
        from ckptdoctor import __version__

        print(f"ckptdoctor {__version__}")
        raise typer.Exit(0)


for _module in COMMAND_MODULES:
    _module.register(app)


def main() -> None:
    """Console-script entry point. Never lets a traceback reach the user."""
    from ckptdoctor.cli.errors import run_guarded

    sys.exit(run_guarded(_fast_inspect(sys.argv[1:]) or app))


FAST_INSPECT_FLAGS = {"--json": "as_json", "--hash": "with_hash", "--all": "show_all"}


def _fast_inspect(argv: list[str]):
    """``inspect FILE [--json] [--hash] [--all]`` (what scripts run, often per file) calls the command
    function directly: typer's parameter coercion imports pydantic (~100 ms, a third of the budget).
    Same function, same defaults, same output; any other spelling goes through typer."""
    if not argv or argv[0] != "inspect":
        return None
    paths = [a for a in argv[1:] if not a.startswith("-")]
    flags = [a for a in argv[1:] if a.startswith("-")]
    if len(paths) != 1 or len(set(flags)) != len(flags) or not set(flags) <= FAST_INSPECT_FLAGS.keys():
        return None

    def run() -> None:
        try:
            inspect_cmd.inspect(paths[0], **{FAST_INSPECT_FLAGS[f]: True for f in flags})
        except typer.Exit as e:
            raise SystemExit(e.exit_code) from None

    return run
