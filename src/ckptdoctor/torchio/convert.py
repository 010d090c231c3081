"""The value tree of a :class:`~ckptdoctor.model.Checkpoint` -> the objects ``torch.load`` returns.

Every node is converted once (a memo keyed by identity), so objects the file
shares stay shared and cycles stay cycles. Only our own code builds objects:
containers, tensors, numpy values, torch dtypes/devices/sizes/layouts, a few
harmless standard-library types (``argparse.Namespace``, ``defaultdict``,
``Counter``, ``pathlib`` paths) and the classes the caller listed in ``allow``.
Everything else follows the ``on_unknown`` policy; a pickled ``nn.Module`` whose
class was not allowed becomes what its ``state_dict()`` would return.
"""

from __future__ import annotations

import collections
import copyreg
import pathlib
import sys
from typing import Any

import numpy as np

from ckptdoctor.errors import UnreadableFile
from ckptdoctor.model import Storage, TensorRecord
from ckptdoctor.pickle.objects import DeviceValue, Global, OrderedDictValue, PersistentRef, PickledObject
from ckptdoctor.pickle.values import Layout, NumpyArray, TorchDType, TorchSize
from ckptdoctor.pickle.vm import Py2Bytes, Py2Str
from ckptdoctor.torchio.policy import Options, Placeholder, Replacements, UnknownObjectError
from ckptdoctor.torchio.storages import StorageMaker, torch_dtype
from ckptdoctor.torchio.tensors import TensorBuilder
from ckptdoctor.walk import ScriptModuleValue, is_module

_ATOMS = frozenset({str, int, float, bool, bytes, complex, type(None), slice})
_MISSING = object()
_BUSY = object()

# Globals that are safe to hand out as values (referring to them runs nothing).
SAFE_GLOBALS: dict[str, Any] = {
    f"builtins.{t.__name__}": t
    for t in (int, float, str, bool, bytes, bytearray, complex, list, dict, set, frozenset, tuple, object, slice)
}
SAFE_GLOBALS["collections.OrderedDict"] = collections.OrderedDict
# defaultdict factories we accept (they are called later, by the user's code, with no arguments)
SAFE_FACTORIES = {f"builtins.{t.__name__}": t for t in (int, float, str, bool, list, dict, set, tuple, frozenset)}
SAFE_PATHS = {"pathlib.PosixPath": pathlib.PurePosixPath, "pathlib.PurePosixPath": pathlib.PurePosixPath,
              "pathlib.WindowsPath": pathlib.PureWindowsPath, "pathlib.PureWindowsPath": pathlib.PureWindowsPath}
if sys.platform != "win32":
    SAFE_PATHS["pathlib.PosixPath"] = pathlib.PosixPath
# Calls Converter._known rebuilds with our own code.
KNOWN_CALLS = frozenset({"argparse.Namespace", "numpy.dtype", "collections.OrderedDict", "collections.defaultdict",
                         "collections.Counter", "torch._utils._rebuild_nested_tensor",
                         "torch.nn.backends.thnn._get_thnn_function_backend", *SAFE_PATHS})


class Converter:
    def __init__(self, torch: Any, storages: StorageMaker, options: Options, map_location: Any = None) -> None:
        self.torch = torch
        self.storages = storages
        self.options = options
        self.map_location = map_location
        self.replaced = Replacements()
        self.memo: dict[int, Any] = {}
        self.tensors = TensorBuilder(torch, self)
        self.placeholders = 0
        self._safe_torch = (torch.dtype, torch.qscheme, torch.layout)
        self._torch_classes = {"torch.Tensor": torch.Tensor, "torch._tensor.Tensor": torch.Tensor,
                               "torch.nn.parameter.Parameter": torch.nn.Parameter, "torch.Size": torch.Size,
                               "torch.device": torch.device}

    # ------------------------------------------------------------ entry
    def __call__(self, v: Any, path: tuple = ()) -> Any:
        if type(v) in _ATOMS:
            return v
        vid = id(v)
        hit = self.memo.get(vid, _MISSING)
        if hit is _BUSY:
            raise UnreadableFile(f"{self.storages.name}: a tuple contains itself (at {self.render(path)}); "
                                 "such self-references are not supported", kind="unsupported")
        if hit is not _MISSING:
            return hit
        return self._convert(v, path)

    @staticmethod
    def render(path: tuple) -> str:
        return ".".join(str(p.decode("latin-1") if isinstance(p, bytes) else p) for p in path) or "<root>"

    # ------------------------------------------------------------ dispatch
    def _convert(self, v: Any, path: tuple) -> Any:
        memo = self.memo
        vid = id(v)
        if isinstance(v, TensorRecord):
            out = memo[vid] = self.tensors.build(v, path)
            return out
        if isinstance(v, OrderedDictValue):
            out = memo[vid] = collections.OrderedDict()
            self._fill_dict(out, v, path)
            for k, x in v.attrs.items():
                setattr(out, str(k), self(x, path + (str(k),)))
            return out
        if isinstance(v, dict):
            out = memo[vid] = {}
            self._fill_dict(out, v, path)
            return out
        if isinstance(v, list):
            out = memo[vid] = []
            out.extend(self(x, path + (i,)) for i, x in enumerate(v))
            return out
        if isinstance(v, str):
            if isinstance(v, Py2Str) or type(v) is not str:
                return str(v)
            return v
        if isinstance(v, bytes):
            if isinstance(v, Py2Bytes):
                self.replaced.add("a Python 2 str that is not UTF-8", "str (latin-1)", self.render(path))
                return bytes(v).decode("latin-1")
            return bytes(v)
        if isinstance(v, tuple):
            memo[vid] = _BUSY
            items = tuple(self(x, path + (i,)) for i, x in enumerate(v))
            if isinstance(v, TorchSize) and all(type(x) is int for x in items):
                out = self.torch.Size(items)
            else:
                out = items
            memo[vid] = out
            return out
        if isinstance(v, (set, frozenset)):
            conv = [self(x, path + ("{}",)) for x in v]
            out = memo[vid] = set(conv) if isinstance(v, set) else frozenset(conv)
            return out
        if isinstance(v, bytearray):
            out = memo[vid] = bytearray(v)
            return out
        if isinstance(v, Storage):
            out = memo[vid] = self._storage_value(v)
            return out
        if isinstance(v, NumpyArray):
            out = memo[vid] = self._ndarray(v, path)
            return out
        if isinstance(v, (np.ndarray, np.generic, np.dtype)):
            return v
        if isinstance(v, DeviceValue):
            return self._device_value(v, path)
        if isinstance(v, (Layout, TorchDType)):
            got = getattr(self.torch, v.name, None)
            if isinstance(got, self._safe_torch):
                return got
            return self.unknown(f"torch.{v.name}", path)
        if isinstance(v, Global):
            return self._global(v, path)
        if isinstance(v, PickledObject):
            return self._object(v, path)
        if isinstance(v, ScriptModuleValue):
            out = memo[vid] = self._script(v, path)
            return out
        if isinstance(v, PersistentRef):
            return self.unknown(f"persistent id {v.pid!r:.60}", path)
        return self.unknown(f"{type(v).__module__}.{type(v).__qualname__}", path)

    def _fill_dict(self, out: dict, v: dict, path: tuple) -> None:
        for k, x in v.items():
            key = self(k, path + ("<key>",))
            value = self(x, path + (key if isinstance(key, (str, int)) else repr(key),))
            try:
                out[key] = value
            except TypeError:
                raise UnreadableFile(f"{self.storages.name}: unhashable dict key at {self.render(path)}",
                                     kind="corrupt") from None

    # ------------------------------------------------------------ leaves
    def _storage_value(self, st: Storage) -> Any:
        torch = self.torch
        u = self.storages.get(st)
        return torch.storage.TypedStorage(wrap_storage=u, dtype=torch_dtype(torch, st.dtype), _internal=True)

    def _ndarray(self, v: NumpyArray, path: tuple) -> Any:
        """numpy's own ``ndarray.__setstate__`` on the file's (shape, dtype, order, bytes), as unpickling does."""
        dt = v.dtype
        data = v.data
        if isinstance(dt, PickledObject):
            dt = self._np_dtype(dt)
        if not isinstance(dt, np.dtype) or not isinstance(v.shape, tuple):
            return self.unknown("numpy.ndarray (unreadable dtype)", path, how="reduce")
        if dt.hasobject:
            if not isinstance(data, list):
                return self.unknown("numpy.ndarray (object array without items)", path, how="reduce")
            data = [self(x, path + (i,)) for i, x in enumerate(data)]
        elif isinstance(data, bytearray):
            data = bytes(data)
        elif not isinstance(data, bytes):
            return self.unknown("numpy.ndarray (no data)", path, how="reduce")
        arr = np.ndarray.__new__(np.ndarray, (0,), "b")
        try:
            arr.__setstate__((1, v.shape, dt, bool(v.fortran), data))
        except (ValueError, TypeError) as e:
            raise UnreadableFile(f"{self.storages.name}: numpy array at {self.render(path)} is corrupt: {e}",
                                 kind="corrupt") from None
        return arr

    def _device_value(self, v: DeviceValue, path: tuple) -> Any:
        try:
            return self.torch.device(v.type, v.index) if v.index is not None else self.torch.device(v.type)
        except (RuntimeError, TypeError, ValueError):
            return self.unknown(f"torch.device({str(v)!r})", path, how="reduce")

    def device_for(self, device: str) -> Any:
        """A tensor's own device (not a storage's) after map_location, as torch._utils._get_restore_location."""
        ml = self.map_location
        if ml is None or callable(ml) and not isinstance(ml, (dict, str, self.torch.device)):
            return device
        if isinstance(ml, dict):
            return ml.get(device, device)
        return ml

    def _global(self, g: Global, path: tuple) -> Any:
        allowed = self.options.lookup(g)
        if allowed is not None:
            return allowed
        if g.module == "torch":
            got = getattr(self.torch, g.name, None)
            if isinstance(got, self._safe_torch):
                return got
        known = SAFE_GLOBALS.get(g.canonical) or self._torch_classes.get(g.qualname)
        if known is not None:
            return known
        return self.unknown(g.qualname, path)

    # ------------------------------------------------------------ objects
    def _object(self, po: PickledObject, path: tuple) -> Any:
        memo = self.memo
        vid = id(po)
        callee = po.callee
        cls_g = callee
        if isinstance(callee, Global) and callee.canonical in ("copyreg.__newobj__", "copyreg._reconstructor") \
                and po.args and isinstance(po.args[0], Global):
            cls_g = po.args[0]
        if isinstance(cls_g, Global):
            allowed = self.options.lookup(cls_g)
            if allowed is not None:
                return self._rebuild_allowed(po, allowed, path)
            known = self._known(po, cls_g, path)
            if known is not _MISSING:
                memo[vid] = known
                return known
        if is_module(po):
            if self.options.on_unknown == "error":
                raise self._error(po.qualname, path)
            out = memo[vid] = self.module_state_dict(po, path)
            n = sum(1 for x in out.values() if isinstance(x, self.torch.Tensor))
            self.replaced.add(po.qualname, f"its state_dict() ({n} tensors)", self.render(path),
                              needs=tuple(self._classes_in(po)))
            return out
        return self.unknown(po.qualname, path, po=po)

    def _known(self, po: PickledObject, g: Global, path: tuple) -> Any:
        """Harmless classes and torch functions rebuilt by our own code; _MISSING if not one of them."""
        name = g.canonical
        attrs = po.attrs
        if name == "argparse.Namespace" and not po.listitems and not po.dictitems:
            import argparse

            ns = argparse.Namespace()
            self.memo[id(po)] = ns
            for k, x in attrs.items():
                setattr(ns, str(k), self(x, path + (str(k),)))
            return ns
        if name == "collections.OrderedDict" and po.how in ("newobj", "reduce") and not po.state:
            od: collections.OrderedDict = collections.OrderedDict()
            self.memo[id(po)] = od
            for k, x in po.dictitems:
                key = self(k, path + ("<key>",))
                od[key] = self(x, path + (key,))
            return od
        if name == "collections.defaultdict" and po.how == "reduce" and len(po.args) <= 1:
            factory = po.args[0] if po.args else None
            if factory is None or (isinstance(factory, Global) and factory.canonical in SAFE_FACTORIES):
                dd = collections.defaultdict(SAFE_FACTORIES[factory.canonical] if factory is not None else None)
                self.memo[id(po)] = dd
                for k, x in po.dictitems:
                    key = self(k, path + ("<key>",))
                    dd[key] = self(x, path + (key,))
                return dd
        if name == "collections.Counter" and po.how == "reduce" and len(po.args) <= 1 and not po.state:
            src = po.args[0] if po.args else {}
            if isinstance(src, dict):
                return collections.Counter(self(src, path))
        if name in SAFE_PATHS and po.how == "reduce" and all(isinstance(a, str) for a in po.args):
            return SAFE_PATHS[name](*map(str, po.args))
        if name == "numpy.dtype":
            dt = self._np_dtype(po)
            if dt is not None:
                return dt
        if name == "torch._utils._rebuild_nested_tensor" and len(po.args) == 4:
            args = [self(a, path + (i,)) for i, a in enumerate(po.args)]
            if all(isinstance(a, self.torch.Tensor) for a in args):
                try:
                    return self.torch._nested_view_from_buffer(*args)
                except RuntimeError as e:
                    raise UnreadableFile(f"nested tensor {self.render(path)} is invalid: {e}", kind="corrupt") from None
        if name == "torch.nn.backends.thnn._get_thnn_function_backend" and not po.args:
            return None  # what torch 2.x itself returns for pre-1.0 modules' _backend
        return _MISSING

    @staticmethod
    def _np_dtype(po: PickledObject) -> np.dtype | None:
        """``numpy.dtype(code)`` + BUILD for the simple dtypes the core leaves as placeholders (objects: ``O8``)."""
        if not (isinstance(po.callee, Global) and po.callee.canonical in ("numpy.dtype",)) or not po.args:
            return None
        code, state = po.args[0], po.state
        if not isinstance(code, str) or len(code) > 8 or code.lstrip("<>|=")[:1] not in ("O", "b", "i", "u", "f",
                                                                                           "c", "S", "U", "V", "M",
                                                                                           "m", "?"):
            return None
        try:
            dt = np.dtype(code)
        except TypeError:
            return None
        if isinstance(state, tuple) and len(state) >= 4 and state[3] is not None:
            return None  # structured: fields would need their own dtypes
        if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">"):
            dt = dt.newbyteorder(state[1])
        return dt

    def _rebuild_allowed(self, po: PickledObject, obj: Any, path: tuple) -> Any:
        """What pickle would do with an allowed class or function (the caller trusts this file)."""
        callee = po.callee
        canon = callee.canonical if isinstance(callee, Global) else ""
        args = self(po.args, path + ("<args>",))
        kwargs = self(po.kwargs, path + ("<kwargs>",)) if po.kwargs else {}
        try:
            if canon == "copyreg.__newobj__":
                inst = obj.__new__(obj, *args[1:])
            elif canon == "copyreg._reconstructor":
                base, state0 = (args[1], args[2]) if len(args) == 3 else (object, None)
                base_g = po.args[1] if len(po.args) == 3 else None
                if base not in SAFE_GLOBALS.values() and not (isinstance(base_g, Global)
                                                              and self.options.lookup(base_g) is not None):
                    return self.unknown(po.qualname, path, po=po)
                inst = copyreg._reconstructor(obj, base, state0)
            elif po.how in ("newobj", "newobj_ex"):
                inst = obj.__new__(obj, *args, **kwargs)
            elif po.how in ("obj", "inst") and not args and isinstance(obj, type) and not hasattr(obj, "__getinitargs__"):
                inst = obj.__new__(obj)
            else:
                inst = obj(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - the caller's class refused the file's arguments
            raise UnreadableFile(f"{self.storages.name}: allowed {po.qualname} could not be rebuilt at "
                                 f"{self.render(path)}: {type(e).__name__}: {e}", kind="allowed-class") from e
        self.memo[id(po)] = inst
        if po.listitems:
            items = [self(x, path + (i,)) for i, x in enumerate(po.listitems)]
            extend = getattr(inst, "extend", None)
            if extend is not None:
                extend(items)
            else:
                for x in items:
                    inst.append(x)
        for k, x in po.dictitems:
            key = self(k, path + ("<key>",))
            inst[key] = self(x, path + (key,))
        if po.state is not None:
            state = self(po.state, path)
            setstate = getattr(inst, "__setstate__", None)
            if setstate is not None:
                setstate(state)
            else:
                slots = None
                if isinstance(state, tuple) and len(state) == 2:
                    state, slots = state
                if state:
                    inst.__dict__.update(state)
                for k, x in (slots or {}).items():
                    setattr(inst, k, x)
        return inst

    # ------------------------------------------------------------ modules
    def module_state_dict(self, po: PickledObject, path: tuple) -> collections.OrderedDict:
        """What ``module.state_dict()`` returns, from the pickled attributes (keep_vars=False)."""
        out: collections.OrderedDict = collections.OrderedDict()
        out._metadata = collections.OrderedDict()  # type: ignore[attr-defined]
        self._module_into(po, "", out, path, 0)
        return out

    def _module_into(self, po: PickledObject, prefix: str, out: collections.OrderedDict, path: tuple,
                     depth: int) -> None:
        if depth > 1000:
            raise UnreadableFile(f"{self.storages.name}: modules nested too deeply", kind="corrupt")
        attrs = po.attrs
        out._metadata[prefix[:-1]] = {"version": self._module_version(po)}  # type: ignore[attr-defined]
        for name, p in (attrs.get("_parameters") or {}).items():
            if p is not None:
                t = self(p, path + ("_parameters", name))
                out[prefix + str(name)] = t.detach() if isinstance(t, self.torch.Tensor) else t
        non_persistent = attrs.get("_non_persistent_buffers_set") or set()
        if not isinstance(non_persistent, (set, frozenset, list, tuple)):
            non_persistent = set()
        for name, b in (attrs.get("_buffers") or {}).items():
            if b is not None and name not in non_persistent:
                t = self(b, path + ("_buffers", name))
                out[prefix + str(name)] = t.detach() if isinstance(t, self.torch.Tensor) else t
        for name, child in (attrs.get("_modules") or {}).items():
            if child is not None and is_module(child):
                self._module_into(child, f"{prefix}{name}.", out, path + ("_modules", name), depth + 1)

    def _classes_in(self, root: PickledObject) -> list[str]:
        """Every class or function a pickled object tree calls that we would not rebuild ourselves."""
        out: dict[str, None] = {}
        seen: set[int] = set()
        todo: list[Any] = [root]
        while todo and len(seen) < 100_000:
            v = todo.pop()
            if id(v) in seen or type(v) in _ATOMS:
                continue
            seen.add(id(v))
            if isinstance(v, PickledObject):
                g = v.callee
                if isinstance(g, Global) and g.canonical in ("copyreg.__newobj__", "copyreg._reconstructor") \
                        and v.args and isinstance(v.args[0], Global):
                    g = v.args[0]
                if isinstance(g, Global) and g.canonical not in KNOWN_CALLS:
                    out.setdefault(g.qualname, None)
                todo.extend((v.args, v.state, v.listitems, [x for kv in v.dictitems for x in kv]))
            elif isinstance(v, dict):
                todo.extend(v.values())
            elif isinstance(v, (list, tuple, set, frozenset)):
                todo.extend(v)
        first = root.qualname
        return sorted(out, key=lambda q: (q != first, q))

    def _module_version(self, po: PickledObject) -> int:
        """The class's ``_version`` if torch (already imported) defines the class, else Module's 1."""
        g = po.callee
        if isinstance(g, Global) and g.canonical in ("copyreg.__newobj__", "copyreg._reconstructor") and po.args:
            g = po.args[0]
        if not isinstance(g, Global):
            return 1
        cls = self.options.lookup(g)
        if cls is None and g.module.split(".")[0] == "torch":
            cls = getattr(sys.modules.get(g.module), g.name, None)  # never imports anything
        v = getattr(cls, "_version", 1) if isinstance(cls, type) else 1
        return v if isinstance(v, int) else 1

    def _script(self, v: ScriptModuleValue, path: tuple) -> Any:
        out: collections.OrderedDict = collections.OrderedDict()
        for k, x in v.state_dict.items():
            t = self(x, path + (k,))
            out[k] = t.detach() if isinstance(t, self.torch.Tensor) else t
        n = sum(1 for x in out.values() if isinstance(x, self.torch.Tensor))
        self.replaced.add(f"TorchScript module {v.qualname}",
                          f"its state_dict() ({n} tensors; TorchScript code is not run)", self.render(path))
        return out

    # ------------------------------------------------------------ the unknown
    def unknown(self, qualname: str, path: tuple, *, po: PickledObject | None = None, how: str = "global") -> Any:
        policy = self.options.on_unknown
        if policy == "error":
            raise self._error(qualname, path)
        where = self.render(path)
        if po is not None:
            how = po.how
        if policy == "dict":
            out: Any = {"__class__": qualname}
            if po is not None:
                self.memo[id(po)] = out
                if po.args:
                    out["__args__"] = self(po.args, path + ("__args__",))
                if po.kwargs:
                    out["__kwargs__"] = self(po.kwargs, path + ("__kwargs__",))
                state = po.state
                if isinstance(state, dict):
                    for k, x in state.items():
                        out[self(k, path)] = self(x, path + (str(k),))
                elif state is not None:
                    out["__state__"] = self(state, path + ("__state__",))
                if po.listitems:
                    out["__items__"] = self(po.listitems, path + ("__items__",))
                if po.dictitems:
                    out["__dictitems__"] = [(self(k, path), self(x, path)) for k, x in po.dictitems]
            self.replaced.add(qualname, "a dict" if po is not None else "{'__class__': name}", where)
            return out
        ph = Placeholder(qualname, how)
        self.placeholders += 1
        if po is not None:
            self.memo[id(po)] = ph
            ph.args = self(po.args, path + ("<args>",))
            ph.kwargs = self(po.kwargs, path + ("<kwargs>",)) if po.kwargs else None
            ph.state = self(po.state, path) if po.state is not None else None
            ph.listitems = [self(x, path + (i,)) for i, x in enumerate(po.listitems)]
            ph.dictitems = [(self(k, path), self(x, path)) for k, x in po.dictitems]
        self.replaced.add(qualname, "Placeholder", where)
        return ph

    def unknown_subclass(self, qualname: str, path: tuple) -> None:
        if self.options.on_unknown == "error":
            raise self._error(qualname, path)
        self.replaced.add(qualname, "torch.Tensor", self.render(path))

    def _error(self, qualname: str, path: tuple) -> UnknownObjectError:
        return UnknownObjectError(
            f"{self.storages.name}: {qualname} at {self.render(path)} would run code to rebuild; "
            f"pass allow=[...] with it if you trust this file, or on_unknown='placeholder'",
            qualname=qualname, path=self.render(path))
