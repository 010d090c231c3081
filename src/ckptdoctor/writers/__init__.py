"""Streaming writers: torch zip (>= 1.6), legacy stream (<= 1.5) and safetensors.

All three take a ckptdoctor value tree (what a reader produced, possibly
changed by fix steps) and an :class:`~ckptdoctor.writers.stream.OutFile`;
tensor bytes are copied storage by storage from the source file in bounded
chunks. None of them imports torch. Use :mod:`ckptdoctor.fixes.apply` for the
atomic, verified write of a whole file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ckptdoctor.writers.stream import OutFile
from ckptdoctor.writers.torchpickle import WriteError

CONTAINERS = ("zip", "legacy", "safetensors")
SUFFIX_CONTAINER = {".safetensors": "safetensors"}

__all__ = ["CONTAINERS", "OutFile", "WriteError", "container_for_path", "write_tree"]


def container_for_path(path: str) -> str | None:
    """The container an output file name asks for (only ``.safetensors`` is unambiguous)."""
    for suffix, kind in SUFFIX_CONTAINER.items():
        if str(path).endswith(suffix):
            return kind
    return None


def write_tree(root: Any, container: str, out: OutFile, *, archive_name: str = "archive",
               metadata: dict[str, Any] | None = None, numpy_module: str = "numpy.core",
               note: Callable[[str], None] | None = None) -> Any:
    """Write ``root`` to ``out`` in ``container``; returns the writer's layout record."""
    if container == "zip":
        from ckptdoctor.writers.zip import write_zip

        return write_zip(root, out, archive_name=archive_name, numpy_module=numpy_module, note=note)
    if container == "legacy":
        from ckptdoctor.writers.legacy import write_legacy

        return write_legacy(root, out, numpy_module=numpy_module, note=note)
    if container == "safetensors":
        from ckptdoctor.writers.safetensors import write_safetensors

        return write_safetensors(root, out, metadata=metadata, note=note)
    raise ValueError(f"unknown container {container!r} (choose from {', '.join(CONTAINERS)})")
