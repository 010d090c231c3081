"""Adapter from the scanner to ``ckptdoctor check`` and the security analysis (kept apart so the task stays small)."""

from __future__ import annotations

from typing import Any

from ckptdoctor.findings import Finding


def diagnose(ckpt: Any, error: Any, *, torch: str | None, weights_only: bool | None) -> list[Finding]:
    findings: list[Finding] = []
    try:
        from ckptdoctor import check as check_mod
    except ImportError:  # check not available in this build
        check_mod = None
    fn = getattr(check_mod, "diagnose_for_scan", None)
    if fn is not None:
        findings.extend(fn(ckpt, error, torch=torch, weights_only=weights_only))
    elif ckpt is not None:
        try:
            from ckptdoctor.security import analyze
        except ImportError:
            analyze = None
        if analyze is not None:
            findings.extend(analyze(ckpt))
    return findings
