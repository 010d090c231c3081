"""Turn any error into a one-line message and an exit code (the CLI's edge)."""

from __future__ import annotations

import typer

from ckptdoctor.edge import guarded
from ckptdoctor.edge import one_line as _one_line


def one_line(err: BaseException) -> str:
    """See :func:`ckptdoctor.edge.one_line` (kept here for existing callers)."""
    return _one_line(err)


def run_guarded(app: typer.Typer) -> int:
    """Run the typer app; usage errors are typer's (exit 2), anything else becomes one line (exit 2)."""
    return guarded(app)  # standalone mode: --help, usage errors and typer.Exit arrive as SystemExit
