"""The non-executing pickle VM handles every opcode of protocols 0-5.

The pickles here are our own trusted data, made in the test with ``pickle.dumps``
or written by hand; nothing from a checkpoint is ever unpickled by Python.
"""

from __future__ import annotations

import math
import pickle
import pickletools
import struct
from typing import Any

import pytest

from ckptdoctor.errors import PickleError
from ckptdoctor.formats.common import run_pickle
from ckptdoctor.limits import DEFAULT_LIMITS
from ckptdoctor.pickle import vm
from ckptdoctor.pickle.objects import Global, PickledObject

ALL_OPCODES = {op.name for op in pickletools.opcodes}
SHARED = [1, 2]
DATA: dict[Any, Any] = {
    "ints": [0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31 - 1, 2**31, 2**63, -(2**70), 10**30],
    "floats": [0.0, -0.0, 1.5, -2.25, 1e300, 5e-324, math.inf, -math.inf],
    "strs": ["", "a", "naïve ✓", "line\nbreak", "back\\slash", "quote'\"", "\U0001f600", "x" * 300],
    "bytes": [b"", b"\x00\xff\n", b"y" * 300],
    "consts": [True, False, None],
    "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)],
    "set": {1, 2, "three"}, "frozenset": frozenset({"a", 4}), "empty_set": set(),
    "nested": {"k": [{"x": (1, [2, {3: 4}])}], "": {}},
    "int_keys": {1: "a", -2: "b", 2**40: "c", (1, "t"): "tuple key"},
    "bytearray": bytearray(b"ab\x00"), "complex": 1.5 - 2j,
    "shared": [SHARED, SHARED],
}


def decode(data: bytes, **kw: Any) -> vm.PickleResult:
    return run_pickle(data, 0, limits=DEFAULT_LIMITS, **kw)


def assert_strictly_equal(got: Any, want: Any, path: str = "") -> None:
    """==, but types must match exactly too (True is not 1, a tuple is not a list)."""
    assert type(got) is type(want), (path, type(got), type(want))
    if isinstance(want, dict):
        assert list(got) == list(want), path
        for k in want:
            assert_strictly_equal(got[k], want[k], f"{path}.{k}")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_strictly_equal(g, w, f"{path}.{i}")
    elif isinstance(want, float):
        assert got == want and math.copysign(1, got) == math.copysign(1, want), path
    else:
        assert got == want, path


# ------------------------------------------------------------------ the opcode table
def test_every_pickletools_opcode_is_handled() -> None:
    """The VM's table comes from pickletools, and the VM refuses to import if one is missing."""
    assert set(vm.OPNAMES.values()) == ALL_OPCODES
    assert {ord(op.code) for op in pickletools.opcodes} == set(vm.OPNAMES)
    assert ALL_OPCODES <= vm.HANDLED


def _q(n: int) -> bytes:
    return struct.pack("<Q", n)


# Hand-written pickles for the opcodes pickle.dumps never (or rarely) emits: (bytes, expected value).
HAND: dict[str, tuple[bytes, Any]] = {
    "POP": (b"K\x01K\x020.", 1),
    "POP_MARK": (b"K\x07(K\x01K\x021.", 7),
    "DUP": (b"K\x052\x86.", (5, 5)),
    "PUT/GET": (b"I5\np0\n0g0\n.", 5),
    "LONG_BINPUT/GET": (b"K\x05r\x00\x01\x00\x000j\x00\x01\x00\x00.", 5),
    "INT bools": (b"(I01\nI00\nI-12\nt.", (True, False, -12)),
    "LONG": (b"L123456789012345678901234567890L\n.", 123456789012345678901234567890),
    "LONG4": (b"\x8b" + struct.pack("<i", 2) + b"\x00\x01.", 256),
    "FLOAT": (b"F-1.25e-3\n.", -1.25e-3),
    "UNICODE": (b"Vna\\u00efve \\u2713\n.", "naïve ✓"),
    "DICT/LIST": (b"(Va\n(I1\nI2\nld.", {"a": [1, 2]}),
    "BINUNICODE8": (b"\x8d" + _q(2) + b"hi.", "hi"),
    "BINBYTES8": (b"\x8e" + _q(2) + b"ab.", b"ab"),
    "BYTEARRAY8": (b"\x80\x05\x96" + _q(2) + b"ab.", bytearray(b"ab")),
    "READONLY_BUFFER": (b"\x80\x05C\x02ab\x98.", b"ab"),
    "EXT1": (b"\x82\x05.", Global("copyreg._extension_registry", "5")),
    "EXT2": (b"\x83\x05\x01.", Global("copyreg._extension_registry", "261")),
    "EXT4": (b"\x84\x05\x00\x00\x00.", Global("copyreg._extension_registry", "5")),
}


@pytest.mark.parametrize("name", list(HAND))
def test_hand_written_opcodes(name: str) -> None:
    data, want = HAND[name]
    assert_strictly_equal(decode(data).value, want)


def test_calls_become_placeholders_never_calls() -> None:
    """REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD: inert records of what would have been called."""
    cases = {
        "reduce": b"cmymod\nf\n(K\x01tR.",
        "inst": b"(K\x01K\x02imymod\nf\n.",
        "obj": b"(cmymod\nf\nK\x01K\x02o.",
        "newobj": b"\x80\x02cmymod\nf\nK\x01\x85\x81.",
        "newobj_ex": b"\x80\x04\x8c\x05mymod\x8c\x01f\x93K\x01\x85}\x92.",
    }
    for how, data in cases.items():
        res = decode(data)
        obj = res.value
        assert isinstance(obj, PickledObject) and obj.how == how, how
        assert obj.callee == Global("mymod", "f") and obj.args[0] == 1, how
        assert [g.qualname for g in res.globals] == ["mymod.f"], how
    built = decode(b"\x80\x02cmymod\nC\n)\x81}X\x01\x00\x00\x00aK\x01sb.").value
    assert isinstance(built, PickledObject) and built.state == {"a": 1}


def test_persistent_ids_go_to_the_container() -> None:
    seen: list[Any] = []

    def load(pid: Any) -> Any:
        seen.append(pid)
        return ("resolved", pid)

    assert decode(b"Pabc\n.", persistent_load=load).value == ("resolved", "abc")
    assert decode(b"X\x03\x00\x00\x00xyzQ.", persistent_load=load).value == ("resolved", "xyz")
    assert seen == ["abc", "xyz"]


def test_out_of_band_buffers_are_refused() -> None:
    with pytest.raises(PickleError, match="NEXT_BUFFER"):
        decode(b"\x80\x05\x97.")


def test_every_opcode_is_exercised() -> None:
    """The samples in this file (hand-written + pickle.dumps of DATA in protocols 0-5) use all opcodes."""
    used: set[str] = set()
    for data, _ in HAND.values():
        used |= decode(data).opcodes_used
    for data in (b"cmymod\nf\n(K\x01tR.", b"(K\x01imymod\nf\n.", b"(cmymod\nf\no.", b"Pabc\n.",
                 b"X\x01\x00\x00\x00aQ.", b"\x80\x04\x8c\x01m\x8c\x01f\x93)}\x92.",
                 b"\x80\x02cm\nC\n)\x81}b.", b"S'a'\n.", b"T\x01\x00\x00\x00a.", b"U\x01a."):
        used |= decode(data, persistent_load=lambda pid: pid).opcodes_used
    for proto in range(6):
        used |= decode(pickle.dumps(DATA, protocol=proto)).opcodes_used
    with pytest.raises(PickleError):
        decode(b"\x80\x05\x97.")
    used.add("NEXT_BUFFER")  # refused above, by design
    assert used == ALL_OPCODES, sorted(ALL_OPCODES - used)


# ------------------------------------------------------------------ plain data round trips
@pytest.mark.parametrize("protocol", range(6))
def test_plain_data_decodes_equal(protocol: int) -> None:
    """pickle.dumps(data, protocol 0-5) decodes to the same data (protocol 0/1 included)."""
    res = decode(pickle.dumps(DATA, protocol=protocol))
    assert_strictly_equal(res.value, DATA)
    assert res.value["shared"][0] is res.value["shared"][1]  # the memo keeps shared objects shared
    nan = decode(pickle.dumps(math.nan, protocol=protocol)).value
    assert isinstance(nan, float) and math.isnan(nan)
    assert res.protocol == protocol


def test_recursive_structures() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    for proto in range(6):
        got = decode(pickle.dumps(loop, protocol=proto)).value
        assert got[0] == 1 and got[1] is got


# ------------------------------------------------------------------ Python 2 pickles
PY2 = (
    # protocol 0, as Python 2's pickle.dumps({'name': 'caf\xc3\xa9', 'n': 3L, u'u': u'\xe9'}) writes it
    b"(dp0\nS'name'\np1\nS'caf\\xc3\\xa9'\np2\nsS'n'\np3\nL3L\nsVu\np4\nV\\u00e9\np5\ns.",
    # protocol 2 with BINSTRING / SHORT_BINSTRING and a py2 global
    b"\x80\x02}q\x00(U\x04nameq\x01U\x05caf\xc3\xa9q\x02U\x01nq\x03\x8a\x01\x03X\x01\x00\x00\x00uq\x04"
    b"X\x02\x00\x00\x00\xc3\xa9q\x05u.",
)


@pytest.mark.parametrize("data", PY2, ids=["protocol0", "protocol2"])
def test_python2_strings(data: bytes) -> None:
    res = decode(data)
    assert res.py2_strings
    assert res.value == {"name": "café", "n": 3, "u": "é"}
    assert isinstance(res.value["name"], vm.Py2Str)


def test_python2_strings_that_are_not_utf8_stay_bytes() -> None:
    res = decode(b"T\x03\x00\x00\x00\xff\x00a.")
    assert isinstance(res.value, vm.Py2Bytes) and res.value == b"\xff\x00a"
    assert decode(b"S'\\xff'\n.").value == b"\xff"


def test_python2_globals_map_to_python3_builtins() -> None:
    res = decode(b"c__builtin__\nset\n((lp0\nI1\naI2\natR.")
    assert res.value == {1, 2}
    assert [g.qualname for g in res.globals] == ["__builtin__.set"]
