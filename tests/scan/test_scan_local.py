"""Local scans: verdicts, resumability, kill -9 safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from ckptdoctor.scan.runner import plan, run_scan
from ckptdoctor.scan.store import ResultStore
from ckptdoctor.scan.task import TaskSpec

from .conftest import build_fleet


def scan_rows(db: Path) -> dict[str, dict]:
    store = ResultStore(str(db))
    try:
        return {r["path"]: r for r in store.rows()}
    finally:
        store.close()


def test_local_scan_and_rescan_skips_unchanged(tmp_path):
    files = build_fleet(tmp_path / "fleet", 12)
    db = tmp_path / "r.sqlite"
    store = ResultStore(str(db))
    spec = TaskSpec()
    todo, skipped = plan([str(tmp_path / "fleet")], store, spec)
    assert skipped == 0 and len(todo) == len(files)
    stats = run_scan(todo, store, spec, workers=2)
    assert stats.scanned == len(files)
    rows = {r["path"]: r for r in store.rows()}
    gen = {Path(p).name: r for p, r in rows.items() if "/generated/" in p}
    sample = gen.pop("tiny_checkpoint.pt")  # holds an argparse.Namespace: refused by weights_only (torch >= 2.6)
    assert all(r["verdict"] == "ok" and r["tensors"] for r in gen.values())
    assert sample["verdict"] in ("ok", "will-not-load") and sample["tensors"] == 27
    corpus = {Path(p).name: r for p, r in rows.items() if "/corpus/" in p}
    if corpus:
        assert corpus["drexterman__Tiny_GPT__checkpoint.pth.tar"]["format"] == "lfs-pointer"
        assert corpus["drexterman__Tiny_GPT__checkpoint.pth.tar"]["verdict"] == "not-a-checkpoint"
        assert corpus["ChengYuHsieh__explanation_robustness__test.pt"]["verdict"] == "unreadable"
    # unchanged files are skipped; a touched file is rescanned
    todo2, skipped2 = plan([str(tmp_path / "fleet")], store, spec)
    assert todo2 == [] and skipped2 == len(files)
    os.utime(files[-1], ns=(time.time_ns(), time.time_ns() + 10**9))
    todo3, _ = plan([str(tmp_path / "fleet")], store, spec)
    assert [t.url for t in todo3] == [str(files[-1])]
    store.close()


def test_kill_9_then_resume_keeps_exactly_one_row_and_rereads_nothing(tmp_path):
    files = build_fleet(tmp_path / "fleet", 400)
    assert len(files) >= 200
    db = tmp_path / "r.sqlite"
    log1, log2 = tmp_path / "reads1.log", tmp_path / "reads2.log"
    code = (
        "import sys; from ckptdoctor.scan.runner import plan, run_scan; "
        "from ckptdoctor.scan.store import ResultStore; from ckptdoctor.scan.task import TaskSpec; "
        "s = ResultStore(sys.argv[1]); spec = TaskSpec(read_log=sys.argv[3]); "
        "todo, _ = plan([sys.argv[2]], s, spec); run_scan(todo, s, spec, workers=1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(db), str(tmp_path / "fleet"), str(log1)])
    deadline = time.time() + 60
    n = 0
    while time.time() < deadline:
        time.sleep(0.005)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=1) as c:
                    n = c.execute("SELECT count(*) FROM files").fetchone()[0]
            except sqlite3.Error:
                continue
            if n >= 40:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = set(scan_rows(db))
    assert 0 < len(done_before) < len(files), "the scan must be killed midway"
    # resume
    proc = subprocess.run([sys.executable, "-c", code, str(db), str(tmp_path / "fleet"), str(log2)], check=True)
    rows = scan_rows(db)
    assert sorted(rows) == sorted(str(f) for f in files)  # every file exactly one row (path is the key)
    with sqlite3.connect(db) as c:
        dup = c.execute("SELECT path, count(*) FROM files GROUP BY path HAVING count(*) > 1").fetchall()
    assert dup == []
    reread = set(log2.read_text().split()) & done_before
    assert reread == set(), f"{len(reread)} completed files were read again"


def test_cli_scan_report(tmp_path):
    build_fleet(tmp_path / "fleet", 3)
    db = tmp_path / "r.sqlite"
    r = subprocess.run(["ckptdoctor", "scan", str(tmp_path / "fleet"), "--db", str(db), "-q"],
                       capture_output=True, text=True)
    assert r.returncode in (0, 1), r.stderr
    assert "scanned" in r.stderr
    r = subprocess.run(["ckptdoctor", "report", str(db), "--json"], capture_output=True, text=True, check=True)
    assert '"files"' in r.stdout
    r = subprocess.run(["ckptdoctor", "report", str(db), "--sarif"], capture_output=True, text=True, check=True)
    assert '"2.1.0"' in r.stdout


def test_a_dcp_folder_is_one_checkpoint(tmp_path, torch):
    """A torch.distributed.checkpoint folder inside a model store: one row (format dcp, its tensors,
    will-not-load for torch.load), its own files not scanned separately, rescanned when a shard changes."""
    import warnings

    import torch.distributed.checkpoint as dcp

    store_dir = tmp_path / "store"
    (store_dir / "plain").mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, store_dir / "plain" / "model.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"w": torch.arange(6.0).reshape(2, 3), "step": 3}, checkpoint_id=str(store_dir / "run1"))
    db = tmp_path / "r.sqlite"
    store = ResultStore(str(db))
    try:
        todo, _ = plan([str(store_dir)], store, TaskSpec())
        assert sorted(Path(r.url).name for r in todo) == ["model.pt", "run1"]
        run_scan(todo, store, TaskSpec())
        rows = {Path(r["path"]).name: r for r in store.rows()}
        ids = {f["id"] for f in store.findings() if f["path"] == str(store_dir / "run1")}
        assert rows["run1"]["format"] == "dcp" and rows["run1"]["tensors"] == 1
        assert rows["run1"]["verdict"] == "will-not-load" and "CKD-CONTAINER-DCP" in ids
        assert rows["model.pt"]["verdict"] == "ok"
        assert plan([str(store_dir)], store, TaskSpec())[0] == []  # unchanged: nothing to do
        (shard,) = (store_dir / "run1").glob("*.distcp")
        os.utime(shard, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert [Path(r.url).name for r in plan([str(store_dir)], store, TaskSpec())[0]] == ["run1"]
    finally:
        store.close()
