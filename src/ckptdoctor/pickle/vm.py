"""A pickle interpreter that never imports or calls anything.

It decodes every opcode of protocols 0-5 (the opcode table comes from the
stdlib's :mod:`pickletools`; a test asserts every opcode there is handled).
GLOBAL-like opcodes push :class:`~ckptdoctor.pickle.objects.Global` names;
calls (REDUCE, NEWOBJ, OBJ, INST) go to a *resolver* that may build a safe
value from our own code (e.g. a ``TensorRecord`` for ``_rebuild_tensor_v2``),
and otherwise become inert :class:`PickledObject` placeholders.

Every length is checked against the bytes left before anything is allocated,
and :class:`~ckptdoctor.limits.Limits` bound opcodes, memo, stack and bytes.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.errors import LimitExceeded, PickleError, TruncatedFile
from ckptdoctor.limits import DEFAULT_LIMITS, Limits, resident_bytes
from ckptdoctor.pickle.objects import Global, PersistentRef, PickledObject

NOT_HANDLED = object()  # a resolver's "I don't know this callable"

Resolver = Callable[[Any, tuple, dict | None, str, int], Any]
BuildHook = Callable[[Any, Any], Any]
PersistentLoad = Callable[[Any], Any]


class _Mark:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<MARK>"


MARK = _Mark()


@dataclass(slots=True)
class CallSite:
    """One place where the pickle would call or instantiate something."""

    opcode: str
    offset: int
    callee: Any  # usually a Global


@dataclass(slots=True)
class PickleResult:
    value: Any
    start: int  # offset of the first opcode within the buffer
    end: int  # offset just past STOP
    protocol: int  # highest PROTO seen (0 if none; inferred from opcodes otherwise)
    globals: list[Global] = field(default_factory=list)
    calls: list[CallSite] = field(default_factory=list)
    opcodes_used: set[str] = field(default_factory=set)
    n_ops: int = 0
    py2_strings: bool = False  # STRING/BINSTRING/SHORT_BINSTRING seen
    persistent_ids: int = 0


class _Reader:
    """Bounds-checked reads from a buffer."""

    __slots__ = ("buf", "pos", "end", "base")

    def __init__(self, buf: bytes | memoryview, pos: int, end: int, base: int) -> None:
        if isinstance(buf, memoryview):
            buf = buf.tobytes()
        self.buf = buf
        self.pos = pos
        self.end = end
        self.base = base  # added to offsets in messages (position of buffer in the file)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise TruncatedFile(
                f"pickle data ends at byte {self.base + self.end} but an opcode needs {n} bytes "
                f"from byte {self.base + self.pos}",
                offset=self.base + self.end,
                needed=self.base + self.pos + max(n, 0),
            )
        p = self.pos
        self.pos = p + n
        return bytes(self.buf[p : p + n])

    def line(self) -> bytes:
        p = self.pos
        i = self.buf.find(b"\n", p, min(self.end, p + (1 << 24)))
        if i < 0:
            if self.end - p >= (1 << 24):
                raise PickleError("text line in pickle longer than 16 MiB", offset=self.base + p)
            raise TruncatedFile("pickle text opcode is missing its newline", offset=self.base + self.end)
        self.pos = i + 1
        return bytes(self.buf[p:i])


def _unpack(fmt: str, data: bytes) -> int:
    return struct.unpack(fmt, data)[0]


class Machine:
    """Run one pickle (up to STOP) from ``buf[pos:]`` and return a :class:`PickleResult`."""

    def __init__(
        self,
        *,
        resolver: Resolver | None = None,
        build_hook: BuildHook | None = None,
        persistent_load: PersistentLoad | None = None,
        limits: Limits = DEFAULT_LIMITS,
        base_offset: int = 0,
    ) -> None:
        self.resolver = resolver
        self.build_hook = build_hook
        self.persistent_load = persistent_load
        self.limits = limits
        self.base = base_offset
        self.result: PickleResult | None = None  # the last (or current) run's result, partial on error

    # ---------------------------------------------------------------- helpers
    def _err(self, msg: str, at: int) -> PickleError:
        return PickleError(f"malformed pickle at byte {self.base + at}: {msg}", offset=self.base + at)

    def run(self, buf: bytes | memoryview, pos: int = 0, end: int | None = None) -> PickleResult:
        lim = self.limits
        r = _Reader(buf, pos, len(buf) if end is None else end, self.base)
        buf = r.buf
        stack: list[Any] = []
        marks: list[list[Any]] = []
        memo: dict[int, Any] = {}
        memo_slots: dict[int, list[int]] = {}  # id(value) -> memo indices holding it (for BUILD replacements)
        res = PickleResult(value=None, start=pos, end=pos, protocol=0)
        self.result = res  # the facts gathered so far stay readable if the run raises (security scan)
        allocated = 0
        items_added = 0
        start = pos
        n_ops = 0
        resolver = self.resolver
        globals_seen: dict[tuple[str, str], Global] = {}

        def pop_mark() -> list[Any]:
            nonlocal stack
            if not marks:
                raise self._err("MARK expected but none on the stack", op_at)
            items = stack
            stack = marks.pop()
            return items

        def need(n: int) -> None:
            if len(stack) < n:
                raise self._err(f"{name} needs {n} stack items, found {len(stack)}", op_at)

        def count_bytes(n: int) -> None:
            nonlocal allocated
            allocated += n
            if allocated > lim.max_pickle_bytes:
                raise LimitExceeded("pickle string/bytes total", lim.max_pickle_bytes, allocated,
                                    offset=self.base + op_at)

        def add_items(n: int) -> None:
            nonlocal items_added
            items_added += n
            if items_added > lim.max_container_items:
                raise LimitExceeded("container items", lim.max_container_items, items_added,
                                    offset=self.base + op_at)

        def make_global(module: str, gname: str, opname: str) -> Global:
            g = Global(module, gname, self.base + op_at, opname)
            key = (module, gname)
            if key not in globals_seen:
                globals_seen[key] = g
                res.globals.append(g)
            return g

        def call(callee: Any, args: Any, kwargs: dict | None, how: str) -> Any:
            if not isinstance(args, tuple):
                if isinstance(args, list):
                    args = tuple(args)
                else:
                    raise self._err(f"{name} arguments are not a tuple ({type(args).__name__})", op_at)
            res.calls.append(CallSite(name, self.base + op_at, callee))
            if resolver is not None:
                value = resolver(callee, args, kwargs, how, self.base + op_at)
                if value is not NOT_HANDLED:
                    return value
            return PickledObject(callee, args, kwargs, how, self.base + op_at)

        def memo_put(idx: int, value: Any) -> None:
            if idx < 0:
                raise self._err("negative memo index", op_at)
            if idx not in memo and len(memo) >= lim.max_memo:
                raise LimitExceeded("pickle memo entries", lim.max_memo, len(memo) + 1, offset=self.base + op_at)
            memo[idx] = value
            memo_slots.setdefault(id(value), []).append(idx)

        def memo_get(idx: int) -> Any:
            try:
                return memo[idx]
            except KeyError:
                raise self._err(f"memo key {idx} was never stored", op_at) from None

        def setitems(target: Any, pairs: list[Any]) -> None:
            if len(pairs) % 2:
                raise self._err("SETITEMS with an odd number of items", op_at)
            add_items(len(pairs) // 2)
            if isinstance(target, dict):
                try:
                    for i in range(0, len(pairs), 2):
                        target[pairs[i]] = pairs[i + 1]
                except TypeError:
                    raise self._err("unhashable dict key", op_at) from None
            elif isinstance(target, PickledObject):
                target.dictitems.extend(zip(pairs[0::2], pairs[1::2], strict=True))
            else:
                raise self._err(f"SETITEM(S) on a {type(target).__name__}", op_at)

        def appends(target: Any, items: list[Any]) -> None:
            add_items(len(items))
            if isinstance(target, list):
                target.extend(items)
            elif isinstance(target, PickledObject):
                target.listitems.extend(items)
            else:
                raise self._err(f"APPEND(S) on a {type(target).__name__}", op_at)

        take = r.take
        # Memory bombs (a few bytes per opcode that each build a set, dict or memo entry) are caught by
        # how much this process grew, checked every 32768 opcodes; strings are counted in count_bytes.
        mem_limit = lim.max_pickle_memory
        mem_base = resident_bytes() if mem_limit is not None else None
        while True:
            op_at = r.pos
            if op_at >= r.end:
                raise TruncatedFile(
                    f"pickle ends at byte {self.base + r.end} without a STOP opcode (truncated file?)",
                    offset=self.base + r.end,
                )
            code = buf[op_at]
            r.pos = op_at + 1
            n_ops += 1
            if n_ops > lim.max_ops:
                raise LimitExceeded("pickle opcodes", lim.max_ops, n_ops, offset=self.base + op_at)
            if not n_ops & 0x7FFF and mem_base is not None:
                grown = (resident_bytes() or 0) - mem_base
                if grown > mem_limit:
                    raise LimitExceeded("memory (bytes) built from the pickle", mem_limit, grown,
                                        offset=self.base + op_at)
            name = OPNAMES.get(code)
            if name is None:
                raise self._err(f"unknown opcode 0x{code:02x} ({chr(code)!r})", op_at)
            res.opcodes_used.add(name)
            if len(stack) + len(marks) > lim.max_stack:
                raise LimitExceeded("pickle stack depth", lim.max_stack, len(stack) + len(marks),
                                    offset=self.base + op_at)

            # ---- the hot, simple ones first
            if name == "BINPUT":
                need(1)
                memo_put(take(1)[0], stack[-1])
            elif name == "BINGET":
                stack.append(memo_get(take(1)[0]))
            elif name == "BINUNICODE":
                n = _unpack("<I", take(4))
                count_bytes(n)
                stack.append(_decode_utf8(take(n), self, op_at))
            elif name == "SHORT_BINUNICODE":
                n = take(1)[0]
                stack.append(_decode_utf8(take(n), self, op_at))
            elif name == "BININT1":
                stack.append(take(1)[0])
            elif name == "BININT2":
                stack.append(_unpack("<H", take(2)))
            elif name == "BININT":
                stack.append(_unpack("<i", take(4)))
            elif name == "MARK":
                marks.append(stack)
                stack = []
            elif name == "TUPLE":
                items = pop_mark()
                stack.append(tuple(items))
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "TUPLE1":
                need(1)
                stack[-1] = (stack[-1],)
            elif name == "TUPLE2":
                need(2)
                stack[-2:] = [tuple(stack[-2:])]
            elif name == "TUPLE3":
                need(3)
                stack[-3:] = [tuple(stack[-3:])]
            elif name == "LONG_BINPUT":
                need(1)
                memo_put(_unpack("<I", take(4)), stack[-1])
            elif name == "LONG_BINGET":
                stack.append(memo_get(_unpack("<I", take(4))))
            elif name == "MEMOIZE":
                need(1)
                memo_put(len(memo), stack[-1])
            elif name == "REDUCE":
                need(2)
                args = stack.pop()
                callee = stack.pop()
                stack.append(call(callee, args, None, "reduce"))
            elif name == "NEWOBJ":
                need(2)
                args = stack.pop()
                cls = stack.pop()
                stack.append(call(cls, args, None, "newobj"))
            elif name == "NEWOBJ_EX":
                need(3)
                kwargs = stack.pop()
                args = stack.pop()
                cls = stack.pop()
                if not isinstance(kwargs, dict):
                    raise self._err("NEWOBJ_EX kwargs is not a dict", op_at)
                stack.append(call(cls, args, kwargs, "newobj_ex"))
            elif name == "BUILD":
                need(2)
                state = stack.pop()
                obj = stack[-1]
                res.calls.append(CallSite("BUILD", self.base + op_at, obj))
                built = self._build(obj, state)
                if built is not obj:  # a placeholder became a value: later BINGETs must see the value too
                    for i in memo_slots.pop(id(obj), ()):
                        if memo.get(i) is obj:
                            memo[i] = built
                stack[-1] = built
            elif name == "GLOBAL":
                module = _decode_ascii(r.line(), self, op_at)
                gname = _decode_ascii(r.line(), self, op_at)
                stack.append(make_global(module, gname, "GLOBAL"))
            elif name == "STACK_GLOBAL":
                need(2)
                gname = stack.pop()
                module = stack.pop()
                if not isinstance(module, str) or not isinstance(gname, str):
                    raise self._err("STACK_GLOBAL needs two strings", op_at)
                stack.append(make_global(module, gname, "STACK_GLOBAL"))
            elif name == "BINPERSID":
                need(1)
                pid = stack.pop()
                res.persistent_ids += 1
                stack.append(self.persistent_load(pid) if self.persistent_load else PersistentRef(pid))
            elif name == "PERSID":
                pid = _decode_ascii(r.line(), self, op_at)
                res.persistent_ids += 1
                stack.append(self.persistent_load(pid) if self.persistent_load else PersistentRef(pid))
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "SETITEM":
                need(3)
                v = stack.pop()
                k = stack.pop()
                setitems(stack[-1], [k, v])
            elif name == "SETITEMS":
                items = pop_mark()
                need(1)
                setitems(stack[-1], items)
            elif name == "APPEND":
                need(2)
                v = stack.pop()
                appends(stack[-1], [v])
            elif name == "APPENDS":
                items = pop_mark()
                need(1)
                appends(stack[-1], items)
            elif name == "NONE":
                stack.append(None)
            elif name == "NEWTRUE":
                stack.append(True)
            elif name == "NEWFALSE":
                stack.append(False)
            elif name == "PROTO":
                proto = take(1)[0]
                if proto > 5:
                    raise self._err(f"unsupported pickle protocol {proto}", op_at)
                res.protocol = max(res.protocol, proto)
            elif name == "FRAME":
                take(8)  # frame length: a hint only; opcodes are read straight through
            elif name == "STOP":
                need(1)
                res.value = stack.pop()
                if not res.protocol:  # no PROTO opcode: protocol 0 or 1, told apart by the opcodes used
                    res.protocol = max((OPPROTO[o] for o in res.opcodes_used), default=0)
                res.end = r.pos
                res.n_ops = n_ops
                res.start = start
                return res
            elif name == "BINFLOAT":
                stack.append(_unpack(">d", take(8)))
            elif name == "LONG1":
                n = take(1)[0]
                stack.append(int.from_bytes(take(n), "little", signed=True))
            elif name == "LONG4":
                n = _unpack("<i", take(4))
                if n < 0:
                    raise self._err("negative LONG4 length", op_at)
                if n > MAX_LONG_BYTES:
                    raise LimitExceeded("integer size in bytes", MAX_LONG_BYTES, n, offset=self.base + op_at)
                stack.append(int.from_bytes(take(n), "little", signed=True))
            elif name in ("BINBYTES", "BINBYTES8", "SHORT_BINBYTES", "BYTEARRAY8"):
                fmt = {"BINBYTES": "<I", "BINBYTES8": "<Q", "SHORT_BINBYTES": "<B", "BYTEARRAY8": "<Q"}[name]
                n = _unpack(fmt, take(struct.calcsize(fmt)))
                count_bytes(n)
                data = take(n)
                stack.append(bytearray(data) if name == "BYTEARRAY8" else data)
            elif name == "BINUNICODE8":
                n = _unpack("<Q", take(8))
                count_bytes(n)
                stack.append(_decode_utf8(take(n), self, op_at))
            elif name in ("BINSTRING", "SHORT_BINSTRING"):
                n = take(1)[0] if name == "SHORT_BINSTRING" else _unpack("<i", take(4))
                if n < 0:
                    raise self._err("negative BINSTRING length", op_at)
                count_bytes(n)
                res.py2_strings = True
                stack.append(_py2_string(take(n)))
            elif name == "STRING":
                res.py2_strings = True
                raw = r.line()
                count_bytes(len(raw))
                stack.append(_py2_string(_unquote(raw, self, op_at)))
            elif name == "UNICODE":
                raw = r.line()
                count_bytes(len(raw))
                try:
                    stack.append(codecs.decode(raw, "raw-unicode-escape"))
                except UnicodeDecodeError:
                    raise self._err("bad UNICODE text", op_at) from None
            elif name == "INT":
                raw = r.line()
                if raw == b"00":
                    stack.append(False)
                elif raw == b"01":
                    stack.append(True)
                else:
                    stack.append(_parse_int(raw, self, op_at))
            elif name == "LONG":
                raw = r.line()
                stack.append(_parse_int(raw.rstrip(b"L"), self, op_at))
            elif name == "FLOAT":
                raw = r.line()
                try:
                    stack.append(float(raw))
                except ValueError:
                    raise self._err("bad FLOAT text", op_at) from None
            elif name == "DICT":
                items = pop_mark()
                d: dict = {}
                setitems(d, items)
                stack.append(d)
            elif name == "LIST":
                items = pop_mark()
                add_items(len(items))
                stack.append(list(items))
            elif name == "EMPTY_SET":
                stack.append(set())
            elif name == "ADDITEMS":
                items = pop_mark()
                need(1)
                target = stack[-1]
                add_items(len(items))
                if isinstance(target, set):
                    try:
                        target.update(items)
                    except TypeError:
                        raise self._err("unhashable set item", op_at) from None
                elif isinstance(target, PickledObject):
                    target.listitems.extend(items)
                else:
                    raise self._err("ADDITEMS on a non-set", op_at)
            elif name == "FROZENSET":
                items = pop_mark()
                add_items(len(items))
                try:
                    stack.append(frozenset(items))
                except TypeError:
                    raise self._err("unhashable frozenset item", op_at) from None
            elif name == "POP":
                if stack:
                    stack.pop()
                else:
                    pop_mark()  # pickle's POP of a MARK discards the mark
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                need(1)
                stack.append(stack[-1])
            elif name == "PUT":
                need(1)
                memo_put(_parse_int(r.line(), self, op_at), stack[-1])
            elif name == "GET":
                stack.append(memo_get(_parse_int(r.line(), self, op_at)))
            elif name == "INST":
                module = _decode_ascii(r.line(), self, op_at)
                gname = _decode_ascii(r.line(), self, op_at)
                cls = make_global(module, gname, "INST")
                args = tuple(pop_mark())
                stack.append(call(cls, args, None, "inst"))
            elif name == "OBJ":
                items = pop_mark()
                if not items:
                    raise self._err("OBJ without a class", op_at)
                stack.append(call(items[0], tuple(items[1:]), None, "obj"))
            elif name in ("EXT1", "EXT2", "EXT4"):
                fmt = {"EXT1": "<B", "EXT2": "<H", "EXT4": "<i"}[name]
                ext = _unpack(fmt, take(struct.calcsize(fmt)))
                # The extension registry is process state we never consult: record the code.
                stack.append(make_global("copyreg._extension_registry", str(ext), name))
            elif name == "NEXT_BUFFER":
                raise self._err("out-of-band buffers (NEXT_BUFFER) are not part of any checkpoint format", op_at)
            elif name == "READONLY_BUFFER":
                need(1)
            else:  # pragma: no cover - guarded by the import-time check below
                raise self._err(f"opcode {name} not implemented", op_at)

    def _build(self, obj: Any, state: Any) -> Any:
        if self.build_hook is not None:
            out = self.build_hook(obj, state)
            if out is not NOT_HANDLED:
                return out
        if isinstance(obj, PickledObject):
            if obj.state is None:
                obj.state = state
            elif isinstance(obj.state, dict) and isinstance(state, dict):
                obj.state.update(state)
            else:
                obj.state = state
            return obj
        if isinstance(obj, dict) and isinstance(state, dict):
            attrs = getattr(obj, "attrs", None)
            if attrs is not None:
                attrs.update(state)
            return obj
        # BUILD on anything else (a Global, a str ...): record nothing, keep the object.
        return obj


def _decode_utf8(raw: bytes, m: Machine, at: int) -> str:
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise m._err("invalid UTF-8 in a unicode string", at) from None


def _decode_ascii(raw: bytes, m: Machine, at: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise m._err("non-text module or name", at) from None


class Py2Str(str):
    """A Python 2 ``str`` (byte string) decoded as torch.load does (utf-8); remembers it was bytes."""

    __slots__ = ()


class Py2Bytes(bytes):
    """A Python 2 ``str`` that is not valid UTF-8 (torch would need ``encoding='latin1'``)."""

    __slots__ = ()


def _py2_string(raw: bytes) -> str | bytes:
    try:
        return Py2Str(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Py2Bytes(raw)


def _unquote(raw: bytes, m: Machine, at: int) -> bytes:
    if len(raw) >= 2 and raw[:1] == raw[-1:] and raw[:1] in (b"'", b'"'):
        try:
            return codecs.escape_decode(raw[1:-1])[0]
        except ValueError:
            raise m._err("bad escape in STRING", at) from None
    raise m._err("STRING argument is not quoted", at)


# Integers stay printable: Python refuses str() of ints over 4300 digits (sys.get_int_max_str_digits),
# the bound the text opcodes (INT, LONG) already have; 1785 bytes is the largest LONG4 within it.
MAX_INT_DIGITS = 4300
MAX_LONG_BYTES = 1785


def _parse_int(raw: bytes, m: Machine, at: int) -> int:
    if len(raw) > MAX_INT_DIGITS:
        raise m._err("integer text too long", at)
    try:
        return int(raw)
    except ValueError:
        raise m._err("bad integer text", at) from None


def _opnames() -> dict[int, str]:
    import pickletools

    table = {ord(op.code): op.name for op in pickletools.opcodes}
    return table


def _opprotos() -> dict[str, int]:
    import pickletools

    return {op.name: op.proto for op in pickletools.opcodes}  # the protocol that introduced each opcode


OPNAMES = _opnames()
OPPROTO = _opprotos()
HANDLED = frozenset(
    """MARK STOP POP POP_MARK DUP FLOAT INT BININT BININT1 LONG BININT2 NONE PERSID BINPERSID REDUCE
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE APPEND BUILD GLOBAL DICT EMPTY_DICT APPENDS GET
    BINGET INST LONG_BINGET LIST EMPTY_LIST OBJ PUT BINPUT LONG_BINPUT SETITEM TUPLE EMPTY_TUPLE SETITEMS
    BINFLOAT PROTO NEWOBJ EXT1 EXT2 EXT4 TUPLE1 TUPLE2 TUPLE3 NEWTRUE NEWFALSE LONG1 LONG4 BINBYTES
    SHORT_BINBYTES SHORT_BINUNICODE BINUNICODE8 BINBYTES8 EMPTY_SET ADDITEMS FROZENSET NEWOBJ_EX
    STACK_GLOBAL MEMOIZE FRAME BYTEARRAY8 NEXT_BUFFER READONLY_BUFFER""".split()
)
_missing = set(OPNAMES.values()) - HANDLED
if _missing:  # pragma: no cover - a new Python added opcodes: fail loudly at import
    raise ImportError(f"ckptdoctor's pickle VM does not handle opcodes {sorted(_missing)}")
