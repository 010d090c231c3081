"""SARIF for a whole scan: one result per finding, located at the file."""

from __future__ import annotations

from typing import Any

from ckptdoctor import __version__

LEVEL = {"info": "note", "warning": "warning", "error": "error", "critical": "error"}


def scan_to_sarif(rows: list[dict[str, Any]], findings: list[dict[str, Any]]) -> dict[str, Any]:
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for f in findings:
        rules.setdefault(f["id"], {"id": f["id"], "shortDescription": {"text": f["title"]},
                                   "fullDescription": {"text": f.get("explanation") or f["title"]}})
        msg = f["title"]
        fix = f.get("fix") or {}
        if fix.get("command") or fix.get("python"):
            msg += f" Fix: {fix.get('command') or fix.get('python')}"
        results.append({
            "ruleId": f["id"],
            "level": LEVEL.get(f["severity"], "warning"),
            "message": {"text": msg},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": f["path"]}}}],
            "properties": {"severity": f["severity"], "evidence": f.get("evidence") or {}},
        })
    for r in rows:
        if r["verdict"] in ("unreadable", "not-a-checkpoint") and not any(f["path"] == r["path"] for f in findings):
            rules.setdefault("CKD-UNREADABLE", {"id": "CKD-UNREADABLE", "shortDescription": {"text": "Unreadable"}})
            results.append({"ruleId": "CKD-UNREADABLE", "level": "error",
                            "message": {"text": r.get("error") or r["verdict"]},
                            "locations": [{"physicalLocation": {"artifactLocation": {"uri": r["path"]}}}]})
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "ckptdoctor", "version": __version__,
                                      "rules": list(rules.values())}},
                  "results": results}],
    }
