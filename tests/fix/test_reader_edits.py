"""Two reader fixes the writers needed (core files, minimal edits)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ckptdoctor
from conftest import CORPUS
from fix.helpers import torch


def test_build_replacement_is_seen_by_later_memo_gets(tmp_path):
    """A numpy dtype pickled twice: the second occurrence is a BINGET of the REDUCE result that
    BUILD turned into the dtype; it must read as the dtype, not the half-built placeholder."""
    p = tmp_path / "np.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"a": np.zeros(2, dtype=np.float32), "dt": np.dtype("float32")}, p)
    with ckptdoctor.open(p) as ck:
        assert ck.root["dt"] == np.dtype("float32")


def test_torch_040_parameters_are_tensors():
    src = CORPUS / "files" / "stuartnankai__PyTorch-exercise__cnn.pkl"
    if not src.exists():
        pytest.skip("corpus not present")
    with ckptdoctor.open(src) as ck:
        got = {p: (t.shape, t.is_parameter, t.requires_grad) for p, t in ck.tensors()}
    assert got["state_dict.conv1.0.weight"] == ((16, 1, 5, 5), True, True)
    assert len(got) == 6
