"""Fix step ``optimizer-compat``: rewrite saved optimizer state for the target torch.

For every optimizer state in the file (``{'state': ..., 'param_groups': ...}``
at the top level, under ``optimizer``-like keys, or in Lightning's
``optimizer_states`` list), for the fix's target torch (``--torch``):

* ``state['step']`` saved as a tensor (torch >= 1.12) becomes a Python float
  when the target keeps it as a number (the target's own code starts it at
  ``0`` and does ``+= 1``; torch >= 1.12 turns numbers back into tensors on
  load, so the result still loads in new torch);
* ``param_groups`` option keys the target's optimizer does not know
  (``foreach``, ``capturable``, ``differentiable``, ``fused``,
  ``decoupled_weight_decay`` ... — only known option names; lr-scheduler keys
  such as ``initial_lr`` are kept) are dropped;
* option keys the target's ``step()`` reads but its ``__setstate__`` does not
  fill in are added with the constructor default.

Facts per release: :mod:`ckptdoctor.match.optim_facts`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ckptdoctor.fixes.plan import Change, Step, Tree
from ckptdoctor.match import optim_facts as F
from ckptdoctor.match.keys import OPTIMIZER_HINTS, is_optimizer_state
from ckptdoctor.model import TensorRecord


def scalar_value(t: TensorRecord) -> float:
    arr = np.asarray(t.to_numpy()).reshape(-1)
    if arr.size != 1:
        raise ValueError(f"step tensor has {arr.size} elements")
    if t.dtype.name == "bfloat16":
        return float(np.array([int(arr[0]) << 16], dtype=np.uint32).view(np.float32)[0])
    if t.dtype.numpy is None:
        raise ValueError(f"cannot read a {t.dtype.name} step")
    return float(arr[0])


def optimizer_states(root: Any, max_depth: int = 3) -> list[tuple[str, dict]]:
    """(dotted path, optimizer state_dict) everywhere an optimizer is usually kept."""
    out: list[tuple[str, dict]] = []

    def visit(v: Any, path: str, depth: int) -> None:
        if depth > max_depth:
            return
        if is_optimizer_state(v):
            out.append((path, v))
            return
        if isinstance(v, dict):
            for k, x in v.items():
                if isinstance(k, str):
                    visit(x, f"{path}.{k}" if path else k, depth + 1)
        elif isinstance(v, list) and path.rsplit(".", 1)[-1].lower() in OPTIMIZER_HINTS:
            for i, x in enumerate(v):
                visit(x, f"{path}.{i}", depth + 1)

    visit(root, "", 0)
    return out


def _facts(groups: list[dict], target: Any) -> tuple[list[str], list[F.Facts]]:
    keys: set[str] = set()
    for g in groups:
        keys |= {str(k) for k in g}
    kinds = F.identify(keys)
    v = target if target >= F.releases()[0] else F.releases()[0]
    pair = [k for k in kinds[:2] if k in ("Adam", "AdamW")]
    return kinds, [F.facts(k, v) for k in (pair or kinds[:1])]


class OptimizerCompat(Step):
    id = "optimizer-compat"

    def describe(self) -> str:
        return ("rewrite optimizer state for the target torch: tensor step -> float where it keeps a number, drop "
                "param_groups options it does not know, add options it needs")

    def apply(self, tree: Tree) -> list[Change]:
        changes: list[Change] = []
        for path, opt in optimizer_states(tree.root):
            groups = opt.get("param_groups")
            state = opt.get("state")
            if not isinstance(groups, list) or not isinstance(state, dict):
                continue
            kinds, facts = _facts([g for g in groups if isinstance(g, dict)], tree.target)
            if not kinds:
                tree.notes.append(f"optimizer-compat: {path}: unknown optimizer (param_groups keys "
                                  f"{sorted({str(k) for g in groups if isinstance(g, dict) for k in g})}); left as is")
                continue
            f0 = facts[0]
            where = path or "<root>"
            if f0.step == "int":
                n = 0
                for s in state.values():
                    if isinstance(s, dict) and isinstance(s.get("step"), TensorRecord):
                        s["step"] = scalar_value(s["step"])
                        n += 1
                if n:
                    changes.append(self.change("converted", f"{path}.state.*.step" if path else "state.*.step",
                                               f"{n} tensor step(s) -> float (torch {tree.target} {kinds[0]} "
                                               f"keeps a number)"))
            ever = F.ever_keys(kinds[0])
            for gi, g in enumerate(groups):
                if not isinstance(g, dict):
                    continue
                for k in [k for k in g if isinstance(k, str) and k in ever and all(k not in f.known for f in facts)]:
                    del g[k]
                    changes.append(self.change("dropped", f"{where}.param_groups.{gi}.{k}",
                                               f"torch {tree.target} {kinds[0]} has no {k!r} option"))
                for k in sorted(f0.read - f0.filled):
                    if k not in g and k in f0.defaults:
                        d = f0.defaults[k]
                        g[k] = tuple(d) if isinstance(d, list) else d
                        changes.append(self.change("added", f"{where}.param_groups.{gi}.{k}",
                                                   f"{d!r} (torch {tree.target} step() reads it)"))
        return changes
