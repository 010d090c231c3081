"""The Finding model shared by ``check``, ``env``, ``scan`` and the security rules.

A finding is data: a stable id, a severity, structured evidence, a plain
explanation and a concrete fix. Text, JSON and SARIF are rendered from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any


class Severity(IntEnum):
    """Ordered so that ``max(severities)`` is the worst."""

    INFO = 10
    WARNING = 20
    ERROR = 30  # the file will not load as asked
    CRITICAL = 40  # dangerous: loading would run code

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def sarif_level(self) -> str:
        return {10: "note", 20: "warning", 30: "error", 40: "error"}[int(self)]


@dataclass(frozen=True, slots=True)
class Fix:
    """A concrete remedy: a shell command and/or an exact Python line."""

    summary: str
    command: str | None = None
    python: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    id: str  # stable, e.g. "CKD-WO-GLOBAL"
    severity: Severity
    title: str  # one line
    explanation: str  # plain words: what and why
    evidence: dict[str, Any] = field(default_factory=dict)  # global, key path, byte offset, record
    fix: Fix | None = None
    blocks_load: bool = False  # True when this alone makes the load fail

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = self.severity.label
        return d
