"""BatchNorm ``num_batches_tracked``: the torch 0.4.0 / 0.4.1 difference, explained.

torch 0.4.1 added the ``num_batches_tracked`` buffer to BatchNorm (module
version 2). ``_NormBase._load_from_state_dict`` fills it with 0 when the
state_dict's ``_metadata`` says version < 2 or has no version (a 0.4.0 file,
or a plain ``dict`` that lost ``_metadata``), so such files load. It is
*missing* when the metadata says version 2 (the key was deleted after
saving), and *unexpected* when the model's norm layers have no such buffer
(torch 0.4.0, or ``track_running_stats=False``).
"""

from __future__ import annotations

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.match.compare import NBT, Comparison


def _is_nbt(k: str) -> bool:
    return k == NBT or k.endswith("." + NBT)


def explain(cmp: Comparison, fix_prefix: str) -> list[Finding]:
    """``fix_prefix``: the ``ckptdoctor fix IN -o OUT [mapping args]`` to extend with a step."""
    out: list[Finding] = []
    if cmp.filled_nbt:
        out.append(Finding(
            "CKD-MATCH-NBT-FILLED", Severity.INFO,
            f"{len(cmp.filled_nbt)} BatchNorm layer(s) without num_batches_tracked: torch fills it in",
            "torch 0.4.1 added BatchNorm's num_batches_tracked buffer. This state_dict has none for these "
            "layers and its _metadata does not say version 2 (saved by torch 0.4.0, or a plain dict without "
            "_metadata), so load_state_dict sets it to 0 itself; they load, even with strict=True. It only "
            "matters with momentum=None (cumulative averages restart).",
            {"keys": cmp.filled_nbt}))
    missing = [k for k in cmp.missing if _is_nbt(k)]
    if missing:
        out.append(Finding(
            "CKD-MATCH-NBT-MISSING", Severity.ERROR,
            f"{len(missing)} num_batches_tracked entr(ies) missing although the file says BatchNorm version 2",
            "The state_dict's _metadata marks these layers as saved by torch >= 0.4.1 (version 2), so torch "
            "does not fill num_batches_tracked in and strict loading reports them missing: the keys were "
            "removed after saving. Add them back as 0 (what torch 0.4.0 files get).",
            {"keys": missing},
            Fix("add num_batches_tracked = 0 after each BatchNorm's running_var",
                command=f"{fix_prefix} --step add-num-batches-tracked"),
            blocks_load=True))
    extra = [k for k in cmp.unexpected if _is_nbt(k)]
    if extra:
        out.append(Finding(
            "CKD-MATCH-NBT-EXTRA", Severity.ERROR,
            f"{len(extra)} num_batches_tracked entr(ies) the model does not have",
            "The checkpoint was saved by torch >= 0.4.1, whose BatchNorm has a num_batches_tracked buffer; "
            "the model's norm layers have none (torch 0.4.0, or track_running_stats=False), so strict "
            "loading calls them unexpected. Drop them: they only count batches.",
            {"keys": extra},
            Fix("drop BatchNorm num_batches_tracked entries", command=f"{fix_prefix} --step drop-num-batches-tracked"),
            blocks_load=True))
    return out
