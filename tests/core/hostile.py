"""Hand-built hostile inputs for tests/core/test_bad_input.py and test_no_code_execution.py.

Nothing here runs a payload: pickles are assembled opcode by opcode (or with ``pickle.dumps``,
which only *writes* ``__reduce__`` results) and containers are written byte by byte, so the
tests control every length field, including the ones that lie.
"""

from __future__ import annotations

import functools
import io
import pickletools
import struct
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

# ------------------------------------------------------------------ opcodes
PROTO2 = b"\x80\x02"
PROTO4 = b"\x80\x04"
STOP = b"."
MARK = b"("
EMPTY_LIST = b"]"
EMPTY_DICT = b"}"
EMPTY_TUPLE = b")"
LIST = b"l"
TUPLE = b"t"
APPEND = b"a"
APPENDS = b"e"
NONE = b"N"
REDUCE = b"R"
BUILD = b"b"
NEWOBJ = b"\x81"
NEWOBJ_EX = b"\x92"
STACK_GLOBAL = b"\x93"
MEMOIZE = b"\x94"
TUPLE1 = b"\x85"
TUPLE2 = b"\x86"
TUPLE3 = b"\x87"
OBJ = b"o"
DUP = b"2"
POP = b"0"
SETITEM = b"s"


def binput(i: int) -> bytes:
    return b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)


def binget(i: int) -> bytes:
    return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)


def unicode(s: str) -> bytes:
    raw = s.encode()
    return (b"\x8c" + bytes([len(raw)]) + raw) if len(raw) < 256 else (b"X" + struct.pack("<I", len(raw)) + raw)


def binint(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def long1(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def global_op(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def is_valid_pickle_stream(data: bytes) -> bool:
    """Walks the opcodes with pickletools (which decodes, never executes)."""
    try:
        for _ in pickletools.genops(data):
            pass
        return True
    except Exception:  # noqa: BLE001 - any decode problem means "not valid"
        return False


# ------------------------------------------------------------------ pickle bombs
def billion_laughs(fanout: int = 10, levels: int = 40) -> bytes:
    """Level k is a list holding ``fanout`` references (BINGET) to level k-1: fanout**levels paths."""
    out = [PROTO2, EMPTY_LIST, binput(0)]
    for k in range(1, levels + 1):
        out.append(MARK + binget(k - 1) * fanout + LIST + binput(k))
    out.append(STOP)
    return b"".join(out)


def dup_laughs(levels: int = 60) -> bytes:
    """Each level DUPs the current list and wraps both copies in a new list: 2**levels paths."""
    out = [PROTO2, EMPTY_LIST]
    for _ in range(levels):
        out.append(DUP + TUPLE2)
    out.append(STOP)
    return b"".join(out)


def memo_flood(n: int) -> bytes:
    """``n`` distinct LONG_BINPUT memo slots for one value."""
    return PROTO2 + NONE + b"".join(b"r" + struct.pack("<I", i) for i in range(n)) + STOP


def deep_nesting(depth: int = 100_000) -> bytes:
    """``depth`` lists nested in one another: ``[[[...]]]`` (MARK/EMPTY_LIST, closed by APPENDS)."""
    return PROTO2 + (EMPTY_LIST + MARK) * depth + EMPTY_LIST + APPENDS * depth + STOP


def deep_marks(depth: int = 100_000) -> bytes:
    """``depth`` unclosed MARKs then LIST ... LIST: nested lists built from the mark stack."""
    return PROTO2 + MARK * depth + LIST * depth + STOP


def huge_binbytes8(claim: int = 1 << 40) -> bytes:
    return PROTO4 + b"\x8e" + struct.pack("<Q", claim) + b"x" * 64 + STOP


def huge_binunicode8(claim: int = 1 << 40) -> bytes:
    return PROTO4 + b"\x8d" + struct.pack("<Q", claim) + b"x" * 64 + STOP


def huge_long4(claim: int = 0x7FFFFFFF) -> bytes:
    return PROTO2 + b"\x8b" + struct.pack("<i", claim) + b"\x01" * 64 + STOP


def huge_long4_present(nbytes: int = 4 << 20) -> bytes:
    """A LONG4 whose bytes are really there (a 32-Mbit integer: slow to print, cheap to hold)."""
    return PROTO2 + b"\x8b" + struct.pack("<i", nbytes) + b"\x7f" * nbytes + STOP


# ------------------------------------------------------------------ zip containers
def zip_members(path: Path) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def write_zip(path: Path, members: Iterable[tuple[str, bytes]], *, deflate: Iterable[str] = ()) -> None:
    """A torch-like zip (members stored, 64-byte aligned like torch) with the named ones deflated."""
    deflate = set(deflate)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name), data,
                       compress_type=zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED)


def replace_member(src: Path, dst: Path, suffix: str, data: bytes) -> None:
    """Copy a torch zip, replacing the member whose name ends with ``suffix`` (keeps a valid zip)."""
    out = [(n, data if n.endswith(suffix) else d) for n, d in zip_members(src)]
    assert any(n.endswith(suffix) for n, _ in out), suffix
    write_zip(dst, out)


@functools.lru_cache(maxsize=2)
def _deflate_zeros(total: int) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    chunk = bytes(1 << 24)
    parts = []
    left = total
    while left:
        n = min(left, len(chunk))
        parts.append(c.compress(chunk[:n]))
        left -= n
    parts.append(c.flush())
    return b"".join(parts)


def zip_bomb(path: Path, *, inflated: int = 256 << 20, declared: int | None = None, root: str = "archive") -> Path:
    """A torch-looking zip whose data.pkl is deflated zeros (ratio ~1000:1).

    ``declared`` is the uncompressed size written in the headers (default: the true one); a
    lying, small value is the classic way past a reader that trusts the directory.
    """
    comp = _deflate_zeros(inflated)
    usize = inflated if declared is None else declared
    members = [(f"{root}/data.pkl", comp, 8, usize), (f"{root}/version", b"3\n", 0, 2),
               (f"{root}/byteorder", b"little", 0, 6)]
    buf = io.BytesIO()
    central = []
    for name, data, method, size in members:
        crc = zlib.crc32(data) if method == 0 else 0
        off = buf.tell()
        nm = name.encode()
        buf.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(data),
                              min(size, 0xFFFFFFFF), len(nm), 0) + nm + data)
        central.append(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc,
                                   len(data), min(size, 0xFFFFFFFF), len(nm), 0, 0, 0, 0, 0, off) + nm)
    cd_off = buf.tell()
    cd = b"".join(central)
    buf.write(cd)
    buf.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(cd), cd_off, 0))
    path.write_bytes(buf.getvalue())
    return path
