"""Human-readable findings (rich): one block per finding, blocking ones first, with the fix."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape

from ckptdoctor.findings import Finding, Severity

STYLE = {Severity.CRITICAL: "bold red", Severity.ERROR: "red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}


def render_finding(f: Finding, console: Console, *, verbose: bool = False, seen: set | None = None) -> None:
    tag = f"[{STYLE[f.severity]}]{f.severity.label.upper():8}[/]"
    block = " [bold](blocks load)[/bold]" if f.blocks_load else ""
    console.print(f"{tag} [bold]{escape(f.id)}[/bold]{block}  {escape(f.title)}")
    console.print(f"         {escape(f.explanation)}", highlight=False)
    ev = {k: v for k, v in f.evidence.items() if k not in ("torch_error", "offsets", "paths", "classes")
          and v not in (None, [], {})}
    if ev and verbose:
        console.print("         evidence: " + escape(", ".join(f"{k}={_short(v)}" for k, v in ev.items())),
                      highlight=False)
    if f.fix is not None:
        key = (f.fix.summary, f.fix.command, f.fix.python)
        if seen is not None and key in seen:
            console.print("         [green]fix:[/green] as above", highlight=False)
            return
        if seen is not None:
            seen.add(key)
        console.print(f"         [green]fix:[/green] {escape(f.fix.summary)}", highlight=False)
        if f.fix.command:
            console.print(f"           $ {escape(f.fix.command)}", highlight=False, soft_wrap=True)
        if f.fix.python:
            for line in f.fix.python.split("\n"):
                console.print(f"           >>> {escape(line)}", highlight=False, soft_wrap=True)


def _short(v: Any) -> str:
    s = str(v)
    return s if len(s) <= 120 else s[:117] + "..."


def render_check(result: Any, console: Console, *, verbose: bool = False) -> None:
    """The whole ``check`` report: verdict line, predicted torch error, findings."""
    t = result.target
    console.print(f"[bold]{escape(result.path)}[/bold]  ({escape(str(result.format))})", highlight=False)
    console.print(f"  target      {escape(t.describe())}", highlight=False)
    if result.producer is not None and (result.producer.earliest or result.producer.latest):
        console.print(f"  written by  {escape(str(result.producer))}", highlight=False)
    if result.loads:
        console.print("  verdict     [green bold]loads[/green bold]")
    elif not result.readable:
        console.print("  verdict     [red bold]not a loadable checkpoint[/red bold]")
    else:
        n = len(result.blocking())
        console.print(f"  verdict     [red bold]will not load[/red bold] ({n} blocking finding{'s' * (n != 1)})")
    if result.predicted_error:
        from ckptdoctor.rules._common import ansi_strip

        err = ansi_strip(result.predicted_error).replace("\n", " ").replace("\t", " ")
        err = " ".join(err.split())
        console.print(f"  torch says  {escape(err[:400])}{'...' if len(err) > 400 else ''}", highlight=False)
    shown = [f for f in result.findings if verbose or f.severity >= Severity.WARNING or f.blocks_load]
    hidden = len(result.findings) - len(shown)
    if shown:
        console.print()
    seen: set = set()
    for f in shown:
        render_finding(f, console, verbose=verbose, seen=seen)
    if hidden:
        console.print(f"\n  ({hidden} informational finding{'s' * (hidden != 1)}: -v shows them)")
