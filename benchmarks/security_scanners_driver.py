"""Run picklescan, modelscan and fickling on a list of files; one JSON line per (tool, file).

Runs inside the benchmark's own venv (benchmarks/_work/venv-scanners), never in the
project's environment. Each tool is used the way its documentation/CLI uses it on a
model file; all three are static analysers (none unpickles the input).

    venv/bin/python security_scanners_driver.py TOOL < files.txt > results.jsonl
"""

from __future__ import annotations

import os
import sys

# This folder holds scripts named like stdlib modules (inspect.py): keep it off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
import zipfile  # noqa: E402


def picklescan_one(path: str) -> dict:
    from picklescan.scanner import scan_file_path

    r = scan_file_path(path)
    return {"flagged": r.issues_count > 0, "error": bool(r.scan_err),
            "detail": sorted({f"{g.module}.{g.name}" for g in r.globals if g.safety.value == "dangerous"})[:5]}


def modelscan_one(path: str) -> dict:
    from modelscan.modelscan import ModelScan

    rep = ModelScan().scan(path)
    issues = rep.get("issues") or []
    return {"flagged": rep["summary"]["total_issues"] > 0, "error": bool(rep.get("errors")),
            "scanned": rep["summary"]["scanned"]["total_scanned"],
            "detail": sorted({f"{i.get('module')}.{i.get('operator')}" for i in issues})[:5]}


def fickling_one(path: str) -> dict:
    """As fickling's own --huggingface scan does: zip archives member by member, other files as pickles."""
    import fickling

    if zipfile.is_zipfile(path):
        results = list(fickling.scan_zip_archive(path, graceful=True).values())
    else:
        results = [fickling.scan_file(path, graceful=True)]
    return {"flagged": any(not r.is_safe for r in results), "error": any(r.errors for r in results),
            "detail": sorted({r.severity.name for r in results})}


TOOLS = {"picklescan": picklescan_one, "modelscan": modelscan_one, "fickling": fickling_one}


def version(tool: str) -> str:
    from importlib.metadata import version as v

    return v(tool)


def main() -> int:
    tool = sys.argv[1]
    fn = TOOLS[tool]
    logging.disable(logging.CRITICAL)
    print(json.dumps({"tool": tool, "version": version(tool)}), flush=True)
    for line in sys.stdin:
        path = line.rstrip("\n")
        if not path:
            continue
        t0 = time.perf_counter()
        try:
            out = fn(path)
        except BaseException as e:  # noqa: BLE001 - a crash is the tool's result for this file
            if isinstance(e, KeyboardInterrupt):
                raise
            out = {"flagged": False, "error": True, "crash": f"{type(e).__name__}: {str(e)[:200]}"}
        out.update({"path": path, "seconds": round(time.perf_counter() - t0, 4)})
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
