"""Security and integrity findings for ``ckptdoctor check`` (the analysis lives in :mod:`ckptdoctor.security`).

Runs on readable and unreadable files alike: a pickle that breaks after its
payload still runs the payload in torch, so the raw container walk happens
whatever the reader concluded. Findings other families already give
(unreadable files: ``impostors``; allowlisting: ``weights_only``) are left out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ckptdoctor.findings import Finding

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 1
FINDINGS = {
    "CKD-SEC-DANGEROUS": "loading would call, instantiate or feed a dangerous callable (process, code, import, file, "
                         "network, nested deserialisation, getattr gadgets, torch escapes): what, where (opcode, byte)",
    "CKD-SEC-INDIRECT-CALL": "loading would call a value the pickle computed (getattr/import chains, special methods "
                             "assigned by BUILD)",
    "CKD-SEC-DANGEROUS-REF": "a dangerous name imported but never called",
    "CKD-SEC-EMBEDDED": "bytes in the file are a pickle that would run dangerous code when deserialised",
    "CKD-SEC-UNKNOWN": "loading would import and run callables ckptdoctor does not know (review their code)",
    "CKD-SEC-UNKNOWN-REF": "unknown names imported but not called",
    "CKD-SEC-ALLOWLIST": "benign types torch's weights_only loader refuses (standalone security report only)",
    "CKD-SEC-TS-CODE": "TorchScript code calling dangerous operations or containing Python escape hatches",
    "CKD-SEC-TS-OPS": "TorchScript code calling custom operator namespaces",
    "CKD-INT-STORAGE-MISSING": "storage records referenced by the pickle are missing",
    "CKD-INT-STORAGE-SIZE": "storage records smaller than numel x itemsize declares",
    "CKD-INT-STORAGE-EXTRA": "storage records larger than declared (bytes torch never reads)",
    "CKD-INT-STORAGE-ORPHAN": "storage records nothing references",
    "CKD-INT-ZIP-DUPLICATE": "duplicate (shadowed) zip member names",
    "CKD-INT-ZIP-ROOTS": "zip members under several top-level folders",
    "CKD-INT-ZIP-ANOMALY": "zip quirks loaders and scanners read differently (name mismatch, encrypted flag, CRC, "
                           "prepended data, overlaps, escaping names)",
    "CKD-INT-ZIP-DIRECTORY": "zip central directory unreadable; members found by local headers",
    "CKD-INT-POLYGLOT": "a pickle stream with a zip archive behind it (two files in one)",
    "CKD-INT-AFTER-STOP": "bytes (or a second pickle) after a pickle's STOP",
    "CKD-INT-MULTIPLE-PICKLES": "several pickles in one stream",
    "CKD-INT-BROKEN-PICKLE": "a pickle that breaks off after making calls",
    "CKD-INT-SCAN-LIMIT": "the scan of a pickle stopped at a resource limit (what follows was not examined)",
    "CKD-INT-IMPOSTOR-CODE": "a non-checkpoint file that carries pickled code",
    "CKD-INT-UNREADABLE": "the reader refused the file (standalone security report only)",
}
SKIP_IN_CHECK = {"CKD-INT-UNREADABLE", "CKD-SEC-ALLOWLIST"}


def run(ctx: Context) -> Iterator[Finding]:
    from ckptdoctor.security import dcp_chunk_findings, findings_for, scan_file
    from ckptdoctor.source import open_source

    ckpt = ctx.ckpt
    if ckpt is not None and ckpt.source is not None:
        source, own = ckpt.source, False
        name = ckpt.path
    else:
        if not ctx.path or not os.path.isfile(ctx.path):
            return
        try:
            source, own = open_source(ctx.path), True
        except OSError:
            return
        name = ctx.path
    try:
        fs = scan_file(source, name)
        findings = findings_for(fs, ckpt, ctx.error) + dcp_chunk_findings(ckpt)
    finally:
        if own:
            source.close()
    for f in findings:
        if f.id in SKIP_IN_CHECK:
            continue
        yield ctx.ordered(f, STAGE, f.evidence.get("offset") if isinstance(f.evidence.get("offset"), int) else None) \
            if f.blocks_load else f
