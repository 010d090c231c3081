"""The malicious suite: >= 300 samples, every one judged dangerous, none ever run."""

from __future__ import annotations

import collections
import io
import pickletools

import ckptdoctor
from ckptdoctor.errors import CkptdoctorError
from ckptdoctor.findings import Severity
from ckptdoctor.security import analyze_path
from security.malicious import CONTAINERS, PATHS, targets


def test_suite_covers_callables_paths_containers(suite):
    samples = [s for _, s in suite]
    assert len(samples) >= 300
    product = [s for s in samples if s.source == "product"]
    assert {s.container for s in product} == set(CONTAINERS)
    assert {s.path for s in product} == set(PATHS)
    assert {s.callable for s in product} == {f"{t.g.module}.{t.g.name}" for t in targets()}
    per = collections.Counter((s.callable, s.path) for s in product)
    assert set(per.values()) == {len(CONTAINERS)}  # each (callable, path) in every container
    bypass = [s for s in samples if s.source != "product"]
    assert len(bypass) >= 50
    assert len({s.source for s in bypass}) >= 30


def test_payloads_are_well_formed_pickles(suite):
    """The generator's raw pickles parse to STOP (static disassembly only)."""
    for path, s in suite:
        if s.source == "product" and s.container == "raw-pickle":
            ops = list(pickletools.genops(io.BytesIO(s.data)))
            assert ops[-1][0].name == "STOP", path


def test_every_sample_is_dangerous(suite, tripwire):
    missed = []
    for path, s in suite:
        r = analyze_path(path)
        if r.verdict != "dangerous":
            missed.append((s.name, r.verdict, [f.id for f in r.findings]))
            continue
        crit = [f for f in r.findings if f.severity == Severity.CRITICAL]
        assert crit, s.name
    assert not missed, f"{len(missed)} of {len(suite)} missed: {missed[:10]}"


def test_verdicts_name_the_callable_and_the_offset(suite, tripwire):
    for path, s in suite:
        if s.source != "product" or s.container != "zip-data.pkl" or s.path in ("ext", "getattr-chain"):
            continue
        r = analyze_path(path)
        fs = [f for f in r.findings if f.id == "CKD-SEC-DANGEROUS"]
        wanted = s.callable.replace("__builtin__", "builtins")
        hit = [f for f in fs if wanted in (f.evidence.get("global", "").replace("__builtin__", "builtins"),
                                           f.evidence.get("resolves_to"))]
        assert hit, (s.name, [f.title for f in fs])
        f = hit[0]
        assert isinstance(f.evidence["offset"], int) and f.evidence["offset"] >= 0
        assert f"byte {f.evidence['offset']}" in f.explanation
        assert f.evidence["opcode"] in ("REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "STACK_GLOBAL")


def test_reader_and_check_never_run_payloads(suite, tripwire):
    from ckptdoctor.check import check

    for i, (path, _s) in enumerate(suite):
        try:
            with ckptdoctor.open(path) as ckpt:
                for _ in ckpt.tensors():
                    pass
        except CkptdoctorError:
            pass
        if i % 25 == 0:  # the whole check pipeline on a sample of files
            res = check(path)
            assert any(f.severity == Severity.CRITICAL for f in res.findings), path
