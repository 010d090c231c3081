"""Classify one ``module.name`` a pickle imports, from ``data/security_globals.json``.

Five categories (docs/security.md): ``tensor-rebuild``, ``benign-data``,
``needs-allowlist`` (benign, but torch's ``weights_only`` unpickler refuses it),
``unknown`` and ``dangerous``. Names are looked at the way CPython's unpickler
resolves them: Python 2 aliases (``__builtin__``, ``copy_reg``, ``commands`` ...)
are mapped with the stdlib's own ``_compat_pickle`` tables, and dotted names
(``'serialization.os.system'``, protocol >= 4 attribute paths) are followed
component by component. The worst reading wins.
"""

from __future__ import annotations

import _compat_pickle
import json
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from importlib import resources
from typing import Any

CATEGORIES = ("tensor-rebuild", "benign-data", "needs-allowlist", "unknown", "dangerous")
_RANK = {c: i for i, c in enumerate(CATEGORIES)}

PY2_EXTRA = {"__builtin__": "builtins", "__builtins__": "builtins", "exceptions": "builtins",
             "copy_reg": "copyreg", "cPickle": "pickle"}
PY2_ONLY = {"commands", "popen2", "cPickle", "urllib2", "httplib", "SocketServer", "xmlrpclib", "cStringIO",
            "StringIO", "exceptions", "__builtin__", "copy_reg", "thread", "dummy_thread", "anydbm", "whichdb"}


@dataclass(frozen=True, slots=True)
class Classification:
    category: str  # one of CATEGORIES
    qualname: str  # canonical module.name the verdict is about
    what: str  # what the callable does, in a few words
    kind: str | None = None  # for dangerous: process, code, import, attribute, file, network, ...
    matched: str = ""  # the table entry or rule that decided
    weights_only: bool = False  # torch's weights_only unpickler (torch 2.13) accepts this global
    only_when_called: bool = False  # dangerous only if called (unlisted stdlib callables)

    @property
    def rank(self) -> int:
        return _RANK[self.category]

    @property
    def kind_label(self) -> str:
        return str(_table()["kinds"].get(self.kind or "", self.kind or self.category))


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    raw = resources.files("ckptdoctor.data").joinpath("security_globals.json").read_text("utf-8")
    t = json.loads(raw)
    t["_wo"] = frozenset(t["weights_only_allowed"])
    t["_modattrs"] = frozenset(t["dangerous_module_attributes"])
    split: dict[str, tuple[dict[str, Any], list[tuple[str, Any]]]] = {}
    for key in ("dangerous", "tensor_rebuild", "benign"):
        exact = {k: v for k, v in t[key].items() if "*" not in k}
        pats = [(k, v) for k, v in t[key].items() if "*" in k]
        split[key] = (exact, pats)
    t["_split"] = split
    return t


def table() -> dict[str, Any]:
    """The parsed data table (read-only use)."""
    return _table()


def _stdlib(top: str) -> bool:
    return top in sys.stdlib_module_names or top in PY2_ONLY or top in _compat_pickle.IMPORT_MAPPING


def _pattern_match(pat: str, qual: str) -> int:
    """Specificity of ``pat`` matching ``qual`` (0 = no match)."""
    if pat.endswith(".*") and "*" not in pat[:-2]:
        base = pat[:-2]
        return len(base) if qual == base or qual.startswith(base + ".") else 0
    return len(pat.replace("*", "")) if fnmatchcase(qual, pat) else 0


def _lookup(qual: str) -> tuple[str, str, Any] | None:
    """(table key, matched entry, value) for the best table match of ``qual``."""
    split = _table()["_split"]
    for key in ("dangerous", "tensor_rebuild", "benign"):
        exact, _ = split[key]
        if qual in exact:
            return key, qual, exact[qual]
    best: tuple[int, int, str, str, Any] | None = None
    for prio, key in enumerate(("dangerous", "tensor_rebuild", "benign")):
        for pat, val in split[key][1]:
            n = _pattern_match(pat, qual)
            if n and (best is None or n > best[0] or (n == best[0] and prio < best[1])):
                best = (n, prio, key, pat, val)
    if best is None:
        return None
    return best[2], best[3], best[4]


def _from_table(hit: tuple[str, str, Any], qual: str) -> Classification:
    key, entry, val = hit
    wo = qual in _table()["_wo"]
    if key == "dangerous":
        kind, what = val
        return Classification("dangerous", qual, what, kind, entry, wo)
    if key == "tensor_rebuild":
        return Classification("tensor-rebuild", qual, str(val), None, entry, wo)
    return Classification("benign-data" if wo else "needs-allowlist", qual, str(val), None, entry, wo)


def _edit1(a: str, b: str) -> bool:
    """True if ``a`` and ``b`` differ by exactly one insertion, deletion or substitution."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    if len(a) > len(b):
        a, b = b, a
    return any(b[:i] + b[i + 1:] == a for i in range(len(b)))


def _canonical_pairs(module: str, name: str) -> list[tuple[str, str]]:
    """How CPython resolves the name: Python 2 aliases are mapped (fix_imports) and never imported as is."""
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped:
        return [mapped]
    m2 = _compat_pickle.IMPORT_MAPPING.get(module) or PY2_EXTRA.get(module)
    if m2:
        return [(m2, name)]
    return [(module, name)]


@lru_cache(maxsize=65536)
def classify(module: str, name: str) -> Classification:
    """Classify ``module.name`` as the unpickler would resolve it (Python 2 aliases mapped)."""
    (m, n), = _canonical_pairs(module, name)
    c = _classify_one(m, n)
    if (m, n) != (module, name):
        return Classification(c.category, c.qualname, c.what, c.kind, f"{module}.{name} -> {c.qualname} ({c.matched})",
                              c.weights_only, c.only_when_called)
    return c


def _bad_text(s: str) -> bool:
    return not s or not s.isascii() or any(c in s for c in " \t\r\n\x00/\\") or s.startswith(".") or ".." in s


def _classify_one(module: str, name: str) -> Classification:
    t = _table()
    qual = f"{module}.{name}"
    if _bad_text(module) or _bad_text(name):
        return Classification("dangerous", qual, "a module or attribute name that no Python writer produces "
                              "(non-ASCII, blank or path-like: a look-alike of a real module)", "lookalike",
                              "malformed-name")
    mparts = module.split(".")
    nparts = name.split(".")
    top = mparts[0]
    # import side effects: importing the module already does something
    for mod, what in t["import_side_effects"].items():
        if mod == "*.__main__":
            if "__main__" in mparts[1:]:
                return Classification("dangerous", qual, what, "import-side-effect", mod)
        elif module == mod or module.startswith(mod + "."):
            return Classification("dangerous", qual, what, "import-side-effect", mod)
    hit = _lookup(qual)
    if hit is not None and hit[1] == qual:  # curated exact entries first
        return _from_table(hit, qual)
    # attribute paths: dunders, modules fetched as attributes, traversal into dangerous names
    dunders = [p for p in nparts if len(p) > 4 and p.startswith("__") and p.endswith("__")]
    if dunders and not (len(nparts) == 1 and name in ("__newobj__", "__newobj_ex__") and module == "copyreg"):
        return Classification("dangerous", qual, f"reaches the interpreter's internals through {dunders[0]} "
                              "(namespaces, code and classes of loaded modules)", "traversal", "dunder-attribute")
    if len(nparts) > 1:
        for i, part in enumerate(nparts[:-1]):
            if part in t["_modattrs"]:
                rest = ".".join(nparts[i + 1:])
                inner = classify(part, rest)
                what = f"reaches {part}.{rest} through the attributes of {module}"
                if inner.category == "dangerous":
                    what += f" ({inner.what})"
                return Classification("dangerous", inner.qualname, what, inner.kind if inner.category == "dangerous"
                                      else "traversal", "module-attribute")
    elif hit is None and name in t["_modattrs"] and name != module:
        return Classification("dangerous", qual, f"fetches {name!r} as an attribute of {module} (a dangerous "
                              "module or builtin reached indirectly)", "traversal", "module-attribute")
    if len(nparts) > 1 and nparts[-1] in t["_modattrs"]:
        return Classification("dangerous", qual, f"fetches {nparts[-1]!r} through the attributes of {module} "
                              "(a dangerous module or builtin reached indirectly)", "traversal", "module-attribute")
    if hit is not None:
        return _from_table(hit, qual)
    if len(nparts) > 1:
        owner = classify(module, nparts[0])
        if owner.category in ("tensor-rebuild", "benign-data", "needs-allowlist"):
            return Classification("unknown", qual, f"the attribute {'.'.join(nparts[1:])} of {owner.qualname} "
                                  "(not a checkpoint type)", None, "attribute-of-known")
    if top == "__main__":
        return Classification("unknown", qual, "a class or function of the script that saved the file "
                              "(its code is not in the file)", None, "main")
    for prefix, lib in t["library_classes"].items():
        if module.startswith(prefix) or module == prefix[:-1]:
            if len(nparts) == 1 and name[:1].isupper():
                return Classification("needs-allowlist", qual, f"a {lib} class", None, prefix + "<Class>")
            break
    if _stdlib(top):
        return Classification("dangerous", qual, "an unlisted standard-library callable (the standard library "
                              "can run processes, touch files and the network in places no list enumerates)",
                              "stdlib", "stdlib-unlisted", only_when_called=True)
    low = top.lower()
    for target in t["lookalike_targets"]:
        if top != target and (low == target or (len(top) >= 4 and _edit1(low, target))):
            return Classification("dangerous", qual, f"module {top!r} is named like {target!r} but is not it "
                                  "(a look-alike package installed to be imported from here)", "lookalike",
                                  f"lookalike:{target}")
    return Classification("unknown", qual, "not a type any checkpoint library writes; loading imports "
                          f"{module} and runs its code", None, "unknown")


def call_arg_positions(qualname: str) -> list[int]:
    return list(_table()["call_args"].get(qualname, ()))


def deserialiser_arg(qualname: str) -> int | None:
    v = _table()["deserialisers"].get(qualname)
    return None if v is None else int(v)


def decoder(qualname: str) -> str | None:
    return _table()["decoders"].get(qualname)
