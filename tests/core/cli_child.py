"""Run the real ``ckptdoctor`` CLI in a child process and measure that child's own peak RSS.

The child is a tiny wrapper around the console-script entry point (``ckptdoctor.__main__:main``)
that, at exit, writes its ``VmHWM`` (peak resident set since exec, from /proc/self/status) to
the file named by ``CKPTDOCTOR_TEST_HWM``. We do not use ``getrusage(RUSAGE_CHILDREN)``: its
``ru_maxrss`` is a maximum over *all* children ever waited for, and after fork it includes pages
the child shared with this (large, torch-importing) pytest process before exec.

``RLIMIT_AS`` is set to 4 GiB in the child as a safety net for the shared machine only: the
assertion that matters is the measured peak (< 256 MB), far below it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RSS_LIMIT = 256 * 1024 * 1024

WRAPPER = r"""
import atexit, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

def _report():
    with open("/proc/self/status") as f:
        hwm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
    with open(os.environ["CKPTDOCTOR_TEST_HWM"], "w") as f:
        f.write(str(hwm))

atexit.register(_report)
sys.argv[0] = "ckptdoctor"
from ckptdoctor.__main__ import main  # what the installed console script runs
main()
"""


@dataclass
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes

    def describe(self) -> str:
        return (f"ckptdoctor {' '.join(self.args)} -> exit {self.returncode}, peak RSS {self.peak_rss >> 20} MB\n"
                f"stderr: {self.stderr[-2000:]!r}\nstdout: {self.stdout[:500]!r}")


def run_cli(*args: str, tmp: Path, timeout: float = 120, preexec: Callable[[], None] | None = None) -> Run:
    hwm_file = tmp / f"hwm-{os.getpid()}-{abs(hash(args))}.txt"
    env = {**os.environ, "CKPTDOCTOR_TEST_HWM": str(hwm_file), "COLUMNS": "120"}
    env.pop("CKPTDOCTOR_DEBUG", None)
    p = subprocess.run([sys.executable, "-c", WRAPPER, *args], capture_output=True, text=True, env=env,
                       timeout=timeout, preexec_fn=preexec)
    peak = int(hwm_file.read_text()) if hwm_file.exists() else -1
    hwm_file.unlink(missing_ok=True)
    return Run(tuple(args), p.returncode, p.stdout, p.stderr, peak)


def assert_clean_refusal(r: Run, *, as_json: bool = False) -> dict | None:
    """Exit 2, exactly one stderr line starting ``ckptdoctor:``, no traceback, peak RSS < 256 MB.

    With ``as_json`` the stdout must also be one valid JSON document (returned).
    """
    why = r.describe()
    assert r.returncode == 2, why
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckptdoctor:"), why
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, why
    assert "internal error" not in r.stderr, why  # an unexpected exception: a bug to fix, not a message
    assert 0 < r.peak_rss < RSS_LIMIT, why
    if as_json:
        doc = json.loads(r.stdout)
        assert isinstance(doc, dict) and doc.get("error") and "format" in doc, why
        return doc
    return None
