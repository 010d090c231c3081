"""Security verdicts: what loading a file would run, and whether its structure hides anything.

Public surface::

    from ckptdoctor.security import analyze, analyze_path

    findings = analyze(ckpt)            # an open Checkpoint -> list[Finding]
    report = analyze_path("model.pt")   # any file, readable or not -> SecurityReport
    report.verdict                      # "dangerous" | "suspicious" | "needs-allowlist" | "safe"

Nothing here imports or calls what a pickle names: the file is walked as raw
bytes (:mod:`.sites`), every pickle runs through the non-executing VM with a
recording resolver (:mod:`.pickles`), each reached callable is classified from
``data/security_globals.json`` (:mod:`.table`) and turned into findings
(:mod:`.classify`), next to structural checks (:mod:`.integrity`).
See docs/security.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.findings import Finding, Severity

VERDICTS = ("dangerous", "suspicious", "needs-allowlist", "safe")


@dataclass(slots=True)
class SecurityReport:
    path: str
    format: str | None
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None  # why the reader refused the file (the scan still ran)
    pickles: int = 0  # pickles scanned, nested ones included

    @property
    def verdict(self) -> str:
        return verdict(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "verdict": self.verdict, "error": self.error,
                "pickles": self.pickles, "findings": [f.to_dict() for f in self.findings]}


def verdict(findings: list[Finding]) -> str:
    """dangerous (anything CRITICAL), suspicious (a security WARNING), needs-allowlist, or safe."""
    sec = [f for f in findings if f.id.startswith(("CKD-SEC-", "CKD-INT-"))]
    if any(f.severity >= Severity.CRITICAL for f in sec):
        return "dangerous"
    if any(f.severity >= Severity.WARNING for f in sec if f.id != "CKD-INT-UNREADABLE"):
        return "suspicious"
    if any(f.id == "CKD-SEC-ALLOWLIST" for f in sec):
        return "needs-allowlist"
    return "safe"


def scan_file(source: Any, name: str, limits: Any = None) -> Any:
    """The raw :class:`~ckptdoctor.security.sites.FileScan` of an open byte source."""
    from ckptdoctor.limits import DEFAULT_LIMITS
    from ckptdoctor.security.sites import scan_source

    return scan_source(source, name, limits=limits or DEFAULT_LIMITS)


def findings_for(fs: Any, ckpt: Any = None, error: BaseException | None = None) -> list[Finding]:
    from ckptdoctor.security.classify import file_findings
    from ckptdoctor.security.integrity import integrity_findings

    out = file_findings(fs) + integrity_findings(fs, ckpt, error)
    return sorted((_with_path(f, fs.name) for f in out), key=lambda f: -int(f.severity))


def _with_path(f: Finding, path: str) -> Finding:
    if f.fix is None or not f.fix.command or "FILE" not in f.fix.command:
        return f
    import shlex
    from dataclasses import replace

    return replace(f, fix=replace(f.fix, command=f.fix.command.replace("FILE", shlex.quote(path))))


def analyze(ckpt: Any, *, limits: Any = None) -> list[Finding]:
    """Security and integrity findings for an open :class:`~ckptdoctor.model.Checkpoint` (or a path)."""
    if not hasattr(ckpt, "source"):
        return analyze_path(ckpt, limits=limits).findings
    source = ckpt.source
    if source is None:
        return []
    fs = scan_file(source, ckpt.path, limits)
    return findings_for(fs, ckpt) + dcp_chunk_findings(ckpt, limits)


def dcp_chunk_findings(ckpt: Any, limits: Any = None) -> list[Finding]:
    """A DCP folder's code paths beyond ``.metadata``: torch.distributed.checkpoint.load passes
    every chunk of the shards to ``torch.load`` (non-tensor entries with ``weights_only=False``),
    so each chunk is scanned as a file of its own."""
    if ckpt is None or ckpt.format != "dcp":
        return []
    from ckptdoctor.security.classify import file_findings
    from ckptdoctor.source import LocalSource, WindowSource

    out: list[Finding] = []
    shards = {os.path.basename(s.name): s for s in ckpt.extra_sources}  # the reader's open shards
    opened: dict[str, Any] = {}  # shards only the scan needs (chunks the reader did not read)
    try:
        for name, off, n in ckpt.internal.get("dcp_chunks", []):
            path = os.path.join(ckpt.path, name)
            if name not in shards:
                if not os.path.isfile(path):
                    continue
                shards[name] = opened[name] = LocalSource(path)
            shard = shards[name]
            if off < 0 or n <= 0 or off + n > shard.size:
                continue  # the reader reports damaged shards
            label = f"{path}@{off}"
            fs = scan_file(WindowSource(shard, off, n, label), label, limits)
            out.extend(_as_dcp_chunk(_with_path(f, ckpt.path)) for f in file_findings(fs, f"{name} at byte {off}: "))
    finally:
        for src in opened.values():
            src.close()
    return out


DCP_LOADER = ("torch.distributed.checkpoint.load hands this chunk to torch.load(weights_only=False) "
              "(DefaultLoadPlanner.load_bytes), so in a DCP folder it runs whatever the torch version.")


def _as_dcp_chunk(f: Finding) -> Finding:
    from dataclasses import replace

    if "executed_by" not in f.evidence:
        return f
    evidence = {**f.evidence, "executed_by": "torch.distributed.checkpoint.load", "weights_only_allows": False}
    return replace(f, explanation=f"{f.explanation} {DCP_LOADER}", evidence=evidence)


def analyze_path(path: Any, *, limits: Any = None) -> SecurityReport:
    """Scan any file, even one the reader refuses (a broken pickle still runs its first calls).

    Raises only for files that cannot be opened at all (``OSError``).
    """
    import ckptdoctor
    from ckptdoctor.errors import CkptdoctorError
    from ckptdoctor.source import open_source

    name = scan_name = os.fspath(path)
    if os.path.isdir(name):  # a torch.distributed.checkpoint folder: its .metadata is the only pickle
        scan_name = os.path.join(name, ".metadata")
        if not os.path.isfile(scan_name):
            return SecurityReport(name, "directory", error="a directory, not a checkpoint")
    ckpt = None
    error: BaseException | None = None
    fmt: str | None = None
    try:
        ckpt = ckptdoctor.open(name, limits=limits)
        fmt = ckpt.format
    except CkptdoctorError as e:
        error = e
        fmt = getattr(e, "kind", None)
    try:
        source = open_source(scan_name)
        try:
            fs = scan_file(source, scan_name, limits)
            found = findings_for(fs, ckpt, error) + dcp_chunk_findings(ckpt, limits)
            report = SecurityReport(name, fmt, sorted(found, key=lambda f: -int(f.severity)),
                                    error=str(error) if error is not None else None, pickles=_count(fs))
        finally:
            source.close()
    finally:
        if ckpt is not None:
            ckpt.close()
    return report


def analyze_source(source: Any, name: str, *, ckpt: Any = None, error: BaseException | None = None,
                   limits: Any = None) -> SecurityReport:
    """The report for an already-open byte source (the scanner's remote files); never closes it."""
    fs = scan_file(source, name, limits)
    fmt = ckpt.format if ckpt is not None else getattr(error, "kind", None)
    return SecurityReport(name, fmt, findings_for(fs, ckpt, error),
                          error=str(error) if error is not None else None, pickles=_count(fs))


def _count(fs: Any) -> int:
    n = len(fs.pickles) + sum(_count(x.scan) for x in fs.nested)
    if fs.embedded_zip is not None:
        n += _count(fs.embedded_zip)
    return n


__all__ = ["analyze", "analyze_path", "analyze_source", "verdict", "SecurityReport", "VERDICTS", "scan_file", "findings_for",
           "dcp_chunk_findings"]
