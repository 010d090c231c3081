"""The HTML report renders in headless Chromium with the right counts; a screenshot is kept under build/."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ckptdoctor.report.html import write_html_report
from ckptdoctor.scan.runner import plan, run_scan
from ckptdoctor.scan.store import ResultStore
from ckptdoctor.scan.task import TaskSpec

from .conftest import REPO, build_fleet

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("Debian chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    return exe


def test_html_report_in_headless_chromium(tmp_path):
    exe = chromium()
    build_fleet(tmp_path / "fleet", 6)
    store = ResultStore(str(tmp_path / "r.sqlite"))
    todo, _ = plan([str(tmp_path / "fleet")], store, TaskSpec())
    run_scan(todo, store, TaskSpec())
    rows, findings = store.rows(), store.findings()
    store.close()
    html = tmp_path / "report.html"
    write_html_report(rows, findings, str(html))
    text = html.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing fetched

    profile = tmp_path / "profile"
    dom = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=2000",
                          "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    out = dom.stdout
    assert out.count('class="file"') == len(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    for verdict, n in counts.items():
        assert re.search(rf'data-verdict="{verdict}"><b data-count="{n}">', out), verdict
    assert f"{len(rows)} shown" in out  # the script ran in the browser and counted the rows

    build = REPO / "build"
    build.mkdir(exist_ok=True)
    shot = build / "scan-report.png"
    r = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1600",
                        f"--screenshot={shot}", html.as_uri()], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000
