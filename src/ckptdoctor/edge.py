"""The command line's edge, without the CLI framework: any error becomes one line and exit code 2.

Used by the console script before typer is imported (``ckptdoctor.__main__``) and by
``ckptdoctor.cli.errors`` after; nothing here imports typer, click or pydantic.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_OK = 0
EXIT_UNREADABLE = 2  # could not read the input (the one-line reason is on stderr); also bad usage
EXIT_INTERRUPTED = 130


def one_line(err: BaseException) -> str:
    """What went wrong, on one line, for a user (never a traceback)."""
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


def guarded(run: Callable[[], object]) -> int:
    """Call ``run`` (a typer app in standalone mode, or a command function) and return an exit code:
    ``SystemExit`` codes pass through; any other exception becomes ``ckptdoctor: error: <one line>``
    and 2 (``CKPTDOCTOR_DEBUG=1`` re-raises it instead)."""
    try:
        run()
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_UNREADABLE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as e:  # noqa: BLE001 - this is the edge: no tracebacks for users
        if os.environ.get("CKPTDOCTOR_DEBUG"):
            raise
        print(f"ckptdoctor: error: {one_line(e)}", file=sys.stderr)
        return EXIT_UNREADABLE
    return EXIT_OK
