"""Generated checkpoints for the load tests: every case saved once per session, in both containers."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from .cases import build


@pytest.fixture(scope="session")
def case_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("load-cases")


@pytest.fixture(scope="session")
def case_file(case_dir, torch):
    """case_file(name, fmt) -> path of the case saved as "zip" or "legacy" (skips if torch cannot save it)."""
    made: dict[tuple[str, str], Path | str] = {}

    def get(name: str, fmt: str) -> Path:
        key = (name, fmt)
        if key not in made:
            path = case_dir / f"{name}.{fmt}.pt"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    torch.save(build(name, torch, fmt == "legacy"), path,
                               _use_new_zipfile_serialization=(fmt == "zip"))
                made[key] = path
            except Exception as e:  # noqa: BLE001 - torch itself cannot write this case in this container
                made[key] = f"torch {torch.__version__} cannot save {name} as {fmt}: {e}"
        got = made[key]
        if isinstance(got, str):
            pytest.skip(got)
        return got

    return get

