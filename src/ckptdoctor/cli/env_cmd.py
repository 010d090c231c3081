"""`ckptdoctor env`: what is installed, where it came from, and what will break loading."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

EPILOG = """Examples:

  ckptdoctor env                              # this interpreter, from metadata only (fast)

  ckptdoctor env --python ~/venvs/old/bin/python --import

  ckptdoctor env --json --probe > a.json; ckptdoctor env diff a.json b.json

Exit codes: 0 no error findings; 1 error findings (or, for diff, differences that matter); 2 bad input.
"""

env_app = typer.Typer(
    help="Diagnose the Python environment: torch/torchvision/numpy versions, install sources, CUDA.",
    add_completion=False, rich_markup_mode=None, no_args_is_help=False,
)


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env", epilog=EPILOG)


@env_app.callback(invoke_without_command=True)
def env(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the environment fingerprint as JSON.")] = False,
    python: Annotated[str | None, typer.Option("--python", help="Inspect another interpreter (path).")] = None,
    do_import: Annotated[bool, typer.Option("--import", help="Also import torch/torchvision/numpy in a subprocess.")] = False,
    probe: Annotated[bool, typer.Option("--probe", help="Run a small fixed torch pipeline and hash its outputs.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds allowed for --import / --probe.")] = 120.0,
) -> None:
    """Report the environment and its problems (no torch import unless --import/--probe)."""
    if ctx.invoked_subcommand is not None:
        return
    from ckptdoctor.env.fingerprint import fingerprint
    from ckptdoctor.env.rules import diagnose
    from ckptdoctor.env.snapshot import collect, current_python
    from ckptdoctor.findings import Severity

    if python:
        from ckptdoctor.env.probe import interpreter_info

        info = interpreter_info(python)
    else:
        info = current_python()
    environment = collect(info)
    exe = python or sys.executable
    if do_import:
        from ckptdoctor.env.probe import import_check

        environment.extra["import"] = import_check(exe, timeout)
    if probe:
        from ckptdoctor.env.probe import behaviour_probe

        environment.extra["probe"] = behaviour_probe(exe, timeout)
    findings = diagnose(environment)
    fp = fingerprint(environment, findings)
    if as_json:
        print(json.dumps(fp, indent=1))
    else:
        _render(fp)
    sys.stdout.flush()
    raise typer.Exit(1 if any(f.severity >= Severity.ERROR for f in findings) else 0)


def _render(fp: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(highlight=False)
    py = fp["python"]
    con.print(f"Python {py['version']} ({py['implementation']}, {py['platform']} {py['machine']})  {py['executable']}",
              soft_wrap=True)
    if fp.get("conda_prefix"):
        con.print(f"conda environment: {fp['conda_prefix']}")
    t = Table("package", "version", "build", "source", box=None, pad_edge=False)
    for name, e in fp["packages"].items():
        if e is None:
            t.add_row(name, "-", "", "not installed")
            continue
        build = (e.get("build") or {}).get("flavour", "")
        t.add_row(name, e["version"], build or "", (e.get("source") or {}).get("detail", ""))
    con.print(t)
    if fp.get("nvidia"):
        con.print("CUDA wheels: " + ", ".join(f"{k} {v}" for k, v in fp["nvidia"].items()))
    imp = fp.get("import")
    if imp is not None:
        it = Table("import", "result", box=None, pad_edge=False)
        if imp.get("error"):
            it.add_row("(all)", f"[red]{imp['error']}[/red]")
        for name, info in imp.get("modules", {}).items():
            if info.get("missing"):
                res = "not installed"
            elif info.get("error"):
                res = "[red]" + info["error"].strip().splitlines()[-1][:160].replace("[", "\\[") + "[/red]"
            else:
                res = info.get("version", "ok")
                if name == "torch":
                    res += f"  cuda={info.get('cuda_built')} available={info.get('cuda_available')}"
            it.add_row(name, res)
        con.print(it)
    pr = fp.get("probe")
    if pr is not None:
        if pr.get("error"):
            con.print(f"probe: [red]{pr['error']}[/red]")
        else:
            pt = Table("probe op", "sha256", box=None, pad_edge=False)
            for op, h in pr.get("ops", {}).items():
                pt.add_row(op, str(h)[:16])
            con.print(pt)
    _render_findings(con, fp["findings"])


def _render_findings(con: Any, findings: list[dict[str, Any]]) -> None:
    if not findings:
        con.print("[green]no problems found[/green]")
        return
    colours = {"info": "cyan", "warning": "yellow", "error": "red", "critical": "bold red"}
    for f in findings:
        c = colours.get(f["severity"], "white")
        con.print(f"[{c}]{f['severity']:8s}[/{c}] {f['id']}: {f['title']}")
        con.print(f"         {f['explanation']}", soft_wrap=True)
        fix = f.get("fix")
        if fix:
            cmd = fix.get("command") or fix.get("python")
            con.print(f"         fix: {fix['summary']}" + (f": [bold]{cmd}[/bold]" if cmd else ""), soft_wrap=True)


@env_app.command("diff")
def env_diff(
    a: Annotated[str, typer.Argument(help="Fingerprint JSON written by 'ckptdoctor env --json'.")],
    b: Annotated[str, typer.Argument(help="Second fingerprint JSON.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the differences as JSON.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Also show differences that do not matter.")] = False,
) -> None:
    """Compare two environment fingerprints; says which differences matter for loading and numerics."""
    from ckptdoctor.env.fingerprint import diff_fingerprints, load_fingerprint

    diffs = diff_fingerprints(load_fingerprint(a), load_fingerprint(b))
    matters = [d for d in diffs if d.matters]
    if as_json:
        print(json.dumps({"differences": [d.to_dict() for d in diffs],
                          "matters_for_loading": any("loading" in d.matters for d in diffs),
                          "matters_for_numerics": any("numerics" in d.matters for d in diffs)}, indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        con = Console(highlight=False)
        shown = diffs if show_all else matters
        if not diffs:
            con.print("identical environments (as far as the fingerprints go)")
        elif not shown:
            con.print(f"{len(diffs)} cosmetic differences (paths, patch levels); none matters. --all shows them")
        else:
            t = Table("field", "A", "B", "matters for", "why", box=None, pad_edge=False)
            for d in shown:
                t.add_row(d.field, _short(d.a), _short(d.b), ", ".join(d.matters) or "-", d.why)
            con.print(t)
            hidden = len(diffs) - len(shown)
            if hidden:
                con.print(f"({hidden} cosmetic differences hidden; --all shows them)")
    sys.stdout.flush()
    raise typer.Exit(1 if matters else 0)


def _short(v: Any) -> str:
    s = "-" if v is None else (", ".join(map(str, v)) if isinstance(v, list) else str(v))
    return s if len(s) <= 40 else s[:37] + "..."
