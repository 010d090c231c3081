"""Verdicts for every callable a file's pickles would reach, as :class:`~ckptdoctor.findings.Finding` data.

Severity follows what loading would *do*, not which names appear:

* ``dangerous`` callables that are called, instantiated, handed to something
  that calls them, fed into a call or BUILD, or BUILD on a module-level object,
  and calls of computed callables: CRITICAL (``CKD-SEC-DANGEROUS``,
  ``CKD-SEC-INDIRECT-CALL``). Unlisted standard-library callables count only
  when called.
* dangerous names that are only imported and never used: WARNING
  (``CKD-SEC-DANGEROUS-REF``), except modules whose import alone acts.
* ``unknown`` callables that are called or instantiated (user classes of a
  whole-model pickle, third-party types): WARNING (``CKD-SEC-UNKNOWN``).
* benign types torch's ``weights_only`` unpickler refuses: INFO
  (``CKD-SEC-ALLOWLIST``) with the ``add_safe_globals`` line.
"""

from __future__ import annotations

from typing import Any

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.security.pickles import PickleScan, Reach
from ckptdoctor.security.sites import FileScan

ACTIVE = ("called", "instantiated", "called-later", "passed", "built-on")
HOW_TEXT = {
    "called": "calls", "instantiated": "instantiates", "called-later": "hands to a function that calls it:",
    "passed": "passes", "built-on": "sets attributes (BUILD) on", "referenced": "imports",
}


def reach_severity(r: Reach) -> Severity | None:
    c = r.cls
    if c.category == "dangerous":
        if r.how == "referenced":
            return Severity.CRITICAL if c.kind == "import-side-effect" else Severity.WARNING
        if c.only_when_called and r.how == "passed":
            return Severity.WARNING
        return Severity.CRITICAL
    if c.category == "unknown":
        return Severity.WARNING if r.how in ("called", "instantiated", "called-later") else Severity.INFO
    if c.category == "needs-allowlist":
        return Severity.INFO
    return None


def _where(p: PickleScan, location: str) -> str:
    return f"{location}{p.label}" if location else p.label


def _sentence(r: Reach, p: PickleScan, location: str) -> str:
    where = _where(p, location)
    at = f"{r.opcode} at byte {r.offset}"
    if r.how == "referenced":
        base = f"{where} imports {r.name} ({at}) but never calls it"
    elif r.how == "passed":
        base = f"{where} passes {r.name} into {', '.join(r.via) or 'a call'} ({at})"
    elif r.how == "called-later":
        base = f"{where} hands {r.name} to {', '.join(r.via)}, which calls it ({at})"
    elif r.how == "built-on":
        base = f"{where} runs BUILD on {r.name} itself ({at})"
    else:
        base = f"{where} {HOW_TEXT[r.how]} {r.name} ({at})"
    if r.example and r.how != "referenced":
        base += f": {r.example}"
    if r.count > 1:
        base += f" [{r.count} times]"
    return base


def _wo_note(r: Reach) -> str:
    if r.cls.weights_only:
        return ""
    return (" torch >= 2.6 refuses it under the default weights_only=True; it runs with weights_only=False, "
            "with torch < 2.6, or with any plain pickle loader.")


def pickle_findings(p: PickleScan, location: str = "", *, cap: Severity | None = None) -> list[Finding]:
    """Findings for one scanned pickle; ``cap`` lowers severities (payloads that are only carried)."""
    out: list[Finding] = []
    unknown: list[Reach] = []
    unknown_refs: list[Reach] = []
    allow: list[Reach] = []

    def capped(sev: Severity) -> Severity:
        return min(sev, cap) if cap is not None else sev

    for r in sorted(p.reaches.values(), key=lambda r: r.offset):
        sev = reach_severity(r)
        if sev is None:
            continue
        c = r.cls
        if c.category == "dangerous":
            crit = sev == Severity.CRITICAL
            fid = "CKD-SEC-DANGEROUS" if crit else "CKD-SEC-DANGEROUS-REF"
            title = (f"loading would reach {r.name}: {c.kind_label}" if crit
                     else f"imports {r.name} ({c.kind_label}) without calling it")
            expl = f"{_sentence(r, p, location)}. {r.name}: {c.what}."
            if crit:
                expl += f" This pickle is run by {p.executed_by}." + _wo_note(r)
            else:
                expl += " Unpickling imports its module; code that later uses the value would run it."
            out.append(Finding(
                fid, capped(sev), title, expl,
                evidence=_evidence(r, p, location),
                fix=Fix("Do not load this file with torch.load(weights_only=False) or pickle; take the tensors "
                        "out without running the pickle", command="ckptdoctor convert FILE -o weights.safetensors")
                if crit else None,
            ))
        elif c.category == "unknown":
            (unknown if sev == Severity.WARNING else unknown_refs).append(r)
        else:
            allow.append(r)
    for ind in p.indirect:
        out.append(Finding(
            "CKD-SEC-INDIRECT-CALL", capped(Severity.CRITICAL),
            "loading would call a value the pickle computed (indirect call gadget)",
            f"{_where(p, location)} {ind.source} ({ind.opcode} at byte {ind.offset}): {ind.example}. No checkpoint "
            f"writer calls the result of a call; this is how getattr/attrgetter/import chains reach functions "
            f"no name list can see. This pickle is run by {p.executed_by}.",
            evidence={"opcode": ind.opcode, "offset": ind.offset, "pickle": _where(p, location), "call": ind.example},
            fix=Fix("Do not load this file with weights_only=False or pickle",
                    command="ckptdoctor convert FILE -o weights.safetensors"),
        ))
    if unknown:
        names = ", ".join(f"{r.name} ({r.opcode} at byte {r.offset})" for r in unknown[:6])
        more = f" and {len(unknown) - 6} more" if len(unknown) > 6 else ""
        out.append(Finding(
            "CKD-SEC-UNKNOWN", capped(Severity.WARNING),
            f"loading would import and run {len(unknown)} callable(s) ckptdoctor does not know",
            f"{_where(p, location)} calls or instantiates {names}{more}. These are not types any checkpoint "
            "library writes (user classes of a whole-model pickle, third-party objects); loading imports their "
            "modules and runs their constructors/__setstate__. Review that code, or load only the tensors.",
            evidence={"pickle": _where(p, location), "globals": [_evidence(r, p, location) for r in unknown[:50]]},
            fix=Fix("Keep only the tensors (no class code runs)",
                    command="ckptdoctor fix FILE -o state_dict.pt --extract-state-dict"),
        ))
    if unknown_refs:
        out.append(Finding(
            "CKD-SEC-UNKNOWN-REF", capped(Severity.INFO),
            f"{len(unknown_refs)} unknown name(s) imported but not called",
            f"{_where(p, location)} imports " + ", ".join(r.name for r in unknown_refs[:8])
            + (" ..." if len(unknown_refs) > 8 else "") + " without calling them (loading still imports the modules).",
            evidence={"pickle": _where(p, location), "globals": [r.name for r in unknown_refs[:50]]},
        ))
    needs = [r for r in allow if not r.cls.weights_only]
    if needs:
        names = sorted({r.cls.qualname for r in needs})
        out.append(Finding(
            "CKD-SEC-ALLOWLIST", Severity.INFO,
            f"benign types torch's weights_only loader refuses: {', '.join(names[:4])}"
            + (" ..." if len(names) > 4 else ""),
            f"{_where(p, location)} uses {', '.join(names[:12])}" + (" ..." if len(names) > 12 else "")
            + ". They are data holders ckptdoctor recognises, but torch.load(weights_only=True) rejects them "
            "unless allowlisted.",
            evidence={"pickle": _where(p, location), "globals": names[:100]},
            fix=Fix("Allowlist them for weights_only loading (only if you trust these types)",
                    python=f"torch.serialization.add_safe_globals([{', '.join(names[:8])}])"),
        ))
    return out


def _evidence(r: Reach, p: PickleScan, location: str) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "global": r.name, "category": r.cls.category, "how": r.how, "opcode": r.opcode, "offset": r.offset,
        "pickle": _where(p, location), "executed_by": p.executed_by,
        "weights_only_allows": r.cls.weights_only, "rule": r.cls.matched,
    }
    if r.cls.kind:
        ev["kind"] = r.cls.kind
    if r.cls.qualname != r.name:
        ev["resolves_to"] = r.cls.qualname
    if r.count > 1:
        ev["count"] = r.count
        ev["offsets"] = r.offsets
    if r.via:
        ev["via"] = r.via
    if r.example:
        ev["call"] = r.example
    return ev


def file_findings(fs: FileScan, location: str = "", *, cap: Severity | None = None) -> list[Finding]:
    """Findings for every pickle of a scanned file, its polyglot zip and its nested payloads."""
    out: list[Finding] = []
    for p in fs.pickles:
        out.extend(pickle_findings(p, location, cap=cap))
    if fs.embedded_zip is not None:
        off = fs.embedded_zip.zip.offset if fs.embedded_zip.zip else 0
        out.extend(file_findings(fs.embedded_zip, location + f"zip archive hidden at byte {off}: ", cap=cap))
    for n in fs.nested:
        sub_cap = cap if n.risky else Severity.WARNING
        what = f"nested payload in {n.where}"
        if n.deserialiser:
            what += f", deserialised by {n.deserialiser}"
        nested = file_findings(n.scan, location + what + ": ", cap=sub_cap)
        if not n.risky:
            nested = [_carried(f) for f in nested]
        out.extend(nested)
    return out


def _carried(f: Finding) -> Finding:
    if f.id not in ("CKD-SEC-DANGEROUS", "CKD-SEC-INDIRECT-CALL"):
        return f
    return Finding("CKD-SEC-EMBEDDED", f.severity, "carries an embedded pickle that would " + f.title.replace(
        "loading would ", ""), f.explanation + " The payload is only carried as data here; whoever deserialises "
        "it runs it.", f.evidence, f.fix, f.blocks_load)
