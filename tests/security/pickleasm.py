"""A tiny pickle assembler for hostile test files: every opcode path written by hand, nothing imported.

Values: ``None``/bool/int/float/str/bytes/list/tuple/dict, :class:`G` (a global),
:class:`Call` (a call of a global or of another call's result). ``Asm(proto)``
picks text or binary opcodes the way that protocol's writer would.
"""

from __future__ import annotations

import pickle as P
import struct
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class G:
    module: str
    name: str


@dataclass(frozen=True)
class Call:
    fn: Any  # G or Call
    args: tuple = ()
    kwargs: dict | None = field(default=None, hash=False)
    how: str = "reduce"  # reduce | newobj | newobj_ex | inst | obj


class Asm:
    def __init__(self, proto: int = 2, *, stack_global: bool | None = None, bytes_as_codecs: bool | None = None):
        self.proto = proto
        self.out = bytearray()
        self.memo = 0
        self.stack_global = proto >= 4 if stack_global is None else stack_global
        self.bytes_as_codecs = proto < 3 if bytes_as_codecs is None else bytes_as_codecs
        if proto >= 2:
            self.out += P.PROTO + bytes([proto])

    # ------------------------------------------------------------ primitives
    def raw(self, b: bytes) -> Asm:
        self.out += b
        return self

    def put(self) -> int:
        i = self.memo
        if self.proto >= 4:
            self.out += P.MEMOIZE
        elif self.proto >= 1:
            self.out += P.BINPUT + bytes([i]) if i < 256 else P.LONG_BINPUT + struct.pack("<I", i)
        else:
            self.out += P.PUT + str(i).encode() + b"\n"
        self.memo += 1
        return i

    def get(self, i: int) -> Asm:
        if self.proto >= 1:
            self.out += P.BINGET + bytes([i]) if i < 256 else P.LONG_BINGET + struct.pack("<I", i)
        else:
            self.out += P.GET + str(i).encode() + b"\n"
        return self

    def s(self, x: str) -> Asm:
        b = x.encode("utf-8", "surrogatepass")
        if self.proto >= 4 and len(b) < 256:
            self.out += P.SHORT_BINUNICODE + bytes([len(b)]) + b
        elif self.proto >= 1:
            self.out += P.BINUNICODE + struct.pack("<I", len(b)) + b
        else:
            esc = (x.replace("\\", "\\u005c").replace("\0", "\\u0000").replace("\n", "\\u000a")
                   .replace("\r", "\\u000d").replace("\x1a", "\\u001a"))  # as pickle's protocol 0 writer
            self.out += P.UNICODE + esc.encode("raw-unicode-escape") + b"\n"
        return self

    def glob(self, g: G) -> Asm:
        if self.stack_global:
            self.s(g.module)
            self.s(g.name)
            self.out += P.STACK_GLOBAL
        else:
            self.out += P.GLOBAL + g.module.encode() + b"\n" + g.name.encode() + b"\n"
        return self

    def value(self, v: Any) -> Asm:
        if v is None:
            self.out += P.NONE
        elif v is True or v is False:
            if self.proto >= 2:
                self.out += P.NEWTRUE if v else P.NEWFALSE
            else:
                self.out += P.INT + (b"01\n" if v else b"00\n")
        elif isinstance(v, int):
            if self.proto >= 1 and -(2**31) <= v < 2**31:
                self.out += P.BININT + struct.pack("<i", v)
            else:
                self.out += P.INT + str(v).encode() + b"\n"
        elif isinstance(v, float):
            self.out += P.BINFLOAT + struct.pack(">d", v) if self.proto >= 1 else P.FLOAT + repr(v).encode() + b"\n"
        elif isinstance(v, str):
            self.s(v)
        elif isinstance(v, (bytes, bytearray)):
            self.bytes_(bytes(v))
        elif isinstance(v, G):
            self.glob(v)
        elif isinstance(v, Call):
            self.call(v)
        elif isinstance(v, tuple):
            self.tuple_(v)
        elif isinstance(v, list):
            if self.proto >= 1:
                self.out += P.EMPTY_LIST
                if v:
                    self.out += P.MARK
                    for x in v:
                        self.value(x)
                    self.out += P.APPENDS
            else:
                self.out += P.MARK
                for x in v:
                    self.value(x)
                self.out += P.LIST
        elif isinstance(v, dict):
            if self.proto >= 1:
                self.out += P.EMPTY_DICT
                if v:
                    self.out += P.MARK
                    for k, x in v.items():
                        self.value(k)
                        self.value(x)
                    self.out += P.SETITEMS
            else:
                self.out += P.MARK
                for k, x in v.items():
                    self.value(k)
                    self.value(x)
                self.out += P.DICT
        else:
            raise TypeError(type(v))
        return self

    def bytes_(self, b: bytes) -> Asm:
        if self.bytes_as_codecs:  # how protocol <= 2 writers (torch.save's default) spell bytes
            self.glob(G("_codecs", "encode"))
            self.tuple_((b.decode("latin-1"), "latin1"))
            self.out += P.REDUCE
        elif len(b) < 256:
            self.out += P.SHORT_BINBYTES + bytes([len(b)]) + b
        else:
            self.out += P.BINBYTES + struct.pack("<I", len(b)) + b
        return self

    def tuple_(self, t: tuple) -> Asm:
        if self.proto >= 2 and len(t) <= 3:
            for x in t:
                self.value(x)
            self.out += (P.EMPTY_TUPLE, P.TUPLE1, P.TUPLE2, P.TUPLE3)[len(t)]
        else:
            self.out += P.MARK
            for x in t:
                self.value(x)
            self.out += P.TUPLE
        return self

    def call(self, c: Call) -> Asm:
        if c.how == "inst":
            assert isinstance(c.fn, G)
            self.out += P.MARK
            for x in c.args:
                self.value(x)
            self.out += P.INST + c.fn.module.encode() + b"\n" + c.fn.name.encode() + b"\n"
            return self
        if c.how == "obj":
            self.out += P.MARK
            self.value(c.fn)
            for x in c.args:
                self.value(x)
            self.out += P.OBJ
            return self
        self.value(c.fn)
        self.tuple_(tuple(c.args))
        if c.how == "newobj":
            self.out += P.NEWOBJ
        elif c.how == "newobj_ex":
            self.value(dict(c.kwargs or {}))
            self.out += P.NEWOBJ_EX
        else:
            self.out += P.REDUCE
        return self

    def build(self, state: Any) -> Asm:
        self.value(state)
        self.out += P.BUILD
        return self

    def stop(self) -> bytes:
        self.out += P.STOP
        return bytes(self.out)


def dumps(v: Any, proto: int = 2, **kw: Any) -> bytes:
    return Asm(proto, **kw).value(v).stop()
