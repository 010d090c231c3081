"""Security benchmark: recall on the malicious suite, false alarms on benign files, vs picklescan/modelscan/fickling.

Run:  python benchmarks/security.py            (needs the test extra: torch; writes docs/security.md's table)
      python benchmarks/security.py --no-docs  (print only)

The three scanners live in their own venv, never in the project's dependencies::

    python -m venv benchmarks/_work/venv-scanners
    benchmarks/_work/venv-scanners/bin/pip install picklescan modelscan fickling typing_extensions

(created automatically when missing). Malicious suite: tests/security/malicious.py
(every payload targets a canary file in benchmarks/_work/security/; the run fails if it
appears). Benign: every file of ../shared/corpus plus tests/security/benign.py fixtures.
A file counts as *flagged* when the tool's verdict is its "unsafe" one: ckptdoctor
``dangerous`` (a CRITICAL finding), picklescan ``issues_count > 0`` (what exits 1),
modelscan any issue, fickling any member not ``LIKELY_SAFE`` (its ``is_safe``).
"""

from __future__ import annotations

import os
import sys

# This folder holds scripts named like modules (inspect.py, security.py): keep it off the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work" / "security"
VENV = HERE / "_work" / "venv-scanners"
DOC = REPO / "docs" / "security.md"
CORPUS = Path(os.environ.get("CKPTDOCTOR_CORPUS", REPO.parent / "shared" / "corpus"))
TOOLS = ("picklescan", "modelscan", "fickling")
START, END = "<!-- security-benchmark:start -->", "<!-- security-benchmark:end -->"


def ensure_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "picklescan", "modelscan", "fickling",
                        "typing_extensions"], check=True)
    return py


def build_sets() -> tuple[list[tuple[Path, dict]], list[tuple[Path, dict]], str]:
    sys.path.append(str(REPO / "tests"))  # after the stdlib: tests/ has packages named like stdlib modules
    from security.benign import write_benign
    from security.malicious import write_suite

    shutil.rmtree(WORK, ignore_errors=True)
    canary = WORK / "canary" / "CANARY"
    canary.parent.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mal = [(p, {"set": "malicious", "container": s.container, "path": s.path, "source": s.source,
                    "callable": s.callable}) for p, s in write_suite(WORK / "malicious", str(canary))]
    ben = [(p, {"set": "benign", "origin": "generated"}) for p in write_benign(WORK / "benign")]
    if (CORPUS / "files").is_dir():
        ben += [(p, {"set": "benign", "origin": "corpus"}) for p in sorted((CORPUS / "files").iterdir())]
    return mal, ben, str(canary)


def run_ckptdoctor(paths: list[Path]) -> tuple[dict[str, dict], float]:
    from ckptdoctor.security import analyze_path

    out = {}
    t0 = time.perf_counter()
    for p in paths:
        try:
            r = analyze_path(p)
        except Exception as e:  # noqa: BLE001 - a crash is a result too (there has been none)
            out[str(p)] = {"flagged": False, "error": True, "crash": f"{type(e).__name__}: {e}"}
            continue
        out[str(p)] = {"flagged": r.verdict == "dangerous", "strict": r.verdict in ("dangerous", "suspicious"),
                       "verdict": r.verdict, "error": False, "reader_refused": r.error is not None}
    return out, time.perf_counter() - t0


def run_tool(py: Path, tool: str, paths: list[Path]) -> tuple[dict[str, dict], str, float]:
    with tempfile.TemporaryDirectory() as cwd:
        t0 = time.perf_counter()
        proc = subprocess.run([str(py), str(HERE / "security_scanners_driver.py"), tool],
                              input="\n".join(str(p) for p in paths), capture_output=True, text=True, cwd=cwd,
                              timeout=3600)
        dt = time.perf_counter() - t0
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    if not lines:
        raise SystemExit(f"{tool} driver failed: {proc.stderr[-2000:]}")
    head, rows = lines[0], lines[1:]
    crashes = [r for r in rows if r.get("crash")]
    if len(crashes) > len(rows) // 2:  # the tool did not run at all (e.g. an import problem): say so
        raise SystemExit(f"{tool} crashed on {len(crashes)}/{len(rows)} files, e.g. {crashes[0]['crash']}")
    return {r["path"]: r for r in rows}, head["version"], dt


def rate(rows: list[dict], key: str = "flagged") -> tuple[int, int]:
    return sum(1 for r in rows if r.get(key)), len(rows)


def pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.1f} %" if d else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/security.md")
    a = ap.parse_args(argv)
    py = ensure_venv()
    mal, ben, canary = build_sets()
    allp = [p for p, _ in mal + ben]
    meta = {str(p): m for p, m in mal + ben}
    results: dict[str, dict[str, dict]] = {}
    versions: dict[str, str] = {}
    seconds: dict[str, float] = {}
    from ckptdoctor import __version__

    results["ckptdoctor"], seconds["ckptdoctor"] = run_ckptdoctor(allp)
    versions["ckptdoctor"] = __version__
    for tool in TOOLS:
        results[tool], versions[tool], seconds[tool] = run_tool(py, tool, allp)
    if os.path.exists(canary):
        raise SystemExit(f"CANARY CREATED at {canary}: a payload ran")

    def rows(tool: str, pred) -> list[dict]:
        return [results[tool].get(p, {"flagged": False, "error": True, "missing": True})
                for p, m in meta.items() if pred(m)]

    tools = ("ckptdoctor",) + TOOLS
    lines = [
        f"Malicious suite: {len(mal)} files ({sum(1 for _, m in mal if m['source'] == 'product')} generated "
        f"callable x opcode path x container, {sum(1 for _, m in mal if m['source'] != 'product')} public bypasses). "
        f"Benign: {len(ben)} files ({sum(1 for _, m in ben if m['origin'] == 'corpus')} real-world corpus, "
        f"{sum(1 for _, m in ben if m['origin'] == 'generated')} generated).",
        "",
        "| tool | version | recall (malicious flagged) | bypasses flagged | false alarms (benign flagged) "
        "| corpus false alarms | scan errors on suite | time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for t in tools:
        rm = rate(rows(t, lambda m: m["set"] == "malicious"))
        rb = rate(rows(t, lambda m: m["set"] == "malicious" and m["source"] != "product"))
        fa = rate(rows(t, lambda m: m["set"] == "benign"))
        fc = rate(rows(t, lambda m: m["set"] == "benign" and m["origin"] == "corpus"))
        er = rate(rows(t, lambda m: m["set"] == "malicious"), "error")
        summary[t] = {"recall": rm, "bypasses": rb, "false_alarms": fa, "corpus_false_alarms": fc, "errors": er}
        lines.append(f"| {t} | {versions[t]} | **{pct(*rm)}** ({rm[0]}/{rm[1]}) | {pct(*rb)} ({rb[0]}/{rb[1]}) "
                     f"| **{pct(*fa)}** ({fa[0]}/{fa[1]}) | {fc[0]}/{fc[1]} | {er[0]} | {seconds[t]:.0f} s |")
    strict_m = rate(rows("ckptdoctor", lambda m: m["set"] == "malicious"), "strict")
    strict_b = rate(rows("ckptdoctor", lambda m: m["set"] == "benign"), "strict")
    lines += ["", f"ckptdoctor counting *suspicious* too (unknown callables called, dangerous names only imported): "
                  f"recall {pct(*strict_m)}, benign flagged {pct(*strict_b)} ({strict_b[0]}/{strict_b[1]}: "
                  "whole-model pickles of user classes, user dataclasses/enums in plain pickles)."]
    # recall per container
    containers = sorted({m["container"] for _, m in mal})
    lines += ["", "Recall per container:", "", "| container | files | " + " | ".join(tools) + " |",
              "|---|---|" + "---|" * len(tools)]
    for c in containers:
        cells = []
        for t in tools:
            n, d = rate(rows(t, lambda m, c=c: m["set"] == "malicious" and m["container"] == c))
            cells.append(pct(n, d))
        d = sum(1 for _, m in mal if m["container"] == c)
        lines.append(f"| {c} | {d} | " + " | ".join(cells) + " |")
    # which bypasses the others miss
    missed = collections.defaultdict(list)
    for p, m in meta.items():
        if m["set"] == "malicious" and m["source"] != "product":
            for t in TOOLS:
                if not results[t].get(p, {}).get("flagged"):
                    missed[t].append(Path(p).name.removeprefix("bypass-"))
    lines += ["", "Public bypasses each scanner misses:", ""]
    for t in TOOLS:
        lines.append(f"- {t} ({len(missed[t])}): " + ", ".join(sorted(missed[t])))
    lines += ["", f"Run: `python benchmarks/security.py` on {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores."]
    table = "\n".join(lines)
    print(table)
    (WORK / "results.json").write_text(json.dumps({"summary": summary, "versions": versions, "seconds": seconds,
                                                   "results": results, "meta": meta}, indent=1, default=str))
    if not a.no_docs and DOC.exists():
        text = DOC.read_text()
        if START in text and END in text:
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}")
    ok = summary["ckptdoctor"]
    recall = ok["recall"][0] / ok["recall"][1]
    fa = ok["false_alarms"][0] / max(1, ok["false_alarms"][1])
    print(f"\nacceptance: recall {recall:.2%} (>= 99 %), false alarms {fa:.2%} (<= 1 %): "
          f"{'PASS' if recall >= 0.99 and fa <= 0.01 else 'FAIL'}")
    return 0 if recall >= 0.99 and fa <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
