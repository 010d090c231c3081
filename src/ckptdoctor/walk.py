"""Walk a checkpoint's value tree and yield tensors with dotted paths.

Paths join dict keys and list/tuple indices with ``.``. A pickled
``nn.Module`` (a placeholder whose state has ``_parameters``/``_modules``)
contributes its ``state_dict()`` under ``<path>.state_dict.`` exactly as
``module.state_dict()`` would order and name it; TorchScript modules the same.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.errors import LimitExceeded
from ckptdoctor.limits import DEFAULT_LIMITS, Limits
from ckptdoctor.model import TensorRecord
from ckptdoctor.pickle.objects import OrderedDictValue, PickledObject

MAX_NODES = DEFAULT_LIMITS.max_walk_nodes  # kept for callers; see Limits
NO_CYCLE = 1 << 62
_LEAVES = (str, bytes, int, float, bool)


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


def iter_tensors(root: Any, limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[str, TensorRecord]]:
    """Depth-first, in insertion order; shared objects are visited at every path, cycles once.

    Bounded for hostile trees (see docs/limits.md): a container already walked that held no tensor
    (and led back to no ancestor) is not walked again but counted again, so a "billion laughs" DAG
    costs its size in time and is refused by ``max_walk_nodes`` for its paths; re-entering shared values
    that hold tensors counts against ``max_shared_visits``, and depth against ``max_depth``.
    """
    on_path: dict[int, int] = {}  # id -> depth, for the containers on the current path
    # containers walked before, with no tensor below and no cycle out of them -> values they expand to
    tensor_free: dict[int, int] = {}
    entered: set[int] = set()
    counts = [0, 0]  # values walked (shared ones at every path), re-entries of values entered before

    def walked(n: int) -> None:
        counts[0] += n
        if counts[0] > limits.max_walk_nodes:
            raise LimitExceeded("values walked (shared references counted at every path)",
                                limits.max_walk_nodes, counts[0])

    def enter(vid: int, depth: int) -> None:
        walked(1)
        if vid in entered:
            counts[1] += 1
            if counts[1] > limits.max_shared_visits:
                raise LimitExceeded("re-visits of shared values (a reference bomb?)", limits.max_shared_visits,
                                    counts[1])
        else:
            entered.add(vid)
        if depth > limits.max_depth:
            raise LimitExceeded("nesting depth", limits.max_depth, depth)

    def visit(v: Any, path: str, depth: int) -> Generator[tuple[str, TensorRecord], None, int]:
        """Yields the tensors under ``v``; returns the depth of the shallowest ancestor a cycle led back
        to (``NO_CYCLE`` if none, -1 if a tensor was found): ``>= depth`` means path-independent."""
        if isinstance(v, TensorRecord):
            enter(id(v), depth)
            yield path, v
            return -1
        if isinstance(v, _LEAVES) or v is None:
            return NO_CYCLE
        vid = id(v)
        size = tensor_free.get(vid)
        if size is not None:
            walked(size)
            return NO_CYCLE
        back = on_path.get(vid)
        if back is not None:
            return back
        enter(vid, depth)
        before = counts[0] - 1
        on_path[vid] = depth
        low = NO_CYCLE
        try:
            sep = "." if path else ""
            if isinstance(v, dict):
                for k, x in v.items():
                    low = min(low, (yield from visit(x, f"{path}{sep}{_key(k)}", depth + 1)))
            elif isinstance(v, (list, tuple)):
                for i, x in enumerate(v):
                    low = min(low, (yield from visit(x, f"{path}{sep}{i}", depth + 1)))
            elif isinstance(v, ScriptModuleValue):
                low = yield from visit(v.state_dict, f"{path}{sep}state_dict", depth + 1)
            elif is_module(v):
                # the state_dict is built afresh on each visit: walk its items here, so that only
                # values reachable from the root (whose ids stay theirs) are ever remembered
                prefix = f"{path}{sep}state_dict."
                for k, x in module_state_dict(v).items():
                    low = min(low, (yield from visit(x, prefix + _key(k), depth + 2)))
        finally:
            del on_path[vid]
        if low >= depth:
            tensor_free[vid] = counts[0] - before
            return NO_CYCLE
        return low

    yield from visit(root, "", 0)
