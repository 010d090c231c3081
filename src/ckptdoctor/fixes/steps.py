"""The small steps: numpy-core, py2-strings, num_batches_tracked, drop-optimizer, to-cpu.

Also :data:`STEPS` (id -> class) and :func:`make_step`, the registry the CLI
and the ``check`` findings use.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ckptdoctor.fixes.plan import Change, ContainerChange, FixError, Step, Tree
from ckptdoctor.fixes.values import find_state_dict, memory_tensor
from ckptdoctor.model import TensorRecord
from ckptdoctor.pickle.objects import Global, OrderedDictValue, PickledObject
from ckptdoctor.pickle.vm import Py2Bytes, Py2Str

OPTIMIZER_KEYS = (
    "optimizer", "optimizers", "optimizer_state_dict", "optimizer_states", "optim", "optim_state",
    "optim_state_dict", "opt", "scheduler", "schedulers", "lr_scheduler", "lr_schedulers",
    "scheduler_state_dict", "scaler", "grad_scaler", "amp", "amp_scaler",
)
NBT = "num_batches_tracked"


def walk_values(root: Any, fn: Any, max_depth: int = 2000) -> None:
    """Call ``fn(container, key, value)`` for every item of every dict/list in the tree (each once)."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        v, d = stack.pop()
        if d > max_depth or id(v) in seen:
            continue
        if isinstance(v, dict):
            seen.add(id(v))
            for k, x in list(v.items()):
                fn(v, k, x)
                stack.append((x, d + 1))
            if isinstance(v, OrderedDictValue):
                stack.append((v.attrs, d + 1))
        elif isinstance(v, list):
            seen.add(id(v))
            for i, x in enumerate(v):
                fn(v, i, x)
                stack.append((x, d + 1))
        elif isinstance(v, tuple):
            seen.add(id(v))
            stack.extend((x, d + 1) for x in v)
        elif isinstance(v, PickledObject):
            seen.add(id(v))
            stack.extend((x, d + 1) for x in v.args)
            stack.append((v.state, d + 1))
            stack.extend((x, d + 1) for x in v.listitems)
            stack.extend((x, d + 1) for kv in v.dictitems for x in kv)
        elif isinstance(v, TensorRecord) and v.quantizer:
            stack.extend((x, d + 1) for x in v.quantizer.values() if isinstance(x, TensorRecord))


def tensors_in(root: Any) -> list[TensorRecord]:
    out: dict[int, TensorRecord] = {}
    if isinstance(root, TensorRecord):
        out[id(root)] = root

    def fn(c: Any, k: Any, v: Any) -> None:
        if isinstance(v, TensorRecord):
            out[id(v)] = v
            for part in v.sparse_parts or ():
                if isinstance(part, TensorRecord):
                    out[id(part)] = part
            for q in (v.quantizer or {}).values():
                if isinstance(q, TensorRecord):
                    out[id(q)] = q

    walk_values(root, fn)
    return list(out.values())


class NumpyCoreRemap(Step):
    """numpy >= 2 pickles name ``numpy._core``; numpy < 1.26 only knows ``numpy.core`` (and vice versa)."""

    id = "numpy-core"

    def __init__(self, to: str = "numpy.core") -> None:
        if to not in ("numpy.core", "numpy._core"):
            raise FixError("numpy-core: target must be numpy.core or numpy._core")
        self.to = to

    def describe(self) -> str:
        return f"write numpy globals under {self.to} (numpy._core exists from numpy 1.26; numpy.core everywhere)"

    def apply(self, tree: Tree) -> list[Change]:
        frm = "numpy._core" if self.to == "numpy.core" else "numpy.core"
        tree.numpy_module = self.to
        changed: Counter[str] = Counter()

        def remap(g: Any) -> Any:
            if isinstance(g, Global) and (g.module == frm or g.module.startswith(frm + ".")):
                changed[g.qualname] += 1
                return Global(self.to + g.module[len(frm):], g.name, g.offset, g.opcode)
            return g

        def fn(c: Any, k: Any, v: Any) -> None:
            if isinstance(v, Global):
                c[k] = remap(v)
            elif isinstance(v, PickledObject):
                v.callee = remap(v.callee)
                v.args = tuple(remap(a) for a in v.args)

        if isinstance(tree.root, PickledObject):
            fn({}, None, tree.root)
        walk_values(tree.root, fn)
        return [self.change("converted", "", f"{n} x {q} -> {self.to}") for q, n in changed.items()]


class Py2Strings(Step):
    """Python 2 byte strings (``str`` in py2 pickles) -> str; undecodable ones via latin-1."""

    id = "py2-strings"

    def describe(self) -> str:
        return "write Python 2 byte strings as str (UTF-8 where they decode, latin-1 otherwise)"

    def apply(self, tree: Tree) -> list[Change]:
        changes: list[Change] = []
        n_text = 0

        def conv(x: Any) -> Any:
            nonlocal n_text
            if isinstance(x, Py2Bytes):
                return bytes(x).decode("latin-1")
            if isinstance(x, Py2Str):
                n_text += 1
                return str(x)
            return x

        def fn(c: Any, k: Any, v: Any) -> None:
            nv = conv(v)
            if nv is not v:
                if isinstance(v, Py2Bytes):
                    changes.append(self.change("converted", str(k), "Python 2 byte string -> str (latin-1)"))
                c[k] = nv

        walk_values(tree.root, fn)
        # keys: rebuild dicts whose keys are Python 2 strings
        def fix_keys(c: Any, k: Any, v: Any) -> None:
            if isinstance(v, dict) and any(isinstance(x, (Py2Bytes, Py2Str)) for x in v):
                items = [(conv(a), b) for a, b in v.items()]
                v.clear()
                v.update(items)

        walk_values(tree.root, fix_keys)
        if isinstance(tree.root, dict):
            fix_keys(None, None, tree.root)
        if n_text:
            changes.append(self.change("converted", "", f"{n_text} Python 2 string(s) written as str"))
        return changes


class NumBatchesTracked(Step):
    """BatchNorm ``num_batches_tracked``: torch 0.4.1 added it; 0.4.0 refuses it in strict loads."""

    def __init__(self, mode: str) -> None:
        if mode not in ("drop", "add"):
            raise FixError("num_batches_tracked mode must be drop or add")
        self.mode = mode
        self.id = f"{mode}-num-batches-tracked"  # type: ignore[misc]

    def describe(self) -> str:
        if self.mode == "drop":
            return "drop BatchNorm num_batches_tracked entries (for torch 0.4.0)"
        return "add num_batches_tracked = 0 after each BatchNorm's running_var (torch >= 0.4.1 strict loads)"

    def apply(self, tree: Tree) -> list[Change]:
        found = find_state_dict(tree.root)
        if found is None:
            raise FixError(f"{self.id}: no state_dict found (add --extract-state-dict)")
        sd, path = found
        where = "".join(f"{p}." for p in path)
        items = list(sd.items())
        changes: list[Change] = []
        keys = {k for k, _ in items}
        sd.clear()
        for k, v in items:
            if self.mode == "drop" and isinstance(k, str) and (k == NBT or k.endswith("." + NBT)):
                changes.append(self.change("dropped", where + k))
                continue
            sd[k] = v
            if self.mode == "add" and isinstance(k, str) and k.endswith("running_var"):
                prefix = k[: -len("running_var")]
                if prefix + "running_mean" in keys and prefix + NBT not in keys:
                    import numpy as np

                    sd[prefix + NBT] = memory_tensor(np.array(0, dtype=np.int64), key=f"{prefix}{NBT}")
                    changes.append(self.change("added", where + prefix + NBT, "0-dim int64 tensor 0"))
        return changes


class DropOptimizer(Step):
    id = "drop-optimizer"

    def describe(self) -> str:
        return "drop optimizer, scheduler and grad-scaler state from the top level"

    def apply(self, tree: Tree) -> list[Change]:
        root = tree.root
        if not isinstance(root, dict):
            return []
        changes = []
        for k in [k for k in root if isinstance(k, str) and k.lower() in OPTIMIZER_KEYS]:
            n = len(tensors_in(root[k]))
            del root[k]
            changes.append(self.change("dropped", k, f"{n} tensor(s)"))
        return changes


class ToCpu(Step):
    id = "to-cpu"

    def describe(self) -> str:
        return "tag every storage as cpu (loads without CUDA or map_location)"

    def apply(self, tree: Tree) -> list[Change]:
        moved: Counter[str] = Counter()
        seen: set[int] = set()
        for t in tensors_in(tree.root):
            if t.device_override and t.device_override != "meta":
                moved[t.device_override] += 1
                t.device_override = None
            st = t.storage
            if st is not None and id(st) not in seen:
                seen.add(id(st))
                if st.location != "cpu":
                    moved[st.location] += 1
                    st.location = "cpu"
        return [self.change("retagged", "", f"{n} storage(s) {loc} -> cpu") for loc, n in moved.items()]


def make_step(step_id: str, **opts: Any) -> Step:
    """A step by id (``check`` fix commands and ``--step`` use these ids)."""
    from ckptdoctor.fixes.extract import ExtractStateDict
    from ckptdoctor.fixes.rename import Rename, StripPrefixes
    from ckptdoctor.fixes.safe import WeightsOnlySafe
    from ckptdoctor.match.optim_fix import OptimizerCompat

    makers = {
        "extract-state-dict": lambda: ExtractStateDict(opts.get("key")),
        "weights-only-safe": WeightsOnlySafe,
        "rename": lambda: Rename(opts.get("rules"), opts.get("mapping")),
        "strip-prefixes": StripPrefixes,
        "numpy-core": lambda: NumpyCoreRemap(opts.get("numpy_module") or "numpy.core"),
        "py2-strings": Py2Strings,
        "drop-num-batches-tracked": lambda: NumBatchesTracked("drop"),
        "add-num-batches-tracked": lambda: NumBatchesTracked("add"),
        "drop-optimizer": DropOptimizer,
        "to-cpu": ToCpu,
        "container": lambda: ContainerChange(opts.get("container") or "zip"),
        "optimizer-compat": OptimizerCompat,  # ckptdoctor.match.optim_fix (optimizer state for --torch)
    }
    maker = makers.get(step_id)
    if maker is None:
        raise FixError(f"unknown step {step_id!r}; steps: {', '.join(makers)}")
    return maker()


STEP_IDS = (
    "extract-state-dict", "weights-only-safe", "rename", "strip-prefixes", "numpy-core", "py2-strings",
    "drop-num-batches-tracked", "add-num-batches-tracked", "drop-optimizer", "to-cpu", "container",
    "optimizer-compat",
)
