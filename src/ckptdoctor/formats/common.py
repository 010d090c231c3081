"""Shared pieces for container readers: running a torch pickle and decoding storage ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.errors import UnreadableFile
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, Storage
from ckptdoctor.pickle.objects import Global
from ckptdoctor.pickle.torch_rebuild import TorchResolver
from ckptdoctor.pickle.vm import Machine, PickleResult


def run_pickle(
    buf: Any,
    pos: int,
    *,
    limits: Limits,
    persistent_load: Callable[[Any], Any] | None = None,
    base: int = 0,
    end: int | None = None,
) -> PickleResult:
    resolver = TorchResolver(limits)
    m = Machine(resolver=resolver, build_hook=resolver.build, persistent_load=persistent_load,
                limits=limits, base_offset=base)
    return m.run(buf, pos, end)


def record_pickle(ckpt: Checkpoint, res: PickleResult, label: str) -> None:
    """Add one pickle's facts (protocol, globals) to the checkpoint."""
    ckpt.pickles.append((label, res))
    if ckpt.pickle_protocol is None or label in ("data.pkl", "object"):
        ckpt.pickle_protocol = res.protocol
    for g in res.globals:
        q = g.qualname
        if q not in ckpt.globals:
            ckpt.globals.append(q)


def storage_dtype(storage_type: Any) -> dtypes.DType:
    """dtype of a persistent id's storage class global (``torch.FloatStorage`` ...)."""
    name = storage_type.name if isinstance(storage_type, Global) else str(storage_type)
    dt = dtypes.from_storage_class(name)
    if dt is None:
        raise UnreadableFile(f"unknown storage class {name!r} in the file", kind="corrupt")
    return dt


def check_storage_pid(pid: Any, sizes: tuple[int, ...]) -> tuple:
    if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) not in sizes:
        raise UnreadableFile(f"unexpected persistent id {pid!r:.100}", kind="corrupt")
    return pid


class StorageTable:
    """Storages by key, created on first reference (shared storages stay shared)."""

    def __init__(self) -> None:
        self.by_key: dict[str, Storage] = {}

    def get(self, key: str, make: Callable[[], Storage]) -> Storage:
        st = self.by_key.get(key)
        if st is None:
            st = make()
            self.by_key[key] = st
        return st
