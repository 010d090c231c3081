"""Choosing steps: the automatic plan of ``fix``, the fixed plan of ``convert``, and target checks."""

from __future__ import annotations

from typing import Any

from packaging.version import Version

from ckptdoctor import dtypes
from ckptdoctor.fixes.extract import ExtractStateDict
from ckptdoctor.fixes.plan import Change, ContainerChange, FixError, Plan, Step, Tree, default_container
from ckptdoctor.fixes.safe import WeightsOnlySafe, needs_weights_only_safe
from ckptdoctor.fixes.steps import NumBatchesTracked, Py2Strings, ToCpu, tensors_in, walk_values
from ckptdoctor.model import TensorRecord
from ckptdoctor.pickle.objects import PickledObject
from ckptdoctor.pickle.vm import Py2Bytes
from ckptdoctor.walk import ScriptModuleValue, is_module

V = Version


def _has(root: Any, pred: Any) -> bool:
    found = [False]

    def fn(c: Any, k: Any, v: Any) -> None:
        if not found[0] and (pred(v) or pred(k)):
            found[0] = True

    walk_values(root, fn)
    return found[0]


def auto_plan(tree: Tree, container: str | None = None) -> tuple[Plan, list[Change]]:
    """What ``fix`` does when no step is named: whatever stops the target torch from loading the file.

    Each step is chosen by looking at the tree *as the previous steps left
    it*, so the plan is built and applied together; returns the plan and
    the changes (the tree is changed in place, in memory only).
    """
    steps: list[Step] = []
    changes: list[Change] = []

    def run(step: Step) -> None:
        steps.append(step)
        changes.extend(step.apply(tree))

    root = tree.root
    if isinstance(root, ScriptModuleValue) or (isinstance(root, PickledObject) and is_module(root)):
        run(ExtractStateDict())
    if _has(tree.root, lambda v: isinstance(v, Py2Bytes)):
        run(Py2Strings())
    if needs_weights_only_safe(tree.root, tree.target):
        run(WeightsOnlySafe())
    if any(_off_cpu(t) for t in tensors_in(tree.root)):
        run(ToCpu())
    if tree.target < V("0.4.1") and _has(tree.root, lambda v: isinstance(v, str) and v.endswith("num_batches_tracked")):
        run(NumBatchesTracked("drop"))
    run(ContainerChange(container or default_container(tree.format, tree.target)))
    return Plan(steps), changes


def convert_plan(tree: Tree, container: str | None = None, *, keep_objects: bool = False) -> Plan:
    """``convert``: change the container; content only as far as the result must load weights-only.

    TorchScript modules always become their state_dict (a torch.save file
    holds no code). Unless ``keep_objects``, objects weights-only loading
    refuses are replaced too (:class:`WeightsOnlySafe`); with it they are
    written back as the same calls (for ``weights_only=False`` loads, e.g.
    a whole model converted for torch <= 1.5).
    """
    steps: list[Step] = []
    if isinstance(tree.root, ScriptModuleValue):
        steps.append(ExtractStateDict())
    if not keep_objects and needs_weights_only_safe(tree.root, tree.target):
        steps.append(WeightsOnlySafe())
    steps.append(ContainerChange(container or default_container(tree.format, tree.target)))
    return Plan(steps)


def _off_cpu(t: TensorRecord) -> bool:
    if t.device_override and t.device_override != "meta":
        return True
    return t.storage is not None and t.storage.location != "cpu"


def check_target(tree: Tree) -> None:
    """Refuse what the target torch (and the container) cannot read, before anything is written."""
    t, c = tree.target, tree.container
    if c in ("zip", "legacy") and t < V("0.4"):
        raise FixError(f"writing for torch {t} is not supported (torch < 0.4 used other tensor calls)")
    if c == "zip" and t < V("1.5"):
        raise FixError(f"torch {t} cannot read the zip format (1.6 default, 1.5 reads version 3); use --to legacy")
    if c == "safetensors":
        return
    too_new: dict[str, str] = {}
    for rec in tensors_in(tree.root):
        dt = rec.dtype
        need = dt.first_torch
        if dt.storage_class is None:
            need = max(V(need), V("2.2")).base_version  # _rebuild_tensor_v3
        if V(need) > t:
            too_new[dt.name] = need
    if too_new:
        what = ", ".join(f"{k} (torch >= {v})" for k, v in sorted(too_new.items()))
        raise FixError(f"torch {t} cannot hold these dtypes: {what}")


def dtype_names(root: Any) -> list[str]:
    return sorted({t.dtype.name for t in tensors_in(root)} & set(dtypes.BY_NAME))
