"""Recognise well-known pretrained weight files by their sha256.

torchvision and torch.hub name files ``<name>-<first 8+ hex of sha256>.pth``;
torch.hub checks that prefix only when it downloads, never for a file already
in the cache. ``identify`` hashes the file and checks both the name's own claim
and ``data/known_weights.csv`` (extracted from torchvision's model sources).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from ckptdoctor.findings import Finding, Fix, Severity

DATA = Path(__file__).resolve().parent / "data" / "known_weights.csv"
CHUNK = 1 << 20
#: the hash part of a hub file name: "-<hex>" (or "_<hex>" in a few quantized files) before the extension
_NAME_HASH = re.compile(r"^(?P<base>.+?)[-_](?P<hex>[0-9a-f]{8,64})$")


@dataclass(frozen=True, slots=True)
class KnownWeights:
    name: str  # weights enum, e.g. ResNet18_Weights.IMAGENET1K_V1
    sha256_prefix: str
    torchvision_first: str
    torchvision_last: str  # "" = still current
    architecture: str
    filename: str
    url: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256_prefix": self.sha256_prefix, "torchvision_first": self.torchvision_first,
                "torchvision_last": self.torchvision_last or None, "architecture": self.architecture,
                "filename": self.filename, "url": self.url}


@lru_cache(maxsize=2)
def load_known(path: str | None = None) -> tuple[KnownWeights, ...]:
    with open(path or DATA, newline="", encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return tuple(KnownWeights(r["name"], r["sha256_prefix"].lower(), r["torchvision_first"],
                                  r["torchvision_last"], r["architecture"], r["filename"], r["url"]) for r in rows)


def known_weights() -> tuple[KnownWeights, ...]:
    """The table in use (tests monkeypatch this)."""
    return load_known()


def sha256_file(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


def name_hash(filename: str) -> tuple[str, str] | None:
    """``("resnet18", "f37072fd")`` from ``resnet18-f37072fd.pth``; None when the name has no hash part."""
    stem = os.path.basename(filename)
    if "." in stem:
        stem = stem.rsplit(".", 1)[0]
    m = _NAME_HASH.match(stem)
    return (m.group("base"), m.group("hex")) if m else None


@dataclass(frozen=True, slots=True)
class Identification:
    path: str
    sha256: str
    size: int
    name_prefix: str | None  # the hash claimed by the file name
    matches: tuple[KnownWeights, ...]  # known entries whose prefix the file's sha256 starts with
    findings: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "name_prefix": self.name_prefix,
                "name_matches_hash": None if self.name_prefix is None else self.sha256.startswith(self.name_prefix),
                "known": [k.to_dict() for k in self.matches], "findings": [f.to_dict() for f in self.findings]}


def _describe(k: KnownWeights) -> str:
    span = f"torchvision {k.torchvision_first}" + (f"-{k.torchvision_last}" if k.torchvision_last else " onwards")
    return f"{k.name} ({k.architecture}, {k.filename}, {span})"


def identify(path: str | os.PathLike[str]) -> Identification:
    p = str(path)
    with open(p, "rb") as f:
        digest = sha256_file(f)
    size = os.path.getsize(p)
    table = known_weights()
    matches = tuple(k for k in table if digest.startswith(k.sha256_prefix))
    base_name = os.path.basename(p)
    nh = name_hash(base_name)
    findings: list[Finding] = []
    by_name = [k for k in table if k.filename == base_name]

    if nh is not None and not digest.startswith(nh[1]):
        date_like = nh[1].isdigit() and not by_name
        if date_like:
            findings.append(Finding(
                "CKD-ID-NAME-NUMBER", Severity.INFO, f"the name ends in '{nh[1]}', which is not this file's hash",
                "The number looks like a date or counter rather than a sha256 prefix; torch.hub would still "
                "treat it as one (check_hash=True would fail).",
                {"name_prefix": nh[1], "sha256": digest},
            ))
        else:
            expected = f" It should be {_describe(by_name[0])}." if by_name else ""
            actual = f" Its content is actually {_describe(matches[0])}." if matches else ""
            findings.append(Finding(
                "CKD-ID-HASH-MISMATCH", Severity.ERROR,
                f"file name promises sha256 {nh[1]}..., the file's sha256 is {digest[:len(nh[1])]}...",
                "The hash in the name is the first hex digits of the sha256 of the file as published. This file "
                "differs: a truncated or corrupted download, a file modified after download, or a different file "
                f"saved under this name. torch.hub never re-checks a file already in its cache.{expected}{actual}",
                {"name_prefix": nh[1], "sha256": digest, "size": size,
                 "expected": by_name[0].to_dict() if by_name else None,
                 "actual": matches[0].to_dict() if matches else None},
                Fix("delete the file and download it again (torch.hub checks the hash on download)",
                    f"curl -L -o {_q(p)} {by_name[0].url}" if by_name else f"rm {_q(p)}",
                    f"torch.hub.load_state_dict_from_url({by_name[0].url!r}, check_hash=True)" if by_name else None),
            ))
    if matches:
        k = matches[0]
        renamed = "" if base_name == k.filename else f" (published as {k.filename})"
        findings.append(Finding(
            "CKD-ID-KNOWN", Severity.INFO, f"known weights: {k.name}{renamed}",
            f"The sha256 matches {_describe(k)}: an unmodified official file.",
            {"known": [m.to_dict() for m in matches], "sha256": digest},
        ))
    elif findings:
        pass  # the name's hash is wrong: already said, nothing more to add
    elif nh is not None:
        base = nh[0]
        same_arch = [k for k in table if name_hash(k.filename) and name_hash(k.filename)[0] == base]  # type: ignore[index]
        if by_name or same_arch:
            refs = by_name or same_arch
            findings.append(Finding(
                "CKD-ID-UNKNOWN-VARIANT", Severity.WARNING,
                f"named like torchvision's {base} weights but not any published file",
                "No torchvision release published a file with this sha256. It is a re-saved, fine-tuned or "
                "modified copy; its numbers may differ from the official weights. Known files for this name: "
                + ", ".join(f"{k.filename} ({k.name})" for k in refs[:4]) + ".",
                {"sha256": digest, "known_for_name": [k.to_dict() for k in refs[:8]]},
            ))
        elif digest.startswith(nh[1]):
            findings.append(Finding(
                "CKD-ID-HASH-OK", Severity.INFO, f"the name's hash {nh[1]} matches the content",
                "Not in ckptdoctor's table of torchvision weights, but the file is intact as named.",
                {"sha256": digest, "name_prefix": nh[1]},
            ))
    else:
        findings.append(Finding(
            "CKD-ID-UNKNOWN", Severity.INFO, "not a known pretrained weights file",
            "Its sha256 is not in ckptdoctor's table of torchvision weights and its name carries no hash.",
            {"sha256": digest},
        ))
    return Identification(p, digest, size, nh[1] if nh else None, matches, tuple(findings))


def _q(s: str) -> str:
    import shlex

    return shlex.quote(s)
