"""Mutation fuzzing (hypothesis, short): reader, VM and security scan on damaged and hostile bytes.

Only :class:`~ckptdoctor.errors.CkptdoctorError` subclasses may escape, and the canary
(which every hostile seed targets) must never appear. The long run is the atheris
harness in fuzz/fuzz_reader.py.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckptdoctor
from ckptdoctor.errors import CkptdoctorError
from ckptdoctor.pickle.torch_rebuild import TorchResolver
from ckptdoctor.pickle.vm import Machine
from ckptdoctor.security import findings_for
from ckptdoctor.security.sites import scan_bytes
from security.malicious import CONTAINERS, bypasses, targets
from security.pickleasm import Asm, Call, G

CANARY_DIR = tempfile.mkdtemp(prefix="ckptdoctor-fuzz-canary-")
CANARY = os.path.join(CANARY_DIR, "CANARY")  # every hostile seed's payload targets this path, in a temp dir


def _seeds() -> list[bytes]:
    sh = Asm(2, stack_global=False).call(Call(G("os", "system"), (f"touch {CANARY}",))).stop()
    sd = Asm(2).value({"w": Call(G("torch._utils", "_rebuild_tensor_v2"),
                                 (Call(G("collections", "OrderedDict"), ()), 0, (2,), (1,), False,
                                  Call(G("collections", "OrderedDict"), ()))), "n": [1, 2.5, "x", None]}).stop()
    out = [wrap(p) for wrap, _ in CONTAINERS.values() for p in (sh, sd)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out += [s.data for s in bypasses(CANARY)][:40]
    out += [Asm(4).call(Call(t.g, t.args(CANARY))).stop() for t in targets()[:8]]
    return out


SEEDS = _seeds()


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, ord("."), ord("("), ord("R"), ord("c"),
                                            ord("\x93"), ord("b"), ord("q"), ord("h")]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[i:]
        else:
            j = draw(st.integers(0, len(data) - 1))
            data[i:i] = data[j : j + draw(st.integers(1, 64))]
    return bytes(data)


@pytest.fixture(autouse=True)
def fuzz_canary_absent():
    yield
    assert not os.path.exists(CANARY), "a fuzzed payload ran"


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=False)


@FUZZ
@given(mutated())
def test_reader_only_raises_ckptdoctor_errors(data):
    try:
        with ckptdoctor.open(io.BytesIO(data)) as ckpt:
            for _path, t in ckpt.tensors():
                try:
                    t.sha256()
                except ValueError:
                    pass  # sparse / meta / negative shapes: documented ValueError of to_numpy
    except CkptdoctorError:
        pass


@FUZZ
@given(mutated())
def test_vm_only_raises_ckptdoctor_errors(data):
    r = TorchResolver()
    try:
        Machine(resolver=r, build_hook=r.build).run(data)
    except CkptdoctorError:
        pass


@FUZZ
@given(mutated())
def test_security_scan_never_raises(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fs = scan_bytes(data, "fuzz.bin")
        findings_for(fs)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated())
def test_long_mutation_run(data):
    test_reader_only_raises_ckptdoctor_errors.hypothesis.inner_test(data)
    test_vm_only_raises_ckptdoctor_errors.hypothesis.inner_test(data)
    test_security_scan_never_raises.hypothesis.inner_test(data)


def _laughs(levels: int = 40) -> bytes:
    """Each level is a list holding the previous one ten times (memo references): 10**40 leaves if expanded."""
    out = bytearray(b"\x80\x02]q\x00X\x01\x00\x00\x00xa")  # memo 0 = ['x']
    for i in range(1, levels):
        out += b"]q" + bytes([i]) + b"(" + (b"h" + bytes([i - 1])) * 10 + b"e"
    return bytes(out) + b"."


def _deep(n: int = 200_000) -> bytes:
    return b"\x80\x02" + b"]" * n + b"a" * (n - 1) + b"."


@pytest.mark.parametrize("name,data", [
    ("billion-laughs", _laughs()),
    ("deep-nesting", _deep()),
    ("zip-bomb", __import__("security.malicious", fromlist=["_zip"])._zip(
        [("archive/data.pkl", b"\x80\x02}." + b"\x00" * (64 << 20)), ("archive/version", b"3\n")],
        __import__("zipfile").ZIP_DEFLATED)),
    ("absurd-storage", __import__("security.malicious", fromlist=["torch_zip"]).torch_zip(
        Asm(2).call(Call(G("torch._utils", "_rebuild_tensor_v2"), (
            Call(G("collections", "OrderedDict"), ()), 0, (2**40, 2**40), (2**40, 1), False,
            Call(G("collections", "OrderedDict"), ())))).stop())),
])
def test_bombs_are_bounded(name, data):
    import time

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        findings_for(scan_bytes(data, name))
        try:
            with ckptdoctor.open(io.BytesIO(data)) as ckpt:
                list(ckpt.tensors())
        except CkptdoctorError:
            pass
    assert time.perf_counter() - t0 < 30
