"""Turn any error into a one-line message and an exit code (the CLI's edge)."""

from __future__ import annotations

import os
import sys

import typer

from ckptdoctor.cli.exitcodes import ExitCode


def one_line(err: BaseException) -> str:
    from ckptdoctor.errors import CkptdoctorError

    if isinstance(err, CkptdoctorError):
        return str(err)
    if isinstance(err, FileNotFoundError):
        return f"no such file: {err.filename}"
    if isinstance(err, IsADirectoryError):
        return f"is a directory, not a checkpoint file: {err.filename}"
    if isinstance(err, PermissionError):
        return f"permission denied: {err.filename} (check the file's mode or run as a user who can read it)"
    if isinstance(err, MemoryError):
        return "ran out of memory: the file claims absurd sizes (likely malformed or a bomb)"
    if isinstance(err, RecursionError):
        return "structure nested too deeply (likely malformed or a bomb)"
    if isinstance(err, OSError):
        return f"cannot read {getattr(err, 'filename', '') or 'file'}: {err.strerror or err}"
    return f"internal error ({type(err).__name__}): {err}. Please report this with the file if you can."


def run_guarded(app: typer.Typer) -> int:
    """Run the typer app; usage errors are typer's (exit 2), anything else becomes one line (exit 2)."""
    try:
        app()  # standalone mode: handles --help, usage errors and typer.Exit by raising SystemExit
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException as e:  # noqa: BLE001 - this is the edge: no tracebacks for users
        if os.environ.get("CKPTDOCTOR_DEBUG"):
            raise
        print(f"ckptdoctor: error: {one_line(e)}", file=sys.stderr)
        return ExitCode.UNREADABLE
    return 0
