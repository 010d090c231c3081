"""A small pickle *writer*: protocol 2, byte for byte as CPython's pickler writes it.

torch.save pickles ``data.pkl`` with ``pickle.Pickler(f, protocol=2)``; this
module emits the same opcodes in the same order for plain data (None, bool,
int, float, str, bytes, tuple, list, dict, set, frozenset, complex), for
names (:class:`~ckptdoctor.pickle.objects.Global`) and for calls
(:class:`Reduce`). Nothing is imported or executed: a call is written as
``GLOBAL`` + arguments + ``REDUCE``, exactly what the pickler would write for
an object whose ``__reduce__`` returned it.

What CPython does and we copy (so a file torch writes and the file we write
disassemble the same):

* memo: every str, bytes, tuple (non-empty), list, dict, global and reduced
  object gets ``BINPUT``/``LONG_BINPUT`` on first sight, keyed by *identity*;
  later sightings are ``BINGET``. Globals are keyed by name (one class object).
* ints: BININT1/BININT2/BININT/LONG1/LONG4 by size; floats: BINFLOAT.
* str: BINUNICODE; bytes: ``_codecs.encode(latin1 text, 'latin1')``.
* containers in batches of 1000 (``APPEND``/``SETITEM`` for one item).
* protocol-2 module names go through ``_compat_pickle`` (``builtins`` ->
  ``__builtin__``), as ``fix_imports=True`` does.

A ``persistent_id`` hook (called first for every object) and a ``reducer``
hook (for types this module does not know) make it torch-aware without
importing torch; see :mod:`ckptdoctor.writers.torchpickle`.
"""

from __future__ import annotations

import _compat_pickle
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.pickle.objects import Global

BATCHSIZE = 1000

PROTO, STOP, MARK, POP, POP_MARK = b"\x80", b".", b"(", b"0", b"1"
NONE, NEWTRUE, NEWFALSE = b"N", b"\x88", b"\x89"
BININT, BININT1, BININT2, LONG1, LONG4 = b"J", b"K", b"M", b"\x8a", b"\x8b"
BINFLOAT, BINUNICODE = b"G", b"X"
EMPTY_TUPLE, TUPLE, TUPLE1, TUPLE2, TUPLE3 = b")", b"t", b"\x85", b"\x86", b"\x87"
EMPTY_LIST, APPEND, APPENDS = b"]", b"a", b"e"
EMPTY_DICT, SETITEM, SETITEMS = b"}", b"s", b"u"
GLOBAL, REDUCE, NEWOBJ, BUILD = b"c", b"R", b"\x81", b"b"
BINPUT, LONG_BINPUT, BINGET, LONG_BINGET = b"q", b"r", b"h", b"j"
BINPERSID = b"Q"

_TUPLE_N = {1: TUPLE1, 2: TUPLE2, 3: TUPLE3}

CODECS_ENCODE = Global("_codecs", "encode")
LATIN1 = "latin1"  # one object, like CPython's interned _Py_ID(latin1): memoised after first use


@dataclass(slots=True, eq=False)
class Reduce:
    """A call to write: ``callee(*args)``, then list/dict items, then ``BUILD state``.

    ``newobj=True`` writes ``cls, args, NEWOBJ`` (``copyreg.__newobj__``
    style) instead of ``callee, args, REDUCE``. ``state=None`` writes no BUILD.
    """

    callee: Any
    args: tuple = ()
    state: Any = None
    listitems: Iterable[Any] | None = None
    dictitems: Iterable[tuple[Any, Any]] | None = None
    newobj: bool = False
    build_none: bool = field(default=False)  # write BUILD even when state is None


class PicklingError(ValueError):
    """A value that has no pickle form here (and no reducer for it)."""


def encode_long(x: int) -> bytes:
    """Two's complement little-endian bytes, as ``pickle.encode_long``."""
    if x == 0:
        return b""
    nbytes = (x.bit_length() >> 3) + 1
    result = x.to_bytes(nbytes, byteorder="little", signed=True)
    if x < 0 and nbytes > 1 and result[-1] == 0xFF and (result[-2] & 0x80) != 0:
        result = result[:-1]
    return result


def py2_names(module: str, name: str) -> tuple[str, str]:
    """The names protocol 2 writes with ``fix_imports=True``."""
    key = (module, name)
    if key in _compat_pickle.REVERSE_NAME_MAPPING:
        return _compat_pickle.REVERSE_NAME_MAPPING[key]
    return _compat_pickle.REVERSE_IMPORT_MAPPING.get(module, module), name


class Pickler:
    """Write one pickle (protocol 2) into a ``bytearray``.

    ``persistent_id(obj)`` returns a value to write as ``BINPERSID`` or None;
    ``reducer(obj)`` returns a :class:`Reduce` (or a :class:`Global`) for
    types this writer does not know, or None to fail with
    :class:`PicklingError`.
    """

    def __init__(
        self,
        out: bytearray | None = None,
        *,
        persistent_id: Callable[[Any], Any] | None = None,
        reducer: Callable[[Any], Any] | None = None,
        fix_imports: bool = True,
    ) -> None:
        self.out = out if out is not None else bytearray()
        self.persistent_id = persistent_id
        self.reducer = reducer
        self.fix_imports = fix_imports
        self.memo: dict[Any, tuple[int, Any]] = {}  # key -> (index, object kept alive)

    # ------------------------------------------------------------------ public
    def dump(self, obj: Any) -> bytearray:
        self.out += PROTO + b"\x02"
        self.save(obj)
        self.out += STOP
        return self.out

    # ------------------------------------------------------------------ memo
    def _put(self, key: Any, obj: Any) -> None:
        idx = len(self.memo)
        self.memo[key] = (idx, obj)
        self.out += BINPUT + bytes((idx,)) if idx < 256 else LONG_BINPUT + struct.pack("<I", idx)

    def _get(self, idx: int) -> None:
        self.out += BINGET + bytes((idx,)) if idx < 256 else LONG_BINGET + struct.pack("<I", idx)

    def memoize(self, obj: Any) -> None:
        self._put(id(obj), obj)

    # ------------------------------------------------------------------ dispatch
    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if save_persistent_id and self.persistent_id is not None:
            pid = self.persistent_id(obj)
            if pid is not None:
                self.save(pid, save_persistent_id=False)
                self.out += BINPERSID
                return
        # atoms: never memoised
        if obj is None:
            self.out += NONE
            return
        if obj is True or obj is False:
            self.out += NEWTRUE if obj else NEWFALSE
            return
        t = type(obj)
        if t is int:
            self._save_int(obj)
            return
        if t is float:
            self.out += BINFLOAT + struct.pack(">d", obj)
            return
        if isinstance(obj, Global):
            self._save_global(obj)
            return
        hit = self.memo.get(id(obj))
        if hit is not None:
            self._get(hit[0])
            return
        if isinstance(obj, str):  # also Python 2 strings read from old files (a str subclass)
            self._save_str(obj)
        elif isinstance(obj, (bytes, bytearray)) and t.__module__ != "numpy":
            self._save_bytes(obj)
        elif t is tuple:
            self._save_tuple(obj)
        elif t is list:
            self.out += EMPTY_LIST
            self.memoize(obj)
            self._batch_appends(obj, exact=True)
        elif t is dict:
            self.out += EMPTY_DICT
            self.memoize(obj)
            self._batch_setitems(obj.items(), exact=len(obj))
        elif t is set or t is frozenset:
            self._save_reduce(Reduce(Global("builtins", t.__name__), (list(obj),)), obj)
        elif t is complex:
            self._save_reduce(Reduce(Global("builtins", "complex"), (obj.real, obj.imag)), obj)
        elif isinstance(obj, Reduce):
            self._save_reduce(obj, obj)
        else:
            r = self.reducer(obj) if self.reducer is not None else None
            if r is None:
                raise PicklingError(f"cannot write a {type(obj).__module__}.{type(obj).__qualname__} value")
            if isinstance(r, Reduce):
                self._save_reduce(r, obj)
            else:  # a reducer may also answer with a plain value (a Global, a str ...)
                self.save(r)

    # ------------------------------------------------------------------ atoms
    def _save_int(self, x: int) -> None:
        if 0 <= x <= 0xFF:
            self.out += BININT1 + bytes((x,))
        elif 0 <= x <= 0xFFFF:
            self.out += BININT2 + struct.pack("<H", x)
        elif -0x80000000 <= x <= 0x7FFFFFFF:
            self.out += BININT + struct.pack("<i", x)
        else:
            enc = encode_long(x)
            n = len(enc)
            self.out += (LONG1 + bytes((n,)) if n < 256 else LONG4 + struct.pack("<i", n)) + enc

    def _save_str(self, s: str) -> None:
        raw = str.encode(s, "utf-8", "surrogatepass")
        self.out += BINUNICODE + struct.pack("<I", len(raw)) + raw
        self.memoize(s)

    def _save_bytes(self, b: bytes | bytearray) -> None:
        if isinstance(b, bytearray):
            self._save_reduce(Reduce(Global("builtins", "bytearray"), (bytes(b),)), b)
            return
        # CPython writes b'' as bytes(); weights_only loaders refuse that global, so write
        # _codecs.encode('', 'latin1') for it too (same value, loadable everywhere).
        self._save_reduce(Reduce(CODECS_ENCODE, (bytes.decode(b, "latin-1"), LATIN1)), b)

    def _save_global(self, g: Global) -> None:
        module, name = g.module, g.name
        if self.fix_imports:
            module, name = py2_names(module, name)
        key = ("global", module, name)
        hit = self.memo.get(key)
        if hit is not None:
            self._get(hit[0])
            return
        self.out += GLOBAL + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"
        self._put(key, g)

    # ------------------------------------------------------------------ containers
    def _save_tuple(self, t: tuple) -> None:
        n = len(t)
        if n == 0:
            self.out += EMPTY_TUPLE
            return
        if n <= 3:
            for x in t:
                self.save(x)
            hit = self.memo.get(id(t))
            if hit is not None:  # recursive tuple: drop what we pushed, fetch the memo
                self.out += POP * n
                self._get(hit[0])
                return
            self.out += _TUPLE_N[n]
        else:
            self.out += MARK
            for x in t:
                self.save(x)
            hit = self.memo.get(id(t))
            if hit is not None:
                self.out += POP_MARK
                self._get(hit[0])
                return
            self.out += TUPLE
        self.memoize(t)

    # The C pickler writes a lone item with APPEND/SETITEM only when the whole exact list/dict
    # has one item; items of a reduce (iterators) get APPEND/SETITEM for any lone last batch.
    def _batch_appends(self, items: Iterable[Any], exact: bool = False) -> None:
        if exact and len(items) == 1:  # type: ignore[arg-type]
            self._flush_appends(list(items), single_ok=True)
            return
        batch: list[Any] = []
        for x in items:
            batch.append(x)
            if len(batch) == BATCHSIZE:
                self._flush_appends(batch)
                batch = []
        if batch:
            self._flush_appends(batch, single_ok=not exact)

    def _flush_appends(self, batch: list[Any], single_ok: bool = True) -> None:
        if len(batch) == 1 and single_ok:
            self.save(batch[0])
            self.out += APPEND
            return
        self.out += MARK
        for x in batch:
            self.save(x)
        self.out += APPENDS

    def _batch_setitems(self, items: Iterable[tuple[Any, Any]], exact: int | None = None) -> None:
        """``exact`` is the size of an exact dict being written (None for a reduce's dict items)."""
        if exact == 1:
            self._flush_setitems(list(items), single_ok=True)
            return
        batch: list[tuple[Any, Any]] = []
        for kv in items:
            batch.append(kv)
            if len(batch) == BATCHSIZE:
                self._flush_setitems(batch)
                batch = []
        if batch:
            self._flush_setitems(batch, single_ok=exact is None)

    def _flush_setitems(self, batch: list[tuple[Any, Any]], single_ok: bool = True) -> None:
        if len(batch) == 1 and single_ok:
            k, v = batch[0]
            self.save(k)
            self.save(v)
            self.out += SETITEM
            return
        self.out += MARK
        for k, v in batch:
            self.save(k)
            self.save(v)
        self.out += SETITEMS

    # ------------------------------------------------------------------ calls
    def _save_reduce(self, r: Reduce, obj: Any) -> None:
        if r.newobj:
            self.save(r.callee)
            self.save(tuple(r.args))
            self.out += NEWOBJ
        else:
            self.save(r.callee)
            self.save(tuple(r.args))
            self.out += REDUCE
        hit = self.memo.get(id(obj))
        if hit is not None:  # the object was reached again while writing its own arguments
            self.out += POP
            self._get(hit[0])
        else:
            self.memoize(obj)
        if r.listitems is not None:
            self._batch_appends(r.listitems)
        if r.dictitems is not None:
            self._batch_setitems(r.dictitems)
        if r.state is not None or r.build_none:
            self.save(r.state)
            self.out += BUILD


def dumps(obj: Any, **kw: Any) -> bytes:
    """Pickle ``obj`` (protocol 2) and return the bytes."""
    return bytes(Pickler(**kw).dump(obj))
