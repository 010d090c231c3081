"""Fix plans: a list of :class:`Step` objects, each changing the value tree and saying what it changed.

A step never touches files. ``describe()`` says what it will do;
``apply(tree)`` changes the :class:`Tree` in place and returns the
:class:`Change` list (keys renamed, dropped, objects replaced ...), which
``--plan`` prints and ``--record`` stores. :mod:`ckptdoctor.fixes.apply`
writes and verifies the result.

Step ids (stable; ``check`` findings name them in their fix commands):

=========================  ==============================================================
``extract-state-dict``     whole-model pickle / TorchScript / wrapper dict -> state_dict
``weights-only-safe``      replace what ``torch.load(weights_only=True)`` refuses by data
``rename``                 rename state_dict keys (prefix rules, regex rules, a mapping)
``strip-prefixes``         strip wrapper prefixes every key has (``module.``, ``_orig_mod.``)
``numpy-core``             ``numpy._core`` <-> ``numpy.core`` in numpy globals
``py2-strings``            Python 2 byte strings -> str
``drop-num-batches-tracked`` / ``add-num-batches-tracked``   BatchNorm counters (torch 0.4.0 <-> 0.4.1+)
``drop-optimizer``         drop optimizer / scheduler / scaler state
``to-cpu``                 device tags -> cpu
``container``              the output container (zip, legacy, safetensors)
=========================  ==============================================================
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from packaging.version import Version

from ckptdoctor.errors import CkptdoctorError

DEFAULT_TARGET = Version("2.13")


class FixError(CkptdoctorError, ValueError):
    """A plan that cannot be carried out (one-line reason, suitable for the CLI)."""

    code = "cannot-fix"


class VerificationFailed(FixError):
    """The written file did not re-read as expected; it was not kept."""

    code = "verification-failed"


@dataclass(slots=True)
class Change:
    """One thing a step changed. ``path`` is the dotted path in the tree (``""`` = the root)."""

    step: str
    action: str  # extracted | replaced | converted | renamed | dropped | added | retagged | container
    path: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        where = self.path or "<root>"
        return f"{self.action} {where}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Tree:
    """The value tree being fixed, with what the steps need to know about it."""

    root: Any
    format: str  # the input's format (ckptdoctor.formats.KINDS)
    container: str  # the container the result will be written as
    target: Version = DEFAULT_TARGET  # the torch that must load the result
    metadata: dict[str, Any] | None = None  # safetensors __metadata__ to keep
    numpy_module: str = "numpy.core"  # module path numpy globals are written with
    notes: list[str] = field(default_factory=list)


class Step:
    """Base class of every fix step."""

    id: ClassVar[str] = "step"

    def describe(self) -> str:
        raise NotImplementedError

    def apply(self, tree: Tree) -> list[Change]:
        raise NotImplementedError

    def change(self, action: str, path: str, detail: str = "") -> Change:
        return Change(self.id, action, path, detail)

    def __repr__(self) -> str:
        return f"<step {self.id}>"


class ContainerChange(Step):
    """Write the result as ``zip`` (torch >= 1.6), ``legacy`` (torch <= 1.5) or ``safetensors``."""

    id = "container"

    def __init__(self, to: str) -> None:
        from ckptdoctor.writers import CONTAINERS

        if to not in CONTAINERS:
            raise FixError(f"unknown container {to!r}; choose from {', '.join(CONTAINERS)}")
        self.to = to

    def describe(self) -> str:
        return {"zip": "write a torch zip archive (torch >= 1.6 layout; loads with mmap=True)",
                "legacy": "write the legacy stream (what torch <= 1.5 reads)",
                "safetensors": "write safetensors (tensors only)"}[self.to]

    def apply(self, tree: Tree) -> list[Change]:
        before = tree.format
        tree.container = self.to
        detail = f"keep {self.to}" if before == self.to else f"{before} -> {self.to}"
        return [self.change("container", "", detail)]


@dataclass
class Plan:
    steps: list[Step]

    def describe(self) -> list[str]:
        return [f"{s.id}: {s.describe()}" for s in self.steps]

    def apply(self, tree: Tree) -> list[Change]:
        changes: list[Change] = []
        for s in self.steps:
            changes.extend(s.apply(tree))
        return changes


def parse_version(v: str | Version | None) -> Version:
    if v is None:
        return DEFAULT_TARGET
    if isinstance(v, Version):
        return v
    try:
        return Version(str(v).split("+", 1)[0])
    except ValueError:
        raise FixError(f"--torch {v!r} is not a version number (e.g. 1.4, 2.13)") from None


def default_container(fmt: str, target: Version) -> str:
    """zip/legacy inputs keep their container unless the target torch cannot read it."""
    if target < Version("1.6"):
        return "legacy"
    return "legacy" if fmt == "legacy" else "zip"
