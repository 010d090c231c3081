"""`ckptdoctor convert`: change the container (zip, legacy, safetensors), verified."""

from __future__ import annotations

from typing import Annotated

import typer

from ckptdoctor.cli.fix_cmd import JsonOpt, NoVerifyOpt, OutOpt, RecordOpt, ToOpt, TorchOpt

CONVERT_EPILOG = """Examples:

  ckptdoctor convert model.pt -o model.safetensors          # tensors only, by dotted name

  ckptdoctor convert old.pt -o new.pt --to zip              # legacy/tar/TorchScript -> torch zip

  ckptdoctor convert new.pt -o old.pt --to legacy           # for torch <= 1.5

  ckptdoctor convert model.pt -o old.pt --to legacy --keep-objects   # keep pickled objects as they are

The result loads with torch.load(weights_only=True) (TorchScript and whole models become their
state_dict; other objects become plain data) unless --keep-objects.

Exit codes: 0 written and verified; 1 verification failed (nothing written); 2 cannot read the
input or cannot write that container (one-line reason, nothing written).
"""


def register(app: typer.Typer) -> None:
    app.command("convert", epilog=CONVERT_EPILOG)(convert)


def convert(
    path: Annotated[str, typer.Argument(help="Checkpoint to convert (any format ckptdoctor reads).")],
    output: OutOpt,
    to: ToOpt = None,
    keep_objects: Annotated[bool, typer.Option("--keep-objects", help="Write pickled objects back as they are "
                                               "(needs weights_only=False and their classes to load).")] = False,
    torch_version: TorchOpt = None,
    record: RecordOpt = False,
    no_verify: NoVerifyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Rewrite a checkpoint in another container, streaming its tensors, verified tensor by tensor."""
    from ckptdoctor.report.fix_command import run_convert

    raise typer.Exit(run_convert(path, output=output, to=to, keep_objects=keep_objects, torch_version=torch_version,
                                 record=record, no_verify=no_verify, as_json=as_json))
