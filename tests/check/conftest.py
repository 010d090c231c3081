"""Fixtures for the check tests: files written by the real torch (test extra) into tmp_path."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest


@pytest.fixture
def save(torch, tmp_path: Path):
    """save(obj, name, **torch_save_kwargs) -> path, written by torch.save."""

    def _save(obj, name: str = "ckpt.pt", **kw) -> Path:
        p = tmp_path / name
        torch.save(obj, p, **kw)
        return p

    return _save


def torch_outcome(torch, path, **kw) -> tuple[bool, str | None]:
    """(loaded?, 'ExcType: message') of the real torch.load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.load(path, **kw)
            return True, None
        except Exception as e:  # noqa: BLE001 - we compare what torch said
            return False, f"{type(e).__name__}: {e}"
