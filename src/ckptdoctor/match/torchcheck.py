"""Ask torch itself, for a live model target: ``load_state_dict`` on meta tensors.

The key comparison in :mod:`ckptdoctor.match.compare` follows torch's rules,
but a model can change them: load-state-dict pre-hooks and
``_load_from_state_dict`` overrides rename or fill keys (``weight_norm``'s
parametrization accepts the old ``weight_g``/``weight_v``, quantized and
custom layers convert legacy layouts). When the target is a model built by
the user's code, the checkpoint's keys, shapes and ``_metadata`` are handed to
``model.load_state_dict`` as *meta* tensors (no data; the checkpoint is
still never unpickled) on the model moved to the meta device, and torch's
own missing/unexpected/size-mismatch lists are used where they differ.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from typing import Any

from ckptdoctor.match.compare import Comparison
from ckptdoctor.match.keys import Candidate, Entry

_SIZE = re.compile(r"size mismatch for ([^:]+): copying a param")


def _meta_state_dict(torch: Any, entries: dict[str, Entry], metadata: dict[str, int | None] | None) -> Any:
    sd = OrderedDict()
    for k, e in entries.items():
        dt = getattr(torch, e.dtype or "", None)
        if not isinstance(dt, torch.dtype):
            dt = torch.float32
        try:
            sd[k] = torch.empty(e.shape or (), dtype=dt, device="meta")
        except (RuntimeError, TypeError):
            sd[k] = torch.empty(e.shape or (), device="meta")
    if metadata is not None:
        sd._metadata = OrderedDict((p, {"version": v} if v is not None else {}) for p, v in metadata.items())
    return sd


def _on_meta(model: Any) -> bool:
    if getattr(model, "_ckptdoctor_on_meta", False):
        return True
    try:
        model.to("meta")
    except Exception:  # noqa: BLE001 - lazy/unusual modules: fall back to the rules
        return False
    model._ckptdoctor_on_meta = True
    return True


def torch_compare(target: Candidate, entries: dict[str, Entry], metadata: dict[str, int | None] | None,
                  rules: Comparison) -> Comparison | None:
    """torch's verdict for ``entries`` (with ``metadata``) on the target model; None if it cannot be had."""
    model = target.module
    if model is None or any(not e.tensor or e.shape is None for e in entries.values()):
        return None
    try:
        import torch
    except ImportError:
        return None
    if not _on_meta(model):
        return None
    sd = _meta_state_dict(torch, entries, metadata)
    sizes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                r = model.load_state_dict(sd, strict=False)
            except RuntimeError as e:
                sizes = _SIZE.findall(str(e))
                if not sizes:
                    return None
                own = model.state_dict()
                for k in sizes:
                    sd[k] = torch.empty(own[k].shape, dtype=own[k].dtype, device="meta")
                r = model.load_state_dict(sd, strict=False)
    except Exception:  # noqa: BLE001 - a hook that cannot run on meta tensors: keep the rules' answer
        return None
    missing, unexpected = list(r.missing_keys), list(r.unexpected_keys)
    out = Comparison()
    out.missing = missing
    out.unexpected = unexpected
    shape_of = {k: (a, b) for k, a, b in rules.shape_mismatch}
    out.shape_mismatch = [(k, *shape_of[k]) if k in shape_of else (k, entries[k].shape or (), target.entries[k].shape
                                                                   or ()) for k in sizes]
    gone = set(missing) | set(sizes)
    out.filled_nbt = [k for k in rules.filled_nbt if k not in gone]
    out.legacy_scalars = [k for k in rules.legacy_scalars if k not in gone]
    out.dtype_diff = [d for d in rules.dtype_diff if d[0] not in gone]
    filled = set(out.filled_nbt)
    out.matched = [k for k in target.entries if k not in gone and k not in filled]
    return out


def differs(a: Comparison, b: Comparison) -> bool:
    return (set(a.missing), set(a.unexpected), {k for k, *_ in a.shape_mismatch}) != \
        (set(b.missing), set(b.unexpected), {k for k, *_ in b.shape_mismatch})
