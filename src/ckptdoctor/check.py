"""``ckptdoctor check``: will this file load in that environment, and if not, exactly why and how to fix it.

Public API::

    from ckptdoctor.check import Target, check
    result = check("model.pt", Target(torch="2.6", weights_only=True))
    result.loads            # bool
    result.findings         # [Finding, ...] (ckptdoctor.findings), every cause at once
    result.predicted_error  # what torch would raise first, when we know its words

The rules live in :mod:`ckptdoctor.rules` (one module per family, registry ``ALL_RULES``).
Nothing here imports torch: the target's versions come from package metadata or the caller.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

from ckptdoctor.errors import UnreadableFile
from ckptdoctor.findings import Finding, Severity
from ckptdoctor.model import Checkpoint, Producer
from ckptdoctor.rules._tables import parse_version, release, weights_only_table, weights_only_versions


def installed_version(dist: str) -> str | None:
    """Version of an installed distribution, from its metadata (never imports it).

    Looks for ``<dist>-<version>.dist-info`` on sys.path first (one directory listing each; the
    metadata API scans every distribution), then asks importlib.metadata."""
    found = _dist_infos().get(dist.replace("-", "_").lower())
    if found:
        return found
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_dist_cache: tuple[tuple[str, ...], dict[str, str]] | None = None


def _dist_infos() -> dict[str, str]:
    """normalised distribution name -> version, from the .dist-info folder names on sys.path (first wins).

    Kept for the process while sys.path is unchanged: a scan worker asks for every file."""
    global _dist_cache
    key = tuple(sys.path)
    if _dist_cache is not None and _dist_cache[0] == key:
        return _dist_cache[1]
    out: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info") and "-" in n:
                name, _, version = n[: -len(".dist-info")].partition("-")
                out.setdefault(name.lower(), version)
    _dist_cache = (key, out)
    return out


def _gpu_count() -> int:
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


@dataclass(frozen=True, slots=True)
class Target:
    """The environment that will call ``torch.load``.

    ``device`` is what the machine has: ``cpu`` (no GPU), ``cuda`` / ``cuda:0`` (one GPU),
    ``cuda:N`` (GPUs 0..N). ``map_location`` is what the caller passes to ``torch.load``
    (``None``: storages go back to the device they were saved from). ``weights_only=None``
    means torch's default for that release (``True`` from 2.6).
    """

    torch: str
    numpy: str | None = None
    weights_only: bool | None = None
    device: str = "cpu"
    map_location: str | None = None
    python_path: tuple[str, ...] = ()
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    safetensors: str | None = None
    loader: str = "torch.load"  # or "torch.jit.load"

    def __post_init__(self) -> None:
        parse_version(self.torch)  # raises ValueError for nonsense
        if self.numpy is not None:
            parse_version(self.numpy)
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"device must be cpu, cuda or cuda:N, not {self.device!r}")
        if self.loader not in ("torch.load", "torch.jit.load"):
            raise ValueError(f"loader must be torch.load or torch.jit.load, not {self.loader!r}")

    @classmethod
    def current(cls, **overrides: Any) -> Target:
        """The running environment (installed distributions' metadata), with overrides."""
        torch_v = installed_version("torch")
        if torch_v is None:
            torch_v = weights_only_versions()[-1]
        gpus = 0 if "+cpu" in torch_v else _gpu_count()
        base = cls(
            torch=torch_v,
            numpy=installed_version("numpy"),
            device="cpu" if gpus == 0 else f"cuda:{gpus - 1}",
            safetensors=installed_version("safetensors"),
        )
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if "python_path" in overrides:
            overrides["python_path"] = tuple(overrides["python_path"])
        return replace(base, **overrides)

    @property
    def torch_release(self) -> str:
        return release(self.torch)

    @property
    def loads_weights_only(self) -> bool:
        if self.weights_only is not None:
            return self.weights_only
        return parse_version(self.torch) >= parse_version("2.6")

    @property
    def gpus(self) -> int:
        if self.device == "cpu":
            return 0
        if self.device == "cuda":
            return 1
        try:
            return int(self.device.split(":", 1)[1]) + 1
        except ValueError:
            return 1

    def torch_at_least(self, v: str) -> bool:
        return parse_version(self.torch) >= parse_version(v)

    def describe(self) -> str:
        wo = "weights_only=True" if self.loads_weights_only else "weights_only=False"
        parts = [f"torch {self.torch}", wo if self.loader == "torch.load" else "torch.jit.load"]
        if self.map_location:
            parts.append(f"map_location={self.map_location!r}")
        parts.append(self.device if self.device == "cpu" else f"{self.gpus} GPU(s)")
        if self.numpy:
            parts.append(f"numpy {self.numpy}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["python_path"] = list(self.python_path)
        d["weights_only"] = self.loads_weights_only
        return d


@dataclass(slots=True)
class CheckResult:
    path: str
    target: Target
    format: str | None  # None when the file could not be read at all
    findings: list[Finding]
    loads: bool
    readable: bool = True
    producer: Producer | None = None
    predicted_error: str | None = None  # torch's first error, in torch's words where we know them
    first_cause: Finding | None = None

    @property
    def exit_code(self) -> int:
        if not self.readable:
            return 2
        return 0 if self.loads else 1

    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.blocks_load]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "target": self.target.to_dict(),
            "loads": self.loads,
            "readable": self.readable,
            "producer": None if self.producer is None else {
                "earliest": self.producer.earliest, "latest": self.producer.latest,
                "reasons": list(self.producer.reasons)},
            "predicted_error": self.predicted_error,
            "first_cause": None if self.first_cause is None else self.first_cause.id,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(eq=False)
class Context:
    """What every rule sees: the file (read, or the reason it could not be), the target, shared analyses."""

    path: str
    target: Target
    ckpt: Checkpoint | None
    error: UnreadableFile | None = None
    head: bytes = b""
    size: int = 0
    order: dict[int, tuple[int, int]] = field(default_factory=dict)  # id(finding) -> (stage, offset)

    @property
    def name(self) -> str:
        return os.path.basename(self.path) or self.path

    @cached_property
    def wo_table(self) -> dict[str, Any] | None:
        return weights_only_table(self.target.torch)

    @cached_property
    def pickles(self) -> list[tuple[str, Any, int, int, int]]:
        from ckptdoctor.rules._pickles import torch_load_pickles

        return torch_load_pickles(self.ckpt) if self.ckpt is not None else []

    def sim(self, weights_only: bool) -> Any:
        """The dry run of torch's unpickler for this target (cached)."""
        key = "_sim_wo" if weights_only else "_sim_full"
        cached = self.__dict__.get(key)
        if cached is None:
            from ckptdoctor.rules._sim import simulate

            table = self.wo_table if weights_only else None
            if weights_only and table is None:
                table = weights_only_table("1.13")
            cached = simulate(self.pickles, table)
            self.__dict__[key] = cached
        return cached

    def ordered(self, finding: Finding, stage: int, offset: int | None = None) -> Finding:
        """Remember where torch would meet this finding (for the predicted first error)."""
        self.order[id(finding)] = (stage, offset if offset is not None else 0)
        return finding


JIT_FAMILIES = ("impostors", "container", "producer", "security")


def _read_head(path: str) -> tuple[bytes, int]:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
            size = os.fstat(fh.fileno()).st_size
        return head, size
    except OSError:
        return b"", 0


def check(ckpt_or_path: Checkpoint | str | os.PathLike[str], target: Target | None = None) -> CheckResult:
    """Predict whether ``torch.load`` in ``target`` loads the file, with every cause and a fix for each.

    Accepts a path (opened and closed here) or an open :class:`Checkpoint`. Never raises for
    unreadable input: the result then has ``readable=False`` and an impostor/damage finding.
    ``OSError`` (missing file, permissions) is raised as is.
    """
    import ckptdoctor
    from ckptdoctor.rules import ALL_RULES

    target = target or Target.current()
    own = not isinstance(ckpt_or_path, Checkpoint)
    error: UnreadableFile | None = None
    ckpt: Checkpoint | None
    if own:
        path = os.fspath(ckpt_or_path)  # type: ignore[arg-type]
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", path)
        try:
            ckpt = ckptdoctor.open(path)
        except UnreadableFile as e:
            ckpt, error = None, e
    else:
        ckpt = ckpt_or_path  # type: ignore[assignment]
        path = ckpt.path
    head, size = _read_head(path) if not os.path.isdir(path) else (b"", 0)
    ctx = Context(path=path, target=target, ckpt=ckpt, error=error, head=head, size=size)
    try:
        findings: list[Finding] = []
        for rule in ALL_RULES:
            if target.loader == "torch.jit.load" and rule.family not in JIT_FAMILIES:
                continue
            if ckpt is None and not rule.on_unreadable:
                continue
            if ckpt is not None and not rule.on_readable:
                continue
            findings.extend(rule.run(ctx))
        return _result(ctx, findings)
    finally:
        if own and ckpt is not None:
            ckpt.close()


def _result(ctx: Context, findings: list[Finding]) -> CheckResult:
    blocking = [f for f in findings if f.blocks_load]
    first = None
    if blocking:
        first = min(blocking, key=lambda f: ctx.order.get(id(f), (9, 0)))
    # stable, useful order: blocking first (in torch's order), then by severity
    findings = sorted(findings, key=lambda f: (not f.blocks_load, ctx.order.get(id(f), (9, 0)) if f.blocks_load
                                               else (0, 0), -int(f.severity)))
    readable = ctx.ckpt is not None
    fmt = ctx.ckpt.format if ctx.ckpt is not None else (ctx.error.kind if ctx.error is not None else None)
    return CheckResult(
        path=ctx.path,
        target=ctx.target,
        format=fmt,
        findings=findings,
        loads=not blocking,
        readable=readable,
        producer=ctx.ckpt.producer if ctx.ckpt is not None else None,
        predicted_error=(first.evidence.get("torch_error") if first is not None else None),
        first_cause=first,
    )


def diagnose_for_scan(ckpt: Any, error: Any, *, torch: str | None, weights_only: bool | None) -> list[Finding]:
    """The scanner's hook (``ckptdoctor.scan.diagnose``): findings for an opened checkpoint or a read error."""
    target = Target.current(torch=torch, weights_only=weights_only)
    if ckpt is not None:
        return check(ckpt, target).findings
    if isinstance(error, UnreadableFile):
        from ckptdoctor.rules.impostors import impostor_findings

        path = getattr(error, "fields", {}).get("path") or str(error).split(": ", 1)[0]
        head, size = _read_head(path) if path and os.path.isfile(path) else (b"", 0)
        ctx = Context(path=path, target=target, ckpt=None, error=error, head=head, size=size)
        return list(impostor_findings(ctx))
    return []


def severity_counts(findings: list[Finding]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[f.severity.label] = out.get(f.severity.label, 0) + 1
    return out


__all__ = ["Target", "CheckResult", "Context", "check", "diagnose_for_scan", "installed_version", "Severity"]
