"""Optimizer facts per torch release, from ``data/optim_versions.json``.

The table was read from ``torch/optim/*.py`` of each release's wheel (see
``tests/match/tools/gen_optim_versions.py``): which ``param_groups`` keys
each optimizer's constructor puts in, which ones ``__setstate__`` fills in
when a loaded group lacks them, which ones ``step()`` reads, and whether
``state['step']`` is an int or a tensor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from packaging.version import Version

# Keys that are not optimizer options: params, names, and what lr schedulers / trainers add.
NOT_OPTIONS = frozenset({"params", "param_names", "initial_lr", "base_lr", "max_lr", "min_lr", "base_momentum",
                         "max_momentum", "name", "group_name", "lr_scale", "weight_decay_scale"})


@cache
def table() -> dict[str, Any]:
    with resources.files("ckptdoctor").joinpath("data/optim_versions.json").open() as f:
        return json.load(f)


def releases() -> list[Version]:
    return [Version(v) for v in table()["releases"]]


def in_ranges(v: Version, ranges: list[list[str | None]]) -> bool:
    """Is ``v`` inside one of the ``[first, last]`` ranges (of sampled releases; a release up to the next
    sampled one counts as the last)?"""
    rel = releases()
    for first, last in ranges:
        if v < Version(first):
            continue
        if last is None:
            return True
        nxt = next((r for r in rel if r > Version(last)), None)
        if v <= Version(last) or (nxt is not None and v < nxt) or (nxt is None):
            return True
    return False


def since(ranges: list[list[str | None]]) -> str | None:
    return ranges[0][0] if ranges else None


@dataclass(frozen=True)
class Facts:
    """What one optimizer class in one torch release does with a saved state."""

    name: str
    version: Version
    known: frozenset[str]  # group keys the constructor puts in
    filled: frozenset[str]  # keys __setstate__ fills in when absent
    read: frozenset[str]  # keys step() reads as group[...]
    defaults: dict[str, Any]
    step: str | None  # "int" | "tensor" | None (no step)
    converts_step: bool  # __setstate__ turns a number step into a tensor
    present: bool


def names() -> list[str]:
    return list(table()["optimizers"])


def facts(name: str, v: Version) -> Facts:
    e = table()["optimizers"][name]
    gk = e["group_keys"]
    known = frozenset(k for k, f in gk.items() if in_ranges(v, f["in_defaults"]))
    filled = frozenset(k for k, f in gk.items() if in_ranges(v, f["filled_by_setstate"]))
    read = frozenset(k for k, f in gk.items() if in_ranges(v, f["read_by_step"]))
    step = "tensor" if in_ranges(v, e["step"]["tensor"]) else "int" if in_ranges(v, e["step"]["int"]) else None
    return Facts(name, v, known, filled, read, {k: f["default"] for k, f in gk.items()}, step,
                 in_ranges(v, e["step"]["setstate_makes_tensor"]), in_ranges(v, e["present"]))


def ever_keys(name: str) -> frozenset[str]:
    return frozenset(table()["optimizers"][name]["group_keys"])


def always_keys(name: str) -> frozenset[str]:
    """Keys the constructor has put in since the class exists (any saved group has them)."""
    e = table()["optimizers"][name]
    first = since(e["present"])
    return frozenset(k for k, f in e["group_keys"].items() if since(f["in_defaults"]) == first)


def key_since(name: str, key: str) -> str | None:
    f = table()["optimizers"][name]["group_keys"].get(key)
    return since(f["in_defaults"]) if f else None


def step_tensor_since(name: str) -> str | None:
    return since(table()["optimizers"][name]["step"]["tensor"])


def identify(group_keys: set[str]) -> list[str]:
    """Optimizer classes whose saved param_groups have exactly these option keys (best first)."""
    opts = set(group_keys) - NOT_OPTIONS
    found = []
    for n in names():
        if opts <= ever_keys(n) and always_keys(n) <= opts:
            found.append((len(ever_keys(n) - opts), n))
    found.sort()
    return [n for _, n in found]


def saved_by(name: str, group_keys: set[str]) -> str | None:
    """The first release whose constructor puts in every option key the group has."""
    opts = set(group_keys) - NOT_OPTIONS
    for v in releases():
        f = facts(name, v)
        if f.present and opts <= f.known:
            return str(v)
    return None


def step_cast_exempt_since() -> str | None:
    """torch >= this keeps state['step'] out of load_state_dict's cast to the parameter dtype (#74424)."""
    return since(table()["base"]["load_keeps_step_dtype"])
