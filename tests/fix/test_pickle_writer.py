"""The pickle writer emits exactly what CPython's pickler (protocol 2) emits, for plain data."""

from __future__ import annotations

import collections
import math
import pickle

import pytest

from ckptdoctor.pickle.objects import Global
from ckptdoctor.pickle.writer import Pickler, PicklingError, Reduce, dumps, encode_long

shared_list = [1, 2]
shared_str = "shared string"
recursive: list = []
recursive.append(recursive)
rec_tuple_holder: list = []
rec_tuple = (rec_tuple_holder,)
rec_tuple_holder.append(rec_tuple)

CASES = {
    "atoms": [None, True, False, 0, 1, 255, 256, 65535, 65536, -1, -(2**31), 2**31 - 1, 2**31, 2**64, -(2**100),
              10**600, 0.0, -1.5, math.inf],
    "strings": ["", "a", "ü∂😀", "x" * 70000, "\udcff".encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")],
    "bytes": [b"\x00\xff", b"hello", bytearray(b"ba")],
    "tuples": [(), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((),)],
    "shared": {"a": shared_list, "b": shared_list, "s1": shared_str, "s2": shared_str, "t": (shared_list,)},
    "containers": {"list": list(range(2501)), "list1": list(range(2001)), "dict": {i: str(i) for i in range(1001)},
                   "dict2": {i: i for i in range(2002)}, "one": [7], "d1": {1: 2},
                   "set": {1, 2, 3}, "fs": frozenset({"x"}), "complex": 1 - 2j},
    "recursive_list": recursive,
    "recursive_tuple": rec_tuple,
}


@pytest.mark.parametrize("name", list(CASES))
def test_plain_data_is_byte_identical_to_cpython(name):
    obj = CASES[name]
    assert dumps(obj) == pickle.dumps(obj, protocol=2)


def test_globals_are_written_with_protocol_2_names_and_memoised():
    out = dumps([Global("builtins", "set"), Global("collections", "OrderedDict"), Global("builtins", "set")])
    assert out == pickle.dumps([set, collections.OrderedDict, set], protocol=2)


def test_empty_bytes_use_codecs_encode_so_weights_only_accepts_them():
    assert b"__builtin__\nbytes" not in dumps(b"")
    assert pickle.loads(dumps(b"")) == b""


@pytest.mark.parametrize("n", [0, 1, 2, 1000, 1001, 2001])
def test_ordered_dict_items_batching(n):
    od = collections.OrderedDict((str(i), i) for i in range(n))
    r = Reduce(Global("collections", "OrderedDict"), (), dictitems=list(od.items()))
    assert dumps(r) == pickle.dumps(od, protocol=2)


def test_reduce_with_items_and_state():
    r = Reduce(Global("collections", "OrderedDict"), (), state={"_metadata": {"": {"version": 1}}},
               dictitems=[("a", 1), ("b", 2)])
    od = collections.OrderedDict(a=1, b=2)
    od._metadata = {"": {"version": 1}}
    assert dumps(r) == pickle.dumps(od, protocol=2)


def test_unknown_values_are_refused():
    with pytest.raises(PicklingError):
        dumps(object())


def test_encode_long_matches_pickle():
    for x in (0, 1, -1, 127, 128, -128, -129, 2**63, -(2**63), 10**40, -(10**40)):
        assert encode_long(x) == pickle.encode_long(x)


def test_persistent_ids_come_before_the_memo():
    seen = []

    def pid(o):
        if isinstance(o, str) and o.startswith("@"):
            seen.append(o)
            return ("storage", o[1:])
        return None

    p = Pickler(persistent_id=pid)
    p.dump(["@x", "@x"])
    assert seen == ["@x", "@x"]  # asked every time, as CPython does
