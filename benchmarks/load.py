"""ckptdoctor.load vs torch.load on >= 1 GB zip and legacy checkpoints: time and peak RSS.

Run: python benchmarks/load.py   (needs the torch extra; reuses a >= 1 GB zip/legacy checkpoint another
benchmark left in benchmarks/_work/, else writes its own there; gitignored)

Each measurement is a fresh Python process (so peak RSS is that load's alone) that imports
torch, loads the file and exits. torch.load uses mmap=True for zip (its fastest path) and its
plain path for legacy files (torch cannot mmap those); ckptdoctor.load maps both. Reported per
configuration (median of REPEATS processes, interleaved): whole-process wall time (and its minimum and
CPU time, steadier on a shared machine), the load call alone
(including importing ckptdoctor; that import shown separately), peak RSS (VmHWM) and how much the load added to the RSS the
process had after ``import torch``. Three modes: warm page cache; cold page cache (the file's
pages evicted with posix_fadvise before each run: the first load after a download or reboot);
and load-then-read-every-byte, to show what lazily mapped storages cost once they are used.

Targets (issue #10): zip within 1.2x of torch's mmap load; legacy >= 5x faster than torch
with RSS < 200 MB.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# benchmarks/inspect.py would shadow the stdlib's inspect (torch imports it): keep this folder off the path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work"
REPEATS = 7
GIB = 1 << 30
LAYERS = 64  # 64 x (4096 x 1024 float32 weight + bias + norm) ~= 1.07 GB

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out
import torch
t1 = time.perf_counter()
base = status()
who, path, fmt, touch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
imp = 0.0
if who == "torch":
    obj = torch.load(path, mmap=(fmt == "zip"), map_location="cpu")
else:
    import ckptdoctor
    import ckptdoctor.formats.legacy, ckptdoctor.formats.zipfmt, ckptdoctor.producer, ckptdoctor.reader
    import ckptdoctor.torchio.convert, ckptdoctor.torchio.load
    imp = time.perf_counter() - t1
    obj = ckptdoctor.load(path, map_location="cpu")
t2 = time.perf_counter()
n = 0
if touch:
    total = 0.0
    for v in obj.values():
        total += float(v.sum())
        n += v.numel()
t3 = time.perf_counter()
end = status()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "ckptdoctor_import_s": imp, "touch_s": t3 - t2, "rss_after_import": base["VmRSS"],
                  "peak_rss": end["VmHWM"], "tensors": len(obj)}))
"""


def find_existing(fmt: str) -> Path | None:
    """A >= 1 GB torch checkpoint of this container another benchmark already made (e.g. inspect.py)."""
    if not WORK.is_dir():
        return None
    import ckptdoctor

    for p in sorted(WORK.rglob("*")):
        if not p.is_file() or p.stat().st_size < GIB or p.suffix not in (".pt", ".pth", ".bin", ".tar", ".ckpt"):
            continue
        try:
            with ckptdoctor.open(p) as ckpt:
                if ckpt.format == fmt and sum(1 for _ in ckpt.tensors()) > 0:
                    return p
        except Exception:  # noqa: BLE001 - not a checkpoint: keep looking
            continue
    return None


def make(fmt: str) -> Path:
    got = find_existing(fmt)
    if got is not None:
        return got
    import torch

    path = WORK / f"load-1g.{fmt}.pt"
    WORK.mkdir(parents=True, exist_ok=True)
    sd = {}
    g = torch.Generator().manual_seed(0)
    block = torch.randn(4096, 1024, generator=g)
    for i in range(LAYERS):
        sd[f"layers.{i}.weight"] = block + i  # distinct storages
        sd[f"layers.{i}.bias"] = torch.randn(4096, generator=g)
        sd[f"layers.{i}.norm.weight"] = torch.ones(1024)
    tmp = path.with_suffix(".tmp")
    torch.save(sd, tmp, _use_new_zipfile_serialization=(fmt == "zip"))
    os.replace(tmp, path)
    return path


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def drop_cache(path: Path) -> None:
    """Evict the file's pages from the page cache (no root needed): the next load reads from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def child_env() -> dict:
    # Installed packages run from compiled bytecode (pip compiles at install); this checkout is an
    # editable install and the environment may forbid writing .pyc files, which would charge
    # ckptdoctor (not torch, compiled in site-packages) for compiling its sources on every run.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(WORK / "pycache")
    return env


def run(who: str, path: Path, fmt: str, touch: bool, cold: bool = False) -> dict:
    if cold:
        drop_cache(path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, who, str(path), fmt, "1" if touch else "0"],
                       capture_output=True, text=True, env=child_env())
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{who} on {path} failed:\n{r.stderr}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


MODES = {
    "load only (warm page cache)": dict(touch=False, cold=False),
    "load only, cold page cache (first load after download or reboot)": dict(touch=False, cold=True),
    "load, then read every byte (sum of all tensors; warm cache)": dict(touch=True, cold=False),
}


def main() -> None:
    files = {fmt: make(fmt) for fmt in ("zip", "legacy")}
    for fmt, p in files.items():
        warm(p)
        run("ckptdoctor", p, fmt, False)  # compiles ckptdoctor's bytecode once (see child_env)
    results: dict[tuple[str, str, str], dict] = {}
    for mode, kw in MODES.items():
        for fmt, path in files.items():
            rows: dict[str, list[dict]] = {"torch": [], "ckptdoctor": []}
            for _ in range(REPEATS):  # interleaved, so that drift on a shared machine hits both alike
                for who in rows:
                    rows[who].append(run(who, path, fmt, **kw))
            for who, got in rows.items():
                results[(mode, fmt, who)] = {k: median(got, k) for k in got[0]}
                results[(mode, fmt, who)]["wall_min_s"] = min(r["wall_s"] for r in got)
            if kw["cold"]:
                warm(path)
    mb = 1 << 20
    print("files: " + ", ".join(f"{fmt} {p.relative_to(HERE.parent)} ({p.stat().st_size / GIB:.2f} GiB, "
                                f"{results[(next(iter(MODES)), fmt, 'torch')]['tensors']:.0f} tensors)"
                                for fmt, p in files.items()))
    print(f"python {sys.version.split()[0]}, torch {_torch_version()}, {os.cpu_count()} cores; median of "
          f"{REPEATS} fresh processes each\n")
    head = (f"{'':28} {'process':>9} {'(min)':>7} {'CPU':>7} {'load()':>9} {'(import)':>9} {'peak RSS':>10} "
            f"{'RSS added':>10}")
    for mode in MODES:
        print(mode + "\n" + head)
        for fmt in files:
            for who in ("torch", "ckptdoctor"):
                r = results[(mode, fmt, who)]
                how = ("torch.load(mmap=True)" if fmt == "zip" else "torch.load") if who == "torch" else \
                    "ckptdoctor.load"
                load_s = r["load_s"] + r["touch_s"]
                print(f"{fmt:6} {how:21} {r['wall_s']:8.2f}s {r['wall_min_s']:6.2f}s {r['cpu_s']:6.2f}s "
                      f"{load_s:8.3f}s {r['ckptdoctor_import_s']:8.3f}s {r['peak_rss'] / mb:8.0f} MB "
                      f"{(r['peak_rss'] - r['rss_after_import']) / mb:8.0f} MB")
        print()
    warm_mode, cold_mode = list(MODES)[:2]
    print("targets:")
    for mode in (warm_mode, cold_mode):
        z_t, z_c = results[(mode, "zip", "torch")], results[(mode, "zip", "ckptdoctor")]
        l_t, l_c = results[(mode, "legacy", "torch")], results[(mode, "legacy", "ckptdoctor")]
        cache = "cold" if mode == cold_mode else "warm"
        print(f"  [{cache}] zip: ckptdoctor / torch(mmap) = {z_c['wall_s'] / z_t['wall_s']:.2f}x whole process "
              f"(median; min {z_c['wall_min_s'] / z_t['wall_min_s']:.2f}x, CPU {z_c['cpu_s'] / z_t['cpu_s']:.2f}x), "
              f"{z_c['load_s'] / z_t['load_s']:.1f}x load call incl. importing ckptdoctor, "
              f"{(z_c['load_s'] - z_c['ckptdoctor_import_s']) / z_t['load_s']:.1f}x without (target <= 1.2x)")
        print(f"  [{cache}] legacy: torch / ckptdoctor = {l_t['wall_s'] / l_c['wall_s']:.1f}x whole process "
              f"(median; min {l_t['wall_min_s'] / l_c['wall_min_s']:.1f}x, CPU {l_t['cpu_s'] / l_c['cpu_s']:.1f}x), "
              f"{l_t['load_s'] / l_c['load_s']:.0f}x load call (target >= 5x); ckptdoctor peak RSS "
              f"{l_c['peak_rss'] / mb:.0f} MB, added by the load {(l_c['peak_rss'] - l_c['rss_after_import']) / mb:.0f}"
              f" MB (target < 200 MB; `import torch` alone: {l_c['rss_after_import'] / mb:.0f} MB)")


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    main()
