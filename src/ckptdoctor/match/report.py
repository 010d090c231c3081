"""Assemble a match report and render it: grouped text that fits one screen, or JSON with everything."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from packaging.version import Version

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.match import batchnorm, optimizer, shapes
from ckptdoctor.match.compare import Comparison, compare
from ckptdoctor.match.group import summarize
from ckptdoctor.match.keys import Candidate, Side
from ckptdoctor.match.mapping import Inference, Mapping, apply_mapping, default_output
from ckptdoctor.match.torchcheck import differs, torch_compare


@dataclass
class MatchReport:
    checkpoint: Side
    target: Side
    inference: Inference
    as_saved: Comparison
    after: Comparison | None  # after the inferred mapping (None: the mapping renames nothing)
    findings: list[Finding] = field(default_factory=list)
    optimizers: list[optimizer.OptimizerReport] = field(default_factory=list)
    torch: str | None = None

    @property
    def source(self) -> Candidate:
        return self.inference.candidate

    @property
    def mapping(self) -> Mapping:
        return self.inference.mapping

    @property
    def final(self) -> Comparison:
        return self.after or self.as_saved

    @property
    def ok(self) -> bool:
        """Everything matches as saved and nothing else is wrong (exit code 0)."""
        return self.as_saved.loads_strict and not any(f.severity >= Severity.ERROR for f in self.findings)

    def fix_command(self, *extra: str) -> str:
        return shlex.join(["ckptdoctor", "fix", self.checkpoint.label, "-o", default_output(self.checkpoint.label),
                           *self.mapping.to_fix_args(), *extra])

    def to_json(self) -> dict[str, Any]:
        from ckptdoctor import __version__

        src = self.source
        return {
            "ckptdoctor": __version__,
            "ok": self.ok,
            "checkpoint": {"path": self.checkpoint.label, "format": self.checkpoint.format,
                           "state_dict": src.where, "origin": src.origin, "entries": len(src.entries),
                           "keys": {k: e.to_json() for k, e in src.entries.items()}},
            "target": {"spec": self.target.label, "kind": self.target.kind, "origin": self.target.primary.origin,
                       "entries": len(self.target.primary.entries),
                       "keys": {k: e.to_json() for k, e in self.target.primary.entries.items()}},
            "candidates": [{"state_dict": c.where, "origin": c.origin, "matched": s.good, "named": s.named}
                           for c, s in [(src, self.inference.score), *self.inference.alternatives]],
            "as_saved": self.as_saved.to_json(),
            "mapping": {**self.mapping.to_json(), "matched_after": self.inference.score.good,
                        "command": self.fix_command() if not self.mapping.is_identity else None,
                        "python": self.mapping.python() or None},
            "after_mapping": self.after.to_json() if self.after is not None else None,
            "groups": {name: [{"pattern": g.pattern, "count": g.count} for g in summarize(keys, 12)]
                       for name, keys in (("missing", self.final.missing), ("unexpected", self.final.unexpected))},
            "findings": [f.to_dict() for f in self.findings],
            "optimizers": [o.to_json() for o in self.optimizers],
            "target_torch": self.torch,
            "notes": self.checkpoint.notes + self.target.notes,
        }


# ----------------------------------------------------------------------------------------- building
def build(ckpt: Side, target: Side, inference: Inference, *, torch: str | None = None) -> MatchReport:
    tgt = target.primary
    cand = inference.candidate
    as_saved = compare(cand.entries, cand.metadata, tgt)
    hooks: list[str] = []
    if tgt.module is not None:  # a live model: torch's own verdict wins where its load hooks differ
        theirs = torch_compare(tgt, cand.entries, cand.metadata, as_saved)
        if theirs is not None and differs(theirs, as_saved):
            hooks = sorted(set(as_saved.missing + as_saved.unexpected) - set(theirs.missing + theirs.unexpected))
            as_saved = theirs
            if as_saved.loads_strict and inference.mapping.renames_keys:  # nothing to rename after all
                inference.mapping.rules, inference.mapping.renames = [], {}
    after = None
    if inference.mapping.renames_keys:
        entries, meta = apply_mapping(cand, inference.mapping)
        after = compare(entries, meta, tgt)
        if tgt.module is not None:
            theirs = torch_compare(tgt, entries, meta, after)
            if theirs is not None and differs(theirs, after):
                hooks = sorted(set(hooks) | (set(after.missing + after.unexpected)
                                             - set(theirs.missing + theirs.unexpected)))
                after = theirs
    rep = MatchReport(ckpt, target, inference, as_saved, after, torch=torch)
    rep.findings = _findings(rep)
    if hooks:
        rep.findings.append(Finding(
            "CKD-MATCH-TORCH-HOOKS", Severity.INFO,
            f"the model's own load hooks accept {len(hooks)} key(s) a plain key comparison would not",
            "The model converts these keys while loading (a load_state_dict pre-hook or a "
            "_load_from_state_dict override, e.g. weight_norm's parametrization taking the old weight_g/"
            "weight_v). The lists above are torch's own answer, asked with meta tensors.",
            {"keys": hooks}))
    _optimizer_checks(rep)
    rep.findings.sort(key=lambda f: -int(f.severity))
    return rep


def _findings(rep: MatchReport) -> list[Finding]:
    out: list[Finding] = []
    a, fin, m = rep.as_saved, rep.final, rep.mapping
    tgt = rep.target.primary
    fix_prefix = rep.fix_command()
    if not a.loads_strict and (a.missing or a.unexpected):
        if m.renames_keys and not (fin.missing or fin.unexpected):
            title = (f"keys differ as saved ({len(a.missing)} missing, {len(a.unexpected)} unexpected); "
                     f"the inferred mapping matches all {len(tgt.entries)}")
        else:
            title = f"{len(fin.missing)} missing and {len(fin.unexpected)} unexpected key(s)" + \
                    (" after the inferred mapping" if m.renames_keys else "")
        out.append(Finding(
            "CKD-MATCH-KEYS", Severity.ERROR, title,
            "load_state_dict(strict=True) raises 'Missing key(s) ... Unexpected key(s)'; strict=False loads the "
            "matching keys and leaves the rest of the model as initialised." +
            (" Rename the keys as the mapping says (order kept, nothing else changed)." if m.renames_keys else ""),
            {"missing": a.missing, "unexpected": a.unexpected, "mapping": m.to_json()},
            Fix("; ".join(m.describe()), command=fix_prefix, python=m.python() or None) if not m.is_identity else None,
            blocks_load=True))
    for bug in rep.inference.replace_bugs:
        if bug.mangled:
            ex = next(iter(bug.mangled.items()))
            out.append(Finding(
                "CKD-MATCH-REPLACE-MANGLED", Severity.ERROR,
                f"{len(bug.mangled)} key(s) were mangled by str.replace({bug.prefix!r}, '')",
                f"These checkpoint keys lost {bug.prefix!r} inside the name, not only at the start (e.g. "
                f"{ex[0]!r} should be {ex[1]!r}): whoever saved it stripped the prefix with "
                f"k.replace({bug.prefix!r}, ''). The mapping renames them back exactly.",
                {"prefix": bug.prefix, "renames": bug.mangled}, Fix("rename them back", command=fix_prefix)))
        if bug.at_risk:
            k, bad = bug.at_risk[0]
            out.append(Finding(
                "CKD-MATCH-REPLACE-RISK", Severity.WARNING,
                f"don't strip {bug.prefix!r} with str.replace: {len(bug.at_risk)} key(s) contain it inside",
                f"k.replace({bug.prefix!r}, '') also cuts it in the middle of names: {k!r} would become {bad!r} "
                f"and no longer match. Strip the leading prefix only: k.removeprefix({bug.prefix!r}) "
                f"(or ckptdoctor fix --rename '{bug.prefix}=').",
                {"prefix": bug.prefix, "keys": [k for k, _ in bug.at_risk[:200]],
                 "would_become": [b for _, b in bug.at_risk[:200]]},
                Fix("strip only the leading prefix", python=f"k = k.removeprefix({bug.prefix!r})")))
    mism = [shapes.Mismatch(k, sa, sb) for k, sa, sb in fin.shape_mismatch]
    out += shapes.explain(mism, tgt, rep.checkpoint.label, fin.legacy_scalars)
    out += batchnorm.explain(fin, fix_prefix)
    if fin.not_tensor:
        out.append(Finding(
            "CKD-MATCH-NOT-TENSOR", Severity.ERROR,
            f"{len(fin.not_tensor)} entr(ies) are not tensors where the model has a parameter or buffer",
            "load_state_dict raises 'expected torch.Tensor or Tensor-like object from checkpoint'.",
            {"entries": [{"key": k, "type": t} for k, t in fin.not_tensor]}, blocks_load=True))
    if fin.dtype_diff:
        pairs: dict[tuple[str, str], int] = {}
        for _, da, db in fin.dtype_diff:
            pairs[(da, db)] = pairs.get((da, db), 0) + 1
        what = ", ".join(f"{n} {da} -> {db}" for (da, db), n in pairs.items())
        out.append(Finding(
            "CKD-MATCH-DTYPE", Severity.INFO, f"{len(fin.dtype_diff)} tensor(s) have another dtype: {what}",
            "load_state_dict copies values into the model's tensors, converting the dtype; nothing fails, but "
            "precision follows the model (a float16 checkpoint in a float32 model stays float16-precise).",
            {"entries": [{"key": k, "checkpoint": da, "target": db} for k, da, db in fin.dtype_diff]}))
    for c, s in rep.inference.alternatives:
        if s.good == rep.inference.score.good and s.good > 0:
            out.append(Finding(
                "CKD-MATCH-ALTERNATIVE", Severity.INFO,
                f"{c.where or c.origin!r} matches as well ({s.good} keys)",
                f"The file holds more than one state_dict that fits (e.g. the EMA weights beside the raw ones); "
                f"this report uses {rep.source.where or rep.source.origin!r}. Use --key {c.where} for the other.",
                {"state_dict": c.where, "origin": c.origin}))
    return out


def _optimizer_checks(rep: MatchReport) -> None:
    opts = optimizer.find_in(rep.checkpoint.optimizers)
    if not opts:
        return
    m = rep.mapping
    drop_cmd = rep.fix_command() if m.extract is not None else rep.fix_command("--step", "drop-optimizer")
    drop = Fix("load the weights and start the optimizer afresh (drop the saved optimizer state)", command=drop_cmd)
    target_sizes = optimizer.target_group_sizes(rep.target.optimizers)
    for o in opts:
        r = optimizer.check_fit(o, rep.source, rep.target.primary, m.key, target_sizes, drop)
        rep.optimizers.append(r)
        rep.findings += r.findings
        if rep.torch:
            cmd = shlex.join(["ckptdoctor", "fix", rep.checkpoint.label, "-o", default_output(rep.checkpoint.label),
                              "--torch", rep.torch, "--step", "optimizer-compat"])
            vf = optimizer.check_version(o, Version(rep.torch), cmd)
            r.findings += vf
            rep.findings += vf


# ----------------------------------------------------------------------------------------- text
def _shape(s: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(x) for x in s) + "]"


def _groups(out: list[str], title: str, keys: list[str], budget: int, indent: str = "  ") -> None:
    if not keys:
        return
    head, _, tail = title.partition(" (")
    out.append(f"{indent}{head} ({len(keys)}" + (f"; {tail}" if tail else ")") + ":")
    for g in summarize(keys, budget):
        out.append(f"{indent}  {g}")


def _mismatch_lines(out: list[str], cmp: Comparison, budget: int, indent: str = "  ") -> None:
    ms = cmp.shape_mismatch
    if not ms:
        return
    out.append(f"{indent}size mismatch ({len(ms)}; checkpoint -> model):")
    if len(ms) <= budget:
        for k, a, b in ms:
            out.append(f"{indent}  {k}: {_shape(a)} -> {_shape(b)}")
        return
    shape_of = {k: (a, b) for k, a, b in ms}
    for g in summarize([k for k, _, _ in ms], budget):
        pairs = {shape_of[k] for k in g.keys}
        extra = f": {_shape(next(iter(pairs))[0])} -> {_shape(next(iter(pairs))[1])}" if len(pairs) == 1 else ""
        out.append(f"{indent}  {g}{extra}")


def _verdict(c: Comparison, total: int) -> str:
    if c.loads_strict:
        return f"all {total} keys match: load_state_dict(strict=True) succeeds"
    filled = f" (+{len(c.filled_nbt)} num_batches_tracked torch fills in)" if c.filled_nbt else ""
    parts = []
    if c.missing:
        parts.append(f"{len(c.missing)} missing")
    if c.unexpected:
        parts.append(f"{len(c.unexpected)} unexpected")
    if c.shape_mismatch:
        parts.append(f"{len(c.shape_mismatch)} size mismatch(es)")
    if c.not_tensor:
        parts.append(f"{len(c.not_tensor)} not tensors")
    return f"{len(c.matched)} of {total} keys load{filled}; strict=True fails: " + ", ".join(parts)


def render_text(rep: MatchReport, max_findings: int = 8) -> str:
    out: list[str] = []
    src, tgt = rep.source, rep.target.primary
    where = f"state_dict at {src.where!r}" if src.where else src.origin
    out.append(f"checkpoint: {rep.checkpoint.label} ({rep.checkpoint.format}; {where}; {len(src.entries)} entries)")
    out.append(f"target:     {rep.target.label} ({tgt.origin}; {len(tgt.entries)} entries)")
    total = len(tgt.entries)
    a = rep.as_saved
    out.append(f"as saved:   {_verdict(a, total)}")
    budget = 4 if rep.after is not None else 6
    _groups(out, "missing (in the target, not in the checkpoint)", a.missing, budget)
    _groups(out, "unexpected (in the checkpoint, not in the target)", a.unexpected, budget)
    _mismatch_lines(out, a, budget)
    m = rep.mapping
    if not m.is_identity:
        out.append(f"mapping:    {'; '.join(m.describe())}  ({rep.inference.score.good} of {total} keys match after it)")
        out.append(f"  {rep.fix_command()}")
    elif not a.loads_strict and (a.missing and a.unexpected):
        out.append("mapping:    none: no prefix rename matches more keys (other names or another architecture)")
    if rep.after is not None:
        f = rep.after
        out.append(f"after it:   {_verdict(f, total)}")
        _groups(out, "missing", f.missing, 4)
        _groups(out, "unexpected", f.unexpected, 4)
        _mismatch_lines(out, f, 4)
    for o in rep.optimizers:
        saved = sum(o.saved_sizes)
        kind = "/".join(o.kind[:2]) or "optimizer"
        line = f"optimizer:  {o.path!r} ({kind}): {saved} parameter(s) in {len(o.saved_sizes)} group(s) saved, " \
               f"model has {o.target_params}"
        out.append(line)
        changes = optimizer.describe_changes(o).strip()
        if changes:
            out.append(f"  {changes}")
        if any(f.blocks_load for f in o.findings):
            drop = next(f.fix for f in o.findings if f.blocks_load and f.fix)
            out.append(f"  weights only, fresh optimizer: {drop.command}")
    shown = [f for f in rep.findings if f.id != "CKD-MATCH-KEYS"]
    if shown:
        out.append("findings:")
        for f in shown[:max_findings]:
            out.append(f"  {f.severity.label:7s} {f.id}: {f.title}")
            if f.fix and f.fix.command and f.fix.command != rep.fix_command():
                out.append(f"          fix: {f.fix.command}")
        if len(shown) > max_findings:
            out.append(f"  ... {len(shown) - max_findings} more finding(s): --json has them all")
    notes = rep.checkpoint.notes + rep.target.notes
    for n in notes[:3]:
        out.append(f"note: {n}")
    out.append("result:     " + ("OK" if rep.ok else "MISMATCH") + " (--json for every key and explanation)")
    return "\n".join(out) + "\n"
