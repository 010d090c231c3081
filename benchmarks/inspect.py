"""``ckptdoctor inspect --json`` vs ``torch.load``: whole-process wall time and peak RSS, 10 MB to 1 GB.

Run: python benchmarks/inspect.py [--repeats N]   (needs the torch extra to generate files and compare)

Generates, once, in benchmarks/_work/ (gitignored; reused when present and of the right spec) the
same 401-tensor state_dict (100 layers x weight/bias/norm.weight/norm.bias, plus an embedding) at
three sizes, ~10 MB, ~100 MB and >= 1 GiB, each in the zip container and in the legacy one
(``_use_new_zipfile_serialization=False``). Then, per file, with a warm page cache and interleaved
runs, each a fresh process whose peak RSS comes from ``wait4`` (this parent never imports torch):

* ``ckptdoctor inspect --json FILE`` (the installed console script, not a pyenv shim);
* ``python -c "import torch; torch.load(p, mmap=True, weights_only=True)"`` for zip files; for legacy
  files torch cannot mmap, so plain ``torch.load(p, weights_only=True)``.

It prints medians (and minima: the machine is shared), the torch/ckptdoctor ratio, how flat the
inspect time is from 10 MB to 1 GB, ``ckptdoctor --help`` time, and ``python -c pass`` for scale.
Targets (issue #3): inspect <= 0.3 s, >= 10x faster than torch, peak RSS < 100 MB, time flat in the
file size; ``--help`` < 200 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
LAYERS = 100
ROWS = 1024
# columns of each layer's weight: 100 x 1024 x cols x 4 bytes
SIZES = {"10MB": 26, "100MB": 256, "1GB": 2688}  # ~10.9 MB, ~105 MB, ~1.10 GB (1.03 GiB)
SPEC_VERSION = 1

GENERATE = r"""
import sys, torch
path, cols, container, layers, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
g = torch.Generator().manual_seed(0)
sd = {"embed.weight": torch.randn(1000, 64, generator=g)}
for i in range(layers):
    sd[f"layers.{i}.weight"] = torch.randn(rows, cols, generator=g)
    sd[f"layers.{i}.bias"] = torch.zeros(rows)
    sd[f"layers.{i}.norm.weight"] = torch.ones(rows)
    sd[f"layers.{i}.norm.bias"] = torch.zeros(rows)
torch.save(sd, path, _use_new_zipfile_serialization=(container == "zip"))
"""

TORCH_LOAD = {
    "zip": "import sys, torch; torch.load(sys.argv[1], mmap=True, weights_only=True)",
    "legacy": "import sys, torch; torch.load(sys.argv[1], weights_only=True)",  # torch cannot mmap legacy
}


def ensure_files() -> dict[tuple[str, str], Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    files = {}
    for size, cols in SIZES.items():
        for container in ("zip", "legacy"):
            p = WORK / f"inspect-{size}.{container}.pt"
            spec = p.with_suffix(".spec.json")
            want = {"version": SPEC_VERSION, "layers": LAYERS, "rows": ROWS, "cols": cols, "container": container}
            if not (p.exists() and spec.exists() and json.loads(spec.read_text()) == want):
                print(f"generating {p.name} ...", file=sys.stderr, flush=True)
                tmp = p.with_suffix(".tmp")
                subprocess.run([sys.executable, "-c", GENERATE, str(tmp), str(cols), container, str(LAYERS),
                                str(ROWS)], check=True)
                tmp.replace(p)
                spec.write_text(json.dumps(want))
            files[(size, container)] = p
    return files


def measure(cmd: list[str]) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit code) of one fresh process."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode(errors='replace')[-500:]}")
    return wall, usage.ru_maxrss * 1024, proc.returncode


def ckptdoctor_cmd() -> list[str]:
    """The console script next to this interpreter (a pyenv shim would add its own ~50 ms)."""
    exe = shutil.which("ckptdoctor", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from ckptdoctor.cli import main; main()"]


def summary(runs: list[tuple[float, int, int]]) -> dict[str, float]:
    walls = [r[0] for r in runs]
    return {"median": statistics.median(walls), "min": min(walls), "rss": max(r[1] for r in runs)}


def warm(path: Path) -> None:
    with open(path, "rb") as f:  # page cache: both tools then read from memory
        while f.read(1 << 24):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="ckptdoctor runs per file (torch: half, at least 3)")
    args = ap.parse_args()
    files = ensure_files()
    ckd = ckptdoctor_cmd()
    results: dict[tuple[str, str], dict] = {}
    for (size, container), path in files.items():
        warm(path)
        measure([*ckd, "inspect", "--json", str(path)])  # first run: imports and .pyc files warm too
        ours, theirs = [], []
        torch_runs = max(3, args.repeats // 2)
        for i in range(args.repeats):
            ours.append(measure([*ckd, "inspect", "--json", str(path)]))
            if i < torch_runs:
                theirs.append(measure([sys.executable, "-c", TORCH_LOAD[container], str(path)]))
        out = json.loads(subprocess.run([*ckd, "inspect", "--json", str(path)], capture_output=True,
                                        text=True, check=True).stdout)
        results[(size, container)] = {"bytes": path.stat().st_size, "tensors": out["summary"]["tensors"],
                                      "ckptdoctor": summary(ours), "torch": summary(theirs)}
    helps = [measure([*ckd, "--help"]) for _ in range(args.repeats)]
    baseline = [measure([sys.executable, "-c", "pass"]) for _ in range(args.repeats)]

    print(f"ckptdoctor inspect --json vs torch.load, whole process, warm cache, median (min) of "
          f"{args.repeats} / {max(3, args.repeats // 2)} runs; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    head = (f"{'file':<18}{'size':>9}{'tensors':>8}  {'ckptdoctor':>16}{'RSS':>8}  "
            f"{'torch.load':>16}{'RSS':>8}  {'faster':>7}")
    print(head)
    print("-" * len(head))
    for (size, container), r in results.items():
        c, t = r["ckptdoctor"], r["torch"]
        print(f"{size + ' ' + container:<18}{r['bytes'] / 1e6:>7.0f}MB{r['tensors']:>8}  "
              f"{c['median']:>7.3f}s ({c['min']:.3f}){c['rss'] / 2**20:>6.0f}MB  "
              f"{t['median']:>7.3f}s ({t['min']:.3f}){t['rss'] / 2**20:>6.0f}MB  "
              f"{t['median'] / c['median']:>6.1f}x")
    print()
    for container in ("zip", "legacy"):
        small, big = results[("10MB", container)]["ckptdoctor"], results[("1GB", container)]["ckptdoctor"]
        print(f"flatness {container}: 1 GB / 10 MB inspect time = {big['median'] / small['median']:.2f} "
              f"(min {big['min'] / small['min']:.2f})")
    h, b = summary(helps), summary(baseline)
    print(f"ckptdoctor --help: {h['median'] * 1000:.0f} ms (min {h['min'] * 1000:.0f}); "
          f"python -c pass: {b['median'] * 1000:.0f} ms (min {b['min'] * 1000:.0f})")
    big = [results[("1GB", c)] for c in ("zip", "legacy")]
    checks = {
        "inspect <= 0.3 s (1 GB, median)": all(r["ckptdoctor"]["median"] <= 0.3 for r in big),
        ">= 10x faster than torch.load (1 GB)": all(r["torch"]["median"] / r["ckptdoctor"]["median"] >= 10
                                                    for r in big),
        "peak RSS < 100 MB (every file)": all(r["ckptdoctor"]["rss"] < 100 * 2**20 for r in results.values()),
        "flat: 1 GB within 1.5x of 10 MB": all(
            results[("1GB", c)]["ckptdoctor"]["median"] <= 1.5 * results[("10MB", c)]["ckptdoctor"]["median"]
            for c in ("zip", "legacy")),
        "--help < 200 ms (median)": h["median"] < 0.2,
    }
    print("targets: " + "; ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in checks.items()))


if __name__ == "__main__":
    main()
