"""Compare two key sets exactly as ``nn.Module.load_state_dict`` would.

Rules copied from torch (``Module._load_from_state_dict``, ``_NormBase._load_from_state_dict``):

* a key the model has and the state_dict lacks is *missing*; a key the
  state_dict has and the model lacks is *unexpected* (torch checks every key
  under each module's prefix, so this is exactly the set difference);
* a BatchNorm/InstanceNorm layer with running stats whose ``_metadata``
  version is absent or < 2 (saved by torch 0.4.0, or a plain ``dict`` that
  lost ``_metadata``) gets ``num_batches_tracked`` filled in, so it is not
  missing;
* a 1-element 1-d tensor loads into a 0-d parameter (legacy scalars);
  any other shape difference is a "size mismatch" error even with
  ``strict=False``;
* dtype differences are not errors (``copy_`` converts) but are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.match.keys import Candidate, Entry

NBT = "num_batches_tracked"


@dataclass
class Comparison:
    matched: list[str] = field(default_factory=list)  # names that load (target names)
    missing: list[str] = field(default_factory=list)  # torch's missing_keys
    unexpected: list[str] = field(default_factory=list)  # torch's unexpected_keys
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    dtype_diff: list[tuple[str, str, str]] = field(default_factory=list)
    legacy_scalars: list[str] = field(default_factory=list)  # (1,) loaded into () by torch
    filled_nbt: list[str] = field(default_factory=list)  # num_batches_tracked torch adds itself
    not_tensor: list[tuple[str, str]] = field(default_factory=list)  # (key, type) where a tensor is needed

    @property
    def loads_strict(self) -> bool:
        """``load_state_dict(strict=True)`` succeeds."""
        return not (self.missing or self.unexpected or self.shape_mismatch or self.not_tensor)

    @property
    def loads_non_strict(self) -> bool:
        """``load_state_dict(strict=False)`` succeeds (size mismatches still raise)."""
        return not (self.shape_mismatch or self.not_tensor)

    def to_json(self) -> dict[str, Any]:
        return {
            "loads_strict": self.loads_strict,
            "loads_non_strict": self.loads_non_strict,
            "matched": self.matched,
            "missing": self.missing,
            "unexpected": self.unexpected,
            "shape_mismatch": [{"key": k, "checkpoint": list(a), "target": list(b)}
                               for k, a, b in self.shape_mismatch],
            "dtype_diff": [{"key": k, "checkpoint": a, "target": b} for k, a, b in self.dtype_diff],
            "legacy_scalars": self.legacy_scalars,
            "filled_num_batches_tracked": self.filled_nbt,
            "not_tensor": [{"key": k, "type": t} for k, t in self.not_tensor],
        }


def _norm_layer(target: Candidate, prefix: str) -> bool:
    if target.norm_prefixes is not None:
        return prefix in target.norm_prefixes
    keys = target.entries
    p = prefix + "." if prefix else ""
    return f"{p}running_mean" in keys and f"{p}running_var" in keys


def fills_nbt(key: str, target: Candidate, metadata: dict[str, int | None] | None) -> bool:
    """Torch adds ``key`` (a num_batches_tracked) itself when the state_dict's version for the layer is < 2."""
    if not (key == NBT or key.endswith("." + NBT)):
        return False
    prefix = key[: -len(NBT)].rstrip(".")
    if not _norm_layer(target, prefix):
        return False
    version = (metadata or {}).get(prefix)
    return version is None or version < 2


def compare(src: dict[str, Entry], metadata: dict[str, int | None] | None, target: Candidate) -> Comparison:
    """What ``target_model.load_state_dict(src)`` reports; ``metadata`` is ``src._metadata`` (None if absent)."""
    c = Comparison()
    tgt = target.entries
    for k, t in tgt.items():
        s = src.get(k)
        if s is None:
            if fills_nbt(k, target, metadata):
                c.filled_nbt.append(k)
            else:
                c.missing.append(k)
            continue
        if t.tensor and not s.tensor:
            c.not_tensor.append((k, s.dtype or "?"))
            continue
        if s.shape is not None and t.shape is not None and s.shape != t.shape:
            if len(t.shape) == 0 and s.shape == (1,):
                c.legacy_scalars.append(k)
            else:
                c.shape_mismatch.append((k, s.shape, t.shape))
                continue
        c.matched.append(k)
        if s.dtype and t.dtype and s.tensor and t.tensor and s.dtype != t.dtype:
            c.dtype_diff.append((k, s.dtype, t.dtype))
    c.unexpected = [k for k in src if k not in tgt]
    return c
