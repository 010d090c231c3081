"""Rebuild PyTorch's pickled objects as data, from our own code.

torch pickles tensors as calls to ``torch._utils._rebuild_*`` functions; here
each known (module, name) maps to a small function that validates the
arguments and returns a :class:`~ckptdoctor.model.TensorRecord` or another
safe value. Anything else stays a placeholder. The function names are the
real ones torch uses in every release (see docs/formats.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor._lazy import numpy as np  # imported on first use: inspect needs none
from ckptdoctor.errors import LimitExceeded, UnreadableFile
from ckptdoctor.limits import DEFAULT_LIMITS, Limits
from ckptdoctor.model import Storage, TensorRecord
from ckptdoctor.pickle.objects import DeviceValue, Global, OrderedDictValue, PickledObject
from ckptdoctor.pickle.values import Layout, NumpyArray, PendingDType, PendingNumpy, TorchDType, TorchSize
from ckptdoctor.pickle.vm import NOT_HANDLED

Handler = Callable[["TorchResolver", tuple, "dict | None", int], Any]
HANDLERS: dict[str, Handler] = {}

PACKED_BITS = dtypes.PACKED_BITS
FLOAT_DTYPES = {"float64", "float32", "float16", "bfloat16"}
QSCHEMES = {
    "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric", "per_channel_symmetric",
    "per_channel_affine_float_qparams",
}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


class TorchResolver:
    """The VM's resolver + build hook for torch checkpoints."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.notes: list[str] = []

    def __call__(self, callee: Any, args: tuple, kwargs: dict | None, how: str, offset: int) -> Any:
        if not isinstance(callee, Global):
            return NOT_HANDLED
        handler = HANDLERS.get(callee.canonical)
        if handler is None:
            return NOT_HANDLED
        return handler(self, args, kwargs, offset)

    def build(self, obj: Any, state: Any) -> Any:
        if isinstance(obj, PendingNumpy):
            return _build_ndarray(state, obj)
        if isinstance(obj, PendingDType):
            return _build_dtype(obj, state)
        if isinstance(obj, TensorRecord):
            # legacy Variable/Parameter states, or Python attributes set on a tensor
            if isinstance(state, tuple) and len(state) == 3 and isinstance(state[0], bool):
                obj.requires_grad = state[0]
            elif isinstance(state, dict):
                obj.metadata = {**(obj.metadata or {}), "attrs": _plain(state)}
                obj.py_state = state
            return obj
        if isinstance(obj, PickledObject) and isinstance(obj.callee, Global):
            # pre-0.4 tensors: `torch.FloatTensor` instance + BUILD (storage, offset, size, stride)
            dt = _legacy_tensor_dtype(obj.callee)
            if dt is not None and isinstance(state, tuple) and len(state) == 4 and isinstance(state[0], Storage):
                return _make_tensor(self, state[0], state[1], state[2], state[3], dt, rebuild=obj.callee.qualname)
        return NOT_HANDLED


# ---------------------------------------------------------------- tensors
def _ints(v: Any, what: str) -> tuple[int, ...]:
    if isinstance(v, (tuple, list)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return tuple(v)
    raise UnreadableFile(f"tensor {what} is not a tuple of integers: {v!r:.80}", kind="corrupt")


def _make_tensor(
    res: TorchResolver,
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    dtype: dtypes.DType | None = None,
    *,
    requires_grad: bool = False,
    metadata: Any = None,
    rebuild: str = "torch._utils._rebuild_tensor_v2",
) -> Any:
    if not isinstance(storage, Storage):
        return NOT_HANDLED
    shape = _ints(size, "size")
    strides = _ints(stride, "stride")
    if len(shape) != len(strides):
        raise UnreadableFile(f"tensor has {len(shape)} sizes but {len(strides)} strides", kind="corrupt")
    if not isinstance(offset, int) or offset < 0 or any(s < 0 for s in shape) or any(s < 0 for s in strides):
        raise UnreadableFile("tensor has a negative size, stride or offset", kind="corrupt")
    dt = dtype or storage.dtype
    numel = 1
    for s in shape:
        numel *= s
    if numel > res.limits.max_tensor_elements:
        raise LimitExceeded("tensor elements", res.limits.max_tensor_elements, numel)
    t = TensorRecord(dt, shape, strides, storage, offset, bool(requires_grad), rebuild=rebuild)
    if numel:
        bits = PACKED_BITS.get(dt.name)  # sub-byte quantized dtypes pack several elements per byte
        need_bytes = -(-t.extent() * bits // 8) if bits else t.extent() * dt.itemsize
        if need_bytes > storage.nbytes:
            raise UnreadableFile(
                f"a tensor of shape {list(shape)} ({dt.name}) needs {need_bytes} bytes of storage "
                f"{storage.key!r}, which declares only {storage.nbytes}: the file is corrupt or hostile",
                kind="corrupt",
            )
    if isinstance(metadata, dict) and metadata:
        t.metadata = _plain(metadata)
    return t


@handles("torch._utils._rebuild_tensor")
def _rebuild_tensor(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) != 4:
        return NOT_HANDLED
    return _make_tensor(res, a[0], a[1], a[2], a[3], rebuild="torch._utils._rebuild_tensor")


@handles("torch._utils._rebuild_tensor_v2")
def _rebuild_tensor_v2(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) not in (6, 7):
        return NOT_HANDLED
    return _make_tensor(res, a[0], a[1], a[2], a[3], requires_grad=bool(a[4]),
                        metadata=a[6] if len(a) == 7 else None)


@handles("torch._utils._rebuild_tensor_v3")
def _rebuild_tensor_v3(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) not in (7, 8):
        return NOT_HANDLED
    dt = _dtype_of(a[6])
    if dt is None:
        return NOT_HANDLED
    return _make_tensor(res, a[0], a[1], a[2], a[3], dt, requires_grad=bool(a[4]),
                        metadata=a[7] if len(a) == 8 else None, rebuild="torch._utils._rebuild_tensor_v3")


@handles("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state")
def _rebuild_parameter(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) < 2 or not isinstance(a[0], TensorRecord):
        return NOT_HANDLED
    t = a[0]
    t.is_parameter = True
    t.requires_grad = bool(a[1])
    if len(a) == 4 and a[3]:
        t.metadata = {**(t.metadata or {}), "state": _plain(a[3])}
        t.py_state = a[3]
    return t


@handles("torch.nn.parameter.Parameter")
def _parameter_call(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    """torch 0.4.0 pickled parameters as ``Parameter(tensor, requires_grad)`` (REDUCE)."""
    if not 1 <= len(a) <= 2 or not isinstance(a[0], TensorRecord) or kw:
        return NOT_HANDLED
    t = a[0]
    t.is_parameter = True
    t.requires_grad = bool(a[1]) if len(a) == 2 else True
    return t


@handles("torch._utils._rebuild_qtensor")
def _rebuild_qtensor(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) != 7 or not isinstance(a[4], tuple) or not a[4]:
        return NOT_HANDLED
    t = _make_tensor(res, a[0], a[1], a[2], a[3], requires_grad=bool(a[5]), rebuild="torch._utils._rebuild_qtensor")
    if t is NOT_HANDLED:
        return t
    q = a[4]
    scheme = q[0].name if isinstance(q[0], Global) else str(q[0])
    qinfo: dict[str, Any] = {"qscheme": scheme}
    if scheme in ("per_tensor_affine", "per_tensor_symmetric") and len(q) >= 3:
        qinfo.update(scale=q[1], zero_point=q[2])
    elif len(q) >= 4:
        qinfo.update(scales=q[1], zero_points=q[2], axis=q[3])
        # torch writes float_qparams tensors with the per_channel_affine tag; torch.load gets the
        # float_qparams quantizer back because the zero points are floating point.
        zp = q[2]
        if scheme == "per_channel_affine" and isinstance(zp, TensorRecord) and zp.dtype.name in FLOAT_DTYPES:
            qinfo["qscheme"] = "per_channel_affine_float_qparams"
    t.quantizer = qinfo
    return t


@handles("torch._utils._rebuild_sparse_tensor", "torch._utils._rebuild_sparse_csr_tensor")
def _rebuild_sparse(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) != 2 or not isinstance(a[1], tuple):
        return NOT_HANDLED
    layout = a[0].name if isinstance(a[0], Layout) else str(a[0])
    parts = a[1]
    values = next((p for p in reversed(parts) if isinstance(p, TensorRecord)), None)
    if layout == "sparse_coo" and len(parts) >= 3:
        values, size = parts[1], parts[2]
    else:
        size = parts[3] if len(parts) >= 4 else ()
    if not isinstance(values, TensorRecord):
        return NOT_HANDLED
    shape = tuple(size) if isinstance(size, (tuple, list)) else ()
    return TensorRecord(values.dtype, shape, (), values.storage, 0, layout=layout, sparse_parts=parts,
                        rebuild="torch._utils._rebuild_sparse_tensor")


@handles("torch._utils._rebuild_meta_tensor_no_storage")
def _rebuild_meta(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) != 4:
        return NOT_HANDLED
    dt = _dtype_of(a[0])
    if dt is None:
        return NOT_HANDLED
    return TensorRecord(dt, _ints(a[1], "size"), _ints(a[2], "stride"), None, 0, bool(a[3]),
                        rebuild="torch._utils._rebuild_meta_tensor_no_storage", device_override="meta")


@handles("torch._utils._rebuild_device_tensor_from_cpu_tensor")
def _rebuild_from_cpu(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) != 4 or not isinstance(a[0], TensorRecord):
        return NOT_HANDLED
    t = a[0]
    t.device_override = str(a[2])
    t.requires_grad = bool(a[3])
    return t


@handles("torch._utils._rebuild_device_tensor_from_numpy", "torch._utils._rebuild_xla_tensor")
def _rebuild_from_numpy(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) != 4 or not isinstance(a[0], NumpyArray):
        return NOT_HANDLED
    arr = a[0].to_numpy()
    dt = _dtype_of(a[1])
    if arr is None or dt is None:
        return NOT_HANDLED
    arr = np.ascontiguousarray(arr)
    import io

    from ckptdoctor.source import FileObjSource

    src = FileObjSource(io.BytesIO(arr.tobytes()), name="<numpy>")
    store_dt = dtypes.lookup(str(arr.dtype)) or dtypes.BY_NAME["uint8"]
    st = Storage(key=f"numpy@{off}", dtype=store_dt, numel=arr.size, location=str(a[2]),
                 locate=lambda: (0, src.size), source=src)
    strides = tuple(s // arr.itemsize for s in arr.strides) if arr.ndim else ()
    t = TensorRecord(store_dt, tuple(arr.shape), strides, st, 0, bool(a[3]),
                     rebuild="torch._utils._rebuild_device_tensor_from_numpy", device_override=str(a[2]))
    return t


@handles("torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type", "torch.tensor._rebuild_from_type")
def _rebuild_from_type(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) != 4 or not isinstance(a[2], tuple):
        return NOT_HANDLED
    inner = res(a[0], a[2], None, "reduce", off)
    if not isinstance(inner, TensorRecord):
        return NOT_HANDLED
    new_type = a[1].qualname if isinstance(a[1], Global) else None
    if new_type and new_type not in ("torch.Tensor", "torch._tensor.Tensor"):
        inner.metadata = {**(inner.metadata or {}), "subclass": new_type}
        if new_type in ("torch.nn.parameter.Parameter", "torch.nn.Parameter"):
            inner.is_parameter = True
    if a[3]:
        inner.metadata = {**(inner.metadata or {}), "attrs": _plain(a[3])}
        inner.py_state = a[3]
    return inner


# ---------------------------------------------------------------- small torch values
@handles("torch.Size")
def _torch_size(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) == 1 and isinstance(a[0], (tuple, list)):
        return TorchSize(a[0])
    return NOT_HANDLED


@handles("torch.device")
def _torch_device(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) == 1 and isinstance(a[0], str):
        t, _, i = a[0].partition(":")
        return DeviceValue(t, int(i) if i.isdigit() else None)
    if len(a) == 2 and isinstance(a[0], str) and (a[1] is None or isinstance(a[1], int)):
        return DeviceValue(a[0], a[1])
    return NOT_HANDLED


@handles("torch.serialization._get_layout")
def _get_layout(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) == 1 and isinstance(a[0], str):
        return Layout(a[0].removeprefix("torch."))
    return NOT_HANDLED


@handles(
    "torch.jit._pickle.build_intlist", "torch.jit._pickle.build_floatlist", "torch.jit._pickle.build_boollist",
    "torch.jit._pickle.build_doublelist", "torch.jit._pickle.build_tensorlist",
)
def _jit_list(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    return list(a[0]) if len(a) == 1 and isinstance(a[0], list) else NOT_HANDLED


@handles("torch.jit._pickle.restore_type_tag")
def _jit_type_tag(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    return a[0] if len(a) == 2 else NOT_HANDLED


# ---------------------------------------------------------------- Python builtins (data only)
@handles("collections.OrderedDict")
def _ordered_dict(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    d = OrderedDictValue()
    if a:
        if len(a) != 1 or not isinstance(a[0], (list, tuple)):
            return NOT_HANDLED
        for pair in a[0]:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return NOT_HANDLED
            try:
                d[pair[0]] = pair[1]
            except TypeError:
                return NOT_HANDLED
    return d


def _make_container_handler(kind: str) -> Handler:
    def h(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
        if len(a) > 1 or kw:
            return NOT_HANDLED
        items = a[0] if a else ()
        if not isinstance(items, (list, tuple, set, frozenset, dict)):
            return NOT_HANDLED
        try:
            return {"set": set, "frozenset": frozenset, "list": list, "tuple": tuple, "dict": dict}[kind](items)
        except (TypeError, ValueError):
            return NOT_HANDLED

    return h


for _k in ("set", "frozenset", "list", "tuple", "dict"):
    HANDLERS[f"builtins.{_k}"] = _make_container_handler(_k)


@handles("builtins.complex")
def _complex(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if 1 <= len(a) <= 2 and all(isinstance(x, (int, float)) for x in a):
        return complex(*a)
    return NOT_HANDLED


@handles("builtins.slice")
def _slice(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) <= 3 and all(x is None or isinstance(x, int) for x in a):
        return slice(*a)
    return NOT_HANDLED


@handles("builtins.bytearray", "builtins.bytes")
def _bytearray(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if not a:
        return b""
    if len(a) == 1 and isinstance(a[0], (bytes, bytearray)):
        return bytearray(a[0])
    if len(a) == 2 and isinstance(a[0], str) and a[1] in ("latin1", "latin-1"):
        return bytearray(a[0].encode("latin-1", "replace"))
    return NOT_HANDLED  # never bytearray(<int>): that allocates whatever the file asks


@handles("_codecs.encode")
def _codecs_encode(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) == 2 and isinstance(a[0], str) and a[1] in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        try:
            return a[0].encode(a[1])
        except UnicodeEncodeError:
            return NOT_HANDLED
    return NOT_HANDLED


# ---------------------------------------------------------------- numpy
@handles("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct")
def _np_reconstruct(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) == 3 and isinstance(a[0], Global) and a[0].name == "ndarray":
        return PendingNumpy(off)
    return NOT_HANDLED


_SIMPLE_DTYPE = re.compile(r"^[<>|=]?[biufcSUVMm?][0-9]*$|^[a-z]+[0-9]*$")


@handles("numpy.dtype")
def _np_dtype(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if a and isinstance(a[0], str) and _SIMPLE_DTYPE.match(a[0]) and len(a[0]) < 16:
        return PendingDType(a[0])
    return NOT_HANDLED


def _build_dtype(p: PendingDType, state: Any) -> Any:
    try:
        dt = np.dtype(p.code)
    except TypeError:
        return PickledObject(Global("numpy", "dtype"), (p.code,), state=state)
    if isinstance(state, tuple) and len(state) >= 2 and state[1] in ("<", ">"):
        if isinstance(state, tuple) and len(state) >= 4 and state[3] is not None:
            return PickledObject(Global("numpy", "dtype"), (p.code,), state=state)  # structured
        dt = dt.newbyteorder(state[1])
    return dt


def _build_ndarray(state: Any, p: PendingNumpy) -> Any:
    if not (isinstance(state, tuple) and len(state) == 5):
        return PickledObject(Global("numpy.core.multiarray", "_reconstruct"), (), state=state, offset=p.offset)
    _ver, shape, dt, fortran, raw = state
    if isinstance(raw, str):  # py2 pickles can carry the buffer as a latin-1 str
        raw = raw.encode("latin-1", "replace")
    shape_t = tuple(shape) if isinstance(shape, (tuple, list)) else ()
    return NumpyArray(dt, shape_t, bool(fortran), raw if isinstance(raw, (bytes, bytearray)) else raw)


@handles("numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer")
def _np_frombuffer(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    """Protocol 5 ndarrays: ``_frombuffer(buffer, dtype, shape, order)`` with the buffer in-band."""
    if (len(a) == 4 and isinstance(a[0], (bytes, bytearray)) and isinstance(a[1], np.dtype)
            and isinstance(a[2], tuple) and a[3] in ("C", "F")):
        return NumpyArray(a[1], _ints(a[2], "shape"), a[3] == "F", bytes(a[0]))
    return NOT_HANDLED


@handles("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")
def _np_scalar(res: TorchResolver, a: tuple, kw: Any, off: int) -> Any:
    if len(a) == 2 and isinstance(a[0], np.dtype) and not a[0].hasobject and isinstance(a[1], (bytes, str)):
        raw = a[1].encode("latin-1") if isinstance(a[1], str) else a[1]
        if len(raw) == a[0].itemsize:
            return np.frombuffer(raw, dtype=a[0])[0]
    return NOT_HANDLED


# ---------------------------------------------------------------- helpers
def _dtype_of(v: Any) -> dtypes.DType | None:
    if isinstance(v, Global) and v.module == "torch":
        return dtypes.lookup(v.name)
    if isinstance(v, TorchDType):
        return dtypes.lookup(v.name)
    return None


def _legacy_tensor_dtype(g: Global) -> dtypes.DType | None:
    """``torch.FloatTensor`` / ``torch.cuda.FloatTensor`` -> float32 (pre-0.4 files)."""
    if not g.module.startswith("torch") or not g.name.endswith("Tensor"):
        return None
    return dtypes.from_storage_class(g.name[: -len("Tensor")] + "Storage")


def _plain(v: Any) -> Any:
    """Best-effort plain data for metadata display."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)
