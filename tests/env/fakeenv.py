"""Build fake Python environments on disk: site-packages with dist-info records and conda-meta JSON."""

from __future__ import annotations

import json
from pathlib import Path

from ckptdoctor.env.snapshot import Environment, PythonInfo, collect

CONDA_FORGE = "https://conda.anaconda.org/conda-forge/linux-64"
PYTORCH_CHANNEL = "https://conda.anaconda.org/pytorch/linux-64"


class FakeEnv:
    def __init__(self, root: Path, python: str = "3.11.7", platform: str = "linux") -> None:
        self.root = root
        self.site = root / "lib" / "python3.11" / "site-packages"
        self.site.mkdir(parents=True)
        self.python = python
        self.platform = platform
        self.extra_sites: list[Path] = []

    def dist(self, name: str, version: str, *, installer: str | None = "pip", requires: tuple[str, ...] = (),
             direct_url: dict | None = None, site: Path | None = None, version_py: dict | None = None,
             requires_python: str | None = None) -> Path:
        where = site or self.site
        where.mkdir(parents=True, exist_ok=True)
        d = where / f"{name.replace('-', '_')}-{version}.dist-info"
        d.mkdir()
        lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        if requires_python:
            lines.append(f"Requires-Python: {requires_python}")
        lines += [f"Requires-Dist: {r}" for r in requires]
        (d / "METADATA").write_text("\n".join(lines) + "\n\nA long description: Version: 0.0\n")
        if installer is not None:
            (d / "INSTALLER").write_text(installer + "\n")
        (d / "RECORD").write_text("")
        if direct_url is not None:
            (d / "direct_url.json").write_text(json.dumps(direct_url))
        if version_py is not None:
            pkg = where / name
            pkg.mkdir(exist_ok=True)
            body = [f"__version__ = {version_py.get('__version__', version)!r}"]
            cuda = version_py.get("cuda")
            body.append(f"cuda: Optional[str] = {cuda!r}" if cuda else "cuda: Optional[str] = None")
            (pkg / "version.py").write_text("from typing import Optional\n" + "\n".join(body) + "\n")
        return d

    def conda(self, name: str, version: str, build: str, channel: str = CONDA_FORGE) -> None:
        meta = self.root / "conda-meta"
        meta.mkdir(exist_ok=True)
        rec = {"name": name, "version": version, "build": build, "build_number": 0, "channel": channel,
               "subdir": "linux-64", "depends": [], "files": ["lib/python3.11/site-packages/x.py"]}
        (meta / f"{name}-{version}-{build}.json").write_text(json.dumps(rec))
        (meta / "history").write_text("")

    def user_site(self) -> Path:
        p = self.root / "user-site"
        p.mkdir(exist_ok=True)
        if p not in self.extra_sites:
            self.extra_sites.append(p)
        return p

    def collect(self) -> Environment:
        paths = [str(p) for p in [*self.extra_sites, self.site]]
        py = PythonInfo(version=self.python, executable=str(self.root / "bin" / "python"), prefix=str(self.root),
                        platform=self.platform, machine="x86_64", path=tuple(paths))
        return collect(py, paths=paths, prefix=str(self.root))


def ids(findings) -> set[str]:
    return {f.id for f in findings}


def by_id(findings, fid: str):
    return [f for f in findings if f.id == fid]
