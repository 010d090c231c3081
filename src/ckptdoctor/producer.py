"""Estimate which torch versions could have written a checkpoint, from its features.

Each rule narrows [earliest, latest] and records why. Facts come from
docs/formats.md (torch source at release tags).
"""

from __future__ import annotations

from packaging.version import Version

from ckptdoctor.model import Checkpoint, Producer


def _narrow(p: Producer, earliest: str | None = None, latest: str | None = None, why: str = "") -> None:
    if earliest and (p.earliest is None or Version(earliest) > Version(p.earliest)):
        p.earliest = earliest
    if latest and (p.latest is None or Version(latest) < Version(p.latest)):
        p.latest = latest
    if why:
        p.reasons.append(why)


def estimate_producer(ckpt: Checkpoint) -> Producer:
    p = Producer()
    fmt = ckpt.format
    d = ckpt.details
    globals_ = set(ckpt.globals)
    prov = d.get("provenance")
    if isinstance(prov, dict) and isinstance(prov.get("torch"), str):
        v = prov["torch"].split("+", 1)[0]
        _narrow(p, v, v, f"provenance record says torch {prov['torch']}")
    if fmt == "tar":
        _narrow(p, "0.1", "0.1.12", "tar container (torch 0.1.x)")
    elif fmt == "legacy":
        _narrow(p, "0.1.10", None, "legacy stream (default up to 1.5; opt-in later)")
    elif fmt == "zip":
        _narrow(p, "1.4", None, "zip container (opt-in 1.4-1.5, default from 1.6)")
        v = d.get("version")
        if v == "1":
            _narrow(p, "1.4", "1.4", "zip version record 1 (written by 1.4)")
        elif v == "2":
            _narrow(p, "1.5", "1.5", "zip version record 2 (written by 1.5)")
        elif v == "3":
            _narrow(p, "1.6", None, "zip version record 3 (1.6+)")
        if "byteorder" in d:
            _narrow(p, "2.1", None, "byteorder record (2.1+)")
        if "data_serialization_id" in d:
            _narrow(p, "2.1", None, ".data/serialization_id record (2.1+)")
        if "format_version" in d or "storage_alignment" in d:
            _narrow(p, "2.7", None, ".format_version/.storage_alignment records (2.7+)")
        if d.get("storage_keys") == "pointer":
            _narrow(p, None, "1.8", "storage keys are pointers (1.6-1.8)")
        elif d.get("storages"):
            _narrow(p, "1.9", None, "storage keys are indices (1.9+)")
    elif fmt == "torchscript-json":
        _narrow(p, "1.0", "1.2", "legacy TorchScript model.json archive (1.0-1.2)")
    elif fmt == "torchscript":
        _narrow(p, "1.3", None, "TorchScript data.pkl archive (1.3+)")
    if "torch._utils._rebuild_tensor_v2" in globals_:
        _narrow(p, "0.4", None, "_rebuild_tensor_v2 (0.4+)")
    elif "torch._utils._rebuild_tensor" in globals_:
        _narrow(p, None, "0.3.1", "_rebuild_tensor (before 0.4)")
    if "torch._utils._rebuild_tensor_v3" in globals_:
        _narrow(p, "2.2", None, "_rebuild_tensor_v3 (2.2+)")
    if "torch._utils._rebuild_parameter_with_state" in globals_:
        _narrow(p, "2.0", None, "_rebuild_parameter_with_state (2.0+)")
    if "torch._utils._rebuild_qtensor" in globals_:
        _narrow(p, "1.3", None, "quantized tensors (1.3+)")
    if "torch.storage.UntypedStorage" in globals_:
        _narrow(p, "1.13", None, "torch.storage.UntypedStorage (1.13+)")
    if "torch.BFloat16Storage" in globals_:
        _narrow(p, "1.3", None, "bfloat16 storage")
    if any(g.startswith("torch.Complex") for g in globals_):
        _narrow(p, "1.6", None, "complex storages (1.6+)")
    if any(g.startswith("torch.nn.backends.thnn") for g in globals_):
        _narrow(p, None, "1.0.1", "torch.nn.backends.thnn (removed after 1.0)")
    return p
