"""Optimizer state checks: does the saved optimizer fit the model, and the target torch?

``Optimizer.load_state_dict`` checks only the number of param groups and the
number of parameters in each; it maps saved state to parameters *by
position*. So a layer added after saving either fails the load ("loaded state
dict contains a parameter group that doesn't match the size of optimizer's
group") or — when the counts happen to agree — silently gives one layer's
``exp_avg`` to another, and ``step()`` fails later with a size error. This
module lines the saved per-parameter state up with the model's parameters in
order, names the layers that changed, and explains optimizer-state version
skew between torch releases (facts in :mod:`ckptdoctor.match.optim_facts`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.match import optim_facts as F
from ckptdoctor.match.keys import Candidate, Entry
from ckptdoctor.model import TensorRecord

SCALAR_STATE = frozenset({"step", "mu_product", "eta", "mu", "func_evals", "n_iter"})
BUFFER_LEAVES = ("running_mean", "running_var", "num_batches_tracked")
FLOAT_DTYPES = ("float", "bfloat", "half", "double", "complex")


@dataclass
class SavedOptimizer:
    path: str
    groups: list[dict]
    ids: list[Any]  # param ids in group order (positions from torch 1.6, id(param) before)
    state: dict

    @property
    def sizes(self) -> list[int]:
        return [len(g.get("params") or []) for g in self.groups]

    def state_shape(self, i: int) -> tuple[int, ...] | None:
        s = self.state.get(self.ids[i]) if i < len(self.ids) else None
        if not isinstance(s, dict):
            return None
        for k, v in s.items():
            if k not in SCALAR_STATE and isinstance(v, TensorRecord):
                return tuple(v.shape)
        return None

    def state_keys(self) -> list[str]:
        keys: list[str] = []
        for s in self.state.values():
            if isinstance(s, dict):
                for k in s:
                    if k not in keys:
                        keys.append(str(k))
        return keys

    def group_keys(self) -> set[str]:
        out: set[str] = set()
        for g in self.groups:
            out |= {str(k) for k in g}
        return out

    def param_names(self) -> list[str] | None:
        names: list[str] = []
        for g in self.groups:
            pn = g.get("param_names")
            if not isinstance(pn, list):
                return None
            names += [str(x) for x in pn]
        return names


def parse(path: str, value: Any) -> SavedOptimizer | None:
    groups = value.get("param_groups")
    state = value.get("state")
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups) or not isinstance(state, dict):
        return None
    ids = [p for g in groups for p in (g.get("params") or [])]
    return SavedOptimizer(path, groups, ids, state)


def parameter_names(c: Candidate, want: int | None = None) -> tuple[list[str], bool]:
    """The model's parameters in ``named_parameters()`` order, and whether that is known (not guessed).

    A state_dict does not say which entries are parameters; the guesses, most likely first, are: float
    tensors that are not BatchNorm statistics; every tensor but those statistics; every float tensor.
    With ``want`` (the number of parameters an optimizer holds) the first guess of that size wins.
    """
    if c.params is not None:
        return list(c.params), True
    tensors = [k for k, e in c.entries.items() if e.tensor and e.shape is not None]
    not_stats = [k for k in tensors if k.rsplit(".", 1)[-1] not in BUFFER_LEAVES]
    floats = [k for k in tensors if not c.entries[k].dtype or c.entries[k].dtype.startswith(FLOAT_DTYPES)]
    guesses = [[k for k in not_stats if k in set(floats)], not_stats, floats, tensors]
    if want is not None:
        for g in guesses:
            if len(g) == want:
                return g, False
    return guesses[0], False


@dataclass
class Slot:
    index: int
    saved_name: str | None
    saved_shape: tuple[int, ...] | None
    target_name: str | None
    target_shape: tuple[int, ...] | None

    @property
    def ok(self) -> bool:
        if self.target_name is None or self.saved_shape is None and self.saved_name is None:
            return False
        if self.saved_shape is not None and self.target_shape is not None:
            return self.saved_shape == self.target_shape
        return True

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "saved": self.saved_name, "saved_state_shape": _l(self.saved_shape),
                "target": self.target_name, "target_shape": _l(self.target_shape), "ok": self.ok}


def _l(s: tuple[int, ...] | None) -> list[int] | None:
    return list(s) if s is not None else None


@dataclass
class OptimizerReport:
    path: str
    kind: list[str]  # optimizer class candidates
    saved_sizes: list[int]
    target_params: int
    slots: list[Slot] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # target params the saved optimizer never saw
    removed: list[str] = field(default_factory=list)  # saved params the target no longer has
    resized: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    names_known: bool = False
    target_guessed: bool = False  # the target's parameter list is a guess from its keys

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "optimizer": self.kind, "saved_group_sizes": self.saved_sizes,
                "target_parameters": self.target_params, "names_known": self.names_known,
                "target_parameters_guessed": self.target_guessed,
                "added": self.added, "removed": self.removed, "resized": self.resized,
                "slots": [s.to_json() for s in self.slots], "findings": [f.to_dict() for f in self.findings]}


def _saved_names(opt: SavedOptimizer, src: Candidate, key_map: Any) -> tuple[list[str | None], bool]:
    """A name (target naming) for each saved optimizer slot, from param_names or the saved model's order."""
    named = opt.param_names()
    if named is not None and len(named) == len(opt.ids):
        return [key_map(n) for n in named], True
    n = len(opt.ids)
    params, known = parameter_names(src, n)
    shapes = [src.entries[p].shape for p in params]
    if len(params) == n:
        agree = all(opt.state_shape(i) in (None, shapes[i]) for i in range(n))
        if agree:
            return [key_map(p) for p in params], known
    # the optimizer may hold a subset (frozen layers left out): align in order by state shape
    out: list[str | None] = []
    j = 0
    for i in range(n):
        want = opt.state_shape(i)
        while j < len(params) and want is not None and shapes[j] != want:
            j += 1
        if j >= len(params):
            return [None] * n, False
        out.append(key_map(params[j]))
        j += 1
    return out, False


def _layers(keys: list[str]) -> list[str]:
    seen: list[str] = []
    for k in keys:
        layer = k.rsplit(".", 1)[0] if "." in k else k
        if layer not in seen:
            seen.append(layer)
    return seen


def check_fit(opt: SavedOptimizer, src: Candidate, target: Candidate, key_map: Any,
              target_sizes: list[int] | None, drop_fix: Fix) -> OptimizerReport:
    t_params, t_known = parameter_names(target, sum(target_sizes) if target_sizes else None)
    guessed = not t_known and not (target_sizes and len(t_params) == sum(target_sizes))
    t_shapes = {k: target.entries[k].shape for k in t_params}
    saved_names, names_known = _saved_names(opt, src, key_map)
    rep = OptimizerReport(opt.path, F.identify(opt.group_keys()), opt.sizes, len(t_params), names_known=names_known,
                          target_guessed=guessed)
    n = len(opt.ids)
    for i in range(max(n, len(t_params))):
        sn = saved_names[i] if i < n else None
        tn = t_params[i] if i < len(t_params) else None
        rep.slots.append(Slot(i, sn, opt.state_shape(i) if i < n else None, tn, t_shapes.get(tn) if tn else None))
    known_saved = [s for s in saved_names if s is not None]
    if known_saved:
        sset = set(known_saved)
        rep.added = [p for p in t_params if p not in sset]
        rep.removed = [s for s in known_saved if s not in t_shapes]
        for i, s in enumerate(saved_names):
            if s is not None and s in t_shapes and opt.state_shape(i) not in (None, t_shapes[s]):
                rep.resized.append(s)
    want = target_sizes or [len(t_params)]
    where = f"optimizer state {opt.path!r}"
    ev: dict[str, Any] = {"path": opt.path, "saved_group_sizes": opt.sizes, "target_group_sizes": want}
    changed = describe_changes(rep)
    sev, blocks = (Severity.WARNING, False) if guessed else (Severity.ERROR, True)
    if guessed:
        changed += (" (The target's parameters are guessed from its keys: a state_dict does not say which "
                    "entries are parameters and which are buffers; give a model as --to module:callable to know.)")
    if len(opt.sizes) != len(want):
        rep.findings.append(Finding(
            "CKD-OPT-GROUPS", sev,
            f"{where}: {len(opt.sizes)} parameter group(s) saved, the optimizer has {len(want)}",
            "optimizer.load_state_dict raises 'loaded state dict has a different number of parameter groups'. "
            "Build the optimizer with the same groups (e.g. the same backbone/head split or no-weight-decay "
            "group) as when it was saved, or load the weights only." + changed, ev, drop_fix, blocks_load=blocks))
    elif opt.sizes != want:
        rep.findings.append(Finding(
            "CKD-OPT-PARAMS", sev,
            f"{where}: {sum(opt.sizes)} parameters saved, the model has {sum(want)}"
            + (f" (groups {opt.sizes} vs {want})" if len(want) > 1 else ""),
            "optimizer.load_state_dict raises \"loaded state dict contains a parameter group that doesn't match "
            "the size of optimizer's group\": the model changed after the optimizer was saved." + changed,
            {**ev, "added": rep.added, "removed": rep.removed}, drop_fix, blocks_load=blocks))
    bad = [s for s in rep.slots[: min(n, len(t_params))] if s.saved_shape is not None and s.target_shape is not None
           and s.saved_shape != s.target_shape]
    if bad:
        first = bad[0]
        silent = opt.sizes == want
        rep.findings.append(Finding(
            "CKD-OPT-STATE-SHAPES", sev,
            f"{where}: saved state for {len(bad)} parameter(s) has the wrong shape, first at position "
            f"{first.index} ({first.target_name}: state {list(first.saved_shape or ())} vs parameter "
            f"{list(first.target_shape or ())})",
            ("Optimizer state is matched to parameters by position, so " +
             ("the load succeeds but step() fails with a size error (or, for equal sizes, silently "
              "uses another layer's moments). " if silent else "even with matching counts it would belong "
              "to other layers. ")) + (f"Saved position {first.index} was {first.saved_name!r}. "
                                       if first.saved_name else "") + changed,
            {**ev, "positions": [s.to_json() for s in bad[:50]]}, drop_fix, blocks_load=silent and blocks))
    return rep


def describe_changes(rep: OptimizerReport) -> str:
    parts = []
    if rep.added:
        parts.append(f"added since saving: {', '.join(_layers(rep.added)[:6])}")
    if rep.removed:
        parts.append(f"removed: {', '.join(_layers(rep.removed)[:6])}")
    if rep.resized:
        parts.append(f"resized: {', '.join(_layers(rep.resized)[:6])}")
    if not parts:
        return ""
    return " Layers " + "; ".join(parts) + ("" if rep.names_known else " (names lined up by order and shape)") + "."


# ------------------------------------------------------------------------------------ version skew
def _clamp(v: Version) -> Version:
    first = F.releases()[0]
    return v if v >= first else first


def check_version(opt: SavedOptimizer, target: Version, fix_cmd: str | None) -> list[Finding]:
    """Explain what the target torch does with this saved optimizer state (facts: optim_versions.json)."""
    kinds = F.identify(opt.group_keys())
    if not kinds:
        return []
    tv = _clamp(target)
    name = "/".join(kinds[:2]) if kinds[:2] == ["Adam", "AdamW"] else kinds[0]
    facts = [F.facts(k, tv) for k in kinds[:2] if k in ("Adam", "AdamW")] or [F.facts(kinds[0], tv)]
    f0 = facts[0]
    gkeys = opt.group_keys() - F.NOT_OPTIONS
    saved = F.saved_by(kinds[0], gkeys)
    out: list[Finding] = []
    where = f"optimizer state {opt.path!r} ({name})"
    fix = Fix(f"rewrite the optimizer state for torch {target}", command=fix_cmd) if fix_cmd else None
    ev_base = {"path": opt.path, "optimizer": kinds, "saved_by": saved, "target_torch": str(target)}
    if not f0.present:
        out.append(Finding("CKD-OPT-CLASS", Severity.ERROR, f"{where}: torch {target} has no {kinds[0]}",
                           f"{kinds[0]} first appears in torch {F.since(F.table()['optimizers'][kinds[0]]['present'])}.",
                           ev_base, blocks_load=True))
        return out
    unknown = sorted(k for k in gkeys if all(k not in f.known for f in facts))
    if unknown:
        intro = ", ".join(f"{k} ({F.key_since(kinds[0], k) or '?'}+)" for k in unknown)
        out.append(Finding(
            "CKD-OPT-KEYS-NEW", Severity.WARNING,
            f"{where}: param_groups carry option(s) torch {target} does not know: {', '.join(unknown)}",
            f"These {kinds[0]} options were added after torch {target}: {intro}. Optimizer.load_state_dict keeps "
            f"every saved group key, so they ride along and torch {target}'s step() ignores them; the state was "
            f"saved by torch {saved or '?'} or later. Drop them for a clean state.",
            {**ev_base, "keys": unknown}, fix))
    lacking = sorted(k for k in f0.read if k not in gkeys and k not in f0.filled)
    if lacking:
        out.append(Finding(
            "CKD-OPT-KEYS-MISSING", Severity.ERROR,
            f"{where}: torch {target}'s step() needs {', '.join(lacking)}, which the saved groups lack",
            f"torch {target} reads group[{lacking[0]!r}] in step() and its __setstate__ does not fill it in, so "
            f"training fails with KeyError: {lacking[0]!r} after loading this state. Add the key(s) with the "
            f"constructor default ({', '.join(f'{k}={f0.defaults.get(k)!r}' for k in lacking)}).",
            {**ev_base, "keys": lacking}, fix, blocks_load=True))
    filled = sorted(k for k in f0.known if k not in gkeys and k in f0.filled)
    if filled:
        out.append(Finding(
            "CKD-OPT-KEYS-FILLED", Severity.INFO,
            f"{where}: torch {target} fills in {', '.join(filled)} itself",
            f"The saved groups predate these options; torch {target}'s {kinds[0]}.__setstate__ sets them to "
            "their defaults on load.", {**ev_base, "keys": filled}))
    steps = [s.get("step") for s in opt.state.values() if isinstance(s, dict) and "step" in s]
    tensor_steps = [s for s in steps if isinstance(s, TensorRecord)]
    number_steps = [s for s in steps if isinstance(s, (int, float)) and not isinstance(s, bool)]
    if tensor_steps and f0.step == "int":
        exempt = F.step_cast_exempt_since()
        since_t = F.step_tensor_since(kinds[0])
        dt = tensor_steps[0].dtype.name
        out.append(Finding(
            "CKD-OPT-STEP-TENSOR", Severity.ERROR,
            f"{where}: 'step' is a {dt} tensor (torch >= {since_t}); torch {target} keeps it as a Python number",
            f"torch {target}'s {kinds[0]} starts state['step'] at 0 and passes it to the update as an int "
            f"(bias_correction = 1 - beta ** step). Given a tensor, that arithmetic runs as tensor ops on the "
            f"parameter's device (a device sync per parameter per step on GPU), torch.optim._multi_tensor "
            f"fails on the list of tensors where floats are expected, and load_state_dict before "
            f"{exempt} casts the step tensor to each parameter's dtype (pytorch issue 74424) — fp16/bf16 "
            f"parameters then get a rounded step count (bf16 holds integers exactly only up to 256). "
            f"Convert step to a float.",
            {**ev_base, "entries": len(tensor_steps), "dtype": dt}, fix))
    if number_steps and f0.step == "tensor":
        out.append(Finding(
            "CKD-OPT-STEP-NUMBER", Severity.INFO,
            f"{where}: 'step' is a number; torch {target} converts it to a tensor on load",
            f"torch >= {F.step_tensor_since(kinds[0])} stores step as a tensor; its __setstate__ converts "
            "saved numbers, so this loads as is.", {**ev_base, "entries": len(number_steps)}))
    if str(target) in ("1.12", "1.12.0") and kinds[0] in ("Adam", "AdamW"):
        out.append(Finding(
            "CKD-OPT-1120", Severity.WARNING, f"{where}: torch 1.12.0 cannot resume Adam/AdamW state on CUDA",
            "torch 1.12.0 moves the loaded step tensor to the GPU and then refuses it ('If capturable=False, "
            "state_steps should not be CUDA tensors', pytorch issue 80809); fixed in 1.12.1. Use 1.12.1, or "
            "capturable=True.", ev_base))
    return out


def find_in(candidates: Any) -> list[SavedOptimizer]:
    out = []
    for path, value in candidates:
        o = parse(path, value)
        if o is not None:
            out.append(o)
    return out


def target_group_sizes(side_optimizers: list[tuple[str, Any]]) -> list[int] | None:
    opts = find_in(side_optimizers)
    return opts[0].sizes if opts else None


def entry_shape(e: Entry | None) -> tuple[int, ...] | None:
    return e.shape if e is not None else None
