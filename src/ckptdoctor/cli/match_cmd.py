"""`ckptdoctor match CKPT --to TARGET`: which keys match, the mapping that makes them, and why not."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ckptdoctor.cli.exitcodes import ExitCode

EPILOG = """Examples:

  ckptdoctor match ddp.pt --to mypkg.models:resnet50        # a model built by your own code (needs torch)

  ckptdoctor match lightning.ckpt --to model.safetensors    # another checkpoint: its keys and shapes

  ckptdoctor match ckpt.pt --to keys.json --json            # {key: shape}; every key in the JSON output

  ckptdoctor match ckpt.pt --to mypkg:build --torch 1.11    # also: will its optimizer state work there?

TARGET: a checkpoint file (any format), a .json {key: shape} list, or module:callable (imported from
the current directory; the checkpoint itself is never unpickled).

Exit codes: 0 every key matches as saved and nothing else is wrong; 1 mismatches (see the report);
2 a side could not be read (one-line reason).
"""


def register(app: typer.Typer) -> None:
    app.command("match", epilog=EPILOG)(match)


def match(
    path: Annotated[str, typer.Argument(help="Checkpoint to check (any format ckptdoctor reads).")],
    to: Annotated[str, typer.Option("--to", help="Target: checkpoint, {key: shape} .json, or module:callable.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything (every key, mapping, findings) as JSON.")]
    = False,
    torch_version: Annotated[str | None, typer.Option("--torch", help="Also explain the optimizer state for this "
                                                      "torch version (e.g. 1.11).")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Use the state_dict at this entry (e.g. ema, "
                                            "model.module) instead of the best-matching one.")] = None,
) -> None:
    """Compare a checkpoint's state_dict with a model: missing/unexpected keys, inferred mapping, shapes."""
    from ckptdoctor.cli.errors import one_line
    from ckptdoctor.errors import CkptdoctorError, UnreadableFile
    from ckptdoctor.match import match as run
    from ckptdoctor.match.keys import MatchInputError
    from ckptdoctor.match.report import render_text

    try:
        rep = run(path, to, torch=torch_version, key=key)
    except MatchInputError as e:
        print(f"ckptdoctor match: {e}", file=sys.stderr)
        raise typer.Exit(ExitCode.UNREADABLE) from None
    except UnreadableFile as e:
        print(f"ckptdoctor: cannot read: {e}", file=sys.stderr)
        raise typer.Exit(ExitCode.UNREADABLE) from None
    except (CkptdoctorError, OSError, ValueError) as e:
        print(f"ckptdoctor match: {one_line(e)}", file=sys.stderr)
        raise typer.Exit(ExitCode.UNREADABLE) from None
    if as_json:
        sys.stdout.write(json.dumps(rep.to_json(), indent=1, default=str) + "\n")
    else:
        sys.stdout.write(render_text(rep))
    sys.stdout.flush()
    raise typer.Exit(ExitCode.OK if rep.ok else ExitCode.FINDINGS)
