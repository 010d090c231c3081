"""Scan throughput: files/s for 1,000 small checkpoints locally (1 process and N) and over loopback S3.

Run: python benchmarks/scan.py   (needs the test extra: torch, moto[server], s3fs)
Target: >= 200 files/s per core locally.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/inspect.py would shadow the stdlib's inspect (torch imports it): keep this folder off the path
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

HERE = Path(__file__).resolve().parent
WORK = HERE / "_work" / "scan-fleet"
N = 1000


def make_fleet() -> None:
    import torch

    if WORK.is_dir() and len(list(WORK.glob("*.pt"))) >= N:
        return
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(N):
        sd = {f"layer{j}.{k}": torch.randn(16, 16, generator=g) for j in range(5) for k in ("weight", "bias")}
        torch.save(sd, WORK / f"m{i:04d}.pt", _use_new_zipfile_serialization=(i % 2 == 0))


def run(source: str, workers: int, storage_options: dict | None = None) -> tuple[float, int]:
    from ckptdoctor.scan.runner import plan, run_scan
    from ckptdoctor.scan.store import ResultStore
    from ckptdoctor.scan.task import TaskSpec

    with tempfile.TemporaryDirectory() as d:
        store = ResultStore(os.path.join(d, "r.sqlite"))
        spec = TaskSpec(storage_options=storage_options or {})
        todo, _ = plan([source], store, spec)
        t0 = time.perf_counter()
        stats = run_scan(todo, store, spec, workers=workers)
        dt = time.perf_counter() - t0
        store.close()
    return stats.scanned / dt, stats.bytes_read


def main() -> None:
    make_fleet()
    cores = os.cpu_count() or 1
    rate1, read1 = run(str(WORK), 1)
    print(f"local, 1 process : {rate1:8.1f} files/s  ({read1 / N / 1024:.1f} KB read per file)")
    rateN, _ = run(str(WORK), cores)
    print(f"local, {cores} processes: {rateN:8.1f} files/s  ({rateN / cores:.1f} per core)")
    try:
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("S3: skipped (pip install 'moto[server]' s3fs)")
        return
    os.environ.update(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_DEFAULT_REGION="us-east-1")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request slows the server
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": url})
        fs.mkdir("bench")
        fs.put(str(WORK) + "/", "bench/fleet/", recursive=True)
        opts = {"client_kwargs": {"endpoint_url": url}}
        rate_s3, read_s3 = run("s3://bench/fleet", cores * 4, opts)
        print(f"loopback S3, {cores * 4} processes: {rate_s3:8.1f} files/s  ({read_s3 / N / 1024:.1f} KB read per file)")
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
