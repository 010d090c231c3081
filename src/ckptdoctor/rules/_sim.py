"""A dry run of torch's unpicklers over a file's pickles, without executing or importing anything.

:func:`simulate` walks every opcode (``pickletools.genops`` decodes them; nothing is
built) with an abstract stack of *kinds* of values, and records what torch's
``weights_only`` unpickler of a given release would refuse, in file order, with
byte offsets: globals outside the allowlist (after the release's Python 2 name
mapping), blocklisted modules, opcodes it does not handle, NEWOBJ / REDUCE / BUILD /
APPEND / SETITEM on what it does not accept, persistent ids other than storages.
Values made from a refused global are marked and never reported again.

With ``table=None`` it simulates plain ``pickle`` (``weights_only=False``): only the
globals (with offsets) and the Python 2 byte strings that are not UTF-8 are recorded.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

REBUILD_PARAMETER = {"torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"}
FIXED_BUILD = {"torch.Tensor", "torch.nn.parameter.Parameter", "collections.OrderedDict"}
PY_TYPES = {"list": "builtins.list", "dict": "builtins.dict", "tuple": "builtins.tuple", "set": "builtins.set",
            "frozenset": "builtins.frozenset", "str": "builtins.str", "bytes": "builtins.bytes",
            "int": "builtins.int", "float": "builtins.float", "bool": "builtins.bool", "NoneType": "builtins.NoneType",
            "bytearray": "builtins.bytearray"}


@dataclass(slots=True)
class V:
    """An abstract stack value: a global, or an object of a known type (``val`` for small constants)."""

    kind: str  # "global" | "obj" | "mark"
    name: str = ""  # global: module.name; obj: type module.name
    val: Any = None
    bad: bool = False  # made from something already reported


MARKV = V("mark")


@dataclass(slots=True)
class Issue:
    """One thing the target unpickler refuses (or, for ``py2-bytes``, cannot decode)."""

    kind: str  # global | blocked | njt | dtensor | operand | newobj | reduce | build | append | extend | setitem
    #            | persid | persid_type | py2-bytes
    offset: int  # absolute byte offset in the file (or in the zip record when compressed)
    pickle: str  # which pickle (data.pkl, object, sys_info, ...)
    opcode: str
    name: str | None = None  # the global (after name mapping), or the type involved
    raw_name: str | None = None  # the global as written in the file
    code: int | None = None  # opcode byte
    detail: str | None = None


@dataclass(slots=True)
class SimResult:
    issues: list[Issue] = field(default_factory=list)
    globals: list[tuple[str, str, int, str]] = field(default_factory=list)  # (mapped name, raw name, offset, pickle)
    protocols: dict[str, int] = field(default_factory=dict)
    opcodes: dict[str, tuple[int, str]] = field(default_factory=dict)  # opcode name -> (first offset, pickle)
    error: str | None = None  # the pickle could not be decoded at all (reported by the container rules)


class _View:
    """File-like over a buffer (bytes, mmap or memoryview) without copying it."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: Any, pos: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, pos, end

    def read(self, n: int = -1) -> bytes:
        stop = self.end if n < 0 else min(self.end, self.pos + n)
        out = bytes(self.buf[self.pos : stop])
        self.pos = stop
        return out

    def readline(self) -> bytes:
        i = self.buf.find(b"\n", self.pos, self.end) if hasattr(self.buf, "find") else -1
        if i < 0:
            i = self.end - 1
        out = bytes(self.buf[self.pos : i + 1])
        self.pos = i + 1
        return out

    def tell(self) -> int:
        return self.pos


def map_py2(module: str, name: str, table: dict[str, Any] | None, proto: int) -> tuple[str, str]:
    """The name the unpickler looks up (Python 2 names mapped as that unpickler does)."""
    if table is None:  # CPython's pickle, fix_imports=True, protocol < 3
        if proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                return _compat_pickle.NAME_MAPPING[(module, name)]
            if module in _compat_pickle.IMPORT_MAPPING:
                return _compat_pickle.IMPORT_MAPPING[module], name
        return module, name
    mode = table.get("py2_name_mapping", "never")
    if mode == "never" or (mode == "protocol-2" and proto != 2):
        return module, name
    if (module, name) in table["name_map"]:
        return table["name_map"][(module, name)]
    return table.get("import_mapping", {}).get(module, module), name


NUMPY_DTYPE_CLASSES = {
    "b1": "Bool", "i1": "Int8", "u1": "UInt8", "i2": "Int16", "u2": "UInt16", "i4": "Int32", "u4": "UInt32",
    "i8": "Int64", "u8": "UInt64", "f2": "Float16", "f4": "Float32", "f8": "Float64", "f16": "LongDouble",
    "f12": "LongDouble", "c8": "Complex64", "c16": "Complex128", "c32": "CLongDouble", "c24": "CLongDouble",
    "O8": "Object", "O4": "Object", "U": "Str", "S": "Bytes", "V": "Void", "M8": "DateTime64", "m8": "TimeDelta64",
}


def _numpy_dtype_type(args: V) -> str:
    """type(numpy.dtype(code, ...)): numpy.dtypes.<X>DType in numpy >= 1.25."""
    items = args.val if isinstance(args.val, list) else []
    code = items[0].val if items and isinstance(items[0], V) and isinstance(items[0].val, str) else None
    if code is None:
        return "numpy.dtype"
    base = NUMPY_DTYPE_CLASSES.get(code) or NUMPY_DTYPE_CLASSES.get(code.rstrip("0123456789"))
    return f"numpy.dtypes.{base}DType" if base else "numpy.dtype"


def _result_type(func: str, args: V, numpy_dtype_classes: bool = False) -> str:
    if func == "numpy.dtype" and numpy_dtype_classes:
        return _numpy_dtype_type(args)
    if func in REBUILD_PARAMETER:
        return "torch.nn.parameter.Parameter"
    if func.startswith("torch._utils._rebuild_"):
        return "torch.Tensor"
    if func == "torch._tensor._rebuild_from_type_v2":
        items = args.val if isinstance(args.val, list) else []
        if len(items) > 1 and isinstance(items[1], V) and items[1].kind == "global":
            return items[1].name
        return "torch.Tensor"
    if func == "_codecs.encode":
        return "builtins.bytes"
    if func == "torch.serialization._get_layout":
        return "torch.layout"
    if func.endswith("Tensor") and func.startswith("torch."):
        return "torch.Tensor"
    return func  # classes: an instance of that class


def simulate(pickles: list[tuple[str, Any, int | None, int, int]], table: dict[str, Any] | None) -> SimResult:
    """``pickles``: (label, buffer, start, end, base) in the order torch reads them; ``base`` is added to
    offsets so that they are file offsets."""
    res = SimResult()
    pos = 0
    for label, buf, start, end, base in pickles:
        try:
            pos = _run(res, label, buf, pos if start is None else start, end, base, table)
        except (ValueError, EOFError, IndexError, KeyError, TypeError) as e:
            res.error = f"{label}: {e}"
            break
    return res


COPY_BELOW = 1 << 20  # pickles in a region this small are decoded from a copy (io.BytesIO reads in C)


def _ops(buf: Any, start: int, end: int) -> Iterator[tuple[Any, Any, int]]:
    if end - start <= COPY_BELOW:
        for op, arg, pos in pickletools.genops(io.BytesIO(bytes(buf[start:end]))):
            yield op, arg, start + pos
        return
    yield from pickletools.genops(_View(buf, start, end))


def _run(res: SimResult, label: str, buf: Any, start: int, end: int, base: int,
         table: dict[str, Any] | None) -> int:
    """Run one pickle from ``start``; returns the offset just past its STOP."""
    wo = table is not None
    allowed: frozenset[str] = table["allowed_set"] if wo else frozenset()
    opcodes: frozenset[str] = table["opcode_set"] if wo else frozenset()
    blocked = set(table.get("blocklisted_modules", [])) if wo else set()
    special = {n: k for k, names in (table.get("special_globals", {}) if wo else {}).items() for n in names}
    setitem_ok = set(table["setitem_targets"]) if wo and table.get("setitem_targets") else None
    newobj_mode = table.get("newobj") if wo else None
    build_mode = table.get("build") if wo else None
    user: frozenset[str] = frozenset(table.get("user_allowed", ())) if wo else frozenset()
    stack: list[V] = []
    metastack: list[list[V]] = []
    memo: dict[int, V] = {}
    proto = 0

    def issue(kind: str, pos: int, op: Any, **kw: Any) -> None:
        res.issues.append(Issue(kind, base + pos, label, op.name, code=op.code.encode("latin-1")[0], **kw))

    def pop() -> V:
        return stack.pop() if stack else V("obj", "object", bad=True)

    def top() -> V:
        return stack[-1] if stack else V("obj", "object", bad=True)

    def pop_mark() -> list[V]:
        nonlocal stack
        items = stack
        stack = metastack.pop() if metastack else []
        return items

    def push_global(module: str, name: str, pos: int, op: Any) -> None:
        m, n = map_py2(module, name, table, proto)
        full = f"{m}.{n}"
        raw = f"{module}.{name}"
        res.globals.append((full, raw, base + pos, label))
        g = V("global", full)
        if wo:
            if m in blocked:
                issue("blocked", pos, op, name=full, raw_name=raw, detail=m)
                g.bad = True
            elif full not in allowed and full not in user:
                issue(special.get(full, "global"), pos, op, name=full, raw_name=raw)
                g.bad = True
        stack.append(g)

    for op, arg, pos in _ops(buf, start, end):
        name = op.name
        if name not in res.opcodes:
            res.opcodes[name] = (base + pos, label)
        if wo and name not in opcodes:
            issue("operand", pos, op)
        if name == "PROTO":
            proto = arg
            res.protocols[label] = arg
        elif name == "STOP":
            return pos + 1
        elif name in ("FRAME",):
            pass
        elif name == "MARK":
            metastack.append(stack)
            stack = []
        elif name in ("GLOBAL", "INST"):
            module, _, gname = str(arg).partition(" ")
            if name == "INST":
                pop_mark()
                push_global(module, gname, pos, op)
                stack[-1] = V("obj", stack[-1].name, bad=stack[-1].bad)
            else:
                push_global(module, gname, pos, op)
        elif name == "STACK_GLOBAL":
            n, m = pop(), pop()
            push_global(str(m.val), str(n.val), pos, op)
        elif name in ("EXT1", "EXT2", "EXT4"):
            stack.append(V("global", f"<extension {arg}>", bad=True))
        elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ"):
            if name == "NEWOBJ_EX":
                pop()
            if name == "OBJ":
                items = pop_mark()
                func, args = (items[0], V("obj", "builtins.tuple", items[1:])) if items else (V("obj", bad=True), V("obj"))
            else:
                args = pop()
                func = pop()
            bad = func.bad or args.bad
            rtype = (_result_type(func.name, args, bool(table and table.get("numpy_dtype_classes")))
                     if func.kind == "global" else "object")
            if wo and not bad:
                if func.kind != "global":
                    issue("reduce" if name == "REDUCE" else "newobj", pos, op, name=func.name or "<value>")
                    bad = True
                elif name in ("NEWOBJ", "NEWOBJ_EX", "OBJ") and not (
                        func.name == "torch.nn.parameter.Parameter"
                        or (newobj_mode in ("parameter-or-user", "allowlisted") and func.name in user)
                        or (newobj_mode == "allowlisted" and func.name in allowed)):
                    issue("newobj", pos, op, name=func.name)
                    bad = True
            stack.append(V("obj", rtype, bad=bad))
        elif name == "BUILD":
            state = pop()
            inst = top()
            if wo and not (inst.bad or state.bad):
                ok = (inst.name in FIXED_BUILD or (build_mode in ("user", "allowlisted") and inst.name in user)
                      or (build_mode == "allowlisted" and inst.name in allowed))
                if not ok:
                    issue("build", pos, op, name=inst.name)
                    inst.bad = True
        elif name in ("APPEND", "APPENDS"):
            if name == "APPEND":
                pop()
            else:
                pop_mark()
            target = top()
            if wo and not target.bad and target.name != "builtins.list":
                issue("append" if name == "APPEND" else "extend", pos, op, name=target.name)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                pop()
                pop()
            else:
                pop_mark()
            target = top()
            if wo and setitem_ok is not None and not target.bad and target.name not in setitem_ok:
                issue("setitem", pos, op, name=target.name)
        elif name == "ADDITEMS":
            pop_mark()
        elif name in ("BINPERSID", "PERSID"):
            pid = pop() if name == "BINPERSID" else V("obj", "builtins.str", arg)
            if wo and not pid.bad and name == "BINPERSID":
                first = pid.val[0] if pid.name == "builtins.tuple" and isinstance(pid.val, list) and pid.val else None
                if pid.name not in ("builtins.tuple", "builtins.int"):
                    issue("persid_type", pos, op, name=pid.name)
                elif pid.name == "builtins.int" and not table.get("persistent_id_int"):
                    issue("persid_type", pos, op, name=pid.name)
                elif first is not None and not (first.name in ("builtins.str", "builtins.bytes")
                                                 and first.val in ("storage", b"storage")):
                    issue("persid", pos, op, name=first.name, detail=str(first.val))
            stack.append(V("obj", "torch.storage", bad=pid.bad))
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
            items = pop_mark()
            kind = {"TUPLE": "builtins.tuple", "LIST": "builtins.list", "DICT": "builtins.dict",
                    "FROZENSET": "builtins.frozenset"}[name]
            stack.append(V("obj", kind, items if kind == "builtins.tuple" else None))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            stack.append(V("obj", "builtins.tuple", items))
        elif name in ("EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            kind = {"EMPTY_TUPLE": "builtins.tuple", "EMPTY_LIST": "builtins.list", "EMPTY_DICT": "builtins.dict",
                    "EMPTY_SET": "builtins.set"}[name]
            stack.append(V("obj", kind, [] if kind == "builtins.tuple" else None))
        elif name == "POP":
            pop()
        elif name == "POP_MARK":
            pop_mark()
        elif name == "DUP":
            stack.append(top())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = top()
        elif name == "MEMOIZE":
            memo[len(memo)] = top()
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg), V("obj", "object", bad=True)))
        elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):
            raw = arg.encode("latin-1") if isinstance(arg, str) else bytes(arg)
            try:
                text: Any = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                res.issues.append(Issue("py2-bytes", base + pos, label, name, code=op.code.encode("latin-1")[0],
                                        detail=str(e)))
                text = raw
            stack.append(V("obj", "builtins.str", text))
        elif name in ("UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"):
            stack.append(V("obj", "builtins.str", arg))
        elif name in ("BINBYTES", "SHORT_BINBYTES", "BINBYTES8"):
            stack.append(V("obj", "builtins.bytes", arg if isinstance(arg, bytes) and len(arg) < 64 else None))
        elif name == "BYTEARRAY8":
            stack.append(V("obj", "builtins.bytearray"))
        elif name in ("NEXT_BUFFER",):
            stack.append(V("obj", "pickle.PickleBuffer"))
        elif name == "READONLY_BUFFER":
            pass
        elif name in ("NONE",):
            stack.append(V("obj", "builtins.NoneType"))
        elif name in ("NEWTRUE", "NEWFALSE"):
            stack.append(V("obj", "builtins.bool", name == "NEWTRUE"))
        elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"):
            stack.append(V("obj", "builtins.int", arg if isinstance(arg, int) else None))
        elif name in ("FLOAT", "BINFLOAT"):
            stack.append(V("obj", "builtins.float"))
        else:  # an opcode we do not model: keep going with an unknown value
            stack.append(V("obj", "object", bad=True))
    raise EOFError(f"pickle at byte {base + start} has no STOP")
