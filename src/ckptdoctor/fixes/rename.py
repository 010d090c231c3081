"""``rename`` and ``strip-prefixes``: change state_dict keys, order kept.

Rules (applied in order, each once per key):

* ``"OLD="`` strips the prefix ``OLD`` (``"module.="``), ``"=NEW"`` adds ``NEW``
  to every key, ``"OLD=NEW"`` replaces the prefix;
* ``"re:PATTERN=REPL"`` is :func:`re.sub` on the whole key (``REPL`` may use ``\\1``).

``Rename(mapping={old: new})`` renames exact keys (what ``match`` uses).
The ``_metadata`` module prefixes are renamed with the same rules, so
``load_state_dict`` still finds each module's version.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ckptdoctor.fixes.plan import Change, FixError, Step, Tree
from ckptdoctor.fixes.values import find_state_dict
from ckptdoctor.pickle.objects import OrderedDictValue

WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile


@dataclass(frozen=True)
class RenameRule:
    text: str
    fn: Callable[[str], str]

    @classmethod
    def parse(cls, text: str) -> RenameRule:
        if "=" not in text:
            raise FixError(f"rename rule {text!r} has no '=' (use 'OLD=NEW', 'OLD=' or 're:PATTERN=REPL')")
        if text.startswith("re:"):
            pattern, _, repl = text[3:].partition("=")
            try:
                rx = re.compile(pattern)
                rx.sub(repl, "")  # validates group references in repl
            except re.error as e:
                raise FixError(f"rename rule {text!r}: bad regular expression: {e}") from None
            return cls(text, lambda k, rx=rx, repl=repl: rx.sub(repl, k))
        old, _, new = text.partition("=")
        if not old:
            return cls(text, lambda k, new=new: new + k)
        return cls(text, lambda k, old=old, new=new: new + k[len(old):] if k.startswith(old) else k)


def _target(tree: Tree) -> tuple[dict, list[Any]]:
    found = find_state_dict(tree.root)
    if found is None:
        raise FixError("no state_dict to rename keys in (a whole model or TorchScript file? add --extract-state-dict)")
    return found


def _replace(tree: Tree, path: list[Any], new: dict) -> None:
    if not path:
        tree.root = new
        return
    parent = tree.root
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = new


def rename_dict(sd: dict, fn: Callable[[str], str], step: Step, where: str) -> tuple[dict, list[Change]]:
    """A copy of ``sd`` with every key passed through ``fn`` (order, type and ``_metadata`` kept)."""
    out: dict = OrderedDictValue() if isinstance(sd, OrderedDictValue) else {}
    changes: list[Change] = []
    origin: dict[str, str] = {}
    for k, v in sd.items():
        nk = fn(k) if isinstance(k, str) else k
        if nk in out:
            raise FixError(f"renaming would give two entries the key {nk!r} ({origin[nk]!r} and {k!r})")
        out[nk] = v
        origin[nk] = k
        if nk != k:
            changes.append(step.change("renamed", f"{where}{k}", nk))
    if isinstance(sd, OrderedDictValue):
        out.attrs.update(sd.attrs)
        meta = sd.attrs.get("_metadata")
        if isinstance(meta, dict):
            new_meta = OrderedDictValue()
            for mk, mv in meta.items():
                if not isinstance(mk, str):
                    new_meta[mk] = mv
                    continue
                nk = fn(mk + ".") if mk else fn("")
                new_meta[nk[:-1] if nk.endswith(".") else nk] = mv
            out.attrs["_metadata"] = new_meta
    return out, changes


class Rename(Step):
    id = "rename"

    def __init__(self, rules: list[str] | None = None, mapping: dict[str, str] | None = None) -> None:
        self.rules = [RenameRule.parse(r) for r in rules or []]
        self.mapping = dict(mapping or {})
        if not self.rules and not self.mapping:
            raise FixError("rename needs at least one rule (e.g. --rename 'module.=')")

    def describe(self) -> str:
        parts = [repr(r.text) for r in self.rules]
        if self.mapping:
            parts.append(f"{len(self.mapping)} explicit key(s)")
        return "rename state_dict keys: " + ", ".join(parts)

    def _fn(self, k: str) -> str:
        if k in self.mapping:
            return self.mapping[k]
        for r in self.rules:
            k = r.fn(k)
        return k

    def apply(self, tree: Tree) -> list[Change]:
        sd, path = _target(tree)
        where = "".join(f"{p}." for p in path)
        if self.mapping:
            missing = [k for k in self.mapping if k not in sd]
            if missing:
                raise FixError(f"rename: no key {missing[0]!r} in the state_dict")
        new, changes = rename_dict(sd, self._fn, self, where)
        _replace(tree, path, new)
        return changes


class StripPrefixes(Step):
    """Strip ``module.`` / ``_orig_mod.`` (stacked in any order) while *every* key has one."""

    id = "strip-prefixes"

    def describe(self) -> str:
        return "strip wrapper prefixes every key shares (" + ", ".join(WRAPPER_PREFIXES) + "; stacked)"

    def apply(self, tree: Tree) -> list[Change]:
        sd, path = _target(tree)
        keys = [k for k in sd if isinstance(k, str)]
        stripped: list[str] = []
        while keys:
            p = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in keys)), None)
            if p is None:
                break
            stripped.append(p)
            keys = [k[len(p):] for k in keys]
        if not stripped:
            return []
        total = "".join(stripped)
        new, changes = rename_dict(sd, lambda k: k[len(total):] if k.startswith(total) else k, self,
                                   "".join(f"{p}." for p in path))
        _replace(tree, path, new)
        return changes


def strip_prefixes_applies(root: Any) -> bool:
    found = find_state_dict(root)
    if found is None:
        return False
    keys = [k for k in found[0] if isinstance(k, str)]
    return bool(keys) and any(all(k.startswith(p) for k in keys) for p in WRAPPER_PREFIXES)
