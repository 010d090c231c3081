"""The rules of ``ckptdoctor check``: one module per family, listed explicitly in :data:`ALL_RULES`.

A rule family is a module with ``FINDINGS`` (finding id -> one-line description, documented in
docs/findings.md) and ``run(ctx)`` yielding :class:`~ckptdoctor.findings.Finding` objects for a
:class:`~ckptdoctor.check.Context`. ``STAGE`` orders blocking findings the way torch meets them
(0 before reading, 1 container, 2 while unpickling, 3 after loading).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from ckptdoctor.rules import (
    batchnorm,
    container,
    devices,
    dtypes_support,
    impostors,
    numpy_compat,
    producer_rule,
    py2,
    security,
    weights_only,
    whole_model,
)

if TYPE_CHECKING:
    from ckptdoctor.check import Context
    from ckptdoctor.findings import Finding


@dataclass(frozen=True, slots=True)
class Rule:
    family: str
    module: ModuleType
    on_readable: bool = True
    on_unreadable: bool = False

    @property
    def findings(self) -> dict[str, str]:
        return self.module.FINDINGS

    @property
    def run(self) -> Callable[[Context], Iterable[Finding]]:
        return self.module.run


ALL_RULES: tuple[Rule, ...] = (
    Rule("impostors", impostors, on_readable=False, on_unreadable=True),
    Rule("container", container),
    Rule("weights_only", weights_only),
    Rule("whole_model", whole_model),
    Rule("numpy", numpy_compat),
    Rule("py2", py2),
    Rule("dtypes", dtypes_support),
    Rule("devices", devices),
    Rule("batchnorm", batchnorm),
    Rule("producer", producer_rule),
    Rule("security", security, on_readable=True, on_unreadable=True),
)


def catalog() -> dict[str, tuple[str, str]]:
    """Every finding id -> (family, description)."""
    out: dict[str, tuple[str, str]] = {}
    for r in ALL_RULES:
        for fid, desc in r.findings.items():
            out[fid] = (r.family, desc)
    return out
