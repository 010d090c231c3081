"""The ``inspect`` report: a dict that follows the documented JSON contract (docs/inspect.md)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ckptdoctor.model import Checkpoint
from ckptdoctor.report.values import to_plain


def build_report(ckpt: Checkpoint, *, with_hash: bool = False, tree_depth: int = 4,
                 progress: Any = None) -> dict[str, Any]:
    tensors = []
    dtypes: Counter[str] = Counter()
    devices: Counter[str] = Counter()
    total_elems = 0
    total_bytes = 0
    seen_storage: set[int] = set()
    storage_bytes = 0
    for path, t in ckpt.tensors():
        entry: dict[str, Any] = {"path": path, **t.describe()}
        if with_hash and t.storage is not None and t.layout == "strided":
            entry["sha256"] = t.sha256()
            if progress is not None:
                progress(t.nbytes)
        tensors.append(entry)
        dtypes[t.dtype.name] += 1
        devices[t.device] += 1
        total_elems += t.numel
        total_bytes += t.nbytes
        if t.storage is not None and id(t.storage) not in seen_storage:
            seen_storage.add(id(t.storage))
            storage_bytes += t.storage.nbytes
    details = {k: v for k, v in ckpt.details.items() if _jsonable(v)}
    return {
        "path": ckpt.path,
        "format": ckpt.format,
        "size": ckpt.size,
        "pickle_protocol": ckpt.pickle_protocol,
        "globals": list(ckpt.globals),
        "producer": {"earliest": ckpt.producer.earliest, "latest": ckpt.producer.latest,
                     "reasons": ckpt.producer.reasons},
        "summary": {
            "tensors": len(tensors),
            "elements": total_elems,
            "tensor_bytes": total_bytes,
            "storage_bytes": storage_bytes,
            "storages": len(seen_storage),
            "dtypes": dict(dtypes),
            "devices": dict(devices),
        },
        "details": details,
        "tensors": tensors,
        "tree": to_plain(ckpt.root, depth=tree_depth),
    }


def error_report(path: str, kind: str, message: str, **fields: Any) -> dict[str, Any]:
    out = {"path": path, "format": kind, "error": message, "tensors": [], "globals": []}
    out.update({k: v for k, v in fields.items() if _jsonable(v)})
    return out


def _jsonable(v: Any) -> bool:
    import json

    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
