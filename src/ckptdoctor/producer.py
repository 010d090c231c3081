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
    _from_features(p, ckpt)
    return p


def _from_features(p: Producer, ckpt: Checkpoint) -> None:
    """Narrow with the per-release tables read from torch's source (data/torch_features.json):
    rebuild functions, storage classes, dtypes and torch.nn.Module attributes the file carries."""
    from ckptdoctor.tables import span, torch_features

    feats = torch_features()
    rels = feats.get("releases") or []
    if not rels:
        return
    oldest = rels[0]

    def use(kind: str, key: str, what: str) -> None:
        s = span(kind, key)
        if s is None:
            return
        first, last = s
        lo = first if first and Version(first) > Version(oldest) else None
        if lo or last:
            _narrow(p, lo, last, f"{what} ({first if lo else '<=' + oldest}..{last or 'latest'})")

    for g in ckpt.globals:
        module, _, name = g.rpartition(".")
        if name.startswith("_rebuild_") and module in ("torch._utils", "torch._tensor", "torch.tensor"):
            use("rebuild_functions", g, g)
        elif module in ("torch", "torch.storage", "torch.cuda") and name.endswith("Storage"):
            use("storage_classes", name, g)
        elif module == "torch" and name in feats.get("dtypes", {}) and name.startswith(("uint", "float8", "bits",
                                                                                         "float4", "int1", "int2")):
            use("dtypes", name, f"dtype {g}")
    if any(getattr(r, "py2_strings", False) for _label, r in ckpt.pickles):
        _narrow(p, None, "1.4", "pickled by Python 2 (torch 1.4 was the last release for Python 2.7)")
    _module_attrs(p, ckpt, feats, rels)


def _module_attrs(p: Producer, ckpt: Checkpoint, feats: dict, rels: list[str]) -> None:
    from ckptdoctor.pickle.objects import PickledObject
    from ckptdoctor.walk import is_module

    root = ckpt.root
    mod = None
    if isinstance(root, PickledObject) and is_module(root):
        mod = root
    elif isinstance(root, dict):
        mod = next((v for v in root.values() if isinstance(v, PickledObject) and is_module(v)), None)
    info = feats.get("nn_modules", {}).get("torch.nn.modules.module.Module")
    if mod is None or not info:
        return
    present = set(mod.attrs)
    lo: tuple[str, str] | None = None  # (release, attribute) the file must be at least
    hi: tuple[str, str] | None = None  # (release, attribute) the file must be at most
    for attr, spans in info["attrs"].items():
        first, last = spans.get("init", [None, None])
        if not first or Version(first) <= Version(rels[0]):
            continue
        if attr in present:
            if lo is None or Version(first) > Version(lo[0]):
                lo = (first, attr)
            if last and (hi is None or Version(last) < Version(hi[0])):
                hi = (last, attr)
        elif first in rels and rels.index(first) > 0:
            before = rels[rels.index(first) - 1]
            if hi is None or Version(before) < Version(hi[0]):
                hi = (before, attr)
    if lo:
        _narrow(p, lo[0], None, f"pickled nn.Module has {lo[1]} (Module.__init__ sets it from {lo[0]})")
    if hi:
        _narrow(p, None, hi[0], f"pickled nn.Module lacks {hi[1]} (Module.__init__ of later releases sets it)"
                if hi[1] not in present else f"pickled nn.Module has {hi[1]} (last set in {hi[0]})")
