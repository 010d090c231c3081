"""The data model every reader produces: :class:`Checkpoint` and :class:`TensorRecord`.

A reader never copies tensor bytes. A :class:`Storage` knows *where* its bytes
are (a byte span in the file, resolved by the container) and
:meth:`TensorRecord.to_numpy` maps them lazily (mmap for local files).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckptdoctor._lazy import numpy as np  # imported on first use: inspect needs none
from ckptdoctor.dtypes import PACKED_BITS, DType
from ckptdoctor.errors import LimitExceeded, TruncatedFile

if TYPE_CHECKING:
    from ckptdoctor.source import ByteSource


@dataclass(slots=True, eq=False)
class Storage:
    """One storage (a flat run of bytes) as the container describes it."""

    key: str  # the container's key: zip record name suffix, legacy pointer string, safetensors name
    dtype: DType  # the storage's element type (uint8 for untyped storages)
    numel: int  # elements of ``dtype`` the storage declares
    location: str = "cpu"  # device tag as saved: "cpu", "cuda:0", "mps", "meta", ...
    #: resolves (file_offset, nbytes_available) on first use; set by the container reader
    locate: Callable[[], tuple[int, int]] | None = field(default=None, repr=False)
    source: ByteSource | None = field(default=None, repr=False)
    record: str | None = None  # zip record / tar member the bytes live in, for evidence
    _span: tuple[int, int] | None = field(default=None, repr=False)

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def span(self) -> tuple[int, int]:
        """(offset in the file, bytes available there)."""
        if self._span is None:
            if self.locate is None:
                raise TruncatedFile(f"storage {self.key!r} has no data in the file", offset=0)
            self._span = self.locate()
        return self._span

    def buffer(self) -> memoryview:
        """The storage bytes, zero-copy where the source allows (mmap)."""
        if self.source is None:
            raise TruncatedFile(f"storage {self.key!r} has no data in the file", offset=0)
        offset, available = self.span()
        if available < self.nbytes:
            raise TruncatedFile(
                f"storage {self.key!r} needs {self.nbytes} bytes but the file has {available} "
                f"(truncated or corrupt)",
                offset=offset + available,
                needed=self.nbytes,
            )
        return self.source.view(offset, self.nbytes)


@dataclass(slots=True, eq=False)
class TensorRecord:
    """One tensor as saved: metadata plus a lazy view of its bytes."""

    dtype: DType
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    storage: Storage | None  # None for meta / storage-less tensors
    offset: int = 0  # storage offset, in elements
    requires_grad: bool = False
    is_parameter: bool = False
    layout: str = "strided"  # strided, sparse_coo, sparse_csr, ...
    quantizer: dict[str, Any] | None = None  # {"qscheme":..., "scale":..., "zero_point":..., ...}
    sparse_parts: tuple[Any, ...] | None = None  # for sparse layouts: (indices, values, size, ...)
    metadata: dict[str, Any] | None = None  # conj/neg bits, Python attributes (from _rebuild_from_type_v2)
    rebuild: str = "torch._utils._rebuild_tensor_v2"  # the function the file used
    device_override: str | None = None  # device given outside the storage (meta, xla, ...)
    py_state: Any = None  # the raw Python state (attrs dict or (dict, slots)) behind metadata["attrs"/"state"]

    # ----- derived facts -----
    @property
    def device(self) -> str:
        if self.device_override:
            return self.device_override
        return self.storage.location if self.storage is not None else "meta"

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        bits = PACKED_BITS.get(self.dtype.name)
        if bits:
            return -(-self.numel * bits // 8)
        return self.numel * self.dtype.itemsize

    def is_contiguous(self) -> bool:
        expected = 1
        for size, st in zip(reversed(self.shape), reversed(self.stride), strict=False):
            if size != 1 and st != expected:
                return False
            expected *= size
        return True

    def extent(self) -> int:
        """Elements of the storage this tensor touches, counted from element 0."""
        if self.numel == 0:
            return 0
        return self.offset + 1 + sum((s - 1) * st for s, st in zip(self.shape, self.stride, strict=False))

    # ----- bytes -----
    def to_numpy(self) -> np.ndarray:
        """A read-only numpy view with the tensor's shape and strides.

        dtypes numpy lacks come back as an unsigned carrier of the same width
        (check ``self.dtype.numpy is None``). Sub-byte quantized dtypes (quint4x2,
        quint2x4) come back as their packed bytes, 1-D, as torch's ``int_repr()``
        gives them. Raises :class:`TruncatedFile` if the bytes are not all there.
        """
        carrier = self.dtype.carrier
        if self.layout != "strided":
            raise ValueError(f"{self.layout} tensors have no single strided view; use sparse_parts")
        if self.storage is None:
            raise ValueError("tensor has no storage (meta tensor)")
        if self.dtype.name in PACKED_BITS:
            return self._packed_numpy()
        if any(s < 0 for s in self.shape) or any(st < 0 for st in self.stride):
            raise ValueError("negative shape or stride")
        if self.numel > (1 << 50):
            raise LimitExceeded("tensor elements", 1 << 50, self.numel)
        need = self.extent()
        if need > self.storage.numel * self.storage.dtype.itemsize // max(1, self.dtype.itemsize):
            raise TruncatedFile(
                f"tensor needs {need} elements but its storage {self.storage.key!r} declares "
                f"{self.storage.numel} {self.storage.dtype.name} elements",
                offset=0,
                needed=need * self.dtype.itemsize,
            )
        buf = self.storage.buffer()
        flat = np.frombuffer(buf, dtype=carrier)
        if self.numel == 0:
            return np.empty(self.shape, dtype=carrier)
        item = carrier.itemsize
        arr = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(st * item for st in self.stride),
            writeable=False,
        )
        return arr

    def _packed_numpy(self) -> np.ndarray:
        """The packed bytes from the storage offset on, like torch's int_repr() (which ignores strides)."""
        assert self.storage is not None
        n = self.nbytes
        if self.offset < 0 or self.offset + n > self.storage.nbytes:
            raise TruncatedFile(
                f"packed {self.dtype.name} tensor needs bytes {self.offset}..{self.offset + n} of storage "
                f"{self.storage.key!r}, which declares {self.storage.nbytes}",
                offset=0,
                needed=self.offset + n,
            )
        if n == 0:
            return np.empty((0,), dtype=np.uint8)
        return np.frombuffer(self.storage.buffer(), dtype=np.uint8, count=n, offset=self.offset)

    def iter_contiguous_bytes(self, chunk: int = 1 << 24) -> Iterator[memoryview | bytes]:
        """The tensor's bytes in C order, in bounded chunks (no whole-tensor copy if contiguous)."""
        arr = self.to_numpy()
        if arr.size == 0:
            return
        if arr.flags.c_contiguous:
            mv = memoryview(arr.reshape(-1).view(np.uint8))
            for i in range(0, len(mv), chunk):
                yield mv[i : i + chunk]
            return
        # Non-contiguous: copy one leading slice at a time.
        if arr.ndim == 0:
            yield np.ascontiguousarray(arr).tobytes()
            return
        rows_per_chunk = max(1, chunk // max(1, arr[0].nbytes))
        for i in range(0, arr.shape[0], rows_per_chunk):
            yield np.ascontiguousarray(arr[i : i + rows_per_chunk]).tobytes()

    def sha256(self) -> str:
        """sha256 of the contiguous C-order bytes (for quantized tensors: of int_repr())."""
        h = hashlib.sha256()
        for piece in self.iter_contiguous_bytes():
            h.update(piece)
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "dtype": self.dtype.name,
            "shape": list(self.shape),
            "stride": list(self.stride),
            "offset": self.offset,
            "nbytes": self.nbytes,
            "device": self.device,
            "requires_grad": self.requires_grad,
        }
        if self.storage is not None:
            d["storage"] = self.storage.key
        if self.is_parameter:
            d["parameter"] = True
        if self.layout != "strided":
            d["layout"] = self.layout
        if self.quantizer:
            d["quantizer"] = {k: v for k, v in self.quantizer.items() if not isinstance(v, TensorRecord)}
        return d


@dataclass(slots=True)
class Producer:
    """Range of torch versions that could have written the file, and why."""

    earliest: str | None = None
    latest: str | None = None
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lo = self.earliest or "?"
        hi = self.latest or "latest"
        return f"torch {lo} .. {hi}"


@dataclass(slots=True, eq=False)
class Checkpoint:
    """Everything we learnt from one file. Use :func:`ckptdoctor.open` to make one."""

    path: str
    format: str  # one of ckptdoctor.formats.KINDS
    size: int = 0
    root: Any = None  # the value tree; tensors are TensorRecord leaves
    details: dict[str, Any] = field(default_factory=dict)  # container facts (zip version, byteorder, records...)
    pickle_protocol: int | None = None
    globals: list[str] = field(default_factory=list)  # "module.name" in first-seen order
    producer: Producer = field(default_factory=Producer)
    source: ByteSource | None = field(default=None, repr=False)
    pickles: list[Any] = field(default_factory=list, repr=False)  # PickleResult of each pickle parsed
    message: str | None = None  # for impostors: what the file is and what to do
    extra_sources: list[Any] = field(default_factory=list, repr=False)  # other files tensors live in (DCP shards)
    internal: dict[str, Any] = field(default_factory=dict, repr=False)  # reader facts for other modules, not reports

    @property
    def is_checkpoint(self) -> bool:
        from ckptdoctor.formats import IMPOSTOR_KINDS

        return self.format not in IMPOSTOR_KINDS

    def tensors(self) -> Iterator[tuple[str, TensorRecord]]:
        """Every tensor with its dotted path (see ``ckptdoctor.walk``)."""
        from ckptdoctor.walk import iter_tensors

        yield from iter_tensors(self.root)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        for extra in self.extra_sources:
            extra.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
