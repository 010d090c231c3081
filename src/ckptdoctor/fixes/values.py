"""Helpers the fix steps share: state_dicts from module placeholders, new in-memory tensors, lookups."""

from __future__ import annotations

import dataclasses
import io
from typing import TYPE_CHECKING, Any

from ckptdoctor import dtypes
from ckptdoctor.model import Storage, TensorRecord
from ckptdoctor.pickle.objects import OrderedDictValue, PickledObject
from ckptdoctor.source import FileObjSource
from ckptdoctor.walk import ScriptModuleValue, is_module, module_state_dict

if TYPE_CHECKING:
    import numpy as np

# nn.Module._version of classes that override it (state_dict()'s _metadata records it; default 1).
MODULE_VERSIONS = {
    "torch.nn.modules.batchnorm": 2,  # _NormBase: BatchNorm*, SyncBatchNorm, LazyBatchNorm*
    "torch.nn.modules.instancenorm": 2,  # InstanceNorm* derive from _NormBase
}
WRAPPER_KEYS = (
    "state_dict", "model_state_dict", "model", "module", "net", "network", "ema", "model_ema",
    "state_dict_ema", "ema_state_dict", "params", "weights",
)
_VERSION = "version"  # one str object, as torch's dict(version=...) keyword


def detached(t: TensorRecord) -> TensorRecord:
    """What ``tensor.detach()`` saves: the same bytes, no Parameter, no grad, no Python attributes."""
    meta = {k: v for k, v in (t.metadata or {}).items() if k not in ("attrs", "subclass", "state")}
    return dataclasses.replace(t, is_parameter=False, requires_grad=False, metadata=meta or None)


def _module_version(obj: PickledObject) -> int:
    qual = obj.qualname
    return MODULE_VERSIONS.get(qual.rsplit(".", 1)[0], 1)


def state_dict_of_module(obj: PickledObject) -> OrderedDictValue:
    """``obj.state_dict()`` without the class: keys, order, detached tensors and ``_metadata``."""
    raw = module_state_dict(obj)
    out = OrderedDictValue()
    for k, v in raw.items():
        out[k] = detached(v) if isinstance(v, TensorRecord) else v
    meta = OrderedDictValue()

    def visit(m: PickledObject, prefix: str, depth: int) -> None:
        if depth > 1000:
            return
        meta[prefix[:-1]] = {_VERSION: _module_version(m)}
        for name, child in (m.attrs.get("_modules") or {}).items():
            if child is not None and is_module(child):
                visit(child, f"{prefix}{name}.", depth + 1)

    visit(obj, "", 0)
    out.attrs["_metadata"] = meta
    return out


def state_dict_of_script(m: ScriptModuleValue) -> OrderedDictValue:
    out = OrderedDictValue()
    for k, v in m.state_dict.items():
        out[k] = detached(v) if isinstance(v, TensorRecord) else v
    return out


def is_tensor_dict(d: Any) -> bool:
    """A dict whose values are (mostly) tensors: what load_state_dict takes."""
    if not isinstance(d, dict) or not d:
        return False
    n = sum(1 for v in d.values() if isinstance(v, TensorRecord))
    return n > 0 and n >= len(d) / 2


def find_state_dict(root: Any) -> tuple[dict, list[Any]] | None:
    """The state_dict in a tree: the root itself or a wrapper's ``state_dict``/``model``/... entry.

    Returns (the dict, the key path to it) or None. Only plain dicts count;
    module objects must be extracted first.
    """
    if is_tensor_dict(root):
        return root, []
    if isinstance(root, dict):
        for k in WRAPPER_KEYS:
            v = root.get(k)
            if is_tensor_dict(v):
                return v, [k]
    return None


def memory_tensor(arr: np.ndarray, dtype_name: str | None = None, *, key: str = "memory") -> TensorRecord:
    """A tensor whose bytes live in memory (numpy arrays turned into tensors, added counters)."""
    import numpy as np  # only here: a plain copy or rename never needs numpy

    arr = np.asarray(arr)
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn a 0-dim array into 1-dim)
    name = dtype_name or _numpy_dtype_name(arr.dtype)
    dt = dtypes.lookup(name) if name else None
    if dt is None:
        raise ValueError(f"numpy dtype {arr.dtype} has no torch equivalent")
    data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    src = FileObjSource(io.BytesIO(data), name=f"<{key}>")
    st = Storage(key=key, dtype=dt, numel=arr.size, location="cpu", source=src, record=f"<{key}>",
                 _span=(0, len(data)))
    stride, acc = [], 1
    for s in reversed(arr.shape):
        stride.append(acc)
        acc *= s
    return TensorRecord(dt, tuple(int(s) for s in arr.shape), tuple(reversed(stride)), st, 0,
                        rebuild="ckptdoctor")


def _numpy_dtype_name(dt: np.dtype) -> str | None:
    if dt.kind == "b":
        return "bool"
    if dt.kind in "iufc" and dt.name in dtypes.BY_NAME:
        return dt.name
    return None
