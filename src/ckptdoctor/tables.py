"""Versioned facts shipped as package data: weights_only allowlists and torch feature tables.

``data/weights_only/<X.Y>.json`` (one per torch release from 1.13, written by
tools/extract_allowlists.py from that release's own source) and
``data/torch_features.json`` (tools/extract_torch_features.py).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from packaging.version import InvalidVersion, Version


def parse_version(v: str) -> Version:
    """``2.6``, ``2.6.0+cu124``, ``2.7.0a0`` -> Version (local part dropped)."""
    try:
        return Version(str(v).split("+", 1)[0])
    except InvalidVersion as e:
        raise ValueError(f"not a version: {v!r}") from e


def release(v: str | Version) -> str:
    """``2.6.1`` -> ``2.6``."""
    ver = v if isinstance(v, Version) else parse_version(v)
    return f"{ver.major}.{ver.minor}"


@lru_cache(maxsize=1)
def weights_only_versions() -> tuple[str, ...]:
    files = resources.files("ckptdoctor.data").joinpath("weights_only").iterdir()
    names = [f.name[:-5] for f in files if f.name.endswith(".json")]
    return tuple(sorted(names, key=Version))


@lru_cache(maxsize=32)
def weights_only_table(torch_version: str) -> dict[str, Any] | None:
    """The allowlist table of the release ``torch_version`` belongs to (newest table for newer releases);
    ``None`` before 1.13 (no ``weights_only``)."""
    v = parse_version(torch_version)
    best = None
    for name in weights_only_versions():
        if Version(name) <= Version(release(v)):
            best = name
    if best is None:
        return None
    text = resources.files("ckptdoctor.data").joinpath("weights_only").joinpath(f"{best}.json").read_text()
    table = json.loads(text)
    table["allowed_set"] = frozenset(table["allowed_globals"])
    table["opcode_set"] = frozenset(table["allowed_opcodes"])
    table["name_map"] = {tuple(k): tuple(v) for k, v in table.get("name_mapping", [])}
    return table


@lru_cache(maxsize=1)
def torch_features() -> dict[str, Any]:
    try:
        text = resources.files("ckptdoctor.data").joinpath("torch_features.json").read_text()
    except FileNotFoundError:
        return {}
    return _loads_without_gc(text)


def _loads_without_gc(text: str) -> Any:
    """json.loads with the cyclic GC paused: decoding creates ~100k objects, and in a process that
    has imported torch every collection they trigger walks torch's whole heap (5 ms -> 90 ms)."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text)
    finally:
        if enabled:
            gc.enable()


def first_version(kind: str, name: str) -> str | None:
    """First torch release that has ``name`` (a dtype, storage class, rebuild function, layout, global)."""
    entry = torch_features().get(kind, {}).get(name)
    if entry is None:
        return None
    return entry[0] if isinstance(entry, list) else entry.get("first")


def span(kind: str, name: str) -> tuple[str | None, str | None] | None:
    """(first, last) release with ``name``; last is None while the newest release still has it."""
    entry = torch_features().get(kind, {}).get(name)
    if entry is None:
        return None
    if isinstance(entry, list):
        return entry[0], (entry[1] if len(entry) > 1 else None)
    return entry.get("first"), entry.get("last")


# Before the oldest release read from source (1.0): facts from docs/formats.md (issue threads, release notes).
PRE_1_0 = {
    ("rebuild_functions", "torch._utils._rebuild_tensor_v2"): "0.4",
    ("rebuild_functions", "torch._utils._rebuild_tensor"): "0.1.11",
    ("rebuild_functions", "torch._utils._rebuild_parameter"): "1.0",
}


def has(kind: str, name: str, torch_version: str) -> bool | None:
    """Does torch ``torch_version`` have ``name``? ``None`` when the tables cannot say."""
    s = span(kind, name)
    if s is None:
        return None
    first, last = s
    v = Version(release(torch_version))
    rels = torch_features().get("releases") or ["1.0"]
    if v < Version(rels[0]):  # older than any source we read
        if first is not None and Version(first) > Version(rels[0]):
            return False
        known = PRE_1_0.get((kind, name))
        return None if known is None else v >= Version(known)
    if first is not None and v < Version(first):
        return False
    return not (last is not None and v > Version(last))
