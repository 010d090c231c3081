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
    try:
        result = app(standalone_mode=False)
    except SystemExit as e:  # typer/click exits
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BaseException as e:  # noqa: BLE001 - this is the edge: no tracebacks for users
        import click

        if isinstance(e, click.exceptions.Exit):
            return e.exit_code
        if isinstance(e, click.ClickException):
            e.show()
            return ExitCode.USAGE
        if isinstance(e, click.exceptions.Abort):
            return 130
        if os.environ.get("CKPTDOCTOR_DEBUG"):
            raise
        print(f"ckptdoctor: error: {one_line(e)}", file=sys.stderr)
        return ExitCode.UNREADABLE
    return int(result or 0)
