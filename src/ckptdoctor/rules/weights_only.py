"""``torch.load(weights_only=True)`` of the target release: every global and opcode it refuses, at once.

The verdict comes from a dry run of that release's unpickler (:mod:`ckptdoctor.rules._sim`) with
its own allowlist table (``data/weights_only/<X.Y>.json``, derived from the release's source).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.rules._common import (
    classify_global,
    finding,
    fix_cmd,
    load_line,
    render_template,
    type_repr,
    wo_message,
)
from ckptdoctor.rules._tables import parse_version

if TYPE_CHECKING:
    from ckptdoctor.check import Context, Target
    from ckptdoctor.rules._sim import Issue

STAGE = 2
FINDINGS = {
    "CKD-WO-GLOBAL": "a global outside the target release's weights_only allowlist (one finding per global)",
    "CKD-WO-DANGEROUS": "a global that can run code or commands: never allowlist it, never load the file unpickled",
    "CKD-WO-BLOCKED-MODULE": "a global from a module weights_only blocks outright (sys, os, posix, nt)",
    "CKD-WO-OPCODE": "a pickle opcode the target's weights_only unpickler does not handle (protocol > 2, text pickles)",
    "CKD-WO-CONSTRUCT": "NEWOBJ/BUILD/REDUCE/APPEND/SETITEM/persistent id the weights_only unpickler refuses",
    "CKD-WO-SPECIAL": "nested jagged tensors / DTensors: the file loads only after importing the torch module named",
    "CKD-WO-ALLOWLIST": "summary: the exact add_safe_globals line for the benign globals, and what must never be allowed",
    "CKD-WO-UNAVAILABLE": "weights_only asked of a torch release that has no weights_only (before 1.13)",
    "CKD-WO-PROTOCOL": "pickle protocol other than 2: torch >= 2.4 warns under weights_only",
}

# numpy objects live in numpy.core (numpy 1.x) or numpy._core (numpy 2); the running function's home
# decides the key add_safe_globals registers, so the file's spelling may need the (obj, "name") form.
NUMPY_HOME = {"numpy.core.multiarray": "numpy._core.multiarray", "numpy._core.multiarray": "numpy._core.multiarray"}


def _display(table: dict[str, Any], name: str) -> str:
    if table.get("message_strips_builtins") and name.startswith("builtins."):
        return name[len("builtins."):]
    return name


def inner_message(table: dict[str, Any], issue: Issue) -> str:
    """The WeightsUnpickler error text of the target release for one refusal."""
    msgs = table.get("messages", {})
    name = issue.name or ""
    short = name.rsplit(".", 1)[-1]
    if issue.kind == "global":
        tpl = msgs.get("global", "RuntimeError: f'Unsupported class {full_path}'")
        return render_template(tpl, full_path=_display(table, name), name=short).partition(": ")[2]
    if issue.kind in ("njt", "dtensor") and issue.kind in msgs:
        return render_template(msgs[issue.kind]).partition(": ")[2]
    if issue.kind == "blocked":
        return render_template(msgs.get("blocked", ""), full_path=name, module=issue.detail).partition(": ")[2]
    if issue.kind == "operand":
        return render_template(msgs.get("operand", "f'Unsupported operand {key[0]}'"), **{"key[0]": issue.code}
                               ).partition(": ")[2]
    tpl = msgs.get(issue.kind)
    if not tpl:
        return f"{issue.opcode} refused ({issue.kind}) for {name}"
    return render_template(tpl, **{"type(": type_repr(name), "cls": f"<class '{name}'>", "func": name,
                                   "opcode": issue.opcode, "pid": issue.detail or name}).partition(": ")[2]


def torch_error(table: dict[str, Any], issue: Issue) -> str:
    return wo_message(table, inner_message(table, issue))


def _python_ref(name: str, target: Target) -> tuple[str, str | None]:
    """(expression, import line) for the object a global names, in the target environment."""
    module, _, attr = name.rpartition(".")
    numpy2 = target.numpy is not None and target.numpy.split(".")[0] >= "2"
    if module in NUMPY_HOME:
        home = NUMPY_HOME[module] if numpy2 else "numpy.core.multiarray"
        expr = f"{home}.{attr}"
        if home != module and target.torch_at_least("2.6"):
            return f'({expr}, "{name}")', "import numpy"
        return expr, "import numpy"
    if module == "__main__":  # the class must be defined (or imported) in the script that calls torch.load
        return attr, None
    if module == "__builtin__":
        module = "builtins"
    if module == "builtins":
        return attr, None
    top = module.split(".")[0]
    return f"{module}.{attr}", f"import {module}" if top != "torch" else None


def safe_globals_line(names: list[str], target: Target) -> str | None:
    """The minimal line that allowlists ``names`` for the target release (None before 2.4)."""
    if not names or not target.torch_at_least("2.4"):
        return None
    exprs, imports = [], []
    for n in names:
        expr, imp = _python_ref(n, target)
        exprs.append(expr)
        if imp and imp not in imports:
            imports.append(imp)
    line = f"torch.serialization.add_safe_globals([{', '.join(exprs)}])"
    return "; ".join(["import torch", *imports, line])


def run(ctx: Context) -> Iterator[Finding]:
    t = ctx.target
    ckpt = ctx.ckpt
    if ckpt is None or not t.loads_weights_only or ckpt.format not in ("zip", "legacy", "pickle"):
        return
    if not t.torch_at_least("1.13"):
        yield ctx.ordered(finding(
            "CKD-WO-UNAVAILABLE", Severity.ERROR, f"torch {t.torch} has no weights_only argument",
            f"torch.load gained weights_only in 1.13; torch {t.torch} passes unknown keywords to the unpickler, "
            "which raises TypeError. Load without it (only if you trust the file) or upgrade torch.",
            evidence={"torch": t.torch, "torch_error": "TypeError: 'weights_only' is an invalid keyword argument "
                                                       "for Unpickler()"},
            fix=Fix("drop weights_only (trusted files only), or use torch >= 1.13", python=load_line(
                t, weights_only=False)), blocks=True), 1)
        return
    table = ctx.wo_table
    assert table is not None
    sim = ctx.sim(True)
    if sim.error:
        return
    from ckptdoctor.rules.dtypes_support import missing_in_target

    groups: dict[tuple[str, str], list[Issue]] = {}
    for issue in sim.issues:
        if issue.kind == "py2-bytes":
            continue
        if issue.kind == "global" and issue.name and missing_in_target(issue.name, t) is not None:
            continue  # the dtypes rule explains globals this torch lacks altogether
        key = (issue.kind, issue.name or (issue.opcode if issue.kind == "operand" else ""))
        groups.setdefault(key, []).append(issue)
    if not groups:
        yield from _protocol(ctx, sim)
        return
    global_names = [k[1] for k in groups if k[0] == "global"]
    cats = {n: classify_global(n) for n in global_names}
    benign = [n for n in global_names if cats[n] != "dangerous"]
    dangerous = [n for n in global_names if cats[n] == "dangerous"] + [k[1] for k in groups if k[0] == "blocked"]
    residual: list[Issue] = []
    if benign and not dangerous and table["load"].get("add_safe_globals"):
        benign, residual = allowlist_closure(ctx, table, benign)
    line = None if dangerous or residual else safe_globals_line(benign, t)
    default_note = (" torch 2.6 made weights_only=True the default, so torch.load(f) without arguments does this."
                    if t.torch_at_least("2.6") and t.weights_only is None else "")
    for (kind, name), issues in groups.items():
        first = issues[0]
        ev = {"offset": first.offset, "pickle": first.pickle, "occurrences": len(issues),
              "offsets": [i.offset for i in issues[:20]], "torch_error": torch_error(table, first)}
        if kind == "global":
            cat = cats[name]
            ev.update({"global": name, "category": cat})
            if first.raw_name and first.raw_name != name:
                ev["as_written"] = first.raw_name
            yield ctx.ordered(_global_finding(ctx, name, cat, ev, line, benign, default_note), STAGE, first.offset)
        elif kind == "blocked":
            ev.update({"global": name, "module": first.detail, "category": "dangerous"})
            yield ctx.ordered(finding(
                "CKD-WO-BLOCKED-MODULE", Severity.CRITICAL, f"{name} (module {first.detail} is blocked)",
                f"The file names {name}. torch {t.torch} refuses every global from module {first.detail}, even "
                "allowlisted ones: such globals run commands or touch the interpreter. Do not load this file "
                "with weights_only=False.",
                evidence=ev, fix=Fix("do not load it; if you must have the tensors, rewrite it without running "
                                     "its code", command=fix_cmd(ctx)), blocks=True), STAGE, first.offset)
        elif kind in ("njt", "dtensor"):
            mod = "torch.nested and torch._dynamo" if kind == "njt" else "torch.distributed.tensor"
            ev.update({"global": name})
            yield ctx.ordered(finding(
                "CKD-WO-SPECIAL", Severity.ERROR, f"{name} needs {mod} imported first",
                f"The file holds {'nested jagged tensors' if kind == 'njt' else 'DTensors'}; torch {t.torch} "
                f"allowlists them only once {mod} has been imported.",
                evidence=ev, fix=Fix(f"import {mod} before torch.load",
                                     python=("import torch.nested, torch._dynamo" if kind == "njt"
                                             else "import torch.distributed.tensor")), blocks=True),
                STAGE, first.offset)
        elif kind == "operand":
            yield ctx.ordered(_opcode_finding(ctx, first, issues, ev), STAGE, first.offset)
        else:
            ev.update({"opcode": first.opcode, "type": name, "what": kind})
            title = (f"persistent id {first.detail!r} refused: weights_only loads only storages (torch {t.torch})"
                     if kind == "persid" else
                     f"{first.opcode} on {name or 'a value'} is refused by weights_only (torch {t.torch})")
            yield ctx.ordered(finding(
                "CKD-WO-CONSTRUCT", Severity.ERROR, title,
                f"At byte {first.offset} ({first.pickle}) the pickle asks for {first.opcode} on "
                f"{name or 'a value'}, which torch {t.torch}'s weights_only unpickler does not allow "
                f"({kind}).{default_note}",
                evidence=ev, fix=Fix("rewrite the file with plain data in place of those objects",
                                     command=fix_cmd(ctx, "weights-only-safe")), blocks=True), STAGE, first.offset)
    yield from _summary(ctx, benign, dangerous, line, residual)
    yield from _protocol(ctx, sim)


def _global_finding(ctx: Context, name: str, cat: str, ev: dict[str, Any], line: str | None,
                    benign: list[str], default_note: str) -> Finding:
    t = ctx.target
    where = f"at byte {ev['offset']} ({ev['pickle']})"
    if ev["occurrences"] > 1:
        where += f", {ev['occurrences']} times"
    if cat == "dangerous":
        return finding(
            "CKD-WO-DANGEROUS", Severity.CRITICAL, f"{name}: must never be allowed",
            f"The file names {name} {where}. Unpickling calls it with arguments the file chooses: that can run "
            "commands or code. Never add it to add_safe_globals and never load the file with "
            "weights_only=False. ckptdoctor reads it without running anything.",
            evidence=ev, fix=Fix("keep the tensors without running the pickle", command=fix_cmd(ctx)), blocks=True)
    kinds = {"module": "an nn.Module class (a whole pickled model)", "numpy": "a numpy object",
             "torch": "a torch object outside the allowlist", "benign": "a plain data type",
             "custom": "a class or function of your own code"}
    expl = f"The file names {name} {where}: {kinds[cat]}, not in torch {t.torch}'s weights_only allowlist."
    if cat == "module":
        expl += (" Allowlisting module classes is possible but needs every class of the model; the usual fix "
                 "is to keep only the state_dict.")
        fix = Fix("save the state_dict instead of the whole model", command=fix_cmd(ctx, "extract-state-dict"),
                  python=line)
    elif line is not None:
        expl += (" If you trust the file, allowlist "
                 + ("these globals" if len(benign) > 1 else "it") + " (one line for all of them).")
        fix = Fix("allowlist the globals (trusted file), or rewrite the file with plain data", python=line,
                  command=fix_cmd(ctx, "weights-only-safe"))
    else:
        expl += (f" torch {t.torch} has no add_safe_globals (it arrived in 2.4): load with weights_only=False "
                 "only if you trust the file, or rewrite it.")
        fix = Fix("rewrite the file with plain data (or weights_only=False for a trusted file)",
                  command=fix_cmd(ctx, "weights-only-safe"), python=load_line(t, weights_only=False))
    return finding("CKD-WO-GLOBAL", Severity.ERROR, f"{name} is not allowed by weights_only (torch {t.torch})",
                   expl + default_note, evidence=ev, fix=fix, blocks=True)


def _opcode_finding(ctx: Context, first: Issue, issues: list[Issue], ev: dict[str, Any]) -> Finding:
    t = ctx.target
    proto = None
    sim = ctx.sim(True)
    proto = sim.protocols.get(first.pickle)
    ev.update({"opcode": first.opcode, "code": first.code, "protocol": proto})
    why = (f"protocol {proto} pickles (torch.save(..., pickle_protocol={proto}))" if proto and proto > 2
           else "pickles not written by torch.save's protocol 2")
    return finding(
        "CKD-WO-OPCODE", Severity.ERROR,
        f"opcode {first.opcode} ({first.code}) is not handled by weights_only (torch {t.torch})",
        f"At byte {first.offset} ({first.pickle}) the pickle uses {first.opcode}, which torch {t.torch}'s "
        f"weights_only unpickler does not implement ('Unsupported operand {first.code}'); it comes from {why}.",
        evidence=ev, fix=Fix("rewrite the file with protocol 2 (what torch.save writes by default)",
                             command=fix_cmd(ctx)), blocks=True)


def allowlist_closure(ctx: Context, table: dict[str, Any], names: list[str]) -> tuple[list[str], list[Issue]]:
    """Allowlist ``names`` in a second dry run; add what that uncovers (classes of built objects, further
    globals) until nothing new appears. Returns (names to allow, refusals no allowlist can lift)."""
    from ckptdoctor.rules._sim import simulate

    numpy2 = ctx.target.numpy is not None and parse_version(ctx.target.numpy) >= parse_version("1.25")
    allow = list(names)
    residual: list[Issue] = []
    for _ in range(6):
        trial = dict(table, user_allowed=frozenset(allow), numpy_dtype_classes=numpy2)
        issues = [i for i in simulate(ctx.pickles, trial).issues if i.kind != "py2-bytes"]
        new = []
        for i in issues:
            if i.kind == "global" and i.name and classify_global(i.name) != "dangerous" or (
                    i.kind in ("build", "newobj") and i.name and i.name.startswith("numpy.dtypes.")):
                if i.name not in allow and i.name not in new:
                    new.append(i.name)
        residual = [i for i in issues if not (i.kind in ("global", "build", "newobj") and i.name in new)]
        if not new:
            break
        allow += new
    return allow, residual


def _summary(ctx: Context, benign: list[str], dangerous: list[str], line: str | None,
             residual: list[Issue]) -> Iterator[Finding]:
    if not benign and not dangerous:
        return
    t = ctx.target
    parts = []
    if residual:
        first = residual[0]
        parts.append(f"Allowlisting is not enough in torch {t.torch}: with {', '.join(benign)} allowed, its "
                     f"unpickler still refuses {first.opcode} on {first.name} at byte {first.offset} "
                     f"('{inner_message(ctx.wo_table or {}, first)}'). Rewrite the file with plain data.")
    if line:
        parts.append(f"To load with weights_only=True in torch {t.torch} (trusted file): {line}")
        if t.torch_at_least("2.5"):
            parts.append("or, for one load only, `with torch.serialization.safe_globals([...]):` around torch.load.")
    elif benign and not residual:
        parts.append(f"torch {t.torch} cannot allowlist globals (add_safe_globals is 2.4+, safe_globals 2.5+).")
    if dangerous:
        parts.append("Never allow: " + ", ".join(dangerous) + ". Loading this file unrestricted runs them.")
    yield finding("CKD-WO-ALLOWLIST", Severity.CRITICAL if dangerous else Severity.INFO,
                  f"{len(benign)} global(s) to allowlist" + (f", {len(dangerous)} never to allow" if dangerous else ""),
                  " ".join(parts),
                  evidence={"allow": benign, "never_allow": dangerous,
                            "not_enough": [f"{i.opcode} on {i.name} at byte {i.offset}" for i in residual[:10]]},
                  fix=Fix("allowlist exactly these (only if you trust the file)", python=line,
                          command=fix_cmd(ctx, "weights-only-safe")) if line or benign else None)


def _protocol(ctx: Context, sim: Any) -> Iterator[Finding]:
    t = ctx.target
    odd = {label: p for label, p in sim.protocols.items() if p != 2}
    if odd and t.torch_at_least("2.4"):
        label, p = next(iter(odd.items()))
        yield finding("CKD-WO-PROTOCOL", Severity.INFO, f"pickle protocol {p} (torch.save writes 2)",
                      f"torch {t.torch} warns 'Detected pickle protocol {p} in the checkpoint' under weights_only; "
                      "the load itself is decided by the opcodes used.",
                      evidence={"pickle": label, "protocol": p})
