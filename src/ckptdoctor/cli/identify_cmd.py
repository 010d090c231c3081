"""`ckptdoctor identify FILE`: is this a known pretrained weights file, intact?"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

EPILOG = """Examples:

  ckptdoctor identify ~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth

  ckptdoctor identify weights/*.pth --json

Exit codes: 0 no error findings; 1 a file's content does not match the hash in its name; 2 unreadable.
"""


def register(app: typer.Typer) -> None:
    app.command("identify", epilog=EPILOG)(identify)


def identify(
    files: Annotated[list[str], typer.Argument(help="Weight files to hash and look up.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
) -> None:
    """Recognise torchvision / torch.hub weight files by sha256; report corrupted or modified files."""
    from ckptdoctor.findings import Severity
    from ckptdoctor.identify import identify as run

    results = [run(f) for f in files]
    if as_json:
        payload = [r.to_dict() for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=1))
    else:
        from rich.console import Console

        con = Console(highlight=False)
        colours = {"info": "cyan", "warning": "yellow", "error": "red", "critical": "bold red"}
        for r in results:
            con.print(f"[bold]{r.path}[/bold]  sha256 {r.sha256}  ({r.size} bytes)")
            for f in r.findings:
                c = colours.get(f.severity.label, "white")
                con.print(f"  [{c}]{f.severity.label:8s}[/{c}] {f.id}: {f.title}")
                con.print(f"           {f.explanation}", soft_wrap=True)
                if f.fix and (f.fix.command or f.fix.python):
                    con.print(f"           fix: {f.fix.summary}: [bold]{f.fix.command or f.fix.python}[/bold]",
                              soft_wrap=True)
    sys.stdout.flush()
    bad = any(f.severity >= Severity.ERROR for r in results for f in r.findings)
    raise typer.Exit(1 if bad else 0)
