"""`ckptdoctor fix` and `ckptdoctor convert`: write a checkpoint that loads, verified."""

from __future__ import annotations

from typing import Annotated

import typer

FIX_EPILOG = """Examples:

  ckptdoctor fix model.pt -o model_fixed.pt                  # whatever stops torch from loading it

  ckptdoctor fix model.pt -o model_fixed.pt --plan           # show the steps and changes, write nothing

  ckptdoctor fix whole_model.pth -o sd.pt --extract-state-dict

  ckptdoctor fix ddp.pt -o sd.pt --rename 'module.='         # strip a prefix ('=model.' adds one)

  ckptdoctor fix model.pt -o old.pt --torch 1.4              # legacy format, dtypes torch 1.4 knows

  ckptdoctor fix ckpt.pt -o slim.pt --step drop-optimizer --step weights-only-safe

Steps: extract-state-dict, weights-only-safe, rename, strip-prefixes, numpy-core, py2-strings,
drop-num-batches-tracked, add-num-batches-tracked, drop-optimizer, to-cpu, container (see docs/fix.md).

Exit codes: 0 written and verified (or --plan); 1 verification failed (nothing written);
2 cannot read the input or cannot carry out the plan (one-line reason, nothing written).
"""

ToOpt = Annotated[str | None, typer.Option("--to", help="Output container: zip, legacy or safetensors "
                                           "(default: .safetensors from OUT's suffix; else fix keeps zip/legacy "
                                           "and convert writes zip; legacy for --torch < 1.6).")]
TorchOpt = Annotated[str | None, typer.Option("--torch", help="The torch version that must load the result "
                                              "(default 2.13).")]
RecordOpt = Annotated[bool, typer.Option("--record", help="Also write OUT.changes.json: steps, changes, "
                                         "verification.")]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip re-reading the output (not recommended).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the change record as JSON.")]
OutOpt = Annotated[str, typer.Option("-o", "--output", help="Output file (never the input).")]


def register(app: typer.Typer) -> None:
    app.command("fix", epilog=FIX_EPILOG)(fix)


def fix(
    path: Annotated[str, typer.Argument(help="Checkpoint to repair (any format ckptdoctor reads).")],
    output: OutOpt,
    torch_version: TorchOpt = None,
    plan: Annotated[bool, typer.Option("--plan", help="Print the steps and what each changes; write nothing.")] = False,
    step: Annotated[list[str] | None, typer.Option("--step", help="Run this step (repeatable, in order); "
                                                   "without steps ckptdoctor chooses them.")] = None,
    extract: Annotated[bool, typer.Option("--extract-state-dict", help="Keep only the model's state_dict.")] = False,
    key: Annotated[str | None, typer.Option("--key", help="With --extract-state-dict: the entry holding the model "
                                            "(e.g. ema, model.ema).")] = None,
    rename: Annotated[list[str] | None, typer.Option("--rename", help="Key rename rule: 'OLD=NEW', 'OLD=' "
                                                     "(strip), '=NEW' (add), 're:PATTERN=REPL' (repeatable).")] = None,
    to: ToOpt = None,
    record: RecordOpt = False,
    no_verify: NoVerifyOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a copy of a checkpoint that the target torch loads (weights_only=True), verified tensor by tensor."""
    from ckptdoctor.report.fix_command import run_fix

    raise typer.Exit(run_fix(path, output=output, torch_version=torch_version, plan=plan, steps=tuple(step or ()),
                             extract=extract, key=key, renames=tuple(rename or ()), to=to, record=record,
                             no_verify=no_verify, as_json=as_json))


def finish(verb: str, go, *, as_json: bool, plan: bool = False) -> None:
    """Run ``go()``, print the result, exit with the right code (shared by fix and convert)."""
    from ckptdoctor.report.fix_command import finish as run_and_print

    raise typer.Exit(run_and_print(verb, go, as_json=as_json, plan=plan))
