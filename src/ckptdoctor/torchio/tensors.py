"""TensorRecord -> torch.Tensor, the way torch's own rebuild functions do it, from our code.

Dense tensors are ``torch.empty((0,), dtype).set_(storage, offset, size, stride)``
(``torch._utils._rebuild_tensor``), so dtype, shape, stride, storage offset and
storage sharing are exactly the file's. Quantized tensors get an empty quantized
tensor with the file's quantizer and the same ``set_`` (``_rebuild_qtensor``);
sparse tensors are assembled from their parts and always validated (torch.load
skips that unless sparse invariant checks are on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckptdoctor.dtypes import PACKED_BITS  # sub-byte quantized dtypes: several elements per byte
from ckptdoctor.errors import UnreadableFile
from ckptdoctor.model import TensorRecord
from ckptdoctor.torchio.storages import torch_dtype

if TYPE_CHECKING:
    from ckptdoctor.torchio.convert import Converter

TENSOR_FLAGS = ("conj", "neg")  # what torch._utils.set_tensor_metadata understands
PER_TENSOR = ("per_tensor_affine", "per_tensor_symmetric")
PER_CHANNEL = ("per_channel_affine", "per_channel_affine_float_qparams", "per_channel_symmetric")


class TensorBuilder:
    def __init__(self, torch: Any, conv: Converter) -> None:
        self.torch = torch
        self.conv = conv
        self.storages = conv.storages
        self.count = 0
        self.parameters = 0
        self.quantized = 0
        self.sparse = 0

    def build(self, rec: TensorRecord, path: tuple) -> Any:
        self.count += 1
        if rec.layout != "strided":
            t = self._sparse(rec, path)
        elif rec.storage is None:
            t = self._storageless(rec, path)
        else:
            t = self._dense(rec, path)
        if rec.device_override and rec.device_override != "meta" and rec.storage is not None:
            t = self._to_device(t, rec.device_override, path)
        return self._wrap(rec, t, path)

    # ------------------------------------------------------------ kinds
    def _dense(self, rec: TensorRecord, path: tuple) -> Any:
        torch = self.torch
        dt = torch_dtype(torch, rec.dtype)
        st = rec.storage
        assert st is not None
        need = needed_bytes(rec)
        if need > st.nbytes:
            raise UnreadableFile(
                f"tensor {self.conv.render(path)} of shape {list(rec.shape)} needs {need} "
                f"bytes of storage {st.key!r}, which has {st.nbytes}: the file is corrupt", kind="corrupt")
        storage = self.storages.get(st, rec.dtype)
        if rec.quantizer:
            t = self._quantized_empty(rec, dt, storage.device, path)
        else:
            t = torch.empty((0,), dtype=dt, device=storage.device)
        t.set_(storage, rec.offset, rec.shape, rec.stride)
        flags = {k: bool(v) for k, v in (rec.metadata or {}).items() if k in TENSOR_FLAGS}
        if flags:
            torch._C._set_tensor_metadata(t, flags)
        if rec.requires_grad and not rec.is_parameter:
            self._requires_grad(t, path)
        return t

    def _storageless(self, rec: TensorRecord, path: tuple) -> Any:
        if rec.device_override != "meta":
            raise UnreadableFile(f"tensor {self.conv.render(path)} has no data in this file "
                                 f"(device {rec.device_override or '?'})", kind="unsupported")
        t = self.torch.empty_strided(rec.shape, rec.stride, dtype=torch_dtype(self.torch, rec.dtype), device="meta")
        if rec.requires_grad and not rec.is_parameter:
            self._requires_grad(t, path)
        return t

    def _quantized_empty(self, rec: TensorRecord, dt: Any, device: Any, path: tuple) -> Any:
        torch = self.torch
        self.quantized += 1
        q = rec.quantizer or {}
        scheme = str(q.get("qscheme"))
        where = self.conv.render(path)
        if scheme in PER_TENSOR:
            scale, zero_point = q.get("scale"), q.get("zero_point")
            if not isinstance(scale, (int, float)) or not isinstance(zero_point, int):
                raise UnreadableFile(f"quantized tensor {where}: bad scale/zero_point", kind="corrupt")
            return torch._empty_affine_quantized(rec.shape, scale=float(scale), zero_point=int(zero_point),
                                                 dtype=dt, device=device)
        if scheme in PER_CHANNEL:
            scales = self.conv(q.get("scales"), path + ("q_scales",))
            zero_points = self.conv(q.get("zero_points"), path + ("q_zero_points",))
            axis = q.get("axis")
            if not isinstance(axis, int) or not 0 <= axis < len(rec.shape):
                raise UnreadableFile(f"quantized tensor {where}: axis {axis!r} out of range for shape "
                                     f"{list(rec.shape)}", kind="corrupt")
            want = rec.shape[axis]
            for what, v in (("scales", scales), ("zero_points", zero_points)):
                n = len(v) if isinstance(v, list) else (v.numel() if isinstance(v, torch.Tensor) else -1)
                if n != want:
                    raise UnreadableFile(f"quantized tensor {where}: {n} {what} for {want} channels", kind="corrupt")
            if isinstance(scales, list) and isinstance(zero_points, list):  # as torch._utils._rebuild_qtensor
                if scheme == "per_channel_affine":
                    scales = torch.tensor(scales, dtype=torch.double, device=device)
                    zero_points = torch.tensor(zero_points, dtype=torch.long, device=device)
                else:
                    scales = torch.tensor(scales, dtype=torch.float, device=device)
                    zero_points = torch.tensor(zero_points, dtype=torch.float, device=device)
            return torch._empty_per_channel_affine_quantized(rec.shape, scales=scales, zero_points=zero_points,
                                                             axis=axis, dtype=dt, device=device)
        raise UnreadableFile(f"quantized tensor {where} uses qscheme {scheme!r}, which torch cannot rebuild",
                             kind="corrupt")

    def _sparse(self, rec: TensorRecord, path: tuple) -> Any:
        torch = self.torch
        self.sparse += 1
        layout = getattr(torch, rec.layout, None)
        parts = self.conv(rec.sparse_parts, path + ("sparse",))
        where = self.conv.render(path)
        if not isinstance(layout, torch.layout) or not isinstance(parts, tuple):
            raise UnreadableFile(f"sparse tensor {where}: unknown layout {rec.layout!r}", kind="corrupt")
        try:
            if layout == torch.sparse_coo:
                if len(parts) not in (3, 4):
                    raise ValueError(f"{len(parts)} parts")
                indices, values, size = parts[:3]
                is_coalesced = parts[3] if len(parts) == 4 else None
                t = torch.sparse_coo_tensor(indices, values, size, check_invariants=False, is_coalesced=is_coalesced)
                torch._validate_sparse_coo_tensor_args(t._indices(), t._values(), t.size(), t.is_coalesced(),
                                                       check_pinning=False)
            else:
                if len(parts) != 4:
                    raise ValueError(f"{len(parts)} parts")
                compressed, plain, values, size = parts
                t = torch.sparse_compressed_tensor(compressed, plain, values, size, layout=layout,
                                                   check_invariants=False)
                torch._validate_sparse_compressed_tensor_args(compressed, plain, values, t.size(), layout,
                                                              check_pinning=False)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise UnreadableFile(f"sparse tensor {where} is invalid: {str(e).splitlines()[0]}",
                                 kind="corrupt") from None
        if rec.requires_grad and not rec.is_parameter:
            self._requires_grad(t, path)
        return t

    # ------------------------------------------------------------ finishing touches
    def _to_device(self, t: Any, device: str, path: tuple) -> Any:
        target = self.conv.device_for(device)
        try:
            moved = t.to(device=target)
        except (RuntimeError, ValueError) as e:
            raise UnreadableFile(f"tensor {self.conv.render(path)} was saved for device {device!r}, which this "
                                 f"torch cannot use ({str(e).splitlines()[0]}); pass map_location='cpu'",
                                 kind="device") from None
        if t.requires_grad:
            moved.requires_grad_(True)
        return moved

    def _requires_grad(self, t: Any, path: tuple) -> None:
        try:
            t.requires_grad_(True)
        except RuntimeError as e:
            raise UnreadableFile(f"tensor {self.conv.render(path)}: {str(e).splitlines()[0]}", kind="corrupt") from None

    def _wrap(self, rec: TensorRecord, t: Any, path: tuple) -> Any:
        torch = self.torch
        state = rec.py_state
        if rec.is_parameter:
            self.parameters += 1
            t = torch.nn.Parameter(t, rec.requires_grad)
            if state:
                set_obj_state(t, self.conv(state, path + ("__dict__",)))
            return t
        sub = (rec.metadata or {}).get("subclass")
        cls = None
        if sub:
            cls = self.conv.options.lookup(str(sub))
            if cls is None or not (isinstance(cls, type) and issubclass(cls, torch.Tensor)):
                self.conv.unknown_subclass(str(sub), path)
                cls = None
        if cls is not None:
            t = t.as_subclass(cls)
        if state or cls is not None:
            st = self.conv(state, path + ("__dict__",)) if state else {}
            if cls is not None and getattr(cls, "__setstate__", torch.Tensor.__setstate__) is not torch.Tensor.__setstate__:
                t.__setstate__(st)
            else:
                set_obj_state(t, st)
        return t


def needed_bytes(rec: TensorRecord) -> int:
    """Bytes of storage a strided tensor reaches (a lower bound for sub-byte packed dtypes)."""
    if not rec.numel:
        return 0
    bits = PACKED_BITS.get(rec.dtype.name)
    return -(-rec.extent() * bits // 8) if bits else rec.extent() * rec.dtype.itemsize


def set_obj_state(obj: Any, state: Any) -> Any:
    """``torch._utils._set_obj_state``: a dict of attributes, or (dict, slots)."""
    if isinstance(state, tuple):
        if len(state) != 2:
            raise UnreadableFile(f"invalid tensor state (a {len(state)}-tuple)", kind="corrupt")
        dict_state, slots_state = state
    else:
        dict_state, slots_state = state, None
    for part in (dict_state, slots_state):
        if part:
            if not isinstance(part, dict):
                raise UnreadableFile("invalid tensor state (not a dict)", kind="corrupt")
            for k, v in part.items():
                setattr(obj, str(k), v)
    return obj
