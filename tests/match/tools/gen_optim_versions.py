"""Regenerate src/ckptdoctor/data/optim_versions.json from torch's own optimizer sources.

Not a test. The facts come from ``torch/optim/*.py`` of released wheels:

    pip download torch==X --no-deps --only-binary=:all: --python-version 3.8 \
        --platform macosx_10_9_x86_64 -d dl     # any platform: torch/optim is pure Python
    unzip dl/torch-X-*.whl 'torch/optim/*.py' 'torch/version.py' -d SRC/X

then ``python tests/match/tools/gen_optim_versions.py SRC > src/ckptdoctor/data/optim_versions.json``.
Static analysis only (``ast``): nothing from the wheels is imported or run.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

from packaging.version import Version

OPTIMIZERS = {  # class -> module file
    "SGD": "sgd.py", "Adam": "adam.py", "AdamW": "adamw.py", "RMSprop": "rmsprop.py", "Adagrad": "adagrad.py",
    "Adadelta": "adadelta.py", "Adamax": "adamax.py", "NAdam": "nadam.py", "RAdam": "radam.py",
}


def _lit(node: ast.AST | None):
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return ast.unparse(node)


def _class(tree: ast.Module, name: str) -> ast.ClassDef | None:
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _arg_defaults(fn: ast.FunctionDef) -> dict[str, object]:
    a = fn.args
    out: dict[str, object] = {}
    pos = a.posonlyargs + a.args
    for arg, d in zip(pos[len(pos) - len(a.defaults):], a.defaults, strict=True):
        out[arg.arg] = _lit(d)
    for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        if d is not None:
            out[arg.arg] = _lit(d)
    return out


def _defaults(cls: ast.ClassDef, trees: dict[str, ast.Module]) -> dict[str, object] | None:
    init = _method(cls, "__init__")
    if init is None:
        return None
    argd = _arg_defaults(init)
    for node in ast.walk(init):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "defaults" for t in node.targets):
            v = node.value
            items: list[tuple[str, ast.AST]] = []
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id == "dict":
                items = [(k.arg, k.value) for k in v.keywords if k.arg]
            elif isinstance(v, ast.Dict):
                items = [(_lit(k), x) for k, x in zip(v.keys, v.values, strict=True) if k is not None]
            out: dict[str, object] = {}
            for k, x in items:
                out[str(k)] = argd.get(x.id) if isinstance(x, ast.Name) else _lit(x)
            return out
    # a subclass calling super().__init__(..., key=value): the base's defaults with those values
    for base in cls.bases:
        if isinstance(base, ast.Name):
            for t in trees.values():
                b = _class(t, base.id)
                if b is not None and b is not cls:
                    got = _defaults(b, trees)
                    if got is None:
                        continue
                    for node in ast.walk(init):
                        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                                node.func.attr == "__init__":
                            for k in node.keywords:
                                if k.arg in got:
                                    got[k.arg] = argd.get(k.value.id) if isinstance(k.value, ast.Name) \
                                        else _lit(k.value)
                            for i, x in enumerate(node.args[1:]):
                                key = list(got)[i] if i < len(got) else None
                                if key and isinstance(x, ast.Name):
                                    got[key] = argd.get(x.id)
                    return got
    return None


def _setdefaults(cls: ast.ClassDef) -> dict[str, object]:
    m = _method(cls, "__setstate__")
    out: dict[str, object] = {}
    if m is None:
        return out
    for node in ast.walk(m):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "group" and node.args:
            out[str(_lit(node.args[0]))] = _lit(node.args[1]) if len(node.args) > 1 else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Subscript):
            t = node.targets[0]
            if isinstance(t.value, ast.Name) and t.value.id == "group":
                out[str(_lit(t.slice))] = _lit(node.value)
    return out


def _reads(cls: ast.ClassDef) -> list[str]:
    """Keys a method reads as group['k'] (KeyError if a loaded group lacks them)."""
    keys: set[str] = set()
    for m in cls.body:
        if isinstance(m, ast.FunctionDef) and m.name not in ("__init__", "__setstate__"):
            for node in ast.walk(m):
                if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and \
                        isinstance(node.value, ast.Name) and node.value.id == "group":
                    k = _lit(node.slice)
                    if isinstance(k, str):
                        keys.add(k)
    keys.discard("params")
    return sorted(keys)


STEP_TENSOR = re.compile(r"state\[[\"']step[\"']\]\s*=\s*\(?\s*(torch\.|_get_scalar_dtype|\n\s*torch\.)")
STEP_INT = re.compile(r"state\[[\"']step[\"']\]\s*=\s*0\b")


def _step(text: str, cls: ast.ClassDef | None, source: str) -> str | None:
    seg = ast.get_source_segment(source, cls) if cls is not None else text
    seg = seg or text
    if STEP_TENSOR.search(seg) or re.search(r"state\[[\"']step[\"']\]\s*=\s*\(\s*\n?\s*torch\.", seg):
        return "tensor"
    if STEP_INT.search(seg):
        return "int"
    if "step_is_tensor" in seg or "'step'" in seg or '"step"' in seg:
        # initialisation in a helper (_init_group) of the same file
        if STEP_TENSOR.search(text):
            return "tensor"
        if STEP_INT.search(text):
            return "int"
    return None


def release(src: Path) -> dict:
    optim = src / "torch" / "optim"
    trees: dict[str, ast.Module] = {}
    texts: dict[str, str] = {}
    for f in optim.glob("*.py"):
        texts[f.name] = f.read_text()
        trees[f.name] = ast.parse(texts[f.name])
    out: dict[str, dict] = {}
    for name, fname in OPTIMIZERS.items():
        if fname not in trees:
            continue
        cls = _class(trees[fname], name)
        if cls is None:
            continue
        text = texts[fname]
        sd = _setdefaults(cls)
        # inherited __setstate__ (AdamW(Adam) in torch >= 2.7): the base's setdefaults too
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id != "Optimizer":
                for t in trees.values():
                    b = _class(t, base.id)
                    if b is not None:
                        sd = {**_setdefaults(b), **sd}
        step = _step(text, cls, text)
        if step is None:
            for base in cls.bases:
                if isinstance(base, ast.Name) and base.id != "Optimizer":
                    for fn, t in trees.items():
                        b = _class(t, base.id)
                        if b is not None:
                            step = _step(texts[fn], b, texts[fn])
        ss = _method(cls, "__setstate__")
        seg = (ast.get_source_segment(text, ss) or "") if ss is not None else ""
        converts = "step_is_tensor" in seg or bool(re.search(r"is_tensor\(\s*\w+\[[\"']step[\"']\]", seg))
        reads = set(_reads(cls))
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id != "Optimizer":
                for fn, t in trees.items():
                    b = _class(t, base.id)
                    if b is not None:
                        reads |= set(_reads(b))
                        bss = _method(b, "__setstate__")
                        bseg = (ast.get_source_segment(texts[fn], bss) or "") if bss is not None else ""
                        if "super().__setstate__" in seg or "super(" in seg:
                            converts = converts or "step_is_tensor" in bseg or bool(
                                re.search(r"is_tensor\(\s*\w+\[[\"']step[\"']\]", bseg))
        out[name] = {
            "defaults": _defaults(cls, trees),
            "setstate_defaults": sd,
            "reads": sorted(reads),
            "step": step,
            "setstate_tensor_step": converts,
        }
    base = texts.get("optimizer.py", "")
    return {
        "optimizers": out,
        "load_keeps_step_dtype": bool(re.search(r"key\s*[!=]=\s*[\"']step[\"']", base)),
        "state_keyed_by_index": "param_mappings" in base or "start_index" in base,
        "param_names": "param_names" in base,
    }


def _ranges(present: list[bool], versions: list[str]) -> list[list[str | None]]:
    """[[first, last], ...] releases (of the sampled ones) where a fact holds; last None = still true."""
    out: list[list[str | None]] = []
    start = None
    for v, p in zip(versions, present, strict=True):
        if p and start is None:
            start = v
        if not p and start is not None:
            out.append([start, prev])  # noqa: F821 - prev set below before use
            start = None
        prev = v  # noqa: F841
    if start is not None:
        out.append([start, None])
    return out


def main(root: str) -> None:
    srcs = sorted((p for p in Path(root).iterdir() if (p / "torch" / "optim").is_dir()), key=lambda p: Version(p.name))
    versions = [p.name for p in srcs]
    rel = {p.name: release(p) for p in srcs}
    wheels = {}
    got = Path(root) / "got.txt"
    if got.exists():
        for line in got.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1] != "FAILED":
                wheels[parts[0]] = parts[1]
    table: dict = {
        "about": ("Optimizer state facts per torch release, read from torch/optim/*.py of each release's wheel "
                  "(static analysis, tests/match/tools/gen_optim_versions.py). Ranges are [first, last] of the "
                  "sampled releases; last null = still true in the newest sampled release."),
        "releases": versions,
        "sources": {"files": "torch/optim/<adam,adamw,sgd,...>.py and torch/optim/optimizer.py of each wheel",
                    "wheels": {v: wheels.get(v, f"torch=={v} (installed)") for v in versions}},
        "optimizers": {},
        "base": {},
    }
    for key in ("load_keeps_step_dtype", "state_keyed_by_index", "param_names"):
        table["base"][key] = _ranges([rel[v][key] for v in versions], versions)
    names = sorted({n for r in rel.values() for n in r["optimizers"]}, key=list(OPTIMIZERS).index)
    for n in names:
        per = [rel[v]["optimizers"].get(n) for v in versions]
        keys: list[str] = []
        for p in per:
            for k in (p or {}).get("defaults") or {}:
                if k not in keys:
                    keys.append(k)
        entry: dict = {"present": _ranges([p is not None for p in per], versions), "group_keys": {}}
        for k in keys:
            last_default = None
            for p in per:
                if p and k in (p.get("defaults") or {}):
                    last_default = p["defaults"][k]
            entry["group_keys"][k] = {
                "in_defaults": _ranges([bool(p and k in (p.get("defaults") or {})) for p in per], versions),
                "filled_by_setstate": _ranges([bool(p and k in p["setstate_defaults"]) for p in per], versions),
                "read_by_step": _ranges([bool(p and k in p["reads"]) for p in per], versions),
                "default": last_default,
            }
        entry["step"] = {
            "int": _ranges([bool(p and p["step"] == "int") for p in per], versions),
            "tensor": _ranges([bool(p and p["step"] == "tensor") for p in per], versions),
            "setstate_makes_tensor": _ranges([bool(p and p["setstate_tensor_step"]) for p in per], versions),
        }
        table["optimizers"][n] = entry
    sys.stdout.write(_dump(table) + "\n")


def _dump(v: object, indent: int = 0) -> str:
    """JSON with one line per leaf object (a key's facts), nested objects indented."""
    pad = " " * (indent + 1)
    if isinstance(v, dict) and any(isinstance(x, dict) for x in v.values()):
        items = [f"{pad}{json.dumps(k)}: {_dump(x, indent + 1)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(v)


if __name__ == "__main__":
    main(sys.argv[1])
