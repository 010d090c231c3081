"""ckptdoctor command line.

Each command lives in its own module with a ``register(app)`` function; this
file only lists them. Heavy imports happen inside the commands so that
``ckptdoctor --help`` starts fast.
"""

from __future__ import annotations

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
        "  ckptdoctor check model.pt --torch 2.6\n\n"
        "  ckptdoctor fix model.pt -o fixed.pt --torch 2.6\n\n"
        "  ckptdoctor convert model.pt -o model.safetensors\n\n"
        "  ckptdoctor match ckpt.pt --to mypkg.models:build\n\n"
        "  ckptdoctor scan s3://bucket/models --db scan.sqlite\n\n"
        "  ckptdoctor report scan.sqlite --html report.html\n\n"
        "  ckptdoctor env\n\n"
        "Run 'ckptdoctor COMMAND --help' for a command's options and examples.\n\n"
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
    """Console-script entry point (the installed script calls :func:`ckptdoctor.__main__.main`,
    which reaches this app only when the command line needs typer). Never lets a traceback out."""
    from ckptdoctor.__main__ import main as entry

    entry()
