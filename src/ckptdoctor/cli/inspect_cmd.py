"""`ckptdoctor inspect`: show what is inside a checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer

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
    from ckptdoctor.report.inspect_command import run_inspect

    code = run_inspect(path, as_json=as_json, with_hash=with_hash, depth=depth, show_all=show_all,
                       tree_depth=tree_depth, load=load)
    if code:
        raise typer.Exit(code)
