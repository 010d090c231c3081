"""The weights_only dry run against the real torch 2.13 unpickler, object by object and protocol by protocol."""

from __future__ import annotations

import argparse
import collections
import datetime
import enum

import numpy as np
import pytest
from tests.check.conftest import torch_outcome

from ckptdoctor.check import Target, check
from ckptdoctor.rules._common import ansi_strip


class Color(enum.Enum):
    RED = 1


def objects(torch):
    return {
        "tensor-dict": {"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.int64)},
        "namespace": {"args": argparse.Namespace(lr=0.1, name="x"), "w": torch.ones(1)},
        "numpy-scalar": {"acc": np.float64(0.5)},
        "numpy-array": {"a": np.arange(3)},
        "numpy-dtype": {"d": np.dtype("float32")},
        "set": {"s": {1, 2}},
        "complex": {"c": 1 + 2j},
        "bytes": {"b": b"abc"},
        "bytearray": {"b": bytearray(b"abc")},
        "counter": {"c": collections.Counter("aab")},
        "defaultdict": {"d": collections.defaultdict(list, a=[1])},
        "deque": {"d": collections.deque([1, 2])},
        "ordered": collections.OrderedDict(a=torch.ones(1)),
        "device": {"dev": torch.device("cpu")},
        "dtype": {"dt": torch.float16},
        "size": {"s": torch.Size([2, 3])},
        "parameter": {"p": torch.nn.Parameter(torch.ones(2))},
        "module": torch.nn.Linear(2, 2),
        "sequential": torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU()),
        "datetime": {"t": datetime.datetime(2024, 1, 1)},
        "enum": {"e": Color.RED},
        "bf16": {"w": torch.ones(2, dtype=torch.bfloat16)},
        "uint16": {"w": torch.ones(2, dtype=torch.uint16)},
        "float8": {"w": torch.ones(2).to(torch.float8_e4m3fn)},
        "quantized": {"q": torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)},
        "sparse": {"s": torch.ones(2, 2).to_sparse()},
        "slice": {"s": slice(1, 2)},
        "range": {"r": range(3)},
        "tuple-float": {"t": (1.5, None, True, "s", 2**70)},
        "meta": {"m": torch.empty(2, device="meta")},
    }


CASES = ["tensor-dict", "namespace", "numpy-scalar", "numpy-array", "numpy-dtype", "set", "complex", "bytes",
         "bytearray", "counter", "defaultdict", "deque", "ordered", "device", "dtype", "size", "parameter", "module",
         "sequential", "datetime", "enum", "bf16", "uint16", "float8", "quantized", "sparse", "slice", "range",
         "tuple-float", "meta"]


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", CASES)
def test_weights_only_prediction_matches_torch(torch, save, name, protocol, zipfile):
    obj = objects(torch)[name]
    path = save(obj, f"{name}.pt", pickle_protocol=protocol, _use_new_zipfile_serialization=zipfile)
    ok, said = torch_outcome(torch, path, weights_only=True, map_location="cpu")
    res = check(path, Target.current(torch=torch.__version__, weights_only=True, map_location="cpu"))
    assert res.loads == ok, (said, [f.id for f in res.blocking()])
    if not ok:
        got = " ".join(ansi_strip(res.predicted_error or "").split())
        want = " ".join(ansi_strip(said).split())
        assert got[:300] == want[:300]


@pytest.mark.parametrize("name", ["namespace", "numpy-scalar", "numpy-dtype", "numpy-array", "datetime", "enum", "slice",
                                  "module"])
def test_add_safe_globals_line_makes_torch_load_it(torch, save, name):
    """The exact line printed for the benign globals lets torch 2.13 load the file with weights_only=True."""
    path = save(objects(torch)[name], f"{name}.pt")
    res = check(path, Target.current(torch=torch.__version__, weights_only=True))
    assert not res.loads
    summary = next(f for f in res.findings if f.id == "CKD-WO-ALLOWLIST")
    line = summary.fix.python
    assert line and "add_safe_globals" in line
    torch.serialization.clear_safe_globals()
    try:
        ns: dict = {}
        exec(line, ns)  # noqa: S102 - the fix line under test
        ok, said = torch_outcome(torch, path, weights_only=True)
        assert ok, (line, said)
    finally:
        torch.serialization.clear_safe_globals()


@pytest.mark.parametrize(("name", "globals_"), [("defaultdict", ["collections.defaultdict", "builtins.list"]),
                                                ("deque", ["collections.deque"])])
def test_when_allowlisting_is_not_enough_no_line_is_offered(torch, save, name, globals_):
    """defaultdict (SETITEM) and deque (APPENDS) stay refused by torch 2.13 even when allowlisted."""
    import builtins
    import collections
    import importlib

    path = save(objects(torch)[name], f"{name}.pt")
    res = check(path, Target.current(torch=torch.__version__, weights_only=True))
    summary = next(f for f in res.findings if f.id == "CKD-WO-ALLOWLIST")
    assert summary.fix.python is None and "not enough" in summary.explanation
    assert summary.fix.command and "weights-only-safe" in summary.fix.command
    objs = [getattr(importlib.import_module(g.rpartition(".")[0]), g.rpartition(".")[2]) for g in globals_]
    assert objs and collections and builtins
    torch.serialization.clear_safe_globals()
    try:
        torch.serialization.add_safe_globals(objs)
        ok, said = torch_outcome(torch, path, weights_only=True)
        assert not ok and ("Can only SETITEM" in said or "Can only extend" in said)
    finally:
        torch.serialization.clear_safe_globals()
