"""Write torch 0.1.x tar checkpoints, for tests only (torch itself has not written them since 0.1.10).

Built from docs/formats.md ("tar") and checked against the two ends that exist
today: a 0.1.x-era ``torch/serialization.py`` ``_save`` (stored copy) and the
tar branch of ``legacy_load`` in torch 2.13's ``torch/serialization.py``.
torch 2.13 loads what this writes (``weights_only=False``): see test_tar_format.py.

An uncompressed PAX tar with four members, in this order:

* ``sys_info``: pickle of ``{'protocol_version': 1000, 'little_endian': True,
  'type_sizes': {'short': 2, 'int': 4, 'long': 4}}``;
* ``pickle``: the object; tensors and storages are persistent ids ``str(key)``, an
  ``nn.Module`` subclass is ``(cls, source_file, source)`` the first time it is seen;
* ``tensors``: pickle T, then T times pickle ``(key, storage_key, torch.<X>Tensor)`` +
  ``i64 ndim`` (readers take an i32 and skip 4 bytes), ndim i64 sizes, ndim i64 strides,
  i64 storage offset;
* ``storages``: pickle N, then N times pickle ``(key, location, torch.<X>Storage)`` +
  ``i64 numel`` + the elements; then a pickle list of views ``(view_key, root_key, offset, size)``.

Keys are ints (0.1.x used the C pointer ``_cdata``). The writer needs no torch; real
torch tensors in the object are converted (their storage is shared the way torch shares it).
"""

from __future__ import annotations

import inspect
import io
import pickle
import struct
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Typed storage classes (torch.<Name>Storage) by torch dtype name; the tensor class is torch.<Name>Tensor.
# 0.1.x had the first eight; Bool/BFloat16 came later, but torch 2.13 still has both classes and reads them
# (there is no torch.ComplexFloatTensor, so complex dtypes cannot be written this way).
STORAGE_CLASS = {
    "float64": "Double", "float32": "Float", "float16": "Half", "int64": "Long", "int32": "Int", "int16": "Short",
    "int8": "Char", "uint8": "Byte", "bool": "Bool", "bfloat16": "BFloat16",
}
ITEMSIZE = {"float64": 8, "float32": 4, "float16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1,
            "bool": 1, "bfloat16": 2}
FIRST_KEY = 0x55D0_1234_0000  # keys look like 0.1.x's C pointers (and need LONG1 to pickle)


@dataclass(eq=False)
class TarStorage:
    """A root storage: ``data`` holds its elements (any numpy dtype of the right item size)."""

    data: np.ndarray
    dtype: str
    location: str = "cpu"

    def __post_init__(self) -> None:
        self.data = np.ascontiguousarray(self.data).reshape(-1)
        if self.data.dtype.itemsize != ITEMSIZE[self.dtype]:
            raise ValueError(f"{self.dtype} storage needs {ITEMSIZE[self.dtype]}-byte elements")

    def raw(self) -> bytes:
        return self.data.astype(self.data.dtype.newbyteorder("<"), copy=False).tobytes()


@dataclass(eq=False)
class TarStorageView:
    """``root[offset : offset + size]`` (elements): 0.1.x storages could be views of others."""

    root: TarStorage
    offset: int
    size: int

    @property
    def dtype(self) -> str:
        return self.root.dtype

    def raw(self) -> bytes:
        it = ITEMSIZE[self.dtype]
        return self.root.raw()[self.offset * it : (self.offset + self.size) * it]


@dataclass(eq=False)
class TarTensor:
    """A strided view of a storage; ``stride`` defaults to contiguous."""

    storage: TarStorage | TarStorageView
    size: tuple[int, ...]
    stride: tuple[int, ...] | None = None
    offset: int = 0

    def __post_init__(self) -> None:
        if self.stride is None:
            st, acc = [], 1
            for s in reversed(self.size):
                st.append(acc)
                acc *= s
            self.stride = tuple(reversed(st))

    def expected_bytes(self) -> bytes:
        """C-order bytes of the tensor, computed from the storage with numpy (independent of any reader)."""
        it = ITEMSIZE[self.storage.dtype]
        carrier = np.dtype({1: "u1", 2: "<u2", 4: "<u4", 8: "<u8"}[it])
        flat = np.frombuffer(self.storage.raw(), dtype=carrier)
        if 0 in self.size:
            return b""
        view = np.lib.stride_tricks.as_strided(flat[self.offset :], shape=self.size,
                                               strides=tuple(s * it for s in self.stride or ()))
        return np.ascontiguousarray(view).tobytes()


@dataclass(frozen=True)
class GlobalName:
    """A class named by module and name, pickled as GLOBAL without importing it."""

    module: str
    name: str


# ------------------------------------------------------------------ tiny hand-made pickles
def _op_value(v: Any, py2_strings: bool) -> bytes:
    if v is None:
        return b"N"
    if isinstance(v, bool):
        return b"\x88" if v else b"\x89"
    if isinstance(v, int):
        if -(1 << 31) <= v < (1 << 31):
            return b"J" + struct.pack("<i", v)
        raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
        return b"\x8a" + bytes([len(raw)]) + raw
    if isinstance(v, str):
        data = v.encode("utf-8")
        if py2_strings and len(data) < 256:
            return b"U" + bytes([len(data)]) + data  # SHORT_BINSTRING: a Python 2 str
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(v, GlobalName):
        return b"c" + f"{v.module}\n{v.name}\n".encode()
    if isinstance(v, tuple):
        return b"(" + b"".join(_op_value(x, py2_strings) for x in v) + b"t"
    raise TypeError(f"cannot hand-pickle {type(v).__name__}")


def hand_pickle(value: Any, protocol: int, py2_strings: bool = False) -> bytes:
    """Pickle ints, strs, None, bools, GlobalNames and tuples of them (what the record headers hold)."""
    return b"\x80" + bytes([protocol]) + _op_value(value, py2_strings) + b"."


def _is_module_class(obj: Any) -> bool:
    return isinstance(obj, type) and any(
        c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in obj.__mro__)


# ------------------------------------------------------------------ the writer
@dataclass
class _State:
    protocol: int
    tensors: dict[int, TarTensor] = field(default_factory=dict)
    storages: dict[int, TarStorage | TarStorageView] = field(default_factory=dict)
    keys: dict[int, int] = field(default_factory=dict)  # id(object) -> key
    classes: set = field(default_factory=set)
    torch_tensors: dict[int, TarTensor] = field(default_factory=dict)  # id(torch tensor) -> its TarTensor
    torch_storages: dict[tuple, TarStorage] = field(default_factory=dict)  # (data_ptr, nbytes, dtype) -> storage
    alive: list = field(default_factory=list)  # keep converted objects alive so ids stay unique

    def key(self, obj: Any) -> int:
        k = self.keys.get(id(obj))
        if k is None:
            k = self.keys[id(obj)] = FIRST_KEY + 64 * len(self.keys)
            self.alive.append(obj)
        return k


def _convert_torch(obj: Any, st: _State) -> TarTensor | None:
    """A torch tensor -> TarTensor over a TarStorage shared by every tensor of the same storage."""
    if type(obj).__module__.split(".")[0] != "torch" or not hasattr(obj, "untyped_storage"):
        return None
    if id(obj) in st.torch_tensors:
        return st.torch_tensors[id(obj)]
    name = str(obj.dtype).removeprefix("torch.")
    us = obj.untyped_storage()
    sid = (us.data_ptr(), us.nbytes(), name)
    storage = st.torch_storages.get(sid)
    if storage is None:
        carrier = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[ITEMSIZE[name]]
        storage = st.torch_storages[sid] = TarStorage(np.frombuffer(bytes(us), dtype=carrier).copy(), name,
                                                      str(obj.device))
    t = st.torch_tensors[id(obj)] = TarTensor(storage, tuple(obj.shape), tuple(obj.stride()), obj.storage_offset())
    st.alive.append(obj)
    return t


def _object_pickle(obj: Any, st: _State, is_module_class: Callable[[Any], bool]) -> bytes:
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, o: Any) -> Any:
            if is_module_class(o):
                if o in st.classes:
                    return None  # later occurrences (and the class inside the id tuple) are plain GLOBALs
                st.classes.add(o)
                try:
                    return (o, inspect.getsourcefile(o), inspect.getsource(o))
                except (TypeError, OSError):
                    return (o, None, None)
            t = o if isinstance(o, TarTensor) else _convert_torch(o, st)
            if isinstance(t, TarTensor):
                k = st.key(t)
                st.tensors[k] = t
                return str(k)
            if isinstance(o, (TarStorage, TarStorageView)):
                k = st.key(o)
                st.storages[k] = o
                return str(k)
            return None

    P(buf, protocol=st.protocol).dump(obj)
    return buf.getvalue()


def _tensors_member(st: _State, py2: bool) -> bytes:
    out = [pickle.dumps(len(st.tensors), protocol=st.protocol)]
    for key, t in st.tensors.items():
        skey = st.key(t.storage)
        st.storages[skey] = t.storage
        cls = GlobalName("torch", STORAGE_CLASS[t.storage.dtype] + "Tensor")
        out.append(hand_pickle((key, skey, cls), st.protocol, py2))
        n = len(t.size)
        out.append(struct.pack("<q", n) + struct.pack(f"<{n}q", *t.size) + struct.pack(f"<{n}q", *(t.stride or ()))
                   + struct.pack("<q", t.offset))
    return b"".join(out)


def _storages_member(st: _State, py2: bool) -> bytes:
    roots: dict[int, TarStorage] = {}
    views = []
    for key, s in st.storages.items():
        if isinstance(s, TarStorageView):
            roots.setdefault(st.key(s.root), s.root)
            views.append((key, st.key(s.root), s.offset, s.size))
        else:
            roots.setdefault(key, s)
    out = [pickle.dumps(len(roots), protocol=st.protocol)]
    for key, s in roots.items():
        cls = GlobalName("torch", STORAGE_CLASS[s.dtype] + "Storage")
        out.append(hand_pickle((key, s.location, cls), st.protocol, py2))
        out.append(struct.pack("<q", s.data.size) + s.raw())
    out.append(pickle.dumps(views, protocol=st.protocol))
    return b"".join(out)


def write_tar(path: str | Path, obj: Any, *, protocol: int = 2, py2_strings: bool = False,
              is_module_class: Callable[[Any], bool] = _is_module_class) -> None:
    """Write ``obj`` as torch 0.1.x's ``torch.save`` would have (members in its order)."""
    if protocol < 2:
        raise ValueError("the record headers are protocol-2 opcodes: use protocol >= 2")
    st = _State(protocol)
    sys_info = pickle.dumps({"protocol_version": 1000, "little_endian": True,
                             "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=protocol)
    obj_pickle = _object_pickle(obj, st, is_module_class)
    tensors = _tensors_member(st, py2_strings)  # adds the tensors' storages
    storages = _storages_member(st, py2_strings)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("sys_info", sys_info), ("pickle", obj_pickle), ("tensors", tensors),
                           ("storages", storages)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
