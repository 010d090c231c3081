"""Inert stand-ins for everything a pickle asks to import or call.

Nothing here is ever imported or executed: a :class:`Global` is just a name,
and a :class:`PickledObject` records *what would have been called* with which
arguments, and what state would have been set on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Python 2 names that protocol-2 pickles (fix_imports) use for Python 3 modules.
PY2_MODULES = {
    "__builtin__": "builtins",
    "copy_reg": "copyreg",
    "exceptions": "builtins",
    "UserDict": "collections",
    "_abcoll": "collections.abc",
}


@dataclass(frozen=True, slots=True)
class Global:
    """A reference to ``module.name`` (GLOBAL/STACK_GLOBAL/INST/EXT), never resolved."""

    module: str
    name: str
    offset: int = -1  # byte offset of the opcode that named it
    opcode: str = "GLOBAL"

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def canonical(self) -> str:
        """Name with Python 2 module aliases mapped (``__builtin__.set`` -> ``builtins.set``)."""
        return f"{PY2_MODULES.get(self.module, self.module)}.{self.name}"

    def __repr__(self) -> str:
        return f"<global {self.qualname}>"

    def __hash__(self) -> int:
        return hash((self.module, self.name))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Global) and (self.module, self.name) == (other.module, other.name)


@dataclass(slots=True, eq=False)
class PickledObject:
    """What an unknown REDUCE / NEWOBJ / OBJ / INST would have produced.

    ``callee`` is usually a :class:`Global` (the class or function), but may be
    any value the pickle pushed. ``state`` is what BUILD would have applied,
    ``listitems``/``dictitems`` what APPEND(S)/SETITEM(S) would have added.
    """

    callee: Any
    args: tuple = ()
    kwargs: dict | None = None
    how: str = "reduce"  # reduce | newobj | newobj_ex | obj | inst
    offset: int = -1
    state: Any = None
    listitems: list = field(default_factory=list)
    dictitems: list = field(default_factory=list)

    @property
    def qualname(self) -> str:
        c = self.callee
        if isinstance(c, Global):
            # copyreg.__newobj__ / _reconstructor: the class is the first argument
            if c.canonical in ("copyreg.__newobj__", "copyreg._reconstructor") and self.args:
                first = self.args[0]
                if isinstance(first, Global):
                    return first.qualname
            return c.qualname
        return f"<call of {type(c).__name__}>"

    @property
    def attrs(self) -> dict:
        """The instance dict BUILD would set (state, or state[0] for (dict, slots) pairs)."""
        st = self.state
        if isinstance(st, tuple) and len(st) == 2 and (st[0] is None or isinstance(st[0], dict)):
            merged = dict(st[0] or {})
            if isinstance(st[1], dict):
                merged.update(st[1])
            return merged
        return st if isinstance(st, dict) else {}

    def __repr__(self) -> str:
        return f"<{self.qualname}(...)>"


@dataclass(frozen=True, slots=True)
class PersistentRef:
    """A persistent id the container reader did not resolve."""

    pid: Any


class OrderedDictValue(dict):
    """A ``collections.OrderedDict`` from the file (dicts keep order; this keeps the type and ``_metadata``)."""

    __slots__ = ("attrs",)

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.attrs: dict = {}


@dataclass(frozen=True, slots=True)
class DeviceValue:
    """``torch.device(type, index)``."""

    type: str
    index: int | None = None

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"
