"""Read what is installed without importing it.

Everything here works from files only: ``*.dist-info`` directories on a list
of ``sys.path`` entries, and ``<prefix>/conda-meta/*.json``. So it runs fast
and still works when ``import torch`` crashes.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: packages whose METADATA we read in full; others are known by directory name only
RELEVANT = ("torch", "torchvision", "torchaudio", "numpy", "pillow", "triton", "cuda-toolkit")
#: conda package name -> Python distribution name
CONDA_TO_DIST = {"pytorch": "torch", "torchvision": "torchvision", "torchaudio": "torchaudio",
                 "numpy": "numpy", "pillow": "pillow"}
#: conda packages worth reading (flavour selectors and metapackages besides the above)
CONDA_INTERESTING = frozenset(CONDA_TO_DIST) | {
    "libtorch", "pytorch-cpu", "pytorch-gpu", "pytorch-cuda", "pytorch-mutex", "cpuonly",
    "cudatoolkit", "cuda-version", "python",
}
_NORM = re.compile(r"[-_.]+")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return _NORM.sub("-", name).lower()


def split_version(version: str) -> tuple[str, str | None]:
    """``"2.1.0+cu121"`` -> ``("2.1.0", "cu121")``."""
    public, _, local = version.partition("+")
    return public, (local or None)


@dataclass(frozen=True, slots=True)
class CondaRecord:
    """One ``conda-meta/<name>-<version>-<build>.json`` record."""

    name: str
    version: str
    build: str
    channel: str  # "conda-forge", "pytorch", "defaults", "nvidia", or the raw channel
    channel_url: str
    file: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "build": self.build,
                "channel": self.channel, "channel_url": self.channel_url}


@dataclass(frozen=True, slots=True)
class Dist:
    """One installed Python distribution (a ``.dist-info`` or ``.egg-info``)."""

    name: str  # canonical
    version: str
    location: str  # the sys.path entry holding it
    meta_path: str  # the .dist-info / .egg-info path
    installer: str | None = None
    direct_url: dict[str, Any] | None = None
    requires: tuple[str, ...] = ()
    requires_python: str | None = None
    requested: bool = False
    has_record: bool = False
    runtime_version: str | None = None  # __version__ read from <pkg>/version.py, if any
    runtime_cuda: str | None = None  # torch/version.py `cuda = '12.1'`
    runtime_hip: str | None = None

    @property
    def public(self) -> str:
        return split_version(self.version)[0]

    @property
    def local(self) -> str | None:
        return split_version(self.version)[1]

    @property
    def origin(self) -> str:
        """How pip got it: index, editable, vcs, local-dir, local-file or url (PEP 610)."""
        du = self.direct_url
        if not du:
            return "index"
        if du.get("dir_info", {}).get("editable"):
            return "editable"
        if "vcs_info" in du:
            return "vcs"
        url = str(du.get("url", ""))
        if "dir_info" in du:
            return "local-dir"
        return "local-file" if url.startswith("file:") else "url"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "version": self.version, "public": self.public, "local": self.local,
            "location": self.location, "installer": self.installer, "origin": self.origin,
            "requested": self.requested, "has_record": self.has_record,
        }
        if self.direct_url:
            d["direct_url"] = self.direct_url.get("url")
        if self.runtime_version:
            d["runtime_version"] = self.runtime_version
        if self.runtime_cuda or self.runtime_hip:
            d["runtime_cuda"], d["runtime_hip"] = self.runtime_cuda, self.runtime_hip
        return d


@dataclass(slots=True)
class Installed:
    """Every distribution found, in sys.path order (first = the one that imports)."""

    dists: list[Dist] = field(default_factory=list)
    conda: dict[str, CondaRecord] = field(default_factory=dict)
    conda_prefix: str | None = None

    def copies(self, name: str) -> list[Dist]:
        n = canonical(name)
        return [d for d in self.dists if d.name == n]

    def get(self, name: str) -> Dist | None:
        c = self.copies(name)
        return c[0] if c else None

    def duplicates(self) -> dict[str, list[Dist]]:
        seen: dict[str, list[Dist]] = {}
        for d in self.dists:
            seen.setdefault(d.name, []).append(d)
        return {k: v for k, v in seen.items() if len(v) > 1}


# ---------------------------------------------------------------------------
# dist-info


def _meta_name_version(entry: str) -> tuple[str, str] | None:
    if entry.endswith(".dist-info"):
        stem = entry[: -len(".dist-info")]
        name, sep, version = stem.rpartition("-")
        return (name, version) if sep else None
    if entry.endswith(".egg-info"):
        m = re.match(r"^([^-]+)-([^-]+)", entry[: -len(".egg-info")])
        return (m.group(1), m.group(2)) if m else None
    return None


def _read_headers(path: Path) -> dict[str, list[str]]:
    """RFC 822 headers of METADATA/PKG-INFO (stops at the first blank line: the body is the README)."""
    out: dict[str, list[str]] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                if line[:1] in " \t":
                    continue
                k, sep, v = line.partition(":")
                if sep:
                    out.setdefault(k.strip().lower(), []).append(v.strip())
    except OSError:
        pass
    return out


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


_PY_ASSIGN = re.compile(r"^(__version__|cuda|hip)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)


def read_version_py(pkg_dir: Path) -> dict[str, str | None]:
    """``__version__``/``cuda``/``hip`` from ``<pkg>/version.py`` as text (never imported)."""
    text = _read_text(pkg_dir / "version.py")
    out: dict[str, str | None] = {}
    if not text:
        return out
    for key, raw in _PY_ASSIGN.findall(text):
        raw = raw.strip()
        if raw == "None":
            out[key] = None
        elif raw[:1] in "'\"" and raw[-1:] == raw[:1]:
            out[key] = raw[1:-1]
    return out


def read_dist(location: Path, entry: str, full: bool) -> Dist | None:
    nv = _meta_name_version(entry)
    if nv is None:
        return None
    meta_dir = location / entry
    name, version = canonical(nv[0]), nv[1]
    if not full:
        return Dist(name=name, version=version, location=str(location), meta_path=str(meta_dir))
    headers = _read_headers(meta_dir / ("METADATA" if entry.endswith(".dist-info") else "PKG-INFO"))
    if headers.get("name"):
        name = canonical(headers["name"][0])
    if headers.get("version"):
        version = headers["version"][0]
    direct_url = None
    du_text = _read_text(meta_dir / "direct_url.json")
    if du_text:
        try:
            direct_url = json.loads(du_text)
        except ValueError:
            direct_url = {"url": "?", "invalid": True}
    rt: dict[str, str | None] = {}
    if name in ("torch", "torchvision", "torchaudio"):
        rt = read_version_py(location / name.replace("-", "_"))
    return Dist(
        name=name, version=version, location=str(location), meta_path=str(meta_dir),
        installer=_read_text(meta_dir / "INSTALLER") or None,
        direct_url=direct_url,
        requires=tuple(headers.get("requires-dist", ())),
        requires_python=(headers.get("requires-python") or [None])[0],
        requested=(meta_dir / "REQUESTED").exists(),
        has_record=(meta_dir / "RECORD").exists(),
        runtime_version=rt.get("__version__"), runtime_cuda=rt.get("cuda"), runtime_hip=rt.get("hip"),
    )


def scan_paths(paths: list[str], relevant: tuple[str, ...] = RELEVANT) -> list[Dist]:
    """All distributions on ``paths`` in order; METADATA is read only for ``relevant`` ones and nvidia-*."""
    dists: list[Dist] = []
    seen_dirs: set[str] = set()
    for p in paths:
        if not p:
            continue
        loc = Path(p)
        key = os.path.realpath(p)
        if key in seen_dirs or not loc.is_dir():
            continue
        seen_dirs.add(key)
        try:
            entries = sorted(os.listdir(loc))
        except OSError:
            continue
        for entry in entries:
            nv = _meta_name_version(entry)
            if nv is None:
                continue
            cname = canonical(nv[0])
            full = cname in relevant or cname.startswith("nvidia-")
            d = read_dist(loc, entry, full)
            if d is not None:
                dists.append(d)
    return dists


# ---------------------------------------------------------------------------
# conda-meta


def channel_label(channel: str) -> str:
    """Short name of a conda channel URL or name."""
    c = channel.rstrip("/")
    for known in ("conda-forge", "pytorch-nightly", "pytorch", "nvidia"):
        if re.search(rf"(^|/){re.escape(known)}(/|$)", c):
            return known
    if c in ("defaults", "pkgs/main", "pkgs/r") or "repo.anaconda.com" in c or "/pkgs/main" in c:
        return "defaults"
    if c == "pypi":
        return "pypi"
    return c or "?"


def read_conda_meta(prefix: str | os.PathLike[str], names: frozenset[str] = CONDA_INTERESTING) -> dict[str, CondaRecord]:
    """conda-meta records of ``names`` in ``prefix`` (file names are ``<name>-<version>-<build>.json``)."""
    meta = Path(prefix) / "conda-meta"
    out: dict[str, CondaRecord] = {}
    try:
        entries = os.listdir(meta)
    except OSError:
        return out
    for entry in entries:
        if not entry.endswith(".json"):
            continue
        parts = entry[:-5].rsplit("-", 2)
        if len(parts) != 3 or parts[0] not in names:
            continue
        try:
            data = json.loads((meta / entry).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        raw_channel = str(data.get("channel") or data.get("schannel") or data.get("url") or "")
        rec = CondaRecord(
            name=str(data.get("name", parts[0])), version=str(data.get("version", parts[1])),
            build=str(data.get("build", data.get("build_string", parts[2]))),
            channel=channel_label(raw_channel), channel_url=raw_channel, file=str(meta / entry),
        )
        out[rec.name] = rec
    return out


def is_conda_prefix(prefix: str | os.PathLike[str]) -> bool:
    return (Path(prefix) / "conda-meta").is_dir()


def read_installed(paths: list[str], prefix: str | None = None) -> Installed:
    """Distributions on ``paths`` plus conda records of ``prefix`` (when it is a conda environment)."""
    inst = Installed(dists=scan_paths(paths))
    if prefix and is_conda_prefix(prefix):
        inst.conda_prefix = str(prefix)
        inst.conda = read_conda_meta(prefix)
    return inst
