"""The torch <-> torchvision <-> torchaudio <-> Python <-> NumPy table shipped as package data.

Each row of ``data/torch_compat.csv`` names its source; the torchvision pins are
the ``Requires-Dist: torch==X`` lines of the official torchvision wheels.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "torch_compat.csv"


def minor(version: str) -> str:
    """``"2.1.0+cu121"`` -> ``"2.1"``."""
    parts = version.split("+")[0].split(".")
    return ".".join(parts[:2])


def minor_tuple(version: str) -> tuple[int, int]:
    parts = [p for p in minor(version).split(".")] + ["0"]
    try:
        return int(parts[0]), int("".join(c for c in parts[1] if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)


@dataclass(frozen=True, slots=True)
class CompatRow:
    torch: str  # minor series, "2.5"
    torchvision: str  # minor series, "0.20"
    torchaudio: str | None
    python_min: tuple[int, int]
    python_max: tuple[int, int]
    numpy_majors: tuple[int, ...]
    cuda_pypi: str | None  # CUDA of the plain PyPI Linux wheel
    torchvision_pins: dict[str, str]  # torchvision version -> exact torch version it requires
    source: str

    def torchvision_for(self, torch_public: str) -> str | None:
        """The torchvision release whose wheel pins exactly this torch version."""
        for tv, t in self.torchvision_pins.items():
            if t == torch_public:
                return tv
        return None


def _pyver(s: str) -> tuple[int, int]:
    a, b = s.split(".")
    return int(a), int(b)


@lru_cache(maxsize=4)
def load_table(path: str | None = None) -> dict[str, CompatRow]:
    rows: dict[str, CompatRow] = {}
    with open(path or DATA, newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            pins = dict(p.split("=", 1) for p in r["torchvision_pins"].split(";") if "=" in p)
            rows[r["torch"]] = CompatRow(
                torch=r["torch"], torchvision=r["torchvision"], torchaudio=r["torchaudio"] or None,
                python_min=_pyver(r["python_min"]), python_max=_pyver(r["python_max"]),
                numpy_majors=tuple(int(x) for x in r["numpy_majors"].split(";") if x),
                cuda_pypi=r["cuda_pypi"] or None, torchvision_pins=pins, source=r["source"],
            )
    return rows


def row_for_torch(version: str) -> CompatRow | None:
    return load_table().get(minor(version))


def row_for_torchvision(version: str) -> CompatRow | None:
    m = minor(version)
    for row in load_table().values():
        if row.torchvision == m:
            return row
    return None


def pinned_torch(tv_version: str) -> str | None:
    """Exact torch version an official torchvision release requires, if the table knows it."""
    row = row_for_torchvision(tv_version)
    return row.torchvision_pins.get(tv_version.split("+")[0]) if row else None


def newest_torch() -> str:
    return max(load_table(), key=minor_tuple)
