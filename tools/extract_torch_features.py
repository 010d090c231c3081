#!/usr/bin/env python3
"""Build src/ckptdoctor/data/torch_features.json from the sources of every torch release (parsed, never imported).

Usage (sources laid out as for tools/extract_allowlists.py, plus the stubs and headers)::

    (cd /tmp/tw/src/1.6.0 && unzip -qo torch-1.6.0-*.whl 'torch/*.py' 'torch/*/*.py' 'torch/*/*/*.py' \
        'torch/*/*/*/*.py' 'torch/__init__.pyi' 'torch/_C/__init__.pyi' 'torch/include/caffe2/serialize/*.h' \
        'torch/include/torch/csrc/jit/serialization/*.h')
    python tools/extract_torch_features.py /tmp/tw/src src/ckptdoctor/data/torch_features.json

Every entry is ``[first, last]``: the first and the last release (``X.Y``) that has it, ``last`` null
while the newest release read still has it. Tables:

* ``dtypes`` (``<name>: dtype`` in the ``torch/_C/__init__.pyi`` / ``torch/__init__.pyi`` stubs, or any
  ``torch.<name>`` use in the release's .py files: 2.1 has float8 without stubs),
  ``layouts`` (``<name>: layout``), ``storage_classes`` (``class XStorage`` in torch/__init__.py,
  torch/storage.py), ``rebuild_functions`` (``def _rebuild_*`` in torch/_utils.py, torch/_tensor.py,
  torch/tensor.py);
* ``modules`` and ``globals``: every module under torch/nn, torch/optim, torch/amp, torch/cuda/amp and
  the serialization helpers, and every name defined or imported at its top level (what unpickling
  ``module.name`` finds);
* ``nn_modules``: for each class in torch/nn/modules, its bases, the attributes ``__init__`` sets on
  ``self`` and the ones ``__setstate__`` fills in for objects pickled without them;
* ``container``: per release, whether ``torch.load`` reads zip files, the highest zip ``version``
  record it reads (``kMaxSupportedFileFormatVersion`` in caffe2/serialize headers), the one
  ``torch.save`` writes, and whether ``torch.jit.load`` still reads the model.json (1.0-1.2) archives
  (``import_legacy`` shipped).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

GLOBAL_ROOTS = ("torch/nn", "torch/optim", "torch/amp", "torch/cuda/amp")
GLOBAL_FILES = ("torch/_utils.py", "torch/_tensor.py", "torch/tensor.py", "torch/storage.py", "torch/serialization.py",
                "torch/types.py", "torch/functional.py")


STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "LongStorage": "int64",
    "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8",
    "BoolStorage": "bool", "BFloat16Storage": "bfloat16",
}


def releases(src: Path) -> list[tuple[str, Path]]:
    out = []
    for d in src.iterdir():
        if (d / "torch/__init__.py").exists():
            out.append((".".join(d.name.split(".")[:2]), d))
    return sorted(out, key=lambda x: tuple(int(p) for p in x[0].split(".")))


def parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(errors="replace"))
    except (SyntaxError, ValueError):
        return None


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
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
                    if a.name != "*":
                        names.add((a.asname or a.name).split(".")[0])
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
    visit(tree.body)
    return names


def self_attrs(fn: ast.FunctionDef) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(fn):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign) or (isinstance(node, ast.AnnAssign) and node.value is not None):
            targets = [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self":
                    out.add(n.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__setattr__":
            for a in node.args[:2]:
                if isinstance(a, ast.Constant) and isinstance(a.value, str):
                    out.add(a.value)
                    break
    return out


def used_attrs(cls: ast.ClassDef) -> set[str]:
    """``self.X`` read in the methods other than __init__/__setstate__ (what calling the module needs)."""
    out: set[str] = set()
    for fn in cls.body:
        if isinstance(fn, ast.FunctionDef) and fn.name not in ("__init__", "__setstate__", "__repr__"):
            for n in ast.walk(fn):
                if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
                        and isinstance(n.ctx, ast.Load)):
                    out.add(n.attr)
    return out


def setstate_defaults(fn: ast.FunctionDef) -> set[str]:
    out = self_attrs(fn)
    for node in ast.walk(fn):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            out.add(node.value)
    return out


def nn_classes(root: Path) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    mod_dir = root / "torch/nn/modules"
    local: dict[str, str] = {}
    trees = []
    for path in sorted(mod_dir.glob("*.py")):
        tree = parse(path)
        if tree is None:
            continue
        mod = module_name(root, path)
        trees.append((mod, tree))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                local.setdefault(node.name, f"{mod}.{node.name}")
    for mod, tree in trees:
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            bases = []
            for b in node.bases:
                name = b.attr if isinstance(b, ast.Attribute) else b.id if isinstance(b, ast.Name) else None
                if isinstance(b, ast.Subscript):  # Generic[...] style
                    inner = b.value
                    name = inner.id if isinstance(inner, ast.Name) else None
                if name in local:
                    bases.append(local[name])
            init = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
            sset = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__setstate__"), None)
            out[f"{mod}.{node.name}"] = {
                "bases": bases,
                "init": sorted(self_attrs(init)) if init else [],
                "setstate": sorted(setstate_defaults(sset)) if sset else [],
                "has_setstate": sset is not None,
                "used": sorted(used_attrs(node)),
            }
    return out


def stubs(root: Path) -> str:
    text = ""
    for p in ("torch/_C/__init__.pyi", "torch/__init__.pyi"):
        f = root / p
        if f.exists():
            text += f.read_text(errors="replace")
    return text


def header_int(root: Path, name: str) -> int | None:
    for h in (root / "torch/include/caffe2/serialize").glob("*.h"):
        m = re.search(name + r"\s*=\s*(0x[0-9A-Fa-f]+|\d+)L?;", h.read_text(errors="replace"))
        if m:
            return int(m.group(1), 0)
    return None


def main(argv: list[str]) -> int:
    src, out_path = Path(argv[1]), Path(argv[2])
    rels = releases(src)
    present: dict[str, dict[str, list[str]]] = {k: {} for k in
                                                ("dtypes", "layouts", "storage_classes", "rebuild_functions",
                                                 "modules", "globals")}
    nn_attr: dict[str, dict[str, dict[str, list[str]]]] = {}
    nn_bases: dict[str, list[str]] = {}
    nn_has_setstate: dict[str, list[str]] = {}
    container: dict[str, dict[str, object]] = {}

    def mark(kind: str, key: str, rel: str) -> None:
        present[kind].setdefault(key, []).append(rel)

    for rel, root in rels:
        text = stubs(root)
        if not re.search(r"^\w+\s*:\s*dtype\b", text, re.M):  # no stubs (1.0, 1.1): the storage classes' dtypes
            init = (root / "torch/__init__.py").read_text(errors="replace")
            for cls, dt in STORAGE_DTYPES.items():
                if re.search(rf"^class {cls}\b", init, re.M):
                    mark("dtypes", dt, rel)
        for m in re.finditer(r"^(\w+)\s*:\s*dtype\b", text, re.M):
            mark("dtypes", m.group(1), rel)
        for m in re.finditer(r"^(\w+)\s*:\s*layout\b", text, re.M):
            mark("layouts", m.group(1), rel)
        for f in ("torch/__init__.py", "torch/storage.py"):
            p = root / f
            if p.exists():
                for m in re.finditer(r"^class (_?\w*Storage)\b", p.read_text(errors="replace"), re.M):
                    mark("storage_classes", m.group(1), rel)
        for f, mod in (("torch/_utils.py", "torch._utils"), ("torch/_tensor.py", "torch._tensor"),
                       ("torch/tensor.py", "torch.tensor")):
            p = root / f
            if p.exists():
                for m in re.finditer(r"^def (_rebuild_\w+)", p.read_text(errors="replace"), re.M):
                    mark("rebuild_functions", f"{mod}.{m.group(1)}", rel)
        files = [root / f for f in GLOBAL_FILES if (root / f).exists()]
        for r in GLOBAL_ROOTS:
            files += sorted((root / r).rglob("*.py")) if (root / r).exists() else []
        for path in files:
            tree = parse(path)
            if tree is None:
                continue
            mod = module_name(root, path)
            mark("modules", mod, rel)
            for n in top_level_names(tree):
                mark("globals", f"{mod}.{n}", rel)
        for cls, info in nn_classes(root).items():
            nn_bases[cls] = info["bases"]  # newest wins
            if info["has_setstate"]:
                nn_has_setstate.setdefault(cls, []).append(rel)
            attrs = nn_attr.setdefault(cls, {})
            for a in info["init"]:
                attrs.setdefault(a, {}).setdefault("init", []).append(rel)
            for a in info["setstate"]:
                attrs.setdefault(a, {}).setdefault("setstate", []).append(rel)
            for a in info["used"]:
                attrs.setdefault(a, {}).setdefault("used", []).append(rel)
        jit_dir = root / "torch/include/torch/csrc/jit/serialization"
        container[rel] = {
            "torch_load_zip": bool(re.search(r"_load\(\s*opened_zipfile", (root / "torch/serialization.py").read_text())),
            "zip_max_version": header_int(root, "kMaxSupportedFileFormatVersion"),
            "zip_written_version": header_int(root, "kProducedFileFormatVersion"),
            # model.json import lived in import.cpp up to 1.4 and in import_legacy.{h,cpp} from 1.5
            "jit_legacy_json": (tuple(int(x) for x in rel.split(".")) < (1, 5)
                                or (jit_dir / "import_legacy.h").exists()),
        }
    # dtypes the stubs miss (2.1 ships float8 without stubs): any `torch.<dtype>` use in the release's .py files
    known = set(present["dtypes"])
    pattern = re.compile(r"\btorch\.(" + "|".join(sorted(known, key=len, reverse=True)) + r")\b")
    for rel, root in rels:
        seen: set[str] = set()
        for path in (root / "torch").rglob("*.py"):
            seen.update(pattern.findall(path.read_text(errors="replace")))
        for name in seen - {d for d, rs in present["dtypes"].items() if rel in rs}:
            mark("dtypes", name, rel)
    order = [r for r, _ in rels]
    newest = order[-1]

    def span(rs: list[str]) -> list[str | None]:
        rs = sorted(set(rs), key=order.index)
        return [rs[0], None if rs[-1] == newest else rs[-1]]

    data: dict[str, object] = {
        "releases": order,
        "source": "tools/extract_torch_features.py over the torch X.Y.0 wheels' .py/.pyi/.h files",
        "container": container,
    }
    for kind, table in present.items():
        data[kind] = {k: span(v) for k, v in sorted(table.items())}
    nn_out: dict[str, object] = {}
    init_anywhere = {a for d in nn_attr.values() for a, x in d.items() if "init" in x}
    used_anywhere = {a for d in nn_attr.values() for a, x in d.items() if "used" in x} & init_anywhere
    for cls in sorted(nn_attr):
        nn_out[cls] = {
            "bases": nn_bases.get(cls, []),
            "setstate": span(nn_has_setstate[cls]) if cls in nn_has_setstate else None,
            "attrs": {a: {k: span(v) for k, v in sorted(d.items())} for a, d in sorted(nn_attr[cls].items())
                      if "init" in d or a in used_anywhere},
        }
    data["nn_modules"] = nn_out
    out_path.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{len(order)} releases; " + ", ".join(f"{k}: {len(v)}" for k, v in present.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
