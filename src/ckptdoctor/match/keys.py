"""The two sides of a match: ``{key: (shape, dtype)}`` from a checkpoint, a JSON file or a live model.

A checkpoint side is read with :func:`ckptdoctor.open` (never unpickled):
the state_dict is found wherever it is — the root, a wrapper entry
(``state_dict``, ``model``, ``module``, ``ema``, ``model_state_dict``, nested),
a whole-model pickle (its ``state_dict()`` computed from the pickled
attributes) or a TorchScript module. Every such place is a
:class:`Candidate`; :mod:`ckptdoctor.match.mapping` picks the one that
matches the target best.

A model side (``module:callable``) imports the user's own code and calls it
(torch needed); the checkpoint is still never given to torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.model import TensorRecord
from ckptdoctor.pickle.objects import OrderedDictValue, PickledObject
from ckptdoctor.walk import ScriptModuleValue, is_module, module_state_dict

# Entry names that hold a model, in the order we prefer them; EMA copies come last.
PREFERRED = ("state_dict", "model_state_dict", "model", "module", "net", "network", "params", "weights",
             "student", "generator")
EMA = ("ema", "model_ema", "state_dict_ema", "ema_state_dict", "ema_model", "shadow")
OPTIMIZER_HINTS = ("optimizer", "optimizers", "optimizer_state_dict", "optimizer_states", "optim",
                   "optim_state", "optim_state_dict", "opt")
MAX_DEPTH = 4
BN_CLASSES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
              "LazyBatchNorm2d", "LazyBatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d")


class MatchInputError(ValueError):
    """A side that cannot be read as keys (one-line reason for the CLI)."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One state_dict entry: shape and dtype (None when not a tensor or not known, e.g. lazy)."""

    shape: tuple[int, ...] | None
    dtype: str | None = None
    tensor: bool = True  # False for non-tensor values (``_extra_state`` objects, numbers)

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape) if self.shape is not None else None, "dtype": self.dtype}


@dataclass
class Candidate:
    """One place in a file that holds a state_dict."""

    path: list[Any]  # key path from the root ([] = the root itself)
    entries: dict[str, Entry]  # in state_dict order
    origin: str  # "state_dict", "whole model (torch.nn.Sequential)", "TorchScript module ..."
    metadata: dict[str, int | None] | None = None  # _metadata: module prefix -> version (None = no _metadata)
    params: list[str] | None = None  # parameter names in named_parameters() order, when known
    module_types: dict[str, str] | None = None  # module prefix -> class name, when known
    #: prefixes of norm layers that fill a missing num_batches_tracked (None: unknown, guess from keys)
    norm_prefixes: set[str] | None = None
    rank: tuple[int, ...] = ()  # preference (lower first) among equally good candidates
    module: Any = field(default=None, repr=False, compare=False)  # the live nn.Module of a model target

    @property
    def where(self) -> str:
        return ".".join(str(p) for p in self.path)

    @property
    def is_module_object(self) -> bool:
        return self.origin.startswith(("whole model", "TorchScript"))


@dataclass
class Side:
    """Everything one side of a match offers."""

    kind: str  # checkpoint | json | model
    label: str  # the path or module:callable the user gave
    candidates: list[Candidate]
    format: str | None = None  # checkpoint format
    optimizers: list[tuple[str, Any]] = field(default_factory=list)  # (dotted path, optimizer state_dict)
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> Candidate:
        return self.candidates[0]


# ---------------------------------------------------------------------------------------------- helpers
def entry_of(v: Any) -> Entry:
    if isinstance(v, TensorRecord):
        return Entry(tuple(int(s) for s in v.shape), v.dtype.name)
    return Entry(None, type(v).__name__, tensor=False)


def is_tensor_dict(d: Any) -> bool:
    """A dict whose values are (mostly) tensors under string keys: what ``load_state_dict`` takes."""
    if not isinstance(d, dict) or not d:
        return False
    n = sum(1 for k, v in d.items() if isinstance(v, TensorRecord) and isinstance(k, str))
    return n > 0 and n >= len(d) / 2


def is_optimizer_state(d: Any) -> bool:
    return isinstance(d, dict) and "param_groups" in d and "state" in d


def _metadata_versions(sd: Any) -> dict[str, int | None] | None:
    if not isinstance(sd, OrderedDictValue):
        return None
    meta = sd.attrs.get("_metadata")
    if not isinstance(meta, dict):
        return None
    out: dict[str, int | None] = {}
    for k, v in meta.items():
        ver = v.get("version") if isinstance(v, dict) else None
        out[str(k)] = ver if isinstance(ver, int) and not isinstance(ver, bool) else None
    return out


def _short_class(q: str) -> str:
    return q.rsplit(".", 1)[-1]


def _module_facts(obj: PickledObject) -> tuple[list[str], dict[str, str], set[str]]:
    """(parameter names in named_parameters() order, prefix -> class, norm layers) of a pickled module tree."""
    params: list[str] = []
    seen: set[int] = set()
    types: dict[str, str] = {}
    norms: set[str] = set()

    def visit(m: PickledObject, prefix: str, depth: int) -> None:
        if depth > 1000:
            return
        types[prefix[:-1]] = _short_class(m.qualname)
        if m.qualname.startswith(("torch.nn.modules.batchnorm.", "torch.nn.modules.instancenorm.")) and \
                m.attrs.get("track_running_stats") is True:
            norms.add(prefix[:-1])
        for name, p in (m.attrs.get("_parameters") or {}).items():
            if p is not None and id(p) not in seen:
                seen.add(id(p))
                params.append(prefix + str(name))
        for name, child in (m.attrs.get("_modules") or {}).items():
            if child is not None and is_module(child):
                visit(child, f"{prefix}{name}.", depth + 1)

    visit(obj, "", 0)
    return params, types, norms


def _module_metadata(types: dict[str, str]) -> dict[str, int | None]:
    """The ``_metadata`` versions ``state_dict()`` records (BatchNorm/InstanceNorm: 2, others 1)."""
    return {p: (2 if t in BN_CLASSES else 1) for p, t in types.items()}


def _rank(path: list[Any]) -> tuple[int, ...]:
    out = []
    for p in path:
        s = str(p).lower()
        if s in PREFERRED:
            out.append(PREFERRED.index(s))
        elif s in EMA:
            out.append(50 + EMA.index(s))
        else:
            out.append(30)
    return tuple(out)


# --------------------------------------------------------------------------------------------- checkpoint
def candidates_in(root: Any) -> tuple[list[Candidate], list[tuple[str, Any]]]:
    """Every state_dict in a value tree (best guess first) and every optimizer state_dict in it."""
    cands: list[Candidate] = []
    optims: list[tuple[str, Any]] = []
    seen: set[int] = set()

    def visit(v: Any, path: list[Any], depth: int) -> None:
        if depth > MAX_DEPTH or id(v) in seen:
            return
        where = ".".join(str(p) for p in path)
        if isinstance(v, ScriptModuleValue):
            seen.add(id(v))
            entries = {str(k): entry_of(x) for k, x in v.state_dict.items()}
            cands.append(Candidate(path, entries, f"TorchScript module {v.qualname}", None, rank=_rank(path)))
            return
        if isinstance(v, PickledObject) and is_module(v):
            seen.add(id(v))
            sd = module_state_dict(v)
            params, types, norms = _module_facts(v)
            entries = {str(k): entry_of(x) for k, x in sd.items()}
            cands.append(Candidate(path, entries, f"whole model ({v.qualname})", _module_metadata(types),
                                   params=params, module_types=types, norm_prefixes=norms, rank=_rank(path)))
            return
        if is_optimizer_state(v):
            seen.add(id(v))
            optims.append((where, v))
            return
        if is_tensor_dict(v):
            seen.add(id(v))
            entries = {str(k): entry_of(x) for k, x in v.items()}
            cands.append(Candidate(path, entries, "state_dict" if path else "the file's top-level dict",
                                   _metadata_versions(v), rank=_rank(path)))
            return
        if isinstance(v, dict):
            seen.add(id(v))
            for k, x in v.items():
                if isinstance(k, (str, int)) and not isinstance(k, bool):
                    if isinstance(x, list) and str(k).lower() in OPTIMIZER_HINTS:
                        for i, o in enumerate(x):
                            if is_optimizer_state(o):
                                optims.append((f"{where}.{k}.{i}" if where else f"{k}.{i}", o))
                        continue
                    visit(x, [*path, k], depth + 1)
        elif isinstance(v, (list, tuple)) and depth < MAX_DEPTH:
            seen.add(id(v))
            for i, x in enumerate(v[:64]):
                visit(x, [*path, i], depth + 1)

    visit(root, [], 0)
    cands.sort(key=lambda c: (c.rank, len(c.path)))
    return cands, optims


def from_checkpoint(path: str) -> Side:
    import ckptdoctor

    with ckptdoctor.open(path) as ckpt:
        cands, optims = candidates_in(ckpt.root)
        notes: list[str] = []
        if not cands:
            # Nothing shaped like a state_dict: every tensor under its dotted path.
            entries = {p: entry_of(t) for p, t in ckpt.tensors()}
            if not entries:
                raise MatchInputError(f"{path}: no tensors found ({ckpt.format})")
            cands = [Candidate([], entries, "every tensor in the file (no state_dict found)")]
            notes.append("no state_dict found: compared every tensor by its dotted path in the file")
        return Side("checkpoint", path, cands, ckpt.format, optims, notes)


# ------------------------------------------------------------------------------------------------- JSON
def from_json(path: str) -> Side:
    """``{key: shape}``, ``{key: {"shape": [...], "dtype": ...}}`` or ``ckptdoctor inspect --json`` output."""
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise MatchInputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    entries: dict[str, Entry] = {}
    if isinstance(data, dict) and isinstance(data.get("tensors"), list):  # inspect --json
        for t in data["tensors"]:
            if isinstance(t, dict) and "path" in t:
                entries[str(t["path"])] = Entry(_shape(t.get("shape"), path, t["path"]), t.get("dtype"))
    elif isinstance(data, dict):
        for k, v in data.items():
            if isinstance(v, dict):
                entries[str(k)] = Entry(_shape(v.get("shape"), path, k), v.get("dtype"))
            else:
                entries[str(k)] = Entry(_shape(v, path, k))
    else:
        raise MatchInputError(f"{path}: expected a JSON object {{key: shape}}, got a {type(data).__name__}")
    if not entries:
        raise MatchInputError(f"{path}: no keys in the JSON file")
    return Side("json", path, [Candidate([], entries, "JSON key list")])


def _shape(v: Any, path: str, key: Any) -> tuple[int, ...] | None:
    if v is None:
        return None
    if isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return tuple(v)
    raise MatchInputError(f"{path}: the shape of {key!r} is not a list of integers: {v!r}")


# ------------------------------------------------------------------------------------------------ model
def from_model(spec: str) -> Side:
    """``module:callable`` -> call it (the user's own code) -> ``state_dict()`` of the model it returns."""
    mod_name, _, attr = spec.rpartition(":")
    if not mod_name or not attr:
        raise MatchInputError(f"--to {spec!r}: a model is given as module:callable (e.g. mypkg.models:build)")
    try:
        import torch
    except ImportError:
        raise MatchInputError("--to module:callable needs torch (pip install 'ckptdoctor[torch]')") from None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = _import(mod_name)
    except MatchInputError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: report, never a traceback
        raise MatchInputError(f"cannot import {mod_name!r}: {type(e).__name__}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise MatchInputError(f"{mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    try:
        model = obj() if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    except Exception as e:  # noqa: BLE001
        raise MatchInputError(f"calling {spec} failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise MatchInputError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return Side("model", spec, [model_candidate(model)])


def _import(name: str) -> Any:
    """A module by dotted name, or a ``path/to/file.py`` (imported under its file name)."""
    if name.endswith(".py"):
        if not os.path.isfile(name):
            raise MatchInputError(f"no such file: {name}")
        mod = os.path.splitext(os.path.basename(name))[0]
        spec = importlib.util.spec_from_file_location(mod, name)
        if spec is None or spec.loader is None:
            raise MatchInputError(f"cannot import {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)


def model_candidate(model: Any) -> Candidate:
    """A live ``nn.Module`` as a :class:`Candidate` (keys, shapes, parameters, module classes)."""
    from torch.nn.parameter import is_lazy

    sd = model.state_dict()
    entries: dict[str, Entry] = {}
    for k, v in sd.items():
        if hasattr(v, "shape") and hasattr(v, "dtype"):
            lazy = is_lazy(v)
            entries[k] = Entry(None if lazy else tuple(int(s) for s in v.shape), str(v.dtype).removeprefix("torch."))
        else:
            entries[k] = Entry(None, type(v).__name__, tensor=False)
    from torch.nn.modules.batchnorm import _NormBase

    types = {name: type(m).__name__ for name, m in model.named_modules()}
    # Only _NormBase modules with running stats fill a missing num_batches_tracked.
    norms = {name for name, m in model.named_modules() if isinstance(m, _NormBase) and m.track_running_stats}
    params = [n for n, _ in model.named_parameters()]
    meta = getattr(sd, "_metadata", None)
    versions = {str(k): v.get("version") for k, v in meta.items()} if isinstance(meta, dict) else None
    return Candidate([], entries, f"{type(model).__name__}.state_dict()", versions, params=params,
                     module_types=types, norm_prefixes=norms, module=model)


def load_side(spec: str) -> Side:
    """A checkpoint path, a ``.json`` key list, or ``module:callable``."""
    if os.path.exists(spec):
        if spec.lower().endswith(".json"):
            return from_json(spec)
        return from_checkpoint(spec)
    mod, sep, attr = spec.rpartition(":")
    if sep and attr and "://" not in spec and (mod.endswith(".py") or re.fullmatch(r"[A-Za-z_][\w.]*", mod)):
        return from_model(spec)
    raise MatchInputError(f"no such file: {spec} (a target is a checkpoint, a .json key list or module:callable)")
