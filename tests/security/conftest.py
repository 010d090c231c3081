"""Fixtures for the security tests: a canary that must never appear, the malicious suite, benign fixtures.

Payloads in the suite only ever touch ``canary``; ``no_canary`` (autouse) fails any
test after which it exists. ``tripwire`` makes every real unpickler raise, so a
test that would deserialise a hostile file fails loudly instead of running it.
"""

from __future__ import annotations

import os
import pickle
import warnings

import pytest

from security.malicious import write_suite


@pytest.fixture(scope="session")
def canary(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("canary") / "CANARY")


@pytest.fixture(autouse=True)
def no_canary(canary):
    assert not os.path.exists(canary)
    yield
    assert not os.path.exists(canary), "a payload ran: the canary file was created"


@pytest.fixture
def tripwire(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a real unpickler was called in a security test")

    class Refuse:
        def __init__(self, *a, **k):
            refuse()

    for mod in (pickle, __import__("_pickle")):
        monkeypatch.setattr(mod, "load", refuse)
        monkeypatch.setattr(mod, "loads", refuse)
        monkeypatch.setattr(mod, "Unpickler", Refuse)
    try:
        import torch

        monkeypatch.setattr(torch, "load", refuse)
    except ImportError:  # pragma: no cover
        pass
    yield


@pytest.fixture(scope="session")
def suite(tmp_path_factory, canary):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate-name samples
        return write_suite(tmp_path_factory.mktemp("malicious"), canary)


@pytest.fixture(scope="session")
def benign_files(tmp_path_factory):
    pytest.importorskip("torch", reason="benign fixtures are written with torch.save")
    from security.benign import write_benign

    return write_benign(tmp_path_factory.mktemp("benign"))
