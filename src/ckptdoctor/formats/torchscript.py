"""TorchScript archives (``torch.jit.save``, torch >= 1.3 style with data.pkl + constants.pkl + code/).

TorchScript's data.pkl holds module objects (``__torch__.<class>``) whose state
is a dict of attributes. Which attributes are parameters or buffers is declared
in the class source under ``code/`` (``__parameters__ = [...]``,
``__buffers__ = [...]``); we read those declarations as text, never run them.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from ckptdoctor.errors import LimitExceeded
from ckptdoctor.formats.common import StorageTable, record_pickle, run_pickle
from ckptdoctor.formats.zipdir import ZipArchive
from ckptdoctor.formats.zipfmt import container_details, storage_loader
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint
from ckptdoctor.pickle.objects import Global, OrderedDictValue, PickledObject
from ckptdoctor.walk import ScriptModuleValue

CLASS_RE = re.compile(r"^class (\w+)\((\w+)\):\s*$", re.M)
MAX_DECL = 1 << 20  # characters of one __parameters__/__buffers__ list (real ones: a few hundred)
DECL_RE = re.compile(r"^\s+(__parameters__|__buffers__)\s*=\s*(\[.*?\])\s*$", re.M)


def parse_class_decls(z: ZipArchive, root: str, limit: int = 1 << 26) -> dict[str, dict[str, list[str]]]:
    """qualified class name -> {"base":..., "parameters": [...], "buffers": [...]} from code/*.py."""
    out: dict[str, dict[str, Any]] = {}
    total = 0
    prefix = f"{root}/code/"
    for e in z.entries:
        if not e.name.startswith(prefix) or not e.name.endswith(".py"):
            continue
        total += e.usize
        if total > limit:
            break
        text = z.read(e).decode("utf-8", "replace")
        module = e.name[len(prefix) : -3].replace("/", ".")
        classes = list(CLASS_RE.finditer(text))
        for i, m in enumerate(classes):
            body = text[m.end() : classes[i + 1].start() if i + 1 < len(classes) else len(text)]
            info: dict[str, Any] = {"base": m.group(2), "parameters": [], "buffers": []}
            for d in DECL_RE.finditer(body):
                if len(d.group(2)) > MAX_DECL:  # literal_eval of 60 MB of '"a", ' took 12 GB
                    raise LimitExceeded(f"length of a {d.group(1)} declaration in {e.name}", MAX_DECL,
                                        len(d.group(2)))
                try:
                    names = ast.literal_eval(d.group(2))
                except (ValueError, SyntaxError):
                    names = []
                info["parameters" if d.group(1) == "__parameters__" else "buffers"] = [str(n) for n in names]
            out[f"{module}.{m.group(1)}"] = info
    return out


def script_state_dict(obj: Any, classes: dict[str, dict[str, Any]], prefix: str = "",
                      out: OrderedDictValue | None = None, depth: int = 0) -> OrderedDictValue:
    if out is None:
        out = OrderedDictValue()
    if depth > 1000 or not isinstance(obj, PickledObject):
        return out
    info = classes.get(_class_name(obj), {})
    state = obj.state if isinstance(obj.state, dict) else {}
    params, buffers = info.get("parameters", []), info.get("buffers", [])
    for name in params:
        if state.get(name) is not None:
            out[prefix + name] = state[name]
    for name in buffers:
        if state.get(name) is not None:
            out[prefix + name] = state[name]
    for name, value in state.items():
        if isinstance(value, PickledObject) and classes.get(_class_name(value), {}).get("base") == "Module":
            script_state_dict(value, classes, f"{prefix}{name}.", out, depth + 1)
    return out


def _class_name(obj: PickledObject) -> str:
    c = obj.callee
    return f"{c.module}.{c.name}" if isinstance(c, Global) else ""


def read_torchscript(ckpt: Checkpoint, z: ZipArchive, limits: Limits) -> None:
    root = z.root
    ckpt.details.update(container_details(z))
    table = StorageTable()
    constants = None
    cname = f"{root}/constants.pkl"
    if cname in z.by_name:
        centry = z.by_name[cname]
        cres = run_pickle(z.read(centry), 0, limits=limits,
                          persistent_load=storage_loader(z, root, StorageTable(), ("constants", "data")))
        record_pickle(ckpt, cres, "constants.pkl")
        constants = cres.value
    dname = f"{root}/data.pkl"
    value: Any = None
    if dname in z.by_name:
        res = run_pickle(z.read(z.by_name[dname]), 0, limits=limits,
                         persistent_load=storage_loader(z, root, table, ("data", ".data", "constants")))
        record_pickle(ckpt, res, "data.pkl")
        ckpt.pickle_protocol = res.protocol
        value = res.value
    classes = parse_class_decls(z, root)
    ckpt.details["script_classes"] = len(classes)
    ckpt.details["code_files"] = sum(1 for n in z.names() if n.startswith(f"{root}/code/") and n.endswith(".py"))
    name = _class_name(value) if isinstance(value, PickledObject) else "?"
    ckpt.details["module_class"] = name
    sd = script_state_dict(value, classes)
    ckpt.root = ScriptModuleValue(name, sd, raw=value, attributes={"constants": constants})
