"""`ckptdoctor scan` and `ckptdoctor report`: many files, results in SQLite."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

SCAN_EPILOG = """Examples:

  ckptdoctor scan ./models --torch 2.6 --db results.sqlite

  ckptdoctor scan s3://bucket/checkpoints --workers 8 --db fleet.sqlite

  ckptdoctor scan s3://bucket/ckpts --dask tcp://scheduler:8786

  ckptdoctor report results.sqlite --html report.html

Re-running a scan skips files that did not change (same size and ETag/mtime) for the same target.
Exit codes: 0 every file ok; 1 some files will not load, are dangerous or are not checkpoints; 2 usage/IO error.
"""


def register(app: typer.Typer) -> None:
    app.command("scan", epilog=SCAN_EPILOG)(scan)
    app.command("report")(report)
    app.command("precommit", hidden=False)(precommit)


def scan(
    sources: Annotated[list[str], typer.Argument(help="Folders, files or fsspec URLs (s3://bucket/prefix).")],
    torch: Annotated[str | None, typer.Option("--torch", help="Target torch version (default: installed).")] = None,
    weights_only: Annotated[bool | None, typer.Option("--weights-only/--no-weights-only",
                                                      help="Target torch.load mode (default: target's).")] = None,
    db: Annotated[str, typer.Option("--db", help="SQLite results file (created or resumed).")] = "ckptdoctor-scan.sqlite",
    workers: Annotated[int, typer.Option("--workers", "-j", help="Local worker processes.")] = 1,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address (tcp://host:8786).")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Glob of files to scan (repeatable).")] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Glob of files to skip (repeatable).")] = None,
    want_hash: Annotated[bool, typer.Option("--hash", help="Also sha256 every file (reads all data).")] = False,
    rescan: Annotated[bool, typer.Option("--rescan", help="Ignore previous results.")] = False,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="S3-compatible endpoint.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Check many checkpoints (local or S3), store results in SQLite, resume where it stopped."""
    from ckptdoctor.scan.runner import plan, run_scan
    from ckptdoctor.scan.sources import DEFAULT_INCLUDE
    from ckptdoctor.scan.store import ResultStore
    from ckptdoctor.scan.task import TaskSpec

    opts = {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else {}
    spec = TaskSpec(torch=torch, weights_only=weights_only, want_hash=want_hash, storage_options=opts)
    store = ResultStore(db)
    try:
        todo, skipped = plan(sources, store, spec, tuple(include or DEFAULT_INCLUDE), tuple(exclude or ()), rescan)
        bar = None
        if not quiet and sys.stderr.isatty():
            bar = _Bar(len(todo))
        stats = run_scan(todo, store, spec, workers=workers, dask_address=dask,
                         on_result=bar.update if bar else None)
        if bar:
            bar.stop()
        rows = store.rows()
    finally:
        store.close()
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    print(f"scanned {stats.scanned} file(s), skipped {skipped} unchanged, "
          f"{stats.files_per_second:.1f} files/s, {stats.bytes_read / 1e6:.1f} MB read -> {db}", file=sys.stderr)
    print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    raise typer.Exit(0 if set(counts) <= {"ok"} else 1)


class _Bar:
    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bytes = 0
        self._p = Progress(TextColumn("scanning"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[rate]} files/s, {task.fields[mb]} MB read"),
                           TimeRemainingColumn(), transient=True)
        self._t = self._p.add_task("scan", total=total, rate="0", mb="0")
        import time

        self._start = time.perf_counter()
        self._n = 0
        self._p.start()

    def update(self, row: dict) -> None:
        import time

        self._n += 1
        self.bytes += row.get("bytes_read") or 0
        el = max(time.perf_counter() - self._start, 1e-6)
        self._p.update(self._t, advance=1, rate=f"{self._n / el:.0f}", mb=f"{self.bytes / 1e6:.1f}")

    def stop(self) -> None:
        self._p.stop()


def report(
    db: Annotated[str, typer.Argument(help="SQLite file written by `ckptdoctor scan`.")],
    html: Annotated[str | None, typer.Option("--html", help="Write a self-contained HTML report here.")] = None,
    sarif: Annotated[bool, typer.Option("--sarif", help="Print SARIF 2.1.0.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print rows and findings as JSON.")] = False,
) -> None:
    """Summarise a scan database as text, JSON, SARIF or one HTML file."""
    import os

    from ckptdoctor.scan.store import ResultStore

    if not os.path.isfile(db):
        print(f"ckptdoctor: no such scan database: {db}", file=sys.stderr)
        raise typer.Exit(2)
    store = ResultStore(db)
    rows, findings = store.rows(), store.findings()
    store.close()
    if html:
        from ckptdoctor.report.html import write_html_report

        write_html_report(rows, findings, html)
        print(f"wrote {html}", file=sys.stderr)
    if sarif:
        from ckptdoctor.report.scan_sarif import scan_to_sarif

        print(json.dumps(scan_to_sarif(rows, findings), indent=1))
    if as_json:
        print(json.dumps({"files": rows, "findings": findings}, indent=1, default=str))
    if not (html or sarif or as_json):
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        print(f"{len(rows)} files: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        ids: dict[str, int] = {}
        for f in findings:
            ids[f["id"]] = ids.get(f["id"], 0) + 1
        for k, v in sorted(ids.items(), key=lambda kv: -kv[1]):
            print(f"  {v:6d}  {k}")


def precommit(
    files: Annotated[list[str], typer.Argument(help="Files pre-commit passes in.")],
    torch: Annotated[str | None, typer.Option("--torch", help="Target torch version (default: installed).")] = None,
    allow_unloadable: Annotated[bool, typer.Option("--allow-unloadable",
                                                   help="Do not fail on files that will not load.")] = False,
    allow_lfs_pointers: Annotated[bool, typer.Option("--allow-lfs-pointers")] = False,
) -> None:
    """pre-commit hook: fail on dangerous pickles, LFS pointers and checkpoints that will not load."""
    import os

    from ckptdoctor.scan.sources import FileRef
    from ckptdoctor.scan.task import TaskSpec, analyze

    spec = TaskSpec(torch=torch, weights_only=True)
    failed = 0
    for path in files:
        row, findings = analyze(FileRef(os.path.abspath(path), os.path.getsize(path), ""), spec)
        verdict, why = row["verdict"], row.get("error") or ""
        bad = verdict == "dangerous"
        if row.get("format") == "lfs-pointer":
            bad = not allow_lfs_pointers
        elif verdict in ("will-not-load", "unreadable") and not allow_unloadable:
            bad = True
        if bad:
            failed += 1
            top = [f for f in findings if f["severity"] in ("critical", "error")][:3]
            print(f"{path}: {verdict}" + (f" ({why})" if why else ""))
            for f in top:
                print(f"  {f['id']}: {f['title']}")
    raise typer.Exit(1 if failed else 0)
