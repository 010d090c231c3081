"""Benchmark: a >= 1 GB torch zip checkpoint -> safetensors.

Each command runs ``--rounds`` times (default 3, interleaved), every run in a fresh process; the
best and median wall time and the peak RSS of the whole process are printed:

* ``cp`` of the same file (the floor: page cache to page cache);
* ``ckptdoctor convert IN -o OUT.safetensors`` (streams every tensor, then re-reads the output
  and compares every tensor's bytes with the source);
* the same with ``--no-verify`` (the copy alone, for the breakdown);
* ``torch.load`` + ``safetensors.torch.save_file`` (what people do today).

The input is reused from benchmarks/_work/ (gitignored) or generated there with torch.
Usage: python benchmarks/convert.py [--size-gb 1.1] [--rounds 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# benchmarks/inspect.py would shadow the stdlib's inspect (torch imports it): keep this folder off the path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

WORK = Path(__file__).resolve().parent / "_work"
SRC = WORK / "bench_1g.pt"

GENERATE = r"""
import sys, torch
target = int(float(sys.argv[2]) * (1 << 30))
g = torch.Generator().manual_seed(0)
sd, total, i = {}, 0, 0
shapes = [(4096, 4096), (4096,), (11008, 4096), (4096, 11008), (1024, 4096), (4096, 1024)]
while total < target:
    shape = shapes[i % len(shapes)]
    dt = torch.bfloat16 if i % 5 == 4 else torch.float32
    t = torch.randn(*shape, generator=g).to(dt)
    sd[f"layers.{i // len(shapes)}.p{i % len(shapes)}"] = t
    total += t.numel() * t.element_size()
    i += 1
torch.save(sd, sys.argv[1])
print(len(sd), total)
"""

TORCH_PATH = r"""
import sys, torch
from safetensors.torch import save_file
sd = torch.load(sys.argv[1], weights_only=True, mmap=False)
save_file(sd, sys.argv[2])
"""


def ensure_input(size_gb: float) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    if SRC.exists() and SRC.stat().st_size >= int(size_gb * (1 << 30)) * 0.98:
        return SRC
    print(f"generating {SRC} ({size_gb} GB) with torch ...", flush=True)
    subprocess.run([sys.executable, "-c", GENERATE, str(SRC), str(size_gb)], check=True)
    return SRC


def warm(path: Path) -> None:
    """Source in the page cache (every run reads it from there)."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def settle() -> None:
    """Start every run with no dirty pages: earlier runs' writeback must not slow the next one."""
    subprocess.run(["sync"], check=False)
    for _ in range(200):
        info = {line.split(":")[0]: int(line.split()[1]) for line in open("/proc/meminfo")
                if line.startswith(("Dirty:", "Writeback:"))}
        if info.get("Dirty", 0) + info.get("Writeback", 0) < 32 << 10:
            break
        time.sleep(0.05)
    time.sleep(1.0)  # let the journal commit (and the trims of deleted outputs) finish before timing


TIME = "/usr/bin/time"  # GNU time: its child's peak RSS is the command's own (wait4 on a child of
# this Python would also count the pages it shared with this process before exec)


def measure(label: str, argv: list[str], out: Path) -> tuple[str, float, float, float]:
    """(label, wall seconds, peak RSS in MB, CPU seconds user+sys) of one run in a fresh process."""
    if out.exists():
        out.unlink()
    use_time = os.path.exists(TIME)
    full = [TIME, "-f", "@@%e %M %U %S", *argv] if use_time else argv
    t0 = time.perf_counter()
    p = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read().decode() if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{label} failed: {err.strip()}")
    rss_kb, cpu = float(usage.ru_maxrss), usage.ru_utime + usage.ru_stime
    if use_time:
        line = [x for x in err.splitlines() if x.startswith("@@")][-1]
        secs, rss, user, system = line[2:].split()
        dt, rss_kb, cpu = float(secs), float(rss), float(user) + float(system)  # time's own clock
    return label, dt, rss_kb / 1024, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gb", type=float, default=1.1)
    ap.add_argument("--rounds", type=int, default=3, help="runs of each command, interleaved (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the last outputs in benchmarks/_work")
    args = ap.parse_args()
    src = ensure_input(args.size_gb)
    size = src.stat().st_size
    # the console script beside this interpreter (a pyenv/asdf shim on PATH would add ~0.1 s of bash)
    beside = Path(sys.executable).with_name("ckptdoctor")
    ckptdoctor = str(beside) if beside.exists() else (shutil.which("ckptdoctor") or "ckptdoctor")
    outs = {k: WORK / f"out_{k}" for k in ("cp", "ckd", "ckd_nv", "torch")}
    runs = [
        ("cp", ["cp", str(src), str(outs["cp"])], outs["cp"]),
        ("ckptdoctor convert", [ckptdoctor, "convert", str(src), "-o", str(outs["ckd"]) + ".safetensors"],
         Path(str(outs["ckd"]) + ".safetensors")),
        ("ckptdoctor convert --no-verify", [ckptdoctor, "convert", str(src), "-o",
                                            str(outs["ckd_nv"]) + ".safetensors", "--no-verify"],
         Path(str(outs["ckd_nv"]) + ".safetensors")),
        ("torch.load + save_file", [sys.executable, "-c", TORCH_PATH, str(src), str(outs["torch"]) + ".safetensors"],
         Path(str(outs["torch"]) + ".safetensors")),
    ]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    warm(src)
    settle()
    subprocess.run(["cp", str(src), str(outs["cp"])], check=True)  # warm-up write, not measured
    outs["cp"].unlink()
    # Rounds interleave the commands and every output is deleted right after its run, so each run
    # writes into the same kind of free memory (on a VM, pages the host has not backed yet make the
    # first writer much slower than the next: a fixed order of single runs measured that, not us).
    samples: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _a, _o in runs}
    for _round in range(max(1, args.rounds)):
        for label, argv, out in runs:
            warm(src)
            settle()
            samples[label].append(measure(label, argv, out)[1:])
            if not (args.keep and _round == args.rounds - 1):
                out.unlink()
    best = {label: min(v) for label, v in samples.items()}
    cp_time = best["cp"][0]
    print(f"\ninput: {src} ({size / 1e9:.2f} GB); {args.rounds} interleaved rounds, fresh process each run, "
          f"source in page cache; {os.cpu_count()} CPUs, load average before: {load}")
    print(f"{'':32} {'best':>7} {'x cp':>6} {'median':>7} {'peak RSS':>10} {'CPU (user+sys)':>15}")
    for label, v in samples.items():
        times = sorted(x[0] for x in v)
        dt, _rss, cpu = best[label]
        rss = max(x[1] for x in v)
        print(f"{label:32} {dt:6.2f}s {dt / cp_time:6.2f} {times[len(times) // 2]:6.2f}s {rss:8.0f} MB {cpu:13.2f}s")
    ckd = best["ckptdoctor convert"]
    ckd_rss = max(x[1] for x in samples["ckptdoctor convert"])
    print(f"\ntargets (ckptdoctor convert): <= 1.5x cp time: {'met' if ckd[0] <= 1.5 * cp_time else 'NOT met'} "
          f"({ckd[0] / cp_time:.2f}x best); peak RSS < 100 MB: {'met' if ckd_rss < 100 else 'NOT met'} "
          f"({ckd_rss:.0f} MB)")


if __name__ == "__main__":
    main()
