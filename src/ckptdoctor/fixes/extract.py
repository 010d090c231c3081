"""``extract-state-dict``: the plain state_dict of a whole-model pickle, a TorchScript archive or a wrapper.

Whole models: the placeholder objects' ``_parameters``, ``_buffers`` (minus
non-persistent ones) and ``_modules`` are walked exactly as
``nn.Module.state_dict()`` walks them (:func:`ckptdoctor.walk.module_state_dict`),
so keys and order are what the model's own ``state_dict()`` would give;
tensors are detached (plain tensors, no grad) and ``_metadata`` records each
module's version, as torch does. The class is never needed.

Wrappers: Lightning (``state_dict``), timm (``state_dict``, ``state_dict_ema``,
``model``), mmengine (``state_dict``, ``ema_state_dict``), YOLO-style
``{'model': <module>, 'ema': <module>}``; ``key=`` picks one explicitly
(dotted path for nested wrappers).
"""

from __future__ import annotations

from typing import Any

from ckptdoctor.fixes.plan import Change, FixError, Step, Tree
from ckptdoctor.fixes.values import (
    WRAPPER_KEYS,
    is_tensor_dict,
    state_dict_of_module,
    state_dict_of_script,
)
from ckptdoctor.pickle.objects import OrderedDictValue, PickledObject
from ckptdoctor.walk import ScriptModuleValue, is_module


def as_state_dict(v: Any, depth: int = 0) -> tuple[OrderedDictValue | dict, str] | None:
    """(state_dict, what it came from) for a module, a TorchScript module, a tensor dict,
    or a wrapper dict holding one of those under a usual key (``{'module': model}``)."""
    if isinstance(v, ScriptModuleValue):
        return state_dict_of_script(v), f"TorchScript module {v.qualname}"
    if isinstance(v, PickledObject) and is_module(v):
        return state_dict_of_module(v), f"{v.qualname} object"
    if is_tensor_dict(v):
        return v, "wrapper entry"
    if isinstance(v, dict) and depth < 3:
        for k in WRAPPER_KEYS:
            if k in v:
                got = as_state_dict(v[k], depth + 1)
                if got is not None:
                    return got[0], f"{got[1]} under {k!r}"
    return None


class ExtractStateDict(Step):
    id = "extract-state-dict"

    def __init__(self, key: str | None = None) -> None:
        self.key = key

    def describe(self) -> str:
        where = f"the entry {self.key!r}" if self.key else "the model (whole-model pickle, TorchScript or wrapper dict)"
        return f"replace the file's content by the state_dict of {where}, keys and order as state_dict() gives them"

    def apply(self, tree: Tree) -> list[Change]:
        root = tree.root
        if self.key:
            value = _lookup(root, self.key)
            got = as_state_dict(value)
            if got is None:
                raise FixError(f"entry {self.key!r} is a {type(value).__name__}, not a model or a state_dict")
            return self._set(tree, got, self.key)
        got = as_state_dict(root) if not is_tensor_dict(root) else None
        if got is not None:
            return self._set(tree, got, "")
        if is_tensor_dict(root):
            tree.notes.append("extract-state-dict: the file already is a state_dict; nothing to extract")
            return []
        if isinstance(root, dict):
            for k in WRAPPER_KEYS:
                if k in root:
                    got = as_state_dict(root[k], 1)
                    if got is not None:
                        return self._set(tree, got, k)
        keys = ", ".join(repr(k) for k in list(root)[:8]) if isinstance(root, dict) else type(root).__name__
        raise FixError(f"no model or state_dict found (top level: {keys}); name one with --key")

    def _set(self, tree: Tree, got: tuple[Any, str], path: str) -> list[Change]:
        sd, origin = got
        n = sum(1 for _ in sd)
        tree.root = sd
        return [self.change("extracted", path, f"state_dict with {n} entries from the {origin}")]


def _lookup(root: Any, key: str) -> Any:
    cur = root
    for part in key.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, (list, tuple)) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise FixError(f"no entry {key!r} in the file")
    return cur


def script_modules_to_state_dicts(tree: Tree) -> list[Change]:
    """TorchScript modules anywhere in the tree -> their state_dicts (a torch.save file cannot hold code)."""
    changes: list[Change] = []
    if isinstance(tree.root, ScriptModuleValue):
        sd = state_dict_of_script(tree.root)
        changes.append(Change("container", "extracted", "", f"TorchScript module {tree.root.qualname}: its "
                              f"state_dict ({len(sd)} tensors); the code cannot be kept"))
        tree.root = sd
        return changes

    def visit(v: Any, path: str, depth: int) -> Any:
        if depth > 500:
            return v
        if isinstance(v, ScriptModuleValue):
            changes.append(Change("container", "extracted", path, f"TorchScript module {v.qualname}: its state_dict"))
            return state_dict_of_script(v)
        if isinstance(v, dict):
            for k, x in list(v.items()):
                y = visit(x, f"{path}.{k}" if path else str(k), depth + 1)
                if y is not x:
                    v[k] = y
        elif isinstance(v, list):
            for i, x in enumerate(v):
                v[i] = visit(x, f"{path}.{i}" if path else str(i), depth + 1)
        return v

    tree.root = visit(tree.root, "", 0)
    return changes
