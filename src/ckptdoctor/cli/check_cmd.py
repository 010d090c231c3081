"""`ckptdoctor check`: will this file load in that environment, and if not, why and how to fix it."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ckptdoctor.cli.exitcodes import ExitCode

EPILOG = """Examples:

  ckptdoctor check model.pt                          # this environment (installed torch/numpy)

  ckptdoctor check model.pt --torch 2.6              # torch 2.6 defaults (weights_only=True)

  ckptdoctor check model.pt --torch 1.13 --no-weights-only --numpy 1.24

  ckptdoctor check entire_model.pth --no-weights-only --python-path ./src

  ckptdoctor check ckpt.pt --device cpu --map-location cpu --sarif > check.sarif

Exit codes: 0 loads; 1 will not load (findings say why and how to fix); 2 cannot read (impostor,
damaged file, bad arguments).
"""


def register(app: typer.Typer) -> None:
    app.command("check", epilog=EPILOG)(check)


def check(
    path: Annotated[str, typer.Argument(help="Checkpoint file (any format) or a DCP folder.")],
    torch_version: Annotated[str | None, typer.Option("--torch", help="Target torch version (default: installed).")]
    = None,
    numpy_version: Annotated[str | None, typer.Option("--numpy", help="Target numpy version (default: installed).")]
    = None,
    python_path: Annotated[list[str] | None, typer.Option("--python-path", help="Directory with the user's code, "
                           "searched for pickled classes (parsed, never imported). Repeatable.")] = None,
    weights_only: Annotated[bool | None, typer.Option("--weights-only/--no-weights-only",
                            help="torch.load's weights_only (default: torch's default, True from 2.6).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="What the target has: cpu, cuda, cuda:N "
                      "(GPUs 0..N). Default: this machine.")] = None,
    map_location: Annotated[str | None, typer.Option("--map-location", help="map_location given to torch.load "
                            "(e.g. cpu).")] = None,
    loader: Annotated[str | None, typer.Option("--loader", help="torch.load (default) or torch.jit.load.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    as_sarif: Annotated[bool, typer.Option("--sarif", help="Print SARIF 2.1.0.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Also informational findings and evidence.")]
    = False,
) -> None:
    """Predict whether torch.load loads the file in a target environment: every cause, with a fix for each."""
    from ckptdoctor.check import Target
    from ckptdoctor.check import check as run_check

    if as_json and as_sarif:
        print("ckptdoctor check: choose one of --json and --sarif", file=sys.stderr)
        raise typer.Exit(ExitCode.USAGE)
    try:
        target = Target.current(torch=torch_version, numpy=numpy_version, weights_only=weights_only,
                                device=device, map_location=map_location, python_path=tuple(python_path or ()),
                                loader=loader)
    except ValueError as e:
        print(f"ckptdoctor check: {e}", file=sys.stderr)
        raise typer.Exit(ExitCode.USAGE) from None
    for d in target.python_path:
        import os

        if not os.path.isdir(d):
            print(f"ckptdoctor check: --python-path {d}: not a directory", file=sys.stderr)
            raise typer.Exit(ExitCode.USAGE)
    try:
        result = run_check(path, target)
    except OSError as e:
        from ckptdoctor.cli.errors import one_line

        print(f"ckptdoctor check: {one_line(e)}", file=sys.stderr)
        raise typer.Exit(ExitCode.UNREADABLE) from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    elif as_sarif:
        from ckptdoctor.report.sarif import to_sarif

        log = to_sarif(((result.path, f) for f in result.findings),
                       invocation={"commandLine": " ".join(["ckptdoctor", *sys.argv[1:]])},
                       properties={"target": result.target.to_dict(), "loads": result.loads,
                                   "predicted_error": result.predicted_error})
        sys.stdout.write(json.dumps(log, indent=1, default=str) + "\n")
    else:
        from rich.console import Console

        from ckptdoctor.report.findings_text import render_check

        render_check(result, Console(highlight=False, soft_wrap=False), verbose=verbose)
        if not result.readable:
            print(f"ckptdoctor: cannot read: {result.findings[0].title if result.findings else path}",
                  file=sys.stderr)
    raise typer.Exit(result.exit_code)
