"""`ckptdoctor check`: will this file load in that environment, and if not, why and how to fix it."""

from __future__ import annotations

from typing import Annotated

import typer

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
    from ckptdoctor.report.check_command import run_check

    raise typer.Exit(run_check(path, torch_version=torch_version, numpy_version=numpy_version,
                               python_path=tuple(python_path or ()), weights_only=weights_only, device=device,
                               map_location=map_location, loader=loader, as_json=as_json, as_sarif=as_sarif,
                               verbose=verbose))
