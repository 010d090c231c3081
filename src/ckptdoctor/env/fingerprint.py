"""The JSON fingerprint of an environment, and what a difference between two of them means.

``ckptdoctor env --json > a.json`` writes the fingerprint; ``ckptdoctor env diff
a.json b.json`` reads two. Each difference is tagged with what it can change:
``loading`` (whether a checkpoint loads at all) and/or ``numerics`` (whether
the same weights give bit-identical results).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckptdoctor.env.compat import minor
from ckptdoctor.env.snapshot import REPORTED, Environment
from ckptdoctor.findings import Finding

SCHEMA = "ckptdoctor-env/1"


def fingerprint(env: Environment, findings: list[Finding]) -> dict[str, Any]:
    from ckptdoctor import __version__

    packages: dict[str, Any] = {}
    for name in REPORTED:
        d = env.dist(name)
        if d is None:
            packages[name] = None
            continue
        entry = d.to_dict()
        src = env.source(name)
        entry["source"] = src.to_dict() if src else None
        if name in ("torch", "torchvision", "torchaudio"):
            b = env.build(name)
            entry["build"] = b.to_dict() if b else None
        rec = env.conda_record(name)
        if rec is not None:
            entry["conda"] = rec.to_dict()
        packages[name] = entry
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "ckptdoctor": __version__,
        "python": env.python.to_dict(),
        "conda_prefix": env.installed.conda_prefix,
        "conda_packages": {k: v.to_dict() for k, v in sorted(env.installed.conda.items())},
        "packages": packages,
        "nvidia": {d.name: d.version for d in env.installed.dists if d.name.startswith("nvidia-")
                   or d.name == "cuda-toolkit"},
        "duplicates": {k: [c.to_dict() for c in v] for k, v in env.installed.duplicates().items()},
        "findings": [f.to_dict() for f in findings],
    }
    for key in ("import", "probe"):
        if key in env.extra:
            out[key] = env.extra[key]
    return out


def load_fingerprint(path: str) -> dict[str, Any]:
    from ckptdoctor.errors import CkptdoctorError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as e:
        raise CkptdoctorError(f"{path} is not JSON: write it with 'ckptdoctor env --json > {path}'") from e
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise CkptdoctorError(f"{path} is not a ckptdoctor env fingerprint (schema {SCHEMA})")
    return data


@dataclass(frozen=True, slots=True)
class Difference:
    field: str
    a: Any
    b: Any
    matters: tuple[str, ...]  # subset of ("loading", "numerics"); empty = cosmetic
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "a": self.a, "b": self.b, "matters": list(self.matters), "why": self.why}


def _get(d: dict[str, Any] | None, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


_WHY_PKG = {
    "torch": ("loading", "numerics", "serialization defaults (weights_only), kernels and their numerics"),
    "torchvision": ("loading", "numerics", "module layout of pickled objects, transform defaults (antialias)"),
    "torchaudio": ("loading", "numerics", "operator registration and resampling kernels"),
    "numpy": ("loading", "numerics", "pickled numpy arrays (numpy._core vs numpy.core) and preprocessing"),
    "pillow": ("", "numerics", "image decoding and resize filters in preprocessing"),
    "triton": ("", "numerics", "compiled (torch.compile) kernels"),
}


def diff_fingerprints(a: dict[str, Any], b: dict[str, Any]) -> list[Difference]:
    out: list[Difference] = []

    def add(field: str, va: Any, vb: Any, matters: tuple[str, ...], why: str) -> None:
        if va != vb:
            out.append(Difference(field, va, vb, tuple(m for m in matters if m), why))

    pa, pb = a.get("python", {}), b.get("python", {})
    va, vb = str(pa.get("version", "")), str(pb.get("version", ""))
    if minor(va) != minor(vb):
        add("python.version", va, vb, ("loading", "numerics"), "different Python minor: different wheels")
    else:
        add("python.version", va, vb, (), "patch release only")
    add("python.platform", pa.get("platform"), pb.get("platform"), ("loading", "numerics"), "different OS builds")
    add("python.machine", pa.get("machine"), pb.get("machine"), ("numerics",), "different CPU architecture/SIMD")

    for name in REPORTED:
        ea, eb = _get(a, "packages", name), _get(b, "packages", name)
        la, lb_ = _WHY_PKG[name][:2]
        why = _WHY_PKG[name][2]
        ver_a, ver_b = _get(ea, "version"), _get(eb, "version")
        if ver_a is None or ver_b is None:
            add(f"{name}.version", ver_a, ver_b, (la, lb_), f"installed on one side only: {why}")
            continue
        if minor(ver_a) != minor(ver_b):
            add(f"{name}.version", ver_a, ver_b, (la, lb_), why)
        elif ver_a.split("+")[0] != ver_b.split("+")[0]:
            add(f"{name}.version", ver_a, ver_b, (lb_,), "patch release: bug fixes can change results")
        else:
            add(f"{name}.version", ver_a, ver_b, ("numerics",), "same release, different build")
        add(f"{name}.build", _get(ea, "build", "flavour"), _get(eb, "build", "flavour"), ("loading", "numerics"),
            "CPU vs CUDA / CUDA version: device mapping on load, different kernels")
        add(f"{name}.source", _get(ea, "source", "kind"), _get(eb, "source", "kind"), ("numerics",),
            "conda and pip builds link different BLAS/LAPACK (MKL vs OpenBLAS)")
        add(f"{name}.channel", _get(ea, "source", "channel"), _get(eb, "source", "channel"), ("numerics",),
            "different build pipeline")
        add(f"{name}.location", _get(ea, "location"), _get(eb, "location"), (), "install path")

    for key in sorted(set(a.get("nvidia", {})) | set(b.get("nvidia", {}))):
        add(f"nvidia.{key}", a.get("nvidia", {}).get(key), b.get("nvidia", {}).get(key), ("numerics",),
            "CUDA libraries (cuBLAS/cuDNN kernels differ between versions)")

    ia, ib = _get(a, "import", "modules", "torch"), _get(b, "import", "modules", "torch")
    if ia is not None and ib is not None:
        add("import.torch.cuda_available", ia.get("cuda_available"), ib.get("cuda_available"),
            ("loading", "numerics"), "a GPU on one side only")
        add("import.torch.cudnn", ia.get("cudnn"), ib.get("cudnn"), ("numerics",), "cuDNN kernels")

    oa, ob = _get(a, "probe", "ops"), _get(b, "probe", "ops")
    if isinstance(oa, dict) and isinstance(ob, dict):
        for op in sorted(set(oa) | set(ob)):
            add(f"probe.{op}", oa.get(op), ob.get(op), ("numerics",), "observed: different output bits")

    fa = sorted({f["id"] for f in a.get("findings", []) if f.get("severity") in ("error", "critical")})
    fb = sorted({f["id"] for f in b.get("findings", []) if f.get("severity") in ("error", "critical")})
    add("findings.errors", fa, fb, ("loading",), "environment problems present on one side")
    return out
