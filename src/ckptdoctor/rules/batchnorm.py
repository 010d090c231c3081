"""state_dict migrations torch performs (or cannot perform) on load: BatchNorm ``num_batches_tracked``
(torch 0.4.0 vs 0.4.1+), ``_metadata`` versions, and wrapper prefixes (DataParallel ``module.``,
``torch.compile`` ``_orig_mod.``) that make ``load_state_dict`` miss every key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.model import TensorRecord
from ckptdoctor.pickle.objects import OrderedDictValue, PickledObject
from ckptdoctor.rules._common import finding, fix_cmd
from ckptdoctor.rules._tables import has
from ckptdoctor.walk import is_module, module_state_dict

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 3
FINDINGS = {
    "CKD-BN-NBT-UNEXPECTED": "BatchNorm num_batches_tracked (torch >= 0.4.1) for a torch 0.4.0 target: strict "
                             "load_state_dict fails with Unexpected key(s)",
    "CKD-BN-NBT-MISSING": "BatchNorm without num_batches_tracked and _metadata version 2: strict load_state_dict "
                          "fails with Missing key(s)",
    "CKD-BN-NBT-FILLED": "BatchNorm without num_batches_tracked, old _metadata version: torch fills it in (info)",
    "CKD-SD-METADATA": "the state_dict has no _metadata (module versions): torch runs every old-version migration",
    "CKD-SD-PREFIX": "every key starts with a wrapper prefix (module. / _orig_mod.): load_state_dict into the bare "
                     "model misses every key",
}
WRAPPERS = ("module.", "_orig_mod.")
SD_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "ema", "model_ema", "params")


def state_dicts(root: Any) -> list[tuple[str, dict]]:
    """The state_dict(s) in a file: the root, common wrapper entries, or whole pickled models."""
    out: list[tuple[str, dict]] = []

    def is_sd(d: Any) -> bool:
        if not isinstance(d, dict) or not d:
            return False
        vals = list(d.values())[:50]
        return sum(isinstance(v, TensorRecord) for v in vals) >= max(1, len(vals) // 2) and all(
            isinstance(k, str) for k in list(d)[:50])

    if is_sd(root):
        out.append(("", root))
    elif isinstance(root, PickledObject) and is_module(root):
        out.append(("", module_state_dict(root)))
    elif isinstance(root, dict):
        for k in SD_KEYS:
            v = root.get(k)
            if is_sd(v):
                out.append((k, v))
            elif isinstance(v, PickledObject) and is_module(v):
                out.append((k, module_state_dict(v)))
    return out


def _metadata(sd: dict) -> dict | None:
    if isinstance(sd, OrderedDictValue):
        md = sd.attrs.get("_metadata")
        return md if isinstance(md, dict) else None
    return None


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None:
        return
    t = ctx.target
    for where, sd in state_dicts(ckpt.root):
        keys = [k for k in sd if isinstance(k, str)]
        label = f"state_dict at {where!r}" if where else "the state_dict"
        yield from _prefix(ctx, keys, label)
        bn = sorted({k[: -len("running_mean")].rstrip(".") for k in keys if k.endswith("running_mean")
                     and (k[: -len("running_mean")] + "running_var") in sd})
        if not bn:
            continue
        with_nbt = [p for p in bn if (f"{p}.num_batches_tracked" if p else "num_batches_tracked") in sd]
        without = [p for p in bn if p not in with_nbt]
        old = not t.torch_at_least("0.4.1")
        if old and with_nbt:
            names = [f"{p}.num_batches_tracked" if p else "num_batches_tracked" for p in with_nbt]
            yield finding(
                "CKD-BN-NBT-UNEXPECTED", Severity.ERROR,
                f"{len(names)} BatchNorm num_batches_tracked entries: torch {t.torch} has none",
                f"{label} was saved by torch >= 0.4.1, whose BatchNorm keeps a num_batches_tracked buffer. torch "
                f"{t.torch}'s BatchNorm has no such buffer, so model.load_state_dict(sd) (strict) raises "
                f"'Unexpected key(s) in state_dict: \"{names[0]}\"...'. torch.load itself works.",
                evidence={"keys": names[:50], "count": len(names), "where": where,
                          "torch_error": "RuntimeError: Error(s) in loading state_dict: Unexpected key(s) in "
                                         f"state_dict: {', '.join(repr(n) for n in names[:3])}"},
                fix=Fix("drop the counters", command=fix_cmd(ctx, "drop-num-batches-tracked"),
                        python="sd = {k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}"))
        if not old and without:
            md = _metadata(sd)
            strict_fail, filled = [], []
            for p in without:
                ver = (md or {}).get(p, {}).get("version") if isinstance((md or {}).get(p), dict) else None
                (strict_fail if isinstance(ver, int) and ver >= 2 else filled).append(p)
            if strict_fail:
                names = [f"{p}.num_batches_tracked" if p else "num_batches_tracked" for p in strict_fail]
                yield finding(
                    "CKD-BN-NBT-MISSING", Severity.ERROR, f"{len(names)} BatchNorm layer(s) lack num_batches_tracked",
                    f"{label} says (_metadata version 2) its BatchNorm layers come from torch >= 0.4.1 but has no "
                    "num_batches_tracked for them, so torch does not add it and a strict load_state_dict raises "
                    "'Missing key(s)'.",
                    evidence={"keys": names[:50], "count": len(names), "where": where},
                    fix=Fix("add the counters (0)", command=fix_cmd(ctx, "add-num-batches-tracked")))
            if filled:
                yield finding(
                    "CKD-BN-NBT-FILLED", Severity.INFO,
                    f"{len(filled)} BatchNorm layer(s) from torch <= 0.4.0 (no num_batches_tracked)",
                    f"{label} predates torch 0.4.1; BatchNorm's _load_from_state_dict adds num_batches_tracked=0 "
                    "for modules whose _metadata version is missing or < 2, so loading works.",
                    evidence={"prefixes": filled[:50], "count": len(filled), "where": where})
        if _metadata(sd) is None and without and not old:
            yield finding(
                "CKD-SD-METADATA", Severity.INFO, f"{label} has no _metadata",
                "Without _metadata torch treats every module as version None and applies each old-version "
                "migration on load_state_dict (for BatchNorm: adding num_batches_tracked).",
                evidence={"where": where})


def _prefix(ctx: Context, keys: list[str], label: str) -> Iterator[Finding]:
    if len(keys) < 1:
        return
    for w in WRAPPERS:
        if all(k.startswith(w) for k in keys):
            t = ctx.target
            helper = has("globals", "torch.nn.modules.utils.consume_prefix_in_state_dict_if_present", t.torch)
            py = (f"torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(sd, {w!r})" if helper
                  else f"sd = {{k[len({w!r}):]: v for k, v in sd.items()}}")
            why = "DataParallel/DistributedDataParallel" if w == "module." else "torch.compile (OptimizedModule)"
            yield finding(
                "CKD-SD-PREFIX", Severity.WARNING, f"every key of {label} starts with {w!r}",
                f"{label} was taken from a model wrapped by {why} ({len(keys)} keys, e.g. {keys[0]!r}). "
                f"load_state_dict into the unwrapped model raises 'Missing key(s) ... Unexpected key(s) ... "
                f"{keys[0]!r}'; strip the prefix (or load into the wrapped model).",
                evidence={"prefix": w, "keys": len(keys), "example": keys[0]},
                fix=Fix(f"strip {w!r}", command=fix_cmd(ctx, "strip-prefixes"), python=py))
            return
