"""Modules imported on first use, so that ``ckptdoctor inspect`` never pays for what it does not touch.

``numpy`` costs 60-250 ms to import and reading a checkpoint's structure needs none of it: only
tensor bytes (``to_numpy``, ``--hash``) and pickled numpy objects do. ``from ckptdoctor._lazy import
numpy as np`` gives an object that imports numpy the first time an attribute is asked for.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


class LazyModule:
    """Stands in for a module until an attribute is needed; then caches what it hands out."""

    def __init__(self, name: str) -> None:
        self.__name = name

    def __getattr__(self, attr: str) -> Any:
        value = getattr(importlib.import_module(self.__name), attr)
        setattr(self, attr, value)
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__name!r}>"


def imported(name: str) -> bool:
    """True once the real module is loaded (until then, no object can be an instance of its types)."""
    return name in sys.modules


numpy: Any = LazyModule("numpy")
