"""Python 2 pickles: byte strings (py2 ``str``) that Python 3 must decode."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.rules._common import finding, fix_cmd, load_line

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 2
FINDINGS = {
    "CKD-PY2-BYTES": "Python 2 byte strings that are not UTF-8 (numpy buffers ...): UnicodeDecodeError, use encoding='latin1'",
    "CKD-PY2-PICKLE": "a Python 2 pickle whose byte strings all decode as UTF-8 (loads; informational)",
}


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None or not any(getattr(r, "py2_strings", False) for _label, r in ckpt.pickles):
        return
    t = ctx.target
    wo = t.loads_weights_only and t.torch_at_least("1.13")
    sim = ctx.sim(wo)
    bad = [i for i in sim.issues if i.kind == "py2-bytes"]
    if not bad:
        yield finding("CKD-PY2-PICKLE", Severity.INFO, "a Python 2 pickle (byte strings decode as UTF-8)",
                      "The file was pickled by Python 2 (str values are byte strings). torch.load decodes them "
                      "with encoding='utf-8' by default, which works for this file.",
                      evidence={"pickles": [label for label, r in ckpt.pickles if r.py2_strings]})
        return
    first = bad[0]
    err = f"UnicodeDecodeError: {first.detail}"
    yield ctx.ordered(finding(
        "CKD-PY2-BYTES", Severity.ERROR, f"{len(bad)} Python 2 byte string(s) are not UTF-8",
        f"The file was pickled by Python 2; at byte {first.offset} ({first.pickle}) a byte string is not UTF-8 "
        "(typically a numpy array's raw buffer). torch.load decodes such strings as UTF-8 and raises "
        f"{err}. Decoding them as latin-1 keeps the bytes exactly.",
        evidence={"offset": first.offset, "count": len(bad), "offsets": [i.offset for i in bad[:20]],
                  "torch_error": err},
        fix=Fix("load with encoding='latin1', or rewrite the strings", python=load_line(t, encoding="latin1"),
                command=fix_cmd(ctx, "py2-strings")), blocks=True), STAGE, first.offset)
