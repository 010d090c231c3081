"""Scans over a loopback S3 server (moto) and on a Dask LocalCluster equal the local scan."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptdoctor.scan.runner import plan, run_scan
from ckptdoctor.scan.store import ResultStore
from ckptdoctor.scan.task import TaskSpec

from .conftest import build_fleet

COMPARED = ("format", "verdict", "tensors", "producer_earliest", "producer_latest", "size")


def scan(source: str, db: Path, spec: TaskSpec, **kw) -> tuple[dict[str, dict], dict[str, list[str]]]:
    store = ResultStore(str(db))
    try:
        todo, _ = plan([source], store, spec)
        run_scan(todo, store, spec, **kw)
        rows = {r["path"]: r for r in store.rows()}
        finds: dict[str, list[str]] = {}
        for f in store.findings():
            finds.setdefault(f["path"], []).append(f["id"])
        return rows, finds
    finally:
        store.close()


def relative(rows: dict[str, dict], finds: dict[str, list[str]], prefix: str) -> dict[str, tuple]:
    return {p[len(prefix):].lstrip("/"): (tuple(r[c] for c in COMPARED), tuple(sorted(finds.get(p, []))))
            for p, r in rows.items()}


def test_s3_scan_equals_local_and_reads_little(tmp_path, s3_server, s3_env):
    import s3fs

    fleet = tmp_path / "fleet"
    files = build_fleet(fleet, 160, big_mb=110)
    assert len(files) >= 200
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir("ckpts")
    fs.put(str(fleet) + "/", "ckpts/fleet/", recursive=True)
    assert len(fs.find("ckpts/fleet")) == len(files)

    local_rows, local_f = scan(str(fleet), tmp_path / "local.sqlite", TaskSpec())
    spec = TaskSpec(storage_options={"client_kwargs": {"endpoint_url": s3_server}})
    s3_rows, s3_f = scan("s3://ckpts/fleet", tmp_path / "s3.sqlite", spec, workers=2)
    assert relative(s3_rows, s3_f, "s3://ckpts/fleet") == relative(local_rows, local_f, str(fleet))

    big = s3_rows["s3://ckpts/fleet/big/big_model.pt"]
    assert big["size"] >= 100 * 10**6
    assert big["bytes_read"] < 2 * 10**6, big["bytes_read"]
    from ckptdoctor.scan.task import WHOLE_FILE_BELOW

    small = [r for r in s3_rows.values() if r["size"] <= WHOLE_FILE_BELOW]
    assert small and all(r["bytes_read"] == r["size"] for r in small)  # fetched whole, in one request


def test_dask_local_cluster_scan_equals_local(tmp_path):
    distributed = pytest.importorskip("distributed")
    fleet = tmp_path / "fleet"
    build_fleet(fleet, 20)
    local_rows, local_f = scan(str(fleet), tmp_path / "local.sqlite", TaskSpec())
    import dask

    # generous timeouts: on a loaded 2-core CI machine worker start-up and connects can be slow
    with dask.config.set({"distributed.comm.timeouts.connect": "120s", "distributed.comm.timeouts.tcp": "120s"}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
                                     processes=True, timeout=120) as cluster:
        dask_rows, dask_f = scan(str(fleet), tmp_path / "dask.sqlite", TaskSpec(), dask_address=cluster.scheduler_address)
    assert relative(dask_rows, dask_f, str(fleet)) == relative(local_rows, local_f, str(fleet))
