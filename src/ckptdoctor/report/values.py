"""Turn a checkpoint's value tree into plain JSON-able data (for --json and the text tree)."""

from __future__ import annotations

from typing import Any

from ckptdoctor._lazy import imported as numpy_loaded
from ckptdoctor._lazy import numpy as np  # imported on first use: inspect needs none
from ckptdoctor.model import Storage, TensorRecord
from ckptdoctor.pickle.objects import DeviceValue, Global, OrderedDictValue, PersistentRef, PickledObject
from ckptdoctor.pickle.values import Layout, NumpyArray, TorchDType
from ckptdoctor.walk import ScriptModuleValue, is_module


def tensor_label(t: TensorRecord) -> str:
    shape = "x".join(map(str, t.shape)) if t.shape else "scalar"
    return f"tensor {t.dtype.name}[{shape}]" + (f" on {t.device}" if t.device != "cpu" else "")


def to_plain(v: Any, depth: int = 6, _budget: list[int] | None = None) -> Any:
    """A bounded, JSON-safe rendering. Tensors become short labels."""
    budget = _budget if _budget is not None else [20000]
    budget[0] -= 1
    if budget[0] < 0:
        return "…"
    if v is None or isinstance(v, (bool, int, float, str)):
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            return repr(v)
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**63:
            return str(v)
        return v
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, TensorRecord):
        return tensor_label(v)
    if numpy_loaded("numpy") and isinstance(v, np.generic):
        return v.item() if v.dtype.kind in "biuf" else repr(v)
    if isinstance(v, NumpyArray):
        return f"ndarray {v.dtype}[{'x'.join(map(str, v.shape))}]"
    if isinstance(v, (Global,)):
        return f"<class or function {v.qualname}>"
    if isinstance(v, (DeviceValue, Layout, TorchDType)):
        return str(v)
    if isinstance(v, Storage):
        return f"storage {v.dtype.name}[{v.numel}] on {v.location}"
    if isinstance(v, PersistentRef):
        return f"<persistent id {v.pid!r:.60}>"
    if depth <= 0:
        return "…"
    if isinstance(v, ScriptModuleValue):
        return {"__torchscript__": v.qualname, "state_dict": to_plain(v.state_dict, depth - 1, budget)}
    if isinstance(v, dict):
        out = {str(k): to_plain(x, depth - 1, budget) for k, x in v.items()}
        if isinstance(v, OrderedDictValue) and v.attrs:
            out["__attrs__"] = {str(k): to_plain(x, depth - 1, budget) for k, x in v.attrs.items()}
        return out
    if isinstance(v, (list, tuple, set, frozenset)):
        return [to_plain(x, depth - 1, budget) for x in list(v)[:1000]]
    if isinstance(v, PickledObject):
        d: dict[str, Any] = {"__class__": v.qualname}
        if is_module(v):
            d["__module__"] = True
        if v.args and not (isinstance(v.callee, Global) and v.callee.canonical == "copyreg._reconstructor"):
            d["__args__"] = to_plain(list(v.args), depth - 1, budget)
        attrs = v.attrs
        if attrs:
            d.update({str(k): to_plain(x, depth - 1, budget) for k, x in attrs.items()})
        elif v.state is not None:
            d["__state__"] = to_plain(v.state, depth - 1, budget)
        return d
    if isinstance(v, complex):
        return repr(v)
    if isinstance(v, slice):
        return repr(v)
    if numpy_loaded("numpy") and isinstance(v, np.dtype):
        return f"dtype {v}"
    return repr(v)[:200]
