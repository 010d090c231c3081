"""SARIF 2.1.0 for findings (shared by check, scan and security).

One run; ``tool.driver.rules`` from the finding ids (descriptions from the rule catalog when known);
one result per finding, located at the file (and at the byte offset when the finding has one), with
the evidence, the fix and ``blocks_load`` in ``properties``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ckptdoctor import __version__
from ckptdoctor.findings import Finding

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/ckptdoctor/ckptdoctor/blob/main/docs/findings.md"


def _uri(path: str) -> str:
    if "://" in path:
        return path
    p = Path(path)
    return p.resolve().as_uri() if p.is_absolute() or os.path.exists(path) else path.replace(os.sep, "/")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def rule_descriptor(fid: str, example: Finding | None = None) -> dict[str, Any]:
    try:
        from ckptdoctor.rules import catalog

        family, desc = catalog().get(fid, ("", ""))
    except ImportError:  # pragma: no cover - rules are part of the package
        family, desc = "", ""
    short = desc or (example.title if example else fid)
    d: dict[str, Any] = {
        "id": fid,
        "name": fid.removeprefix("CKD-").title().replace("-", ""),
        "shortDescription": {"text": short[:1000]},
        "fullDescription": {"text": (desc or (example.explanation if example else fid))[:4000]},
        "helpUri": f"{INFO_URI}#{fid.lower()}",
        "defaultConfiguration": {"level": example.severity.sarif_level if example else "warning"},
    }
    if family:
        d["properties"] = {"family": family}
    return d


def result(f: Finding, path: str) -> dict[str, Any]:
    text = f.title
    if f.explanation:
        text += ". " + f.explanation
    if f.fix is not None:
        how = f.fix.command or f.fix.python
        text += f" Fix: {f.fix.summary}" + (f": {how}" if how else "")
    loc: dict[str, Any] = {"artifactLocation": {"uri": _uri(path)}}
    offset = f.evidence.get("offset")
    if isinstance(offset, int) and offset >= 0:
        loc["region"] = {"byteOffset": offset, "byteLength": 1}
    props: dict[str, Any] = {"severity": f.severity.label, "blocks_load": f.blocks_load,
                             "evidence": _jsonable(f.evidence)}
    if f.fix is not None:
        props["fix"] = {k: v for k, v in (("summary", f.fix.summary), ("command", f.fix.command),
                                          ("python", f.fix.python)) if v}
    return {
        "ruleId": f.id,
        "level": f.severity.sarif_level,
        "message": {"text": text},
        "locations": [{"physicalLocation": loc}],
        "properties": props,
    }


def to_sarif(items: Iterable[tuple[str, Finding]], *, invocation: dict[str, Any] | None = None,
             properties: dict[str, Any] | None = None) -> dict[str, Any]:
    """``items``: (path, finding) pairs. Returns the SARIF log as a dict (``json.dumps`` it)."""
    items = list(items)
    rules: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for _path, f in items:
        if f.id not in rules:
            rules[f.id] = rule_descriptor(f.id, f)
            order.append(f.id)
    index = {fid: i for i, fid in enumerate(order)}
    results = []
    for path, f in items:
        r = result(f, path)
        r["ruleIndex"] = index[f.id]
        results.append(r)
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "ckptdoctor", "version": __version__, "semanticVersion": __version__,
                            "informationUri": INFO_URI, "rules": [rules[i] for i in order]}},
        "results": results,
        "columnKind": "unicodeCodePoints",
    }
    if invocation is not None:
        run["invocations"] = [{"executionSuccessful": True, **invocation}]
    if properties:
        run["properties"] = _jsonable(properties)
    return {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
