"""Which torch wrote the file (see ckptdoctor.producer), compared with the target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ckptdoctor.findings import Finding, Severity
from ckptdoctor.rules._common import finding
from ckptdoctor.rules._tables import parse_version

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 3
FINDINGS = {
    "CKD-PRODUCER": "the range of torch releases that could have written the file, and why",
    "CKD-PRODUCER-NEWER": "the file was written by a torch newer than the target (expect the findings above)",
}


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None:
        return
    p = ckpt.producer
    if p.earliest is None and p.latest is None:
        return
    t = ctx.target
    yield finding("CKD-PRODUCER", Severity.INFO, f"written by {p}",
                  "; ".join(p.reasons) or "from the container", evidence={"earliest": p.earliest, "latest": p.latest,
                                                                          "reasons": list(p.reasons)})
    if p.earliest and parse_version(p.earliest) > parse_version(t.torch_release):
        yield finding("CKD-PRODUCER-NEWER", Severity.WARNING,
                      f"written by torch >= {p.earliest}, target is torch {t.torch}",
                      f"Files written by newer torch releases may use containers, types and module attributes "
                      f"torch {t.torch} does not know; the findings above list the ones that matter.",
                      evidence={"earliest": p.earliest, "target": t.torch})
