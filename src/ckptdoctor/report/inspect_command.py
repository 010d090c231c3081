"""The work of ``ckptdoctor inspect``, without the CLI framework (see docs/inspect.md).

``ckptdoctor.cli.inspect_cmd`` declares the options for typer; the console script calls
:func:`run_inspect` directly for ``inspect FILE [--json] [--hash] [--all]`` (``ckptdoctor.__main__``),
so the common, scripted call imports neither typer nor pydantic.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ckptdoctor.edge import EXIT_OK, EXIT_UNREADABLE, one_line


class Refused(Exception):
    """Raised after the error document and the stderr line are printed: exit 2."""


def run_inspect(path: str, *, as_json: bool = False, with_hash: bool = False, depth: int | None = None,
                show_all: bool = False, tree_depth: int = 4, load: bool = False) -> int:
    """Print the report (text or JSON) and return the exit code; errors other than unreadable files
    propagate to the caller's edge (``ckptdoctor.edge.guarded``), except with ``as_json``, where every
    error still prints a JSON error document first."""
    import ckptdoctor
    from ckptdoctor.errors import UnreadableFile
    from ckptdoctor.report.inspect_report import build_report

    try:
        try:
            ckpt = ckptdoctor.open(path)
        except UnreadableFile as e:
            if as_json:
                _refuse_json(path, e)
            print(f"ckptdoctor: cannot read: {e}", file=sys.stderr)
            return EXIT_UNREADABLE
        except Exception as e:  # limits (bombs), missing or unreadable paths: --json still gets its document
            if as_json:
                _refuse_json(path, e)
            raise
        with ckpt:
            progress = None
            try:
                if with_hash and not as_json and sys.stderr.isatty():
                    progress = _ProgressBar(sum(t.nbytes for _, t in ckpt.tensors()))
                report = build_report(ckpt, with_hash=with_hash, tree_depth=tree_depth,
                                      progress=progress.advance if progress else None)
            except Exception as e:  # the tensor walk's limits, data that is not all there (--hash)
                if as_json:
                    _refuse_json(path, e, ckpt.format)
                raise
            finally:
                if progress:
                    progress.stop()
    except Refused:
        return EXIT_UNREADABLE
    if as_json:
        sys.stdout.write(json.dumps(report, indent=1, default=str) + "\n")
    else:
        from rich.console import Console

        from ckptdoctor.report.inspect_text import render_inspect

        render_inspect(report, Console(highlight=False), depth=depth, limit=10**9 if show_all else 200)
    if load:
        from ckptdoctor.torchio.cli import print_load_summary

        code = print_load_summary(path, to_stderr=as_json)  # --json keeps stdout pure JSON
        if code:
            return int(code)
    return EXIT_OK


def _refuse_json(path: str, err: Exception, fmt: str | None = None) -> None:
    """The error document on stdout and the one-line reason on stderr, then :class:`Refused`."""
    from ckptdoctor.errors import LimitExceeded, UnreadableFile
    from ckptdoctor.report.inspect_report import error_report

    if fmt is not None:  # read, then refused while walking it: it is what it is
        kind = fmt
    elif isinstance(err, UnreadableFile):
        kind = err.kind
    elif isinstance(err, LimitExceeded):
        kind = "refused"
    elif isinstance(err, FileNotFoundError):
        kind = "missing"
    elif isinstance(err, PermissionError):
        kind = "permission-denied"
    else:
        kind = "error"
    message = one_line(err)
    doc: dict[str, Any] = error_report(path, kind, message, **getattr(err, "fields", {}))
    doc["error_code"] = getattr(err, "code", None) or kind
    print(json.dumps(doc, indent=2))
    lead = "cannot read" if isinstance(err, UnreadableFile) else "error"
    print(f"ckptdoctor: {lead}: {message}", file=sys.stderr)
    raise Refused from None


class _ProgressBar:
    """A rich progress bar over bytes hashed (only on a terminal)."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self._p = Progress("hashing", BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=True)
        self._task = self._p.add_task("hash", total=total)
        self._p.start()

    def advance(self, n: int) -> None:
        self._p.advance(self._task, n)

    def stop(self) -> None:
        self._p.stop()
