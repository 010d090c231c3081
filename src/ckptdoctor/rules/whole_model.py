"""Whole pickled models: the classes the file needs, whether the target can import them, and
``torch.nn`` module attributes that changed between the producer's and the target's torch."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.pickle.objects import PickledObject
from ckptdoctor.rules._common import finding, fix_cmd
from ckptdoctor.rules._pyfind import defined_names, find_module, search_path
from ckptdoctor.rules._tables import has, release, torch_features
from ckptdoctor.walk import is_module

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 2
FINDINGS = {
    "CKD-MODEL-WHOLE": "the file is (or holds) a whole pickled nn.Module: the classes it needs, and the state_dict fix",
    "CKD-MODEL-MAIN": "a class pickled from __main__: AttributeError: Can't get attribute 'X' on <module '__main__'>",
    "CKD-MODEL-IMPORT": "a class/function whose module the target cannot import (ModuleNotFoundError / AttributeError)",
    "CKD-MODEL-FOUND": "a class found in --python-path source (parsed, not imported): needs that directory on sys.path",
    "CKD-MODEL-TORCH-NAME": "a torch name the target torch does not have (module removed or renamed)",
    "CKD-MODEL-ATTR-MISSING": "a pickled torch.nn module lacks an attribute the target torch's class uses",
    "CKD-MODEL-ATTR-EXTRA": "pickled torch.nn module attributes the target torch's classes no longer set (harmless)",
}
# attributes the target's methods read only under a non-default setting (read in the source of the releases)
CONDITIONAL = {"_reversed_padding_repeated_twice": "padding_mode != 'zeros'"}
SKIP_MODULES = {"builtins", "collections", "copyreg", "_codecs", "__builtin__", "copy_reg", "argparse", "_collections",
                "datetime", "decimal", "fractions", "uuid", "pathlib", "enum", "functools", "re", "codecs"}


def _modules(root: Any, limit: int = 100_000) -> list[PickledObject]:
    out: list[PickledObject] = []
    seen: set[int] = set()
    stack = [root]
    while stack and len(seen) < limit:
        v = stack.pop()
        if id(v) in seen or isinstance(v, (str, bytes, int, float, bool)) or v is None:
            continue
        seen.add(id(v))
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, PickledObject):
            if is_module(v):
                out.append(v)
            attrs = v.attrs
            for k in ("_modules",):
                m = attrs.get(k)
                if isinstance(m, dict):
                    stack.extend(m.values())
            if not is_module(v):
                stack.extend(attrs.values())
    return out


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None or ckpt.format not in ("zip", "legacy", "pickle", "tar"):
        return
    t = ctx.target
    full = not (t.loads_weights_only and t.torch_at_least("1.13"))
    modules = _modules(ckpt.root)
    sim = ctx.sim(False)
    first_off: dict[str, int] = {}
    for name, _raw, off, _label in sim.globals:
        first_off.setdefault(name, off)
    if modules:
        classes = sorted({m.qualname for m in modules})
        top = modules[0].qualname
        yield finding(
            "CKD-MODEL-WHOLE", Severity.WARNING if full else Severity.INFO,
            f"a whole pickled model ({top}, {len(classes)} module classes)",
            f"{ctx.name} holds pickled nn.Module objects, not only tensors: unpickling needs every class "
            f"({', '.join(classes[:8])}{' ...' if len(classes) > 8 else ''}) importable exactly where it was when "
            "saved, and runs their code. Keeping only the state_dict removes both needs.",
            evidence={"classes": classes, "class": top},
            fix=Fix("keep the state_dict (no class needed to load it)", command=fix_cmd(ctx, "extract-state-dict")))
    paths = search_path(t.python_path)
    from ckptdoctor.rules.dtypes_support import classify

    for name, off in first_off.items():
        module, _, attr = name.rpartition(".")
        top_mod = module.split(".")[0]
        if top_mod in SKIP_MODULES or top_mod == "numpy" or not module:
            continue
        if module == "__main__":
            yield from _main_class(ctx, attr, off, paths, full)
            continue
        if top_mod == "torch":
            if classify(name) is None:
                yield from _torch_name(ctx, name, off, full)
            continue
        loc = find_module(module, paths)
        user_dir = next((d for d in t.python_path if loc.path and loc.path.startswith(d.rstrip("/") + "/")), None) \
            if loc.found else None
        if not loc.found:
            err = f"ModuleNotFoundError: No module named '{loc.missing}'"
            yield ctx.ordered(finding(
                "CKD-MODEL-IMPORT", Severity.ERROR if full else Severity.WARNING,
                f"{name}: module {loc.missing} cannot be imported",
                f"The file needs {name} (byte {off}); the target cannot import {loc.missing} "
                f"({'not on --python-path nor' if t.python_path else 'not'} on this interpreter's sys.path). "
                "Unpickling would raise " + err + ".",
                evidence={"class": name, "module": module, "missing": loc.missing, "offset": off, "torch_error": err},
                fix=_class_fix(ctx, f"make {module} importable (pip install it, or add its source directory with "
                               "--python-path / PYTHONPATH)"), blocks=full), STAGE, off)
            continue
        names = defined_names(loc.path) if loc.kind in ("file", "package") and loc.path else None
        if names is not None and attr not in names:
            err = f"AttributeError: Can't get attribute '{attr}' on <module '{module}' from '{loc.path}'>"
            yield ctx.ordered(finding(
                "CKD-MODEL-IMPORT", Severity.ERROR if full else Severity.WARNING,
                f"{name}: {module} has no {attr}",
                f"The file needs {name} (byte {off}); {loc.path} (parsed, not imported) defines no {attr}: "
                f"the class was renamed or moved since the file was saved. Unpickling would raise {err}.",
                evidence={"class": name, "module": module, "path": loc.path, "offset": off, "torch_error": err},
                fix=_class_fix(ctx, f"restore {attr} in {module} (an alias works: {attr} = NewName)"),
                blocks=full), STAGE, off)
        elif user_dir is not None:
            yield finding(
                "CKD-MODEL-FOUND", Severity.INFO, f"{name} found in {user_dir}",
                f"{name} is defined in {loc.path} (parsed, not imported); torch.load finds it only with "
                f"{user_dir} on sys.path.",
                evidence={"class": name, "path": loc.path, "offset": off},
                fix=Fix("put the directory on sys.path when loading", command=f"PYTHONPATH={user_dir} python ..."))
    yield from _attrs(ctx, modules)


def _class_fix(ctx: Context, what: str) -> Fix:
    return Fix(f"{what}; or keep only the state_dict", command=fix_cmd(ctx, "extract-state-dict"))


def _main_class(ctx: Context, attr: str, off: int, paths: tuple[str, ...], full: bool) -> Iterator[Finding]:
    t = ctx.target
    where = None
    for d in t.python_path:
        for root, _dirs, files in _walk(d):
            for f in files:
                if f.endswith(".py"):
                    names = defined_names(f"{root}/{f}")
                    if names and attr in names:
                        where = f"{root}/{f}"
                        break
            if where:
                break
        if where:
            break
    err = f"AttributeError: Can't get attribute '{attr}' on <module '__main__' from '<path>'>"
    hint = (f" {attr} is defined in {where} (parsed, not imported): import it in the script that calls torch.load "
            f"(from {_modname(where, t.python_path)} import {attr}) before loading." if where else
            " Define or import the class in the script that calls torch.load, or keep only the state_dict.")
    yield ctx.ordered(finding(
        "CKD-MODEL-MAIN", Severity.ERROR if full else Severity.WARNING,
        f"class __main__.{attr}: pickled from the training script",
        f"The file needs __main__.{attr} (byte {off}): the class lived in the script that saved it, so it can only "
        f"be unpickled from a __main__ module that defines {attr}; anywhere else unpickling raises {err}.{hint}",
        evidence={"class": f"__main__.{attr}", "offset": off, "defined_in": where, "torch_error": err},
        fix=Fix("keep the state_dict (no class needed)", command=fix_cmd(ctx, "extract-state-dict"),
                python=(f"from {_modname(where, t.python_path)} import {attr}  # before torch.load" if where else None)),
        blocks=full), STAGE, off)


def _walk(d: str) -> Iterator[tuple[str, list[str], list[str]]]:
    import os

    n = 0
    for root, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if not x.startswith(".") and x not in ("__pycache__", "node_modules", "venv", ".venv")]
        n += 1
        if n > 2000:
            return
        yield root, dirs, files


def _modname(path: str | None, dirs: tuple[str, ...]) -> str:
    import os

    if not path:
        return "?"
    for d in dirs:
        d = os.path.abspath(d)
        if path.startswith(d + "/"):
            rel = path[len(d) + 1 :]
            rel = rel[:-3] if rel.endswith(".py") else rel
            return rel.replace("/", ".").removesuffix(".__init__")
    return os.path.basename(path)[:-3]


def _torch_name(ctx: Context, name: str, off: int, full: bool) -> Iterator[Finding]:
    t = ctx.target
    module, _, attr = name.rpartition(".")
    feats = torch_features()
    known_mod = module in feats.get("modules", {})
    if not known_mod:
        return
    mod_ok = has("modules", module, t.torch)
    name_ok = has("globals", name, t.torch)
    if mod_ok is False:
        err = f"ModuleNotFoundError: No module named '{module}'"
    elif name_ok is False:
        err = f"AttributeError: Can't get attribute '{attr}' on <module '{module}'>"
    else:
        return
    span = feats["globals"].get(name) or feats["modules"].get(module)
    when = f" (torch {span[0]}..{span[1] or 'latest'})" if span else ""
    yield ctx.ordered(finding(
        "CKD-MODEL-TORCH-NAME", Severity.ERROR if full else Severity.WARNING,
        f"torch {t.torch} has no {name}{when}",
        f"The file needs {name} (byte {off}), which torch {t.torch} does not have{when}: unpickling raises {err}.",
        evidence={"global": name, "offset": off, "span": span, "torch_error": err},
        fix=Fix("keep only the state_dict", command=fix_cmd(ctx, "extract-state-dict")), blocks=full), STAGE, off)


def _in(span: list | None, v: Version) -> bool:
    if not span:
        return False
    first, last = span
    return v >= Version(first) and (last is None or v <= Version(last))


def _attrs(ctx: Context, modules: list[PickledObject]) -> Iterator[Finding]:
    t = ctx.target
    nn = torch_features().get("nn_modules", {})
    if not nn or not modules:
        return
    rels = torch_features().get("releases", [])
    v = Version(release(t.torch))
    if rels and v < Version(rels[0]):
        return
    missing: dict[tuple[str, str], list[str]] = {}
    extra: dict[str, set[str]] = {}
    for m in modules:
        cls = m.qualname
        if cls not in nn:
            continue
        attrs = m.attrs
        present = set(attrs)
        for k in ("_parameters", "_buffers", "_modules"):
            if isinstance(attrs.get(k), dict):
                present |= {str(x) for x in attrs[k]}
        chain, c = [], cls
        while c and c in nn and c not in chain:
            chain.append(c)
            c = (nn[c].get("bases") or [None])[0]
        known_now = {a for c in chain for a, sp in nn[c]["attrs"].items() if _in(sp.get("init"), v)}
        known_ever = {a for c in chain for a, sp in nn[c]["attrs"].items() if "init" in sp}
        gone = (set(attrs) & known_ever) - known_now
        if gone:
            extra.setdefault(cls, set()).update(gone)
        for c in chain:
            info = nn[c]
            setstate_on = _in(info.get("setstate"), v)
            for a, spans in info["attrs"].items():
                if a in present or "init" not in spans or not _in(spans.get("init"), v):
                    continue
                used = c.endswith(".Module") or any(_in(nn[x]["attrs"].get(a, {}).get("used"), v) for x in chain)
                if not used:
                    continue
                if setstate_on and _in(spans.get("setstate"), v):
                    continue
                missing.setdefault((cls, a), []).append(c)
    if extra:
        pairs = sorted(f"{c.rpartition('.')[2]}.{a}" for c, attrs in extra.items() for a in attrs)
        yield finding(
            "CKD-MODEL-ATTR-EXTRA", Severity.INFO, f"{len(pairs)} pickled module attribute(s) torch {t.torch} no longer sets",
            f"The pickled modules carry attributes from an older torch that torch {t.torch}'s classes no longer set "
            f"({', '.join(pairs[:8])}{' ...' if len(pairs) > 8 else ''}): unpickling keeps them, nothing uses them.",
            evidence={"attributes": pairs})
    for (cls, a), _where in missing.items():
        short = cls.rpartition(".")[2]
        first = nn.get(_where[0], {}).get("attrs", {}).get(a, {}).get("init", [None])[0]
        err = f"AttributeError: '{short}' object has no attribute '{a}'"
        when = CONDITIONAL.get(a)
        yield finding(
            "CKD-MODEL-ATTR-MISSING", Severity.INFO if when else Severity.WARNING,
            f"{short} objects lack {a!r} that torch {t.torch} uses" + (f" (only when {when})" if when else ""),
            f"The pickled {short} modules were saved by a torch whose {short} had no {a!r} (torch sets it in "
            f"__init__ since {first}); torch {t.torch}'s __setstate__ does not add it, so the model loads but "
            + (f"calling it with {when} raises {err}." if when else f"using it raises {err}."),
            evidence={"class": cls, "attribute": a, "since": first, "torch_error": err},
            fix=Fix("rebuild the model from its state_dict in this torch", command=fix_cmd(ctx, "extract-state-dict"),
                    python=f"for m in model.modules():\n    if isinstance(m, torch.nn.{short}) and not hasattr(m, "
                           f"{a!r}): m.{a} = ...  # the torch {first} default"))
