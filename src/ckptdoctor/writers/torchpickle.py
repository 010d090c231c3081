"""``data.pkl`` as torch.save writes it, from a ckptdoctor value tree.

Tensors become the same ``torch._utils._rebuild_*`` calls torch's
``Tensor.__reduce_ex__`` returns; storages become torch's persistent ids
(``('storage', torch.<X>Storage, key, location, numel)`` for the zip format,
plus ``view_metadata=None`` for the legacy stream). Placeholders
(:class:`~ckptdoctor.pickle.objects.PickledObject`) are written back as the
same calls they recorded, so nothing is lost that the reader kept; making a
tree weights-only-safe is a *fix step*, not this module's business.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.dtypes import DType
from ckptdoctor.errors import CkptdoctorError
from ckptdoctor.model import Storage, TensorRecord
from ckptdoctor.pickle.objects import DeviceValue, Global, OrderedDictValue, PersistentRef, PickledObject
from ckptdoctor.pickle.values import Layout, NumpyArray, TorchDType
from ckptdoctor.pickle.writer import Pickler, PicklingError, Reduce
from ckptdoctor.walk import ScriptModuleValue

UTILS = "torch._utils"
G_ORDERED_DICT = Global("collections", "OrderedDict")
G_UNTYPED = Global("torch.storage", "UntypedStorage")
TENSOR_FLAG_KEYS = ("attrs", "subclass", "state")  # TensorRecord.metadata keys that are not tensor flags


class WriteError(CkptdoctorError, ValueError):
    """The tree cannot be written in the requested container (one-line reason)."""

    code = "cannot-write"


@dataclass(slots=True, eq=False)
class StorageEntry:
    """One storage record to write after the pickle."""

    storage: Storage
    dtype: DType  # element type named in the persistent id (uint8 for untyped)
    typed: bool
    key: str
    location: str
    index: int

    @property
    def numel(self) -> int:
        return self.storage.nbytes // self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize


@dataclass(slots=True, eq=False)
class StorageRef:
    """A storage as one tensor sees it (torch makes a fresh TypedStorage per tensor)."""

    storage: Storage
    dtype: DType
    typed: bool


def is_typed(dt: DType) -> bool:
    """dtypes torch still saves through a typed storage class + ``_rebuild_tensor_v2``."""
    return dt.storage_class is not None


class TorchPickler:
    """Pickle a value tree into ``data.pkl`` bytes and collect the storages to write.

    ``legacy=True`` writes the ≤1.5 stream's 6-tuple persistent ids and
    pointer-like keys; otherwise the zip format's 5-tuples with keys
    ``"0"``, ``"1"``, ... in first-use order (torch ≥ 1.9).
    """

    def __init__(self, *, legacy: bool = False, numpy_module: str = "numpy.core",
                 note: Callable[[str], None] | None = None) -> None:
        self.legacy = legacy
        self.numpy_module = numpy_module
        self.note = note or (lambda msg: None)
        self.storages: list[StorageEntry] = []
        self._by_storage: dict[tuple[int, str], StorageEntry] = {}
        self._layouts: dict[str, Reduce] = {}

    # ------------------------------------------------------------------ entry
    def dumps(self, root: Any) -> bytes:
        p = Pickler(persistent_id=self._persistent_id, reducer=self._reduce)
        try:
            return bytes(p.dump(root))
        except PicklingError as e:
            raise WriteError(str(e)) from None

    # ------------------------------------------------------------------ storages
    def _entry(self, ref: StorageRef) -> StorageEntry:
        st = ref.storage
        k = (id(st), ref.dtype.name if ref.typed else "untyped")
        e = self._by_storage.get(k)
        if e is None:
            if st.nbytes % ref.dtype.itemsize:
                raise WriteError(f"storage {st.key!r} ({st.nbytes} bytes) cannot be viewed as {ref.dtype.name}")
            others = [x for (sid, _), x in self._by_storage.items() if sid == id(st)]
            if others:
                self.note(f"storage {st.key!r} is viewed as {others[0].dtype.name} and {ref.dtype.name}: "
                          f"written twice (torch cannot share one storage between dtypes)")
            idx = len(self.storages)
            key = f"{94000000000000 + 64 * idx}" if self.legacy else str(idx)  # a 14-digit "pointer"
            e = StorageEntry(st, ref.dtype, ref.typed, key, st.location, idx)
            self._by_storage[k] = e
            self.storages.append(e)
        return e

    def _persistent_id(self, obj: Any) -> Any:
        if type(obj) is StorageRef:
            e = self._entry(obj)
            if obj.typed:
                stype = Global("torch", e.dtype.storage_class)
            else:
                # torch's legacy loader asks the storage class for .dtype, which UntypedStorage lacks
                # (torch 2.13 cannot read back its own legacy float8/uint16 files); ByteStorage holds
                # the same bytes and _rebuild_tensor_v3 re-types them.
                stype = Global("torch", "ByteStorage") if self.legacy else G_UNTYPED
            # legacy keys are str(storage._cdata): a fresh string per reference; zip keys are memoised
            key = str(int(e.key)) if self.legacy else e.key
            if self.legacy:
                return ("storage", stype, key, e.location, e.numel, None)
            return ("storage", stype, key, e.location, e.numel)
        if type(obj) is Storage:
            return self._persistent_id(StorageRef(obj, obj.dtype, is_typed(obj.dtype)))
        return None

    # ------------------------------------------------------------------ reducer
    def _reduce(self, obj: Any) -> Any:
        if isinstance(obj, TensorRecord):
            return self._tensor(obj)
        if isinstance(obj, OrderedDictValue):
            state = obj.attrs if obj.attrs else None
            return Reduce(G_ORDERED_DICT, (), state=state, dictitems=list(obj.items()))
        if isinstance(obj, PickledObject):
            return self._placeholder(obj)
        if isinstance(obj, TorchDType):
            return Global("torch", obj.name)
        if isinstance(obj, Layout):
            return self._layout(obj.name)
        if isinstance(obj, DeviceValue):
            return Reduce(Global("torch", "device"), (obj.type,) if obj.index is None else (obj.type, obj.index))
        if isinstance(obj, slice):
            return Reduce(Global("builtins", "slice"), (obj.start, obj.stop, obj.step))
        if isinstance(obj, ScriptModuleValue):
            self.note(f"TorchScript module {obj.qualname}: wrote its state_dict (the code cannot be kept)")
            return obj.state_dict
        if isinstance(obj, NumpyArray):
            return self._ndarray(obj.dtype, obj.shape, obj.fortran, obj.data)
        np = sys.modules.get("numpy")  # no numpy imported: no numpy object can be in the tree
        if np is None:
            return None
        if isinstance(obj, np.ndarray):
            raw = obj.tobytes(order="F" if obj.flags.f_contiguous and not obj.flags.c_contiguous else "C")
            return self._ndarray(obj.dtype, obj.shape, bool(obj.flags.f_contiguous and not obj.flags.c_contiguous), raw)
        if isinstance(obj, (np.generic, np.dtype)):
            return self._numpy_reduce(obj)
        if isinstance(obj, PersistentRef):
            raise WriteError(f"unresolved persistent id {obj.pid!r:.60} cannot be written")
        return None

    def _placeholder(self, obj: PickledObject) -> Reduce:
        newobj = obj.how in ("newobj", "newobj_ex")
        if obj.how == "newobj_ex" and obj.kwargs:
            self.note(f"{obj.qualname}: keyword arguments of NEWOBJ_EX dropped (protocol 2 has no such opcode)")
        return Reduce(obj.callee, tuple(obj.args), state=obj.state, listitems=obj.listitems or None,
                      dictitems=obj.dictitems or None, newobj=newobj)

    def _layout(self, name: str) -> Reduce:
        r = self._layouts.get(name)
        if r is None:  # one layout object per name, as torch has: memoised after its first use
            r = Reduce(Global("torch.serialization", "_get_layout"), (f"torch.{name}",))
            self._layouts[name] = r
        return r

    # ------------------------------------------------------------------ numpy (kept as numpy)
    def _np_global(self, module: str, name: str) -> Global:
        if module.startswith(("numpy._core", "numpy.core")):
            module = self.numpy_module + module.split("core", 1)[1]
        return Global(module, name)

    def _numpy_reduce(self, obj: Any) -> Reduce:
        red = obj.__reduce_ex__(2)  # numpy's own reduction of a value *we* built: no file code runs
        func, args = red[0], red[1]
        state = red[2] if len(red) > 2 else None
        callee = self._np_global(getattr(func, "__module__", "numpy"), func.__name__)
        args = tuple(self._np_arg(a) for a in args)
        return Reduce(callee, args, state=state)

    def _np_arg(self, a: Any) -> Any:
        if isinstance(a, type):
            return self._np_global(a.__module__, a.__name__)
        return a

    def _ndarray(self, dt: Any, shape: tuple, fortran: bool, data: Any) -> Reduce:
        if isinstance(data, bytearray):
            data = bytes(data)
        state = (1, tuple(shape), dt, bool(fortran), data)
        args = (self._np_global("numpy", "ndarray"), (0,), b"b")
        return Reduce(self._np_global("numpy.core.multiarray", "_reconstruct"), args, state=state)

    # ------------------------------------------------------------------ tensors
    def _hooks(self) -> Reduce:
        return Reduce(G_ORDERED_DICT, ())

    def _storage_ref(self, t: TensorRecord, dt: DType) -> StorageRef:
        assert t.storage is not None
        typed = is_typed(dt)
        return StorageRef(t.storage, dt if typed else dtypes.BY_NAME["uint8"], typed)

    def _tensor(self, t: TensorRecord) -> Reduce:
        if t.layout != "strided":
            return self._sparse(t)
        if t.storage is None:
            return Reduce(Global(UTILS, "_rebuild_meta_tensor_no_storage"),
                          (Global("torch", t.dtype.name), tuple(t.shape), tuple(t.stride), t.requires_grad))
        meta = dict(t.metadata or {})
        flags = {k: v for k, v in meta.items() if k not in TENSOR_FLAG_KEYS}
        inner_rg = False if t.is_parameter else t.requires_grad
        if t.quantizer:
            inner = Reduce(Global(UTILS, "_rebuild_qtensor"), (
                self._storage_ref(t, t.dtype), t.offset, tuple(t.shape), tuple(t.stride),
                self._qparams(t), inner_rg, self._hooks()))
        elif is_typed(t.dtype):
            args: tuple = (self._storage_ref(t, t.dtype), t.offset, tuple(t.shape), tuple(t.stride), inner_rg,
                           self._hooks())
            inner = Reduce(Global(UTILS, "_rebuild_tensor_v2"), args + ((flags,) if flags else ()))
        else:
            args = (self._storage_ref(t, t.dtype), t.offset, tuple(t.shape), tuple(t.stride), inner_rg,
                    self._hooks(), Global("torch", t.dtype.name))
            inner = Reduce(Global(UTILS, "_rebuild_tensor_v3"), args + ((flags,) if flags else ()))
        if t.device_override and t.device_override != "meta":
            inner = Reduce(Global(UTILS, "_rebuild_device_tensor_from_cpu_tensor"),
                           (inner, Global("torch", t.dtype.name), t.device_override, t.requires_grad))
        if t.is_parameter:
            state = meta.get("state")
            if state:
                return Reduce(Global(UTILS, "_rebuild_parameter_with_state"),
                              (inner, t.requires_grad, self._hooks(), state))
            return Reduce(Global(UTILS, "_rebuild_parameter"), (inner, t.requires_grad, self._hooks()))
        subclass, attrs = meta.get("subclass"), meta.get("attrs")
        if subclass or attrs:
            new_type = Global(*subclass.rsplit(".", 1)) if subclass else Global("torch", "Tensor")
            return Reduce(Global("torch._tensor", "_rebuild_from_type_v2"),
                          (inner.callee, new_type, inner.args, attrs or {}))
        return inner

    def _qparams(self, t: TensorRecord) -> tuple:
        q = t.quantizer or {}
        scheme = str(q.get("qscheme"))
        if "scale" in q:
            return (Global("torch", scheme), float(q["scale"]), int(q["zero_point"]))
        # torch writes per_channel_affine_float_qparams with the per_channel_affine tag
        tag = "per_channel_affine" if scheme == "per_channel_affine_float_qparams" else scheme
        return (Global("torch", tag), q.get("scales"), q.get("zero_points"), q.get("axis"))

    def _sparse(self, t: TensorRecord) -> Reduce:
        parts = list(t.sparse_parts or ())
        size_at = 2 if t.layout == "sparse_coo" else 3
        if len(parts) > size_at and isinstance(parts[size_at], (tuple, list)):
            parts[size_at] = Reduce(Global("torch", "Size"), (tuple(parts[size_at]),))
        return Reduce(Global(UTILS, "_rebuild_sparse_tensor"), (self._layout(t.layout), tuple(parts)))
