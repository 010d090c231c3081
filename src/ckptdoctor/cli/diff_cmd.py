"""`ckptdoctor diff A B`: are two checkpoints' tensors the same?"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

EPILOG = """Examples:

  ckptdoctor diff model.pt model.safetensors           # after a conversion: expect "identical"

  ckptdoctor diff run1/last.pt run2/last.pt --atol 1e-6 --rtol 1e-5

Exit codes: 0 identical (or within --atol/--rtol); 1 different; 2 a file could not be read.
"""


def register(app: typer.Typer) -> None:
    app.command("diff", epilog=EPILOG)(diff)


def diff(
    a: Annotated[str, typer.Argument(help="First checkpoint (any format).")],
    b: Annotated[str, typer.Argument(help="Second checkpoint (any format).")],
    rtol: Annotated[float, typer.Option("--rtol", help="Relative tolerance (like numpy.isclose).")] = 0.0,
    atol: Annotated[float, typer.Option("--atol", help="Absolute tolerance.")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print every tensor's comparison as JSON.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Rows of differences to show.")] = 50,
) -> None:
    """Compare two checkpoints tensor by tensor (any formats), streaming the bytes."""
    import ckptdoctor
    from ckptdoctor.diff import diff_checkpoints, iter_changes

    with ckptdoctor.open(a) as ca, ckptdoctor.open(b) as cb:
        res = diff_checkpoints(ca, cb, rtol=rtol, atol=atol)
    if as_json:
        print(json.dumps(res.to_dict(), indent=1))
    else:
        n = len(res.tensors)
        same = sum(t.status == "identical" for t in res.tensors)
        if res.key_mapping:
            print(f"keys matched after {res.key_mapping}")
        if res.identical:
            print(f"identical: {n} tensors, same keys, bit-identical bytes")
        else:
            print(f"{same}/{n} tensors identical; {len(res.only_in_a)} only in A, {len(res.only_in_b)} only in B")
            for t in list(iter_changes(res))[:limit]:
                extra = ""
                if t.max_abs is not None:
                    extra = f" max|a-b|={t.max_abs:.6g} max rel={t.max_rel:.6g} ({t.differing_elements} elements)"
                elif t.status.endswith("changed"):
                    extra = f" {t.dtype[0]}{t.shape[0]} -> {t.dtype[1]}{t.shape[1]}"
                print(f"  {t.status:14s} {t.path}{extra}")
            for p in res.only_in_a[:limit]:
                print(f"  only in A      {p}")
            for p in res.only_in_b[:limit]:
                print(f"  only in B      {p}")
    sys.stdout.flush()
    raise typer.Exit(0 if res.equal_within_tolerance else 1)
