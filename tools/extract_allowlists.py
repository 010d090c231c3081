#!/usr/bin/env python3
"""Derive the per-release ``weights_only`` tables in src/ckptdoctor/data/weights_only/ from torch's own source.

Nothing is imported from the torch sources: they are parsed with :mod:`ast`.

Usage::

    # 1. the .py files of each release (any platform's wheel ships the same .py files as the vX.Y.0 tag)
    pip download torch==2.6.0 --no-deps --only-binary=:all: --python-version 3.10 \
        --platform macosx_11_0_arm64 -d /tmp/tw/whl/2.6.0
    (cd /tmp/tw/src/2.6.0 && unzip -qo /tmp/tw/whl/2.6.0/*.whl 'torch/*.py' 'torch/*/*.py')
    # (old releases: --python-version 3.7 --platform macosx_10_9_x86_64; the Linux CPU wheels work too)
    # 2. the tables
    python tools/extract_allowlists.py /tmp/tw/src src/ckptdoctor/data/weights_only

``/tmp/tw/src/<X.Y.Z>/torch/...`` is read for every release from 1.13 on (the first with
``weights_only``). What is recorded per release:

* ``allowed_globals``: every key ``_get_allowed_globals()`` builds, with the loops over dtypes,
  storage classes, tensor classes, qschemes and rebuild functions expanded from the same release's
  ``torch/storage.py``, ``torch/__init__.py`` and ``torch/cuda/__init__.py``. The tensor classes
  (``torch._tensor_classes``) are made in C++; their names are the 38 that torch 2.13 reports
  (``torch|torch.cuda|torch.sparse|torch.cuda.sparse`` x the legacy scalar types, no sparse Bool).
* ``allowed_opcodes``: the pickle opcodes ``Unpickler.load`` handles (``X[0]`` comparisons).
* ``blocklisted_modules``, whether Python 2 names are mapped (and when), what NEWOBJ/BUILD/SETITEM
  accept, how user globals are keyed, the error templates, and facts of ``torch.load`` itself
  (default ``weights_only``, ``add_safe_globals``/``safe_globals``, safetensors dispatch, messages).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

DTYPE_ALIASES = {
    "double": "float64", "float": "float32", "half": "float16", "long": "int64", "int": "int32",
    "short": "int16", "cfloat": "complex64", "cdouble": "complex128", "chalf": "complex32",
}
SCALARS = ["BFloat16", "Bool", "Byte", "Char", "Double", "Float", "Half", "Int", "Long", "Short"]
TENSOR_CLASSES = sorted(
    [f"torch.{s}Tensor" for s in SCALARS]
    + [f"torch.cuda.{s}Tensor" for s in SCALARS]
    + [f"torch.sparse.{s}Tensor" for s in SCALARS if s != "Bool"]
    + [f"torch.cuda.sparse.{s}Tensor" for s in SCALARS if s != "Bool"]
)


def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def canonical_dtype(name: str) -> str:
    short = name.removeprefix("torch.")
    return "torch." + DTYPE_ALIASES.get(short, short)


def func_node(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    return None


def returned_names(tree: ast.Module, fname: str) -> list[str]:
    """Dotted names in the dict keys / set / list a function returns."""
    fn = func_node(tree, fname)
    if fn is None:
        return []
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and node.value is not None:
            v = node.value
            elts = v.keys if isinstance(v, ast.Dict) else getattr(v, "elts", [])
            return [n for n in (dotted(e) for e in elts) if n]
    return []


def storage_classes(root: Path) -> list[str]:
    names: set[str] = set()
    init = (root / "torch/__init__.py").read_text()
    m = re.search(r"^_storage_classes[^=]*=\s*\{(.*?)\}", init, re.S | re.M)
    if m:
        for tok in re.findall(r"[A-Za-z_][\w.]*", m.group(1)):
            names.add(tok)
    out = set()
    for n in names:
        if n in ("UntypedStorage", "TypedStorage", "_UntypedStorage", "_TypedStorage"):
            out.add(f"torch.storage.{n}")
        elif n.endswith("Storage"):
            out.add(f"torch.{n}")
    cuda = root / "torch/cuda/__init__.py"
    if cuda.exists():
        for n in re.findall(r"torch\._storage_classes\.add\((\w+)\)", cuda.read_text()):
            out.add(f"torch.cuda.{n}")
    return sorted(out)


def expand_iter(node: ast.AST, root: Path, storage_tree: ast.Module) -> tuple[str, list[str]]:
    """(kind, names) for the iterable of a ``for`` loop in _get_allowed_globals."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "keys":
        node = node.func.value
    if isinstance(node, (ast.List, ast.Set, ast.Tuple)):
        if node.elts and isinstance(node.elts[0], ast.Call):  # [getattr(torch, f"uint{x}") ...] not literal
            return "unknown", []
        return "names", [n for n in (dotted(e) for e in node.elts) if n]
    if isinstance(node, ast.ListComp):
        src = ast.unparse(node)
        m = re.search(r'f"(u?int)\{x\}"', src) or re.search(r"f'(u?int)\{x\}'", src)
        r = re.search(r"range\((\d+),\s*(\d+)\)", src)
        if m and r:
            return "names", [f"torch.{m.group(1)}{i}" for i in range(int(r.group(1)), int(r.group(2)))]
        return "unknown", []
    name = dotted(node.func) if isinstance(node, ast.Call) else dotted(node)
    if name in ("torch.storage._dtype_to_storage_type_map",):
        return "names", returned_names(storage_tree, "_dtype_to_storage_type_map")
    if name in ("torch.storage._new_dtypes",):
        return "names", returned_names(storage_tree, "_new_dtypes")
    if name == "torch._tensor_classes":
        return "classes", TENSOR_CLASSES
    if name == "torch._storage_classes":
        return "classes", storage_classes(root)
    if name == "_tensor_rebuild_functions":
        return "names", returned_names(ast.parse((root / "torch/_weights_only_unpickler.py").read_text()),
                                       "_tensor_rebuild_functions")
    return "unknown", []


def allowed_globals(root: Path) -> list[str]:
    wo = ast.parse((root / "torch/_weights_only_unpickler.py").read_text())
    storage_tree = ast.parse((root / "torch/storage.py").read_text())
    fn = func_node(wo, "_get_allowed_globals")
    assert fn is not None
    out: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Dict):
            out.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript):
            key = node.targets[0].slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                out.add(key.value)
        elif isinstance(node, ast.For):
            kind, names = expand_iter(node.iter, root, storage_tree)
            if kind == "unknown":
                raise SystemExit(f"{root}: cannot expand loop over {ast.unparse(node.iter)}")
            body = ast.unparse(node)
            for n in names:
                if "str(" in body:  # dtypes and qschemes: str(torch.float) == "torch.float32"
                    out.add(canonical_dtype(n) if "per_" not in n else n)
                elif "torch._utils.{" in body:
                    out.add("torch._utils." + n.rsplit(".", 1)[1])
                else:  # f"{x.__module__}.{x.__name__}"
                    out.add(n)
    return sorted(out)


def handled_opcodes(wo: ast.Module) -> list[str]:
    load = None
    for node in ast.walk(wo):
        if isinstance(node, ast.ClassDef) and node.name == "Unpickler":
            load = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "load"), None)
    assert load is not None
    ops = set()
    for node in ast.walk(load):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id.isupper()
                and isinstance(node.slice, ast.Constant) and node.slice.value == 0):
            ops.add(node.value.id)
    return sorted(ops)


def templates(src: str) -> dict[str, str]:
    """The error texts Unpickler.load raises, as f-string sources, keyed by what they are about."""
    tree = ast.parse(src)
    out: dict[str, str] = {}
    keys = [
        ("blocked", "is blocked"), ("global", "Unsupported global"), ("global", "Unsupported class"),
        ("newobj", "create new object"), ("reduce", "call reduce"), ("build", "Can only build"),
        ("append", "Can only append"), ("extend", "Can only extend"), ("setitem", "Can only {opcode}"),
        ("persid", "Only persistent_load of storage"), ("persid_type", "persistent_load id must be"),
        ("operand", "Unsupported operand"), ("njt", "nested jagged"), ("dtensor", "load DTensors"),
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
            text = ast.unparse(node.exc.args[0])
            exc = dotted(node.exc.func) or "?"
            for k, needle in keys:
                if needle in text and k not in out:
                    out[k] = f"{exc}: {text}"
                    break
    return out


def render(node: ast.AST) -> str:
    """A message expression as text: constants joined, names as ``{NAME}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return render(node.left) + render(node.right)
    if isinstance(node, ast.Name):
        return "{" + node.id + "}"
    return ast.unparse(node)


def string_constant(tree: ast.Module, name: str) -> Any:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name
                and node.value is not None):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return None
    return None


def load_facts(root: Path) -> dict[str, object]:
    ser = (root / "torch/serialization.py").read_text()
    wo = (root / "torch/_weights_only_unpickler.py").read_text()
    tree = ast.parse(ser)
    load_fn = func_node(tree, "load")
    load_src = ast.unparse(load_fn) if load_fn else ""
    facts: dict[str, object] = {
        "weights_only_default": "_default_to_weights_only" in ser,
        "add_safe_globals": func_node(tree, "add_safe_globals") is not None,
        "safe_globals_context": bool(re.search(r"^class safe_globals\b", ser, re.M)),
        "get_unsafe_globals_in_checkpoint": func_node(tree, "get_unsafe_globals_in_checkpoint") is not None,
        "safetensors_dispatch": "safetensors" in load_src,
        "mmap": "mmap" in load_src,
        "user_globals_key": "__qualname__" if "f.__qualname__" in wo else ("__name__" if "_get_user_allowed_globals" in wo
                                                                            else None),
        "user_globals_tuple_form": "Expected tuple of length 2" in wo,
        "wo_message_style": ("has_import" if "has_import" in ser else "blocklist" if "has_blocklist" in ser
                             else "unsafe_global" if "_get_wo_message" in ser else "prefix"),
        "wo_exception_caught": "UnpicklingError" if "except pickle.UnpicklingError as e:" in load_src else "RuntimeError",
    }
    unsafe = string_constant(tree, "UNSAFE_MESSAGE")
    if unsafe is None and load_fn is not None:
        unsafe = string_constant(ast.Module(body=load_fn.body, type_ignores=[]), "UNSAFE_MESSAGE")
    facts["unsafe_message"] = unsafe
    raised = [render(n.exc.args[0]) for n in ast.walk(tree)
              if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call) and n.exc.args]
    facts["torchscript_weights_only_message"] = next((r for r in raised if "TorchScript archives" in r), None)
    facts["tar_weights_only_message"] = next((r for r in raised if "legacy .tar format" in r), None)
    facts["force_env"] = [v for v in ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") if v in ser]
    return facts


def extract(root: Path, version: str) -> dict[str, object]:
    wo_src = (root / "torch/_weights_only_unpickler.py").read_text()
    wo = ast.parse(wo_src)
    blocked = []
    for node in ast.walk(wo):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_blocklisted_modules"
                                                for t in node.targets):
            blocked = ast.literal_eval(node.value)
    if "def _read_global_instruction" in wo_src:
        py2 = "always"
    elif "NAME_MAPPING" in wo_src:
        py2 = "protocol-2" if "self.proto == 2" in wo_src else "always"
    else:
        py2 = "never"
    m = re.search(r"def _check_set_item_target.*?not in \[(.*?)\]", wo_src, re.S)
    setitem = None
    if m:
        setitem = [{"dict": "builtins.dict", "OrderedDict": "collections.OrderedDict",
                    "Counter": "collections.Counter"}.get(x.strip(), x.strip()) for x in m.group(1).split(",")]
    special: dict[str, list[str]] = {}
    for node in ast.walk(wo):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
                and node.test.left.id == "full_path" and isinstance(node.test.ops[0], ast.In)
                and isinstance(node.body[0], ast.Raise)):
            text = ast.unparse(node.body[0])
            kind = "njt" if "nested jagged" in text else "dtensor" if "DTensors" in text else None
            if kind:
                special[kind] = [e.value for e in ast.walk(node.test.comparators[0])
                                 if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    flat = " ".join(wo_src.split()).replace("( ", "(").replace(" )", ")")
    utils = ast.parse((root / "torch/_utils.py").read_text())
    import_mapping = string_constant(utils, "IMPORT_MAPPING") or {}
    name_mapping = string_constant(utils, "NAME_MAPPING") or {}
    return {
        "torch": version,
        "import_mapping": import_mapping if py2 != "never" else {},
        "name_mapping": sorted([list(k), list(v)] for k, v in name_mapping.items()) if py2 != "never" else [],
        "source": f"torch {version}.0: torch/_weights_only_unpickler.py, torch/serialization.py, torch/storage.py, "
                  "torch/__init__.py, torch/cuda/__init__.py (parsed, not imported) by tools/extract_allowlists.py",
        "allowed_globals": allowed_globals(root),
        "allowed_opcodes": handled_opcodes(wo),
        "blocklisted_modules": blocked,
        "py2_name_mapping": py2,
        "newobj": ("allowlisted" if "cls in _get_allowed_globals().values()" in flat
                   else "parameter-or-user" if "cls in _get_user_allowed_globals().values()" in flat else "parameter"),
        "build": ("allowlisted" if "type(inst) in _get_allowed_globals().values()" in flat
                  else "user" if "type(inst) in _get_user_allowed_globals().values()" in flat else "fixed"),
        "setitem_targets": setitem,
        "persistent_id_int": "type(pid) is not int" in wo_src,
        "message_strips_builtins": "builtins_name" in wo_src,
        "special_globals": special,
        "messages": templates(wo_src),
        "load": load_facts(root),
    }


def main(argv: list[str]) -> int:
    src, out = Path(argv[1]), Path(argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for d in sorted(src.iterdir(), key=lambda p: tuple(int(x) for x in p.name.split("."))):
        if not (d / "torch/_weights_only_unpickler.py").exists():
            continue
        version = ".".join(d.name.split(".")[:2])
        table = extract(d, version)
        (out / f"{version}.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
        print(f"{version}: {len(table['allowed_globals'])} globals, {len(table['allowed_opcodes'])} opcodes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
