"""torch dtype names, sizes and the numpy types we can show them as.

torch dtypes are named as torch names them without the ``torch.`` prefix.
Dtypes numpy lacks (bfloat16, float8 variants, complex32, quantized types)
get ``numpy=None``: their bytes are exposed through an unsigned integer
"carrier" of the same width, with the torch dtype kept in the metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from ckptdoctor._lazy import numpy as np  # imported on first use: inspect needs none


@dataclass(frozen=True, slots=True)
class DType:
    name: str  # torch name, e.g. "float32", "bfloat16", "qint8"
    itemsize: int
    numpy: str | None  # numpy dtype string (little-endian) or None if numpy has no equivalent
    storage_class: str | None = None  # legacy typed-storage class name, e.g. "FloatStorage"
    quantized: bool = False
    first_torch: str = "0.1"  # first torch release with this dtype (verified: data/torch_features.json, from the wheels)

    @property
    def carrier(self) -> np.dtype:
        """A numpy dtype with the same item size, for striding raw bytes."""
        if self.numpy is not None:
            return np.dtype(self.numpy)
        return np.dtype({1: "u1", 2: "<u2", 4: "<u4", 8: "<u8", 16: "V16"}[self.itemsize])


_TABLE = [
    DType("float64", 8, "<f8", "DoubleStorage"),
    DType("float32", 4, "<f4", "FloatStorage"),
    DType("float16", 2, "<f2", "HalfStorage"),
    DType("int64", 8, "<i8", "LongStorage"),
    DType("int32", 4, "<i4", "IntStorage"),
    DType("int16", 2, "<i2", "ShortStorage"),
    DType("int8", 1, "i1", "CharStorage"),
    DType("uint8", 1, "u1", "ByteStorage"),
    DType("bool", 1, "?", "BoolStorage", first_torch="1.1"),
    DType("bfloat16", 2, None, "BFloat16Storage", first_torch="1.2"),
    DType("quint8", 1, "u1", "QUInt8Storage", quantized=True, first_torch="1.2"),
    DType("qint8", 1, "i1", "QInt8Storage", quantized=True, first_torch="1.2"),
    DType("qint32", 4, "<i4", "QInt32Storage", quantized=True, first_torch="1.2"),
    DType("complex64", 8, "<c8", "ComplexFloatStorage", first_torch="1.6"),
    DType("complex128", 16, "<c16", "ComplexDoubleStorage", first_torch="1.6"),
    DType("quint4x2", 1, "u1", "QUInt4x2Storage", quantized=True, first_torch="1.8"),
    DType("quint2x4", 1, "u1", "QUInt2x4Storage", quantized=True, first_torch="1.11"),
    DType("complex32", 4, None, first_torch="1.1"),
    DType("float8_e4m3fn", 1, None, first_torch="2.1"),
    DType("float8_e5m2", 1, None, first_torch="2.1"),
    DType("float8_e4m3fnuz", 1, None, first_torch="2.2"),
    DType("float8_e5m2fnuz", 1, None, first_torch="2.2"),
    DType("float8_e8m0fnu", 1, None, first_torch="2.7"),
    DType("float4_e2m1fn_x2", 1, None, first_torch="2.8"),
    DType("uint16", 2, "<u2", first_torch="2.3"),
    DType("uint32", 4, "<u4", first_torch="2.3"),
    DType("uint64", 8, "<u8", first_torch="2.3"),
    DType("bits1x8", 1, None, first_torch="2.2"),
    DType("bits2x4", 1, None, first_torch="2.2"),
    DType("bits4x2", 1, None, first_torch="2.2"),
    DType("bits8", 1, None, first_torch="2.2"),
    DType("bits16", 2, None, first_torch="2.2"),
]
for _i in range(1, 8):
    _TABLE.append(DType(f"uint{_i}", 1, None, first_torch="2.3"))
    _TABLE.append(DType(f"int{_i}", 1, None, first_torch="2.6"))

BY_NAME: dict[str, DType] = {d.name: d for d in _TABLE}

# Sub-byte quantized dtypes pack several elements per byte (itemsize 1 is the storage element).
PACKED_BITS = {"quint4x2": 4, "quint2x4": 2}

# torch also exposes aliases (torch.float == torch.float32, ...); pickles use the canonical names
# but we accept aliases anywhere a dtype is named.
ALIASES = {
    "float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
    "short": "int16", "cfloat": "complex64", "cdouble": "complex128", "chalf": "complex32",
}

BY_STORAGE: dict[str, DType] = {d.storage_class: d for d in _TABLE if d.storage_class}
# pre-1.0 CUDA storage classes were sometimes written under torch.cuda
UNTYPED_STORAGE_NAMES = {"UntypedStorage", "_UntypedStorage", "ByteStorageBase"}

# safetensors dtype codes
SAFETENSORS_CODES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64", "F8_E8M0": "float8_e8m0fnu",
}
TO_SAFETENSORS = {v: k for k, v in SAFETENSORS_CODES.items()}


def lookup(name: str) -> DType | None:
    name = name.removeprefix("torch.")
    return BY_NAME.get(ALIASES.get(name, name))


def from_storage_class(name: str) -> DType | None:
    """Map a typed-storage class name (any module) to its dtype; untyped storages map to uint8."""
    if name in UNTYPED_STORAGE_NAMES:
        return BY_NAME["uint8"]
    return BY_STORAGE.get(name)
