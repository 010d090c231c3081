"""One environment as data: the interpreter, what is installed and where each package came from."""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.env.metadata import CONDA_TO_DIST, CondaRecord, Dist, Installed, read_installed

#: the packages `env` reports on, in display order
REPORTED = ("torch", "torchvision", "torchaudio", "numpy", "pillow", "triton")
_DIST_TO_CONDA = {v: k for k, v in CONDA_TO_DIST.items()}
PYTHON_INSTALLERS = ("pip", "uv", "poetry", "pdm", "pipenv", "rye", "hatch")


@dataclass(frozen=True, slots=True)
class PythonInfo:
    version: str  # "3.11.7"
    implementation: str = "CPython"
    executable: str = ""
    prefix: str = ""
    base_prefix: str = ""
    platform: str = ""  # sys.platform: linux, darwin, win32
    machine: str = ""  # x86_64, arm64, AMD64
    path: tuple[str, ...] = ()

    @property
    def minor(self) -> tuple[int, int]:
        parts = (self.version.split(".") + ["0", "0"])[:2]
        return int(parts[0]), int(re.sub(r"\D.*", "", parts[1]) or 0)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "implementation": self.implementation, "executable": self.executable,
                "prefix": self.prefix, "base_prefix": self.base_prefix, "platform": self.platform,
                "machine": self.machine, "path": list(self.path)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PythonInfo:
        return cls(version=str(d.get("version", "")), implementation=str(d.get("implementation", "")),
                   executable=str(d.get("executable", "")), prefix=str(d.get("prefix", "")),
                   base_prefix=str(d.get("base_prefix", "")), platform=str(d.get("platform", "")),
                   machine=str(d.get("machine", "")), path=tuple(d.get("path", ())))


def current_python() -> PythonInfo:
    """This interpreter, read from ``sys`` (no subprocess)."""
    v = sys.version_info
    return PythonInfo(
        version=f"{v.major}.{v.minor}.{v.micro}", implementation=platform.python_implementation(),
        executable=sys.executable, prefix=sys.prefix, base_prefix=sys.base_prefix, platform=sys.platform,
        machine=platform.machine(), path=tuple(p for p in sys.path if p),
    )


@dataclass(frozen=True, slots=True)
class Source:
    """Where one package came from, and which tool should change it."""

    kind: str  # conda, pip, editable, vcs, local, unknown
    channel: str | None  # conda channel; "pypi" / "pytorch-index" for wheels
    tool: str  # pip, uv or conda: what a fix command should use
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "channel": self.channel, "tool": self.tool, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Build:
    """The torch build flavour: cpu, cu121, rocm6.1 ... and how we know it."""

    flavour: str  # "cpu", "cu121", "rocm6.1", "xpu", "unknown"
    cuda: str | None  # "12.1"
    evidence: str

    def to_dict(self) -> dict[str, Any]:
        return {"flavour": self.flavour, "cuda": self.cuda, "evidence": self.evidence}


@dataclass(slots=True)
class Environment:
    python: PythonInfo
    installed: Installed
    extra: dict[str, Any] = field(default_factory=dict)  # import / probe results

    def dist(self, name: str) -> Dist | None:
        return self.installed.get(name)

    def conda_record(self, dist_name: str) -> CondaRecord | None:
        return self.installed.conda.get(_DIST_TO_CONDA.get(dist_name, dist_name))

    def source(self, name: str) -> Source | None:
        d = self.dist(name)
        return source_of(d, self.conda_record(name)) if d else None

    @property
    def is_conda(self) -> bool:
        return self.installed.conda_prefix is not None

    def build(self, name: str = "torch") -> Build | None:
        d = self.dist(name)
        return build_of(d, self.conda_record(name), self.python.platform) if d else None


def source_of(d: Dist, conda: CondaRecord | None) -> Source:
    if conda is not None and d.installer not in PYTHON_INSTALLERS:
        return Source("conda", conda.channel, "conda", f"conda {conda.channel} {conda.name} {conda.version} ({conda.build})")
    tool = d.installer if d.installer in ("pip", "uv") else "pip"
    if d.installer == "conda":
        return Source("conda", None, "conda", "installed by conda (no conda-meta record found)")
    origin = d.origin
    if origin == "editable":
        return Source("editable", None, tool, f"editable install from {d.direct_url.get('url') if d.direct_url else '?'}")
    if origin == "vcs":
        return Source("vcs", None, tool, f"built from VCS {d.direct_url.get('url') if d.direct_url else '?'}")
    url = str((d.direct_url or {}).get("url", ""))
    if origin in ("local-file", "url") and url.endswith(".whl"):
        return Source("pip", "wheel-file", tool, f"{d.installer} wheel file {url.rsplit('/', 1)[-1]}")
    if origin in ("local-dir", "local-file", "url"):
        return Source("local", None, tool, f"{origin}: {d.direct_url.get('url') if d.direct_url else '?'}")
    if d.installer is None:
        return Source("unknown", None, "pip", "no INSTALLER record (setup.py install, distro package or copied files)")
    # PyPI forbids local version labels: a suffix means the PyTorch wheel index (or a local wheel file).
    if d.local:
        return Source("pip", "pytorch-index", tool, f"{d.installer} wheel from the PyTorch index (+{d.local})")
    return Source("pip", "pypi", tool, f"{d.installer} wheel (PyPI or another index)")


_CONDA_CUDA = re.compile(r"cuda_?(\d+)\.?(\d)")


def _flavour_cuda(flavour: str) -> str | None:
    m = re.fullmatch(r"cu(\d+)(\d)", flavour)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def build_of(d: Dist, conda: CondaRecord | None, plat: str = "") -> Build:
    """Work out the build flavour from files only (version suffix, version.py, conda build, Requires-Dist)."""
    for label, v in (("dist-info version", d.version), ("version.py __version__", d.runtime_version)):
        local = (v or "").partition("+")[2]
        if local:
            flav = local.split(".")[0] if local.startswith(("cpu", "cu")) else local
            cuda = d.runtime_cuda or _flavour_cuda(flav)
            return Build(flav, cuda, f"{label} {v}")
    if d.runtime_cuda:
        return Build("cu" + d.runtime_cuda.replace(".", ""), d.runtime_cuda, f"version.py cuda = '{d.runtime_cuda}'")
    if d.runtime_hip:
        return Build("rocm" + d.runtime_hip.split("-")[0], None, f"version.py hip = '{d.runtime_hip}'")
    if conda is not None:
        m = _CONDA_CUDA.search(conda.build)
        if m:
            cuda = f"{m.group(1)}.{m.group(2)}"
            return Build("cu" + m.group(1) + m.group(2), cuda, f"conda build {conda.build}")
        if "cpu" in conda.build:
            return Build("cpu", None, f"conda build {conda.build}")
    for req in d.requires:
        m = re.match(r"(nvidia-cuda-runtime-cu\d+|cuda-toolkit)\S*\s*\(?==\s*(\d+)\.(\d+)", req)
        if m and (plat in ("", "linux") or "linux" not in req.lower()):
            return Build(f"cu{m.group(2)}{m.group(3)}", f"{m.group(2)}.{m.group(3)}", f"Requires-Dist {req.split(';')[0]}")
    if d.runtime_version is not None or d.installer:
        if plat in ("darwin", "win32") or d.runtime_version is not None:
            return Build("cpu", None, "no CUDA in version.py or Requires-Dist")
    return Build("unknown", None, "no suffix, version.py or CUDA requirement found")


def collect(python: PythonInfo | None = None, paths: list[str] | None = None, prefix: str | None = None) -> Environment:
    """Read an environment from files. Defaults: this interpreter, its sys.path and prefix."""
    py = python or current_python()
    search = list(paths) if paths is not None else [p for p in py.path if p and os.path.isdir(p)]
    inst = read_installed(search, prefix if prefix is not None else py.prefix)
    return Environment(python=py, installed=inst)
