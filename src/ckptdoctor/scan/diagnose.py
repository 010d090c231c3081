"""Adapter from the scanner to ``ckptdoctor check`` (kept apart so the task stays small)."""

from __future__ import annotations

from typing import Any

from ckptdoctor.findings import Finding


def diagnose(ckpt: Any, error: Any, *, torch: str | None, weights_only: bool | None) -> list[Finding]:
    try:
        from ckptdoctor import check as check_mod
    except ImportError:  # check not available in this build
        return []
    fn = getattr(check_mod, "diagnose_for_scan", None)
    if fn is None:
        return []
    return list(fn(ckpt, error, torch=torch, weights_only=weights_only))
