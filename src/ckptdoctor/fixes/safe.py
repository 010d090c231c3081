"""``weights-only-safe``: replace what ``torch.load(weights_only=True)`` refuses by plain data.

What the target torch's restricted unpickler accepts (see
docs/formats.md §6) stays; everything else becomes data it accepts:

* ``nn.Module`` objects -> their state_dict (as ``state_dict()`` gives it);
  TorchScript modules likewise;
* ``argparse.Namespace`` -> dict; ``defaultdict``/``Counter`` -> dict; ``deque`` -> list;
* numpy scalars -> Python scalars; numpy arrays -> tensors (object/string arrays -> lists);
  numpy dtypes -> their name;
* any other object -> a dict ``{"__class__": "module.Name", ...its attributes}``;
* classes/functions used as values -> their dotted name (torch dtypes and qschemes stay);
* tensor subclasses -> plain tensors; values the target is too old for (sets < 2.6, bytes < 2.5,
  devices < 2.4, ...) -> the nearest plain equivalent.

Shared objects stay shared (one replacement per object).
"""

from __future__ import annotations

import sys
from typing import Any

from packaging.version import Version

from ckptdoctor import dtypes
from ckptdoctor.fixes.plan import Change, Step, Tree
from ckptdoctor.fixes.values import memory_tensor, state_dict_of_module, state_dict_of_script
from ckptdoctor.model import Storage, TensorRecord
from ckptdoctor.pickle.objects import DeviceValue, Global, OrderedDictValue, PickledObject
from ckptdoctor.pickle.values import Layout, NumpyArray, TorchDType
from ckptdoctor.pickle.vm import Py2Bytes
from ckptdoctor.walk import ScriptModuleValue, is_module

V = Version
QSCHEMES = {"per_tensor_affine", "per_tensor_symmetric", "per_channel_affine", "per_channel_symmetric",
            "per_channel_affine_float_qparams"}
# dtypes torch 1.13-2.3 accept as values under weights_only (2.4+: every dtype)
EARLY_DTYPES = {"complex32", "complex64", "complex128", "float16", "float32", "float64", "int8", "int16",
                "int32", "int64"}
MAX_DEPTH = 2000


def dtype_value_ok(name: str, target: Version) -> bool:
    if dtypes.lookup(name) is None:
        return False
    return target >= V("2.4") or name in EARLY_DTYPES


class _Converter:
    def __init__(self, step: Step, target: Version) -> None:
        self.step = step
        self.target = target
        self.changes: list[Change] = []
        self.memo: dict[int, Any] = {}
        self.keep: list[Any] = []  # ids in memo stay valid while the originals live

    def note(self, action: str, path: str, detail: str) -> None:
        self.changes.append(self.step.change(action, path, detail))

    # ------------------------------------------------------------------ dispatch
    def value(self, v: Any, path: str, depth: int = 0) -> Any:
        if v is None or type(v) in (bool, int, float, str):
            return v
        if isinstance(v, str):  # a Python 2 str read as text: a plain str
            return str(v)
        if depth > MAX_DEPTH:
            raise RecursionError("value tree nested too deeply")
        hit = self.memo.get(id(v))
        if hit is not None:
            return hit
        out = self._convert(v, path, depth)
        self.memo[id(v)] = out
        self.keep.append(v)
        return out

    def _key(self, k: Any, path: str) -> Any:
        if isinstance(k, Py2Bytes):
            return bytes(k).decode("latin-1")
        if isinstance(k, str):
            return str(k)
        return self.value(k, path)

    def _sub(self, path: str, k: Any) -> str:
        return f"{path}.{k}" if path else str(k)

    def _convert(self, v: Any, path: str, depth: int) -> Any:
        t = self.target
        if isinstance(v, TensorRecord):
            return self._tensor(v, path)
        if isinstance(v, Storage):
            return v
        if isinstance(v, dict):
            out = OrderedDictValue() if isinstance(v, OrderedDictValue) else {}
            self.memo[id(v)] = out  # cycles
            for k, x in v.items():
                out[self._key(k, path)] = self.value(x, self._sub(path, k), depth + 1)
            if isinstance(v, OrderedDictValue) and v.attrs:
                out.attrs.update({str(k): self.value(x, self._sub(path, k), depth + 1) for k, x in v.attrs.items()})
            return out
        if isinstance(v, list):
            out_l: list[Any] = []
            self.memo[id(v)] = out_l
            out_l.extend(self.value(x, self._sub(path, i), depth + 1) for i, x in enumerate(v))
            return out_l
        if isinstance(v, tuple):
            return tuple(self.value(x, self._sub(path, i), depth + 1) for i, x in enumerate(v))
        if isinstance(v, (set, frozenset)):
            items = [self.value(x, path, depth + 1) for x in v]
            if t >= V("2.6"):
                if isinstance(v, frozenset):
                    self.note("converted", path, "frozenset -> set (weights_only accepts set only)")
                return set(items)
            self.note("converted", path, f"set -> list (weights_only accepts sets from torch 2.6, target {t})")
            return items
        if isinstance(v, Py2Bytes):
            self.note("converted", path, "Python 2 byte string -> str (latin-1)")
            return bytes(v).decode("latin-1")
        if isinstance(v, (bytes, bytearray)):
            if t >= V("2.5"):
                return v
            self.note("converted", path, f"bytes -> str (latin-1): weights_only accepts bytes from torch 2.5, target {t}")
            return bytes(v).decode("latin-1")
        if isinstance(v, complex):
            if t >= V("2.6"):
                return v
            self.note("converted", path, "complex -> (real, imag)")
            return (v.real, v.imag)
        if _is_numpy_value(v):
            return self._numpy(v, path, depth)
        if isinstance(v, ScriptModuleValue):
            sd = state_dict_of_script(v)
            self.note("replaced", path, f"TorchScript module {v.qualname} -> its state_dict ({len(sd)} tensors)")
            return sd
        if isinstance(v, PickledObject):
            return self._object(v, path, depth)
        if isinstance(v, Global):
            return self._global(v, path)
        if isinstance(v, TorchDType):
            if dtype_value_ok(v.name, t):
                return v
            self.note("converted", path, f"dtype torch.{v.name} -> str")
            return f"torch.{v.name}"
        if isinstance(v, Layout):
            return v
        if isinstance(v, DeviceValue):
            if t >= V("2.4"):
                return v
            self.note("converted", path, f"torch.device -> str {str(v)!r}")
            return str(v)
        if isinstance(v, slice):
            self.note("converted", path, "slice -> dict")
            return {"__class__": "builtins.slice", "start": v.start, "stop": v.stop, "step": v.step}
        self.note("converted", path, f"{type(v).__name__} -> str (no weights-only form)")
        return repr(v)

    # ------------------------------------------------------------------ kinds
    def _tensor(self, t: TensorRecord, path: str) -> TensorRecord:
        meta = t.metadata or {}
        sub = meta.get("subclass")
        if sub and not t.is_parameter:
            self.note("converted", path, f"tensor subclass {sub} -> torch.Tensor")
            t = _without(t, "subclass")
            meta = t.metadata or {}
        if meta.get("attrs") and self.target < V("2.0"):
            self.note("converted", path, "tensor Python attributes dropped (weights_only reads them from torch 2.0)")
            t = _without(t, "attrs")
        return t

    def _global(self, g: Global, path: str) -> Any:
        if g.module == "torch" and dtypes.lookup(g.name) is not None and dtype_value_ok(g.name, self.target):
            return g
        if g.module == "torch" and g.name in QSCHEMES and self.target >= V("2.4"):
            return g
        self.note("converted", path, f"reference to {g.canonical} -> its name (str)")
        return g.canonical

    def _numpy(self, v: Any, path: str, depth: int) -> Any:
        import numpy as np

        if isinstance(v, np.dtype):
            self.note("converted", path, f"numpy dtype {v} -> str")
            return str(v)
        if isinstance(v, np.generic):
            py = v.item()
            if isinstance(py, bytes):
                py = py.decode("latin-1")
            self.note("converted", path, f"numpy scalar {type(v).__name__} -> {type(py).__name__}")
            return self.value(py, path, depth + 1) if not isinstance(py, (int, float, bool, str)) else py
        arr = v if isinstance(v, np.ndarray) else v.to_numpy()
        if arr is None:  # object arrays, odd dtypes: keep the elements as a (nested) list
            data = v.data if isinstance(v, NumpyArray) else None
            self.note("converted", path, "numpy object array -> list")
            return self.value(list(data) if isinstance(data, list) else [], path, depth + 1)
        try:
            t = memory_tensor(arr, key=f"numpy:{path}")
        except ValueError:
            self.note("converted", path, f"numpy array of {arr.dtype} -> list")
            return self.value(arr.tolist(), path, depth + 1)
        self.note("converted", path, f"numpy array {arr.dtype}{list(arr.shape)} -> tensor")
        return t

    def _object(self, o: PickledObject, path: str, depth: int) -> Any:
        name = o.qualname
        canonical = name.replace("__builtin__.", "builtins.")
        if is_module(o):
            sd = state_dict_of_module(o)
            self.note("replaced", path, f"{name} module object -> its state_dict ({len(sd)} entries)")
            return self.value(sd, path, depth + 1)
        attrs = o.attrs
        if canonical == "argparse.Namespace":
            self.note("converted", path, "argparse.Namespace -> dict")
            return self.value(dict(attrs), path, depth + 1)
        if canonical in ("collections.defaultdict", "collections.Counter", "collections.OrderedDict"):
            d: dict[Any, Any] = {}
            if o.args and isinstance(o.args[-1], dict):
                d.update(o.args[-1])
            d.update(o.dictitems)
            self.note("converted", path, f"{canonical} -> dict")
            return self.value(d, path, depth + 1)
        if canonical == "collections.deque":
            items = list(o.args[0]) if o.args and isinstance(o.args[0], (list, tuple)) else []
            self.note("converted", path, "collections.deque -> list")
            return self.value(items + list(o.listitems), path, depth + 1)
        out: dict[str, Any] = {"__class__": name}
        self.memo[id(o)] = out
        args = () if _is_reconstructor(o) else o.args  # copyreg._reconstructor(cls, object, None): no data
        if args:
            out["__args__"] = self.value(list(args), self._sub(path, "__args__"), depth + 1)
        if isinstance(o.state, dict) or (isinstance(o.state, tuple) and attrs):
            for k, x in attrs.items():
                out[str(k)] = self.value(x, self._sub(path, k), depth + 1)
        elif o.state is not None:
            out["__state__"] = self.value(o.state, self._sub(path, "__state__"), depth + 1)
        if o.listitems:
            out["__items__"] = self.value(list(o.listitems), self._sub(path, "__items__"), depth + 1)
        if o.dictitems:
            out["__dictitems__"] = self.value(dict(o.dictitems), self._sub(path, "__dictitems__"), depth + 1)
        self.note("replaced", path, f"{name} object -> dict recording its class")
        return out


def _is_reconstructor(o: PickledObject) -> bool:
    c = o.callee
    return isinstance(c, Global) and c.canonical == "copyreg._reconstructor"


def _without(t: TensorRecord, key: str) -> TensorRecord:
    import dataclasses

    meta = {k: v for k, v in (t.metadata or {}).items() if k != key}
    return dataclasses.replace(t, metadata=meta or None)


class WeightsOnlySafe(Step):
    id = "weights-only-safe"

    def describe(self) -> str:
        return ("replace every object torch.load(weights_only=True) refuses by plain data "
                "(modules -> state_dicts, numpy -> Python/tensors, other classes -> dicts naming them)")

    def apply(self, tree: Tree) -> list[Change]:
        conv = _Converter(self, tree.target)
        tree.root = conv.value(tree.root, "")
        return conv.changes


def needs_weights_only_safe(root: Any, target: Version) -> bool:
    """True if the tree holds anything :class:`WeightsOnlySafe` would change."""
    conv = _Converter(WeightsOnlySafe(), target)
    conv.value(root, "")
    return bool(conv.changes)


def _is_numpy_value(v: Any) -> bool:
    """numpy values: the reader's NumpyArray, or real numpy objects (only if numpy was imported)."""
    if isinstance(v, NumpyArray):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(v, (np.generic, np.ndarray, np.dtype))
