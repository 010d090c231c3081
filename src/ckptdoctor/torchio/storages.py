"""Storages: one ``torch.UntypedStorage`` per storage in the file, zero-copy where the file is local.

A local file is mapped once, copy-on-write, with
``torch.UntypedStorage.from_file(path, shared=False, nbytes)`` (what torch's own
``mmap=True`` load does) and every storage is a slice of that mapping: no byte
is read until a tensor is used, and writing to a tensor copies only the pages
written, never the file. This works for every container whose storages are
contiguous byte spans: zip (torch cannot do this for compressed members, and
neither do we), the legacy stream and tar archives (torch cannot mmap those at
all), legacy TorchScript and safetensors. Remote and in-memory sources are
copied storage by storage.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ckptdoctor import dtypes
from ckptdoctor.errors import TruncatedFile, UnreadableFile
from ckptdoctor.model import Checkpoint, Storage
from ckptdoctor.source import LocalSource


def restore_location(torch: Any, map_location: Any) -> Callable[[Any, str], Any]:
    """``map_location`` exactly as torch.load reads it (str, bytes, dict, torch.device or callable)."""
    default = torch.serialization.default_restore_location
    if map_location is None:
        return default
    if isinstance(map_location, dict):
        mapping = {str(k): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in map_location.items()}
        return lambda storage, location: default(storage, mapping.get(location, location))
    if isinstance(map_location, bytes):
        map_location = map_location.decode()
    if isinstance(map_location, (str, torch.device)):
        target = str(map_location)
        return lambda storage, location: default(storage, target)
    if callable(map_location):
        def call(storage: Any, location: str) -> Any:
            result = map_location(storage, location)
            return default(storage, location) if result is None else result

        return call
    raise TypeError(f"map_location must be a str, dict, torch.device or callable, not {type(map_location).__name__}")


def torch_dtype(torch: Any, dt: dtypes.DType) -> Any:
    got = getattr(torch, dt.name, None)
    if not isinstance(got, torch.dtype):
        raise UnreadableFile(f"this torch ({torch.__version__}) has no dtype {dt.name}; upgrade torch to load it",
                             kind="unsupported-dtype")
    return got


class StorageMaker:
    """Storage -> torch.UntypedStorage, once per storage (shared storages stay shared)."""

    def __init__(self, torch: Any, ckpt: Checkpoint, map_location: Any) -> None:
        self.torch = torch
        self.restore = restore_location(torch, map_location)
        self.source = ckpt.source
        self.name = ckpt.path
        src = ckpt.source
        self._path = src.name if isinstance(src, LocalSource) and src.size > 0 else None
        self._size = src.size if src is not None else 0
        self._whole: Any = None
        order = ckpt.details.get("byteorder") or "little"  # torch assumes little when the record is absent
        if order not in ("little", "big"):
            raise UnreadableFile(f"{ckpt.path}: unknown byte order {order!r} in the byteorder record", kind="corrupt")
        self.swap = order != sys.byteorder
        self.made: dict[int, Any] = {}
        self._keep: list[Storage] = []  # keeps ids unique while `made` refers to them
        self.mapped = 0  # storages sliced from the file mapping
        self.copied = 0  # storages copied (remote / in-memory sources, byte-swapped data)
        self.nbytes = 0

    def get(self, st: Storage, elem: dtypes.DType | None = None) -> Any:
        """The UntypedStorage for ``st``, restored to its device; ``elem`` is the element type for byteswaps."""
        got = self.made.get(id(st))
        if got is not None:
            return got
        raw = self._raw(st)
        if self.swap and st.nbytes:
            self._byteswap(raw, elem or st.dtype, st)
        out = self.restore(raw, st.location)
        if isinstance(out, self.torch.storage.TypedStorage):
            out = out._untyped_storage
        if not isinstance(out, self.torch.UntypedStorage):
            raise TypeError(f"map_location returned {type(out).__name__}, expected a storage")
        self.made[id(st)] = out
        self._keep.append(st)
        self.nbytes += st.nbytes
        return out

    def _raw(self, st: Storage) -> Any:
        torch = self.torch
        nbytes = st.nbytes
        if st.source is None:
            raise TruncatedFile(f"{self.name}: storage {st.key!r} has no data in the file", offset=0)
        offset, available = st.span()
        if available < nbytes:
            raise TruncatedFile(
                f"{self.name}: storage {st.key!r} needs {nbytes} bytes but the file has {available} "
                f"(truncated or corrupt)", offset=offset + available, needed=nbytes)
        if nbytes == 0:
            return torch.UntypedStorage(0)
        if st.source is self.source and self._path is not None:
            if offset + nbytes > self._size:
                raise TruncatedFile(f"{self.name}: storage {st.key!r} ends past the end of the file",
                                    offset=self._size, needed=offset + nbytes)
            self.mapped += 1
            return self._mapping()[offset : offset + nbytes]
        self.copied += 1
        buf = bytearray(st.buffer())  # remote or in-memory bytes: one copy, owned by the storage
        return torch.frombuffer(buf, dtype=torch.uint8).untyped_storage()

    def _byteswap(self, raw: Any, dt: dtypes.DType, st: Storage) -> None:
        """Big-endian file on a little-endian host (or the reverse): swap each element in place.

        The mapping is private, so this copies only the pages it writes. Complex numbers swap
        each half (as torch does); unlike ``UntypedStorage.byteswap`` this works for every dtype.
        """
        size = dt.itemsize // 2 if dt.name.startswith("complex") else dt.itemsize
        if size <= 1:
            return
        torch = self.torch
        u8 = torch.empty(0, dtype=torch.uint8).set_(raw).numpy()
        if len(u8) % size:
            raise UnreadableFile(f"{self.name}: storage {st.key!r} is not a whole number of {dt.name} elements",
                                 kind="corrupt")
        u8.view(np.dtype(f"u{size}")).byteswap(inplace=True)
        self.copied += 1

    def _mapping(self) -> Any:
        if self._whole is None:
            self._whole = self.torch.UntypedStorage.from_file(self._path, shared=False, nbytes=self._size)
        return self._whole
