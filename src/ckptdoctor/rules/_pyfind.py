"""Find where ``module.name`` would come from, without importing anything: files on a path, parsed with ast."""

from __future__ import annotations

import ast
import os
import sys
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Located:
    found: bool
    path: str | None = None  # the file (or package directory)
    missing: str | None = None  # the first module (dotted) that is not there
    kind: str = "file"  # file | package | namespace | extension | builtin


def find_module(module: str, paths: tuple[str, ...]) -> Located:
    """Where ``import module`` would find it on ``paths`` (package/namespace/file/extension)."""
    parts = module.split(".")
    if parts[0] in sys.builtin_module_names:
        return Located(True, None, kind="builtin")
    search = list(paths)
    path = None
    for i, part in enumerate(parts):
        found = None
        for d in search:
            cand_pkg = os.path.join(d, part)
            if os.path.isfile(os.path.join(cand_pkg, "__init__.py")):
                found = Located(True, os.path.join(cand_pkg, "__init__.py"), kind="package")
                search = [cand_pkg]
                break
            if os.path.isfile(cand_pkg + ".py"):
                found = Located(True, cand_pkg + ".py", kind="file")
                search = []
                break
            ext = _extension(d, part)
            if ext:
                found = Located(True, ext, kind="extension")
                search = []
                break
            if os.path.isdir(cand_pkg) and found is None:
                found = Located(True, cand_pkg, kind="namespace")
                search = [cand_pkg]
                break
        if found is None:
            return Located(False, path, missing=".".join(parts[: i + 1]))
        path = found.path
        last = found
    return last


def _extension(d: str, part: str) -> str | None:
    try:
        for f in os.listdir(d):
            if f.startswith(part + ".") and f.endswith((".so", ".pyd")):
                return os.path.join(d, f)
    except OSError:
        return None
    return None


def defined_names(path: str) -> frozenset[str] | None:
    """Top-level names a .py file defines or imports; None when it cannot be known (star import, __getattr__)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _defined_names(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=256)
def _defined_names(path: str, _mtime: int, _size: int) -> frozenset[str] | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return None
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> bool:
        for node in body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    for n in ast.walk(t):
                        if isinstance(n, ast.Name):
                            names.add(n.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    if a.name == "*":
                        return False
                    names.add((a.asname or a.name).split(".")[0])
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                if not visit(node.body):
                    return False
                for extra in (getattr(node, "orelse", []), getattr(node, "finalbody", [])):
                    if not visit(extra):
                        return False
                for h in getattr(node, "handlers", []):
                    if not visit(h.body):
                        return False
        return True

    if not visit(tree.body) or "__getattr__" in names:
        return None
    return frozenset(names)


def search_path(extra: tuple[str, ...]) -> tuple[str, ...]:
    """The target's import path: the user's directories first, then this interpreter's sys.path."""
    base = [p for p in sys.path if p and os.path.isdir(p)]
    return tuple(os.path.abspath(p) for p in extra) + tuple(base)
