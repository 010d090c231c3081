"""Storages saved on a device the target does not have (cuda:N on a CPU-only machine, fewer GPUs, mps ...)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.rules._common import finding, fix_cmd, load_line

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 2
FINDINGS = {
    "CKD-DEVICE-CUDA": "storages saved on CUDA, target without CUDA and no map_location",
    "CKD-DEVICE-INDEX": "storages saved on cuda:N, target has fewer GPUs",
    "CKD-DEVICE-OTHER": "storages saved on another device type (mps, xla, hpu ...) the target lacks",
    "CKD-DEVICE-MAPPED": "non-CPU storages that map_location moves (informational)",
}


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None or ckpt.format in ("safetensors", "torchscript-json", "sharded-index", "dcp"):
        return
    t = ctx.target
    locs: dict[str, int] = {}
    seen: set[int] = set()
    for _path, tr in ckpt.tensors():
        st = tr.storage
        if st is None or id(st) in seen:
            continue
        seen.add(id(st))
        locs[st.location] = locs.get(st.location, 0) + 1
    odd = {k: n for k, n in locs.items() if k not in ("cpu", "meta")}
    if not odd:
        return
    off = None
    if ctx.pickles:
        off = ctx.sim(False).opcodes.get("BINPERSID", (None, ""))[0]
    summary = ", ".join(f"{n} on {k}" for k, n in sorted(odd.items()))
    if t.map_location:
        yield finding("CKD-DEVICE-MAPPED", Severity.INFO, f"storages saved on {', '.join(sorted(odd))}",
                      f"{summary}; map_location={t.map_location!r} moves them.",
                      evidence={"locations": odd, "map_location": t.map_location})
        return
    cuda = {k: n for k, n in odd.items() if k.startswith("cuda")}
    other = {k: n for k, n in odd.items() if not k.startswith("cuda")}
    fix = Fix("map the storages to the CPU (or an existing GPU) when loading",
              python=load_line(t, map_location="cpu"), command=fix_cmd(ctx, "to-cpu"))
    if cuda and t.gpus == 0:
        err = ("RuntimeError: Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is "
               "False. If you are running on a CPU-only machine, please use torch.load with "
               "map_location=torch.device('cpu') to map your storages to the CPU.")
        yield ctx.ordered(finding(
            "CKD-DEVICE-CUDA", Severity.ERROR, f"saved on CUDA ({summary}); the target has no GPU",
            f"torch.load puts each storage back on the device it was saved from unless map_location says "
            f"otherwise; the target ({t.device}) has no CUDA device.",
            evidence={"locations": cuda, "offset": off, "torch_error": err}, fix=fix, blocks=True), STAGE, off)
    elif cuda:
        top = max(int(k.split(":", 1)[1]) if ":" in k else 0 for k in cuda)
        if top >= t.gpus:
            err = (f"RuntimeError: Attempting to deserialize object on CUDA device {top} but "
                   f"torch.cuda.device_count() is {t.gpus}. Please use torch.load with map_location to map your "
                   "storages to an existing device.")
            yield ctx.ordered(finding(
                "CKD-DEVICE-INDEX", Severity.ERROR, f"saved on cuda:{top}; the target has {t.gpus} GPU(s)",
                f"{summary}: the file was saved on a machine with more GPUs than the target.",
                evidence={"locations": cuda, "gpus": t.gpus, "offset": off, "torch_error": err},
                fix=Fix("map every storage to an existing device", python=load_line(t, map_location="cuda:0"),
                        command=fix_cmd(ctx, "to-cpu")), blocks=True), STAGE, off)
    for k, n in other.items():
        dev = k.split(":", 1)[0]
        yield ctx.ordered(finding(
            "CKD-DEVICE-OTHER", Severity.ERROR, f"{n} storage(s) saved on {k}",
            f"The storages were saved on {k}; restoring them needs that backend ({dev}) on the target.",
            evidence={"locations": {k: n}, "offset": off,
                      "torch_error": f"RuntimeError: ... {dev} device is not available (storages saved on {k})"},
            fix=fix, blocks=True), STAGE, off)
