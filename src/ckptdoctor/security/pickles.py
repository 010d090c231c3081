"""Run one pickle through the non-executing VM and record every callable it would reach.

A callable is *reached* when the pickle calls it (REDUCE, INST, OBJ),
instantiates it (NEWOBJ, NEWOBJ_EX), hands it to something that calls it
(``copyreg._reconstructor``'s class, ``defaultdict``'s factory, the function of
``torch._tensor._rebuild_from_type_v2`` ...), passes it into any call or BUILD
state, or sets state on it (BUILD on a module-level object). A name that is
only pushed (GLOBAL/STACK_GLOBAL/EXT) and never flows anywhere is *referenced*.
The VM never imports or calls anything; it only tells us what would happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.errors import CkptdoctorError, LimitExceeded
from ckptdoctor.limits import DEFAULT_LIMITS, Limits
from ckptdoctor.pickle.objects import Global, PersistentRef, PickledObject
from ckptdoctor.pickle.vm import NOT_HANDLED, Machine
from ckptdoctor.security.nested import evaluate_bytes, looks_like_payload, text_or_bytes
from ckptdoctor.security.table import Classification, call_arg_positions, classify, deserialiser_arg

OPCODE = {"reduce": "REDUCE", "newobj": "NEWOBJ", "newobj_ex": "NEWOBJ_EX", "obj": "OBJ", "inst": "INST"}
EXT_MODULE = "copyreg._extension_registry"
WALK_BUDGET = 5_000_000


@dataclass(slots=True)
class Reach:
    """One (callable, way it is reached) pair, aggregated over every place it happens."""

    cls: Classification
    name: str  # module.name as written in the file
    how: str  # called | instantiated | called-later | passed | built-on | referenced
    opcode: str  # REDUCE / NEWOBJ / ... / BUILD / GLOBAL / STACK_GLOBAL / INST / EXT1 ...
    offset: int  # byte offset (in the file) of the first such opcode
    count: int = 1
    offsets: list[int] = field(default_factory=list)
    via: list[str] = field(default_factory=list)  # callees it was passed to / that call it
    example: str = ""  # a short preview of the call


@dataclass(slots=True)
class Indirect:
    """A call whose callee is not a name but a value the pickle computed (``getattr(...)(...)``)."""

    opcode: str
    offset: int
    source: str  # what produced the callee
    example: str


@dataclass(slots=True)
class Embedded:
    """Bytes inside the pickle that are themselves deserialisable (a nested pickle or torch file)."""

    offset: int  # offset of the call that receives them (or -1)
    data: bytes
    deserialised_by: str | None  # the callee that deserialises them, None if only carried
    passed_to: str | None  # any callee they are an argument of
    risky: bool = True  # passed to something that is not a known data type (it may deserialise them)


@dataclass(slots=True)
class PickleScan:
    label: str  # "data.pkl", "pickle 1 of the stream", ...
    start: int
    end: int | None = None  # offset past STOP (None if it did not parse to the end)
    error: str | None = None
    error_offset: int | None = None
    limited: bool = False  # the error is a resource limit (bomb or huge pickle), not malformation
    protocol: int = 0
    n_ops: int = 0
    value: Any = None
    reaches: dict[tuple[str, str], Reach] = field(default_factory=dict)
    indirect: list[Indirect] = field(default_factory=list)
    embedded: list[Embedded] = field(default_factory=list)
    calls: int = 0
    persistent_ids: int = 0
    pids: list[Any] = field(default_factory=list, repr=False)  # persistent ids, in order (storage references)
    executed_by: str = "torch.load"  # who runs this pickle (for explanations)

    def dangerous(self) -> list[Reach]:
        return [r for r in self.reaches.values() if r.cls.category == "dangerous"]


class _Recorder:
    """VM resolver + build hook that keep every call and BUILD as data."""

    def __init__(self) -> None:
        self.calls: list[PickledObject] = []
        self.builds: list[tuple[Any, Any, int]] = []
        self.pids: list[Any] = []
        self.machine: Machine | None = None

    def persistent_load(self, pid: Any) -> Any:
        if len(self.pids) < 10_000_000:
            self.pids.append(pid)
        return PersistentRef(pid)

    def __call__(self, callee: Any, args: tuple, kwargs: dict | None, how: str, offset: int) -> Any:
        obj = PickledObject(callee, args, kwargs, how, offset)
        self.calls.append(obj)
        return obj

    def build(self, obj: Any, state: Any) -> Any:
        res = self.machine.result if self.machine is not None else None
        off = res.calls[-1].offset if res is not None and res.calls else -1
        self.builds.append((obj, state, off))
        return NOT_HANDLED


def run_recorded(buf: Any, pos: int, end: int | None, *, base: int = 0, limits: Limits = DEFAULT_LIMITS,
                 label: str = "pickle", executed_by: str = "torch.load") -> PickleScan:
    """Run one pickle from ``buf[pos:]``; never raises for malformed input (the error is recorded)."""
    rec = _Recorder()
    m = Machine(resolver=rec, build_hook=rec.build, persistent_load=rec.persistent_load, limits=limits,
                base_offset=base)
    rec.machine = m
    scan = PickleScan(label=label, start=base + pos, executed_by=executed_by)
    try:
        res = m.run(buf, pos, end)
    except CkptdoctorError as e:
        scan.error = str(e)
        scan.error_offset = getattr(e, "offset", None)
        scan.limited = isinstance(e, LimitExceeded)
        res = m.result
    except RecursionError:
        scan.error = "structure nested too deeply"
        res = m.result
    else:
        scan.end = base + res.end
        scan.value = res.value
    if res is not None:
        scan.protocol = res.protocol
        scan.n_ops = res.n_ops
        scan.persistent_ids = res.persistent_ids
    scan.pids = rec.pids
    _analyse(scan, rec, res.globals if res is not None else [])
    return scan


# ------------------------------------------------------------------ analysis
def _name(v: Any) -> str:
    if isinstance(v, Global):
        return v.qualname
    if isinstance(v, PickledObject):
        return f"the result of {_name(v.callee)}(...)"
    return type(v).__name__


def _classify_global(g: Global) -> Classification:
    if g.module == EXT_MODULE:
        return Classification("dangerous", f"extension code {g.name}", "whatever the loading process registered "
                              f"under copyreg extension code {g.name} (no checkpoint writer uses extension codes)",
                              "indirect", "EXT")
    return classify(g.module, g.name)


def _preview(v: Any, budget: int = 100, depth: int = 0) -> str:
    if depth > 3:
        return "..."
    if isinstance(v, str):
        return repr(v if len(v) <= budget else v[:budget] + "...")
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>" if len(v) > 24 else repr(bytes(v))
    if isinstance(v, Global):
        return v.qualname
    if isinstance(v, PickledObject):
        return f"{_name(v.callee)}({_args_preview(v.args, budget // 2, depth + 1)})"
    if isinstance(v, tuple):
        return "(" + _args_preview(v, budget, depth + 1) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + _args_preview(tuple(v), budget, depth + 1) + "]"
    if isinstance(v, dict):
        items = list(v.items())[:4]
        s = ", ".join(f"{_preview(k, 30, depth + 1)}: {_preview(x, 40, depth + 1)}" for k, x in items)
        return "{" + s + (", ..." if len(v) > 4 else "") + "}"
    if isinstance(v, PersistentRef):
        return "<persistent id>"
    r = repr(v)
    return r if len(r) <= budget else r[:budget] + "..."


def _args_preview(args: tuple, budget: int = 100, depth: int = 0) -> str:
    parts = [_preview(a, budget, depth) for a in args[:6]]
    s = ", ".join(parts) + (", ..." if len(args) > 6 else "")
    return s if len(s) <= 2 * budget else s[: 2 * budget] + "..."


def _add(scan: PickleScan, g: Global, how: str, opcode: str, offset: int, via: str | None = None,
         example: str | None = None, cls: Classification | None = None) -> None:
    key = (g.qualname, how)
    r = scan.reaches.get(key)
    if r is None:
        cls = cls or _classify_global(g)
        r = Reach(cls, g.qualname, how, opcode, offset, 0)
        if example is not None:
            r.example = example
        scan.reaches[key] = r
    r.count += 1
    if len(r.offsets) < 8:
        r.offsets.append(offset)
    if via and via not in r.via and len(r.via) < 6:
        r.via.append(via)


def _walk(values: Iterator[Any] | tuple | list, seen: set[int], budget: list[int]) -> Iterator[Any]:
    """Globals, PickledObjects and byte payloads inside plain containers (not inside other calls)."""
    stack = list(values)
    while stack:
        v = stack.pop()
        budget[0] -= 1
        if budget[0] < 0:
            return
        if isinstance(v, (Global, PickledObject)):
            yield v
            continue
        if isinstance(v, (bytes, bytearray)):
            if looks_like_payload(v):
                yield v
            continue
        if isinstance(v, (str, int, float, bool, type(None))):
            continue
        i = id(v)
        if i in seen:
            continue
        seen.add(i)
        if isinstance(v, dict):
            for k, x in v.items():
                stack.append(k)
                stack.append(x)
            attrs = getattr(v, "attrs", None)
            if isinstance(attrs, dict):
                stack.append(attrs)
        elif isinstance(v, (list, tuple, set, frozenset)):
            stack.extend(v)


def _analyse(scan: PickleScan, rec: _Recorder, globals_: list[Global]) -> None:
    seen: set[int] = set()
    budget = [WALK_BUDGET]
    scan.calls = len(rec.calls)
    for c in rec.calls:
        op = OPCODE.get(c.how, c.how.upper())
        callee = c.callee
        args = c.args if isinstance(c.args, tuple) else ()
        example = None
        skip: set[int] = set()
        if isinstance(callee, PersistentRef) and _module_pid(callee.pid):
            callee = callee.pid[1]  # legacy torch.save of a module: persistent_load returns the class
        if isinstance(callee, Global):
            cls = _classify_global(callee)
            bound = _bound_method(cls, args)
            if bound is not None:
                cls = bound
            how = "instantiated" if c.how in ("newobj", "newobj_ex") else "called"
            key = (callee.qualname, how)
            if key not in scan.reaches:
                example = f"{callee.qualname}({_args_preview(args)})"
            _add(scan, callee, how, op, c.offset, example=example, cls=cls)
            for pos in call_arg_positions(cls.qualname):
                if pos < len(args):
                    a = args[pos]
                    skip.add(pos)
                    if isinstance(a, Global):
                        _add(scan, a, "called-later", op, c.offset, via=cls.qualname,
                             example=f"{cls.qualname}({_args_preview(args)})")
                    elif isinstance(a, PickledObject):
                        scan.indirect.append(Indirect(op, c.offset, f"{cls.qualname} receives {_name(a)} "
                                                      "as the function it calls", _preview(a)))
            dpos = deserialiser_arg(cls.qualname)
            if dpos is not None and dpos < len(args):
                data = text_or_bytes(args[dpos])
                if data is not None:
                    scan.embedded.append(Embedded(c.offset, data, cls.qualname, cls.qualname, True))
                skip.add(dpos)
            via = cls.qualname
            risky = _risky(cls)
        elif isinstance(callee, PickledObject):
            scan.indirect.append(Indirect(op, c.offset, f"calls {_name(callee)}",
                                          f"{_preview(callee)}({_args_preview(args)})"))
            via = _name(callee)
            risky = True
        else:
            scan.indirect.append(Indirect(op, c.offset, f"calls a {type(callee).__name__} value",
                                          f"{_preview(callee)}({_args_preview(args)})"))
            via = type(callee).__name__
            risky = True
        flow = [a for i, a in enumerate(args) if i not in skip]
        if c.kwargs:
            flow.append(c.kwargs)
        _flow(scan, flow, op, c.offset, via, seen, budget, risky)
        if c.listitems or c.dictitems:
            _flow(scan, [c.listitems, c.dictitems], "SETITEMS" if c.dictitems else "APPENDS", c.offset,
                  f"{via} (APPEND/SETITEM)", seen, budget, risky)
    for obj, state, off in rec.builds:
        if isinstance(obj, Global):
            _add(scan, obj, "built-on", "BUILD", off, example=f"BUILD {obj.qualname} with {_preview(state)}",
                 cls=Classification("dangerous", obj.qualname, "BUILD sets attributes on a module-level object "
                                    "(monkey-patches a module, class or function for later calls)", "state",
                                    "build-on-global"))
            continue
        special = _special_keys(state)
        if special:
            scan.indirect.append(Indirect("BUILD", off, f"BUILD assigns {special[0]} on "
                                          f"{_name(obj.callee) if isinstance(obj, PickledObject) else _name(obj)}: "
                                          "a later BUILD or call runs the assigned value", f"BUILD {_preview(state)}"))
        owner = obj.callee if isinstance(obj, PickledObject) else None
        via = f"{_name(owner) if owner is not None else type(obj).__name__}.__setstate__"
        _flow(scan, [state], "BUILD", off, via, seen, budget,
              _risky(_classify_global(owner)) if isinstance(owner, Global) else True)
    reached = {name for name, _ in scan.reaches}
    for g in globals_:
        if g.qualname not in reached:
            _add(scan, g, "referenced", g.opcode, g.offset)
    _flow(scan, [scan.value], "STOP", scan.end if scan.end is not None else -1, None, seen, budget, False)


def _flow(scan: PickleScan, values: list, op: str, offset: int, via: str | None, seen: set[int],
          budget: list[int], risky: bool = True) -> None:
    for v in _walk(values, seen, budget):
        if isinstance(v, Global):
            if via is not None:
                _add(scan, v, "passed", op, offset, via=via, example=f"{via}(... {v.qualname} ...)")
        elif isinstance(v, (bytes, bytearray)):
            scan.embedded.append(Embedded(offset, bytes(v), None, via, risky))
        elif isinstance(v, PickledObject):
            data = evaluate_bytes(v)
            if data is not None and looks_like_payload(data):
                scan.embedded.append(Embedded(offset, data, None, via, risky))


def _instance_class(obj: Any) -> Global | None:
    """The class of an object the pickle built (NEWOBJ/REDUCE of a class, or copyreg reconstructors)."""
    if not isinstance(obj, PickledObject) or not isinstance(obj.callee, Global):
        return None
    if obj.callee.canonical in ("copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__"):
        first = obj.args[0] if obj.args else None
        return first if isinstance(first, Global) else None
    return obj.callee


def _bound_method(cls: Classification, args: tuple) -> Classification | None:
    """getattr(instance, 'name') is how pickle stores a bound method: as risky as the instance's class.

    Only for instances the pickle built of a non-dangerous class and a plain attribute name; getattr
    on modules, classes, computed values or dunder names stays an attribute-access gadget.
    """
    if cls.qualname != "builtins.getattr" or len(args) != 2 or not isinstance(args[1], str):
        return None
    name = args[1]
    obj = args[0]
    owner = _instance_class(obj)
    what = "an object the pickle built"
    if owner is None and isinstance(obj, Global) and obj.name[:1].isupper() and "." not in obj.name:
        owner, what = obj, "a class (a classmethod)"  # getattr(SomeClass, 'from_config')
    if owner is None or not name.isidentifier() or name.startswith("__"):
        return None
    oc = _classify_global(owner)
    if oc.category == "dangerous":
        return None
    return Classification("unknown", cls.qualname, f"a bound method ({owner.qualname}.{name}) of {what}: how "
                          "pickle stores methods; it runs only if something calls it", None, "bound-method")


def _special_keys(state: Any) -> list[str]:
    """Dunder attribute names a BUILD state would set (``__setstate__``, ``__reduce__``, ``__class__`` ...)."""
    dicts = [state] if isinstance(state, dict) else [x for x in state if isinstance(x, dict)] \
        if isinstance(state, tuple) and len(state) == 2 else []
    return [k for d in dicts for k in d if isinstance(k, str) and len(k) > 4 and k.startswith("__")
            and k.endswith("__")]


def _module_pid(pid: Any) -> bool:
    return isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "module" and isinstance(pid[1], Global)


def _risky(cls: Classification | None) -> bool:
    return cls is None or cls.category in ("unknown", "dangerous")
