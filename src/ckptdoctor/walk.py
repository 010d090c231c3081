"""Walk a checkpoint's value tree and yield tensors with dotted paths.

Paths join dict keys and list/tuple indices with ``.``. A pickled
``nn.Module`` (a placeholder whose state has ``_parameters``/``_modules``)
contributes its ``state_dict()`` under ``<path>.state_dict.`` exactly as
``module.state_dict()`` would order and name it; TorchScript modules the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.errors import LimitExceeded
from ckptdoctor.model import TensorRecord
from ckptdoctor.pickle.objects import OrderedDictValue, PickledObject

MAX_NODES = 20_000_000


@dataclass(slots=True, eq=False)
class ScriptModuleValue:
    """A TorchScript module: its class name, state_dict, and the raw object tree."""

    qualname: str
    state_dict: OrderedDictValue
    raw: Any = None
    attributes: dict[str, Any] = field(default_factory=dict)


def is_module(obj: Any) -> bool:
    """True for placeholders that look like pickled ``nn.Module`` instances."""
    if not isinstance(obj, PickledObject):
        return False
    attrs = obj.attrs
    return isinstance(attrs.get("_parameters"), dict) and isinstance(attrs.get("_modules"), dict)


def module_state_dict(obj: PickledObject, prefix: str = "", out: OrderedDictValue | None = None,
                      _depth: int = 0) -> OrderedDictValue:
    """What ``obj.state_dict()`` would return, computed from the pickled attributes only."""
    if out is None:
        out = OrderedDictValue()
    if _depth > 1000:
        raise LimitExceeded("module nesting depth", 1000, _depth)
    attrs = obj.attrs
    for name, p in (attrs.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + str(name)] = p
    non_persistent = attrs.get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        non_persistent = set()
    for name, b in (attrs.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            out[prefix + str(name)] = b
    for name, child in (attrs.get("_modules") or {}).items():
        if child is not None and is_module(child):
            module_state_dict(child, prefix + str(name) + ".", out, _depth + 1)
    return out


def _key(k: Any) -> str:
    if isinstance(k, bytes):
        return k.decode("latin-1")
    return str(k)


def iter_tensors(root: Any) -> Iterator[tuple[str, TensorRecord]]:
    """Depth-first, in insertion order; shared objects are visited at every path, cycles once."""
    on_path: set[int] = set()
    budget = [MAX_NODES]

    def visit(v: Any, path: str) -> Iterator[tuple[str, TensorRecord]]:
        budget[0] -= 1
        if budget[0] < 0:
            raise LimitExceeded("values walked", MAX_NODES)
        if isinstance(v, TensorRecord):
            yield path, v
            return
        if isinstance(v, (str, bytes, int, float, bool)) or v is None:
            return
        vid = id(v)
        if vid in on_path:
            return
        on_path.add(vid)
        try:
            sep = "." if path else ""
            if isinstance(v, dict):
                for k, x in v.items():
                    yield from visit(x, f"{path}{sep}{_key(k)}")
            elif isinstance(v, (list, tuple)):
                for i, x in enumerate(v):
                    yield from visit(x, f"{path}{sep}{i}")
            elif isinstance(v, ScriptModuleValue):
                yield from visit(v.state_dict, f"{path}{sep}state_dict")
            elif is_module(v):
                yield from visit(module_state_dict(v), f"{path}{sep}state_dict")
        finally:
            on_path.discard(vid)

    yield from visit(root, "")
