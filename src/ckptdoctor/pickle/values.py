"""Safe values the resolver builds from our own code (never from the file's code)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ckptdoctor._lazy import numpy as np  # imported on first use: inspect needs none


@dataclass(slots=True, eq=False)
class NumpyArray:
    """A pickled ``numpy.ndarray`` (``_reconstruct`` + BUILD), held as raw bytes."""

    dtype: Any  # np.dtype, or a placeholder when the dtype could not be rebuilt safely
    shape: tuple[int, ...]
    fortran: bool
    data: Any  # bytes for plain dtypes; a list for object arrays

    @property
    def module(self) -> str:
        return "numpy"

    def to_numpy(self) -> np.ndarray | None:
        if not isinstance(self.dtype, np.dtype) or self.dtype.hasobject or not isinstance(self.data, bytes):
            return None
        n = 1
        for s in self.shape:
            n *= s
        if n * self.dtype.itemsize != len(self.data):
            return None
        arr = np.frombuffer(self.data, dtype=self.dtype)
        return arr.reshape(self.shape, order="F" if self.fortran else "C")

    def __repr__(self) -> str:
        return f"<ndarray {self.dtype} {list(self.shape)}>"


@dataclass(slots=True, eq=False)
class PendingNumpy:
    """``_reconstruct(ndarray, (0,), b'b')`` before BUILD fills it in."""

    offset: int


@dataclass(slots=True, eq=False)
class PendingDType:
    """``numpy.dtype(code, align, copy)`` before BUILD sets the byte order."""

    code: str


@dataclass(frozen=True, slots=True)
class Layout:
    name: str  # "sparse_coo", "sparse_csr", "strided", ...

    def __str__(self) -> str:
        return f"torch.{self.name}"


@dataclass(frozen=True, slots=True)
class TorchDType:
    """A ``torch.<dtype>`` global used as a value (e.g. in a dict or as an argument)."""

    name: str

    def __str__(self) -> str:
        return f"torch.{self.name}"


class TorchSize(tuple):
    """A ``torch.Size`` from the file: a plain tuple of ints that remembers it was a Size."""

    __slots__ = ()
