"""`ckptdoctor inspect`: show what is inside a checkpoint."""

from __future__ import annotations

import json
import sys
from typing import Annotated, NoReturn

import typer

from ckptdoctor.cli.exitcodes import ExitCode

EPILOG = """Examples:

  ckptdoctor inspect model.pt                 # summary and tensor table

  ckptdoctor inspect model.pt --depth 2       # group tensors by the first 2 path parts

  ckptdoctor inspect model.pt --json --hash   # machine-readable, with sha256 of every tensor

  ckptdoctor inspect model.pt --load          # also build it in torch (no pickle code runs)

Exit codes: 0 read fine; 2 cannot read (the reason is printed on one line).
"""


def register(app: typer.Typer) -> None:
    app.command("inspect", epilog=EPILOG)(inspect)


def inspect(
    path: Annotated[str, typer.Argument(help="Checkpoint file (any format), a DCP folder, or an fsspec URL.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report (see docs/inspect.md).")] = False,
    with_hash: Annotated[bool, typer.Option("--hash", help="sha256 of every tensor's bytes (reads all data).")] = False,
    depth: Annotated[int | None, typer.Option("--depth", help="Group tensors by the first N path parts.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="List every tensor (default: first 200).")] = False,
    tree_depth: Annotated[int, typer.Option("--tree-depth", help="Depth of the value tree in --json.")] = 4,
    load: Annotated[bool, typer.Option("--load", help="Also build it in torch with ckptdoctor.load (torch extra, "
                                                      "onto the CPU) and print one line about what was built.")] = False,
) -> None:
    """Show what is inside a checkpoint, without executing any of it."""
    import ckptdoctor
    from ckptdoctor.errors import UnreadableFile
    from ckptdoctor.report.inspect_report import build_report

    try:
        ckpt = ckptdoctor.open(path)
    except UnreadableFile as e:
        if as_json:
            _refuse_json(path, e)
        print(f"ckptdoctor: cannot read: {e}", file=sys.stderr)
        raise typer.Exit(ExitCode.UNREADABLE) from None
    except Exception as e:  # limits (bombs), missing or unreadable paths: --json still gets its document
        if as_json:
            _refuse_json(path, e)
        raise
    with ckpt:
        progress = None
        try:
            if with_hash and not as_json and sys.stderr.isatty():
                progress = _progress_bar(sum(t.nbytes for _, t in ckpt.tensors()))
            report = build_report(ckpt, with_hash=with_hash, tree_depth=tree_depth,
                                  progress=progress.advance if progress else None)
        except Exception as e:  # the tensor walk's limits, data that is not all there (--hash)
            if as_json:
                _refuse_json(path, e, ckpt.format)
            raise
        finally:
            if progress:
                progress.stop()
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
            raise typer.Exit(code)


def _refuse_json(path: str, err: Exception, fmt: str | None = None) -> NoReturn:
    """The error document on stdout and the one-line reason on stderr; exit 2 (see docs/inspect.md)."""
    from ckptdoctor.cli.errors import one_line
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
    doc = error_report(path, kind, message, **getattr(err, "fields", {}))
    doc["error_code"] = getattr(err, "code", None) or kind
    print(json.dumps(doc, indent=2))
    lead = "cannot read" if isinstance(err, UnreadableFile) else "error"
    print(f"ckptdoctor: {lead}: {message}", file=sys.stderr)
    raise typer.Exit(ExitCode.UNREADABLE) from None


class _progress_bar:
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
