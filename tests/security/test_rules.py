"""The security family inside ``ckptdoctor check`` and the scanner-facing API."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from ckptdoctor.check import check
from ckptdoctor.findings import Severity
from ckptdoctor.rules import catalog
from ckptdoctor.security import analyze, analyze_source
from ckptdoctor.source import FileObjSource
from security.malicious import _broken_tail, _call, torch_zip
from security.pickleasm import G


def test_registered_in_catalog():
    cat = catalog()
    assert cat["CKD-SEC-DANGEROUS"][0] == "security" and cat["CKD-INT-ZIP-DUPLICATE"][0] == "security"


def test_check_reports_dangerous_and_never_runs_it(tmp_path, canary, tripwire):
    p = tmp_path / "evil.pt"
    p.write_bytes(torch_zip(_call(G("os", "system"), (f"touch {canary}",))))
    res = check(p)
    f = next(f for f in res.findings if f.id == "CKD-SEC-DANGEROUS")
    assert f.severity == Severity.CRITICAL and f.evidence["global"] == "os.system"
    assert str(p) in f.fix.command


def test_check_on_unreadable_file_still_scans(tmp_path, canary, tripwire):
    p = tmp_path / "broken.pkl"
    p.write_bytes(_broken_tail(canary))
    res = check(p)
    assert not res.readable
    assert {"CKD-SEC-DANGEROUS", "CKD-INT-BROKEN-PICKLE"} <= {f.id for f in res.findings}


def test_clean_state_dict_has_no_security_findings(torch, tmp_path):
    p = tmp_path / "sd.pt"
    torch.save({"w": torch.ones(2)}, p)
    res = check(p)
    assert not [f for f in res.findings if f.id.startswith(("CKD-SEC", "CKD-INT"))]
    with __import__("ckptdoctor").open(p) as ckpt:
        assert analyze(ckpt) == []


def test_cli_json_and_exit(tmp_path, canary):
    p = tmp_path / "evil.pkl"
    p.write_bytes(_call(G("builtins", "exec"), (f"open({canary!r}, 'w').close()",), 4))
    out = subprocess.run([sys.executable, "-c", "import sys; from ckptdoctor.cli import main; sys.argv[0] = "
                          "'ckptdoctor'; main()", "check", str(p), "--json"], capture_output=True, text=True)
    doc = json.loads(out.stdout)
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr
    assert any(f["id"] == "CKD-SEC-DANGEROUS" and f["severity"] == "critical" for f in doc["findings"])


def test_analyze_source_for_remote_files(canary):
    data = torch_zip(_call(G("subprocess", "Popen"), ([f"touch {canary}"],)))
    src = FileObjSource(io.BytesIO(data), name="s3://bucket/m.pt", size=len(data))
    r = analyze_source(src, "s3://bucket/m.pt")
    assert r.verdict == "dangerous" and r.pickles == 1
