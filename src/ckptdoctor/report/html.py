"""One self-contained HTML file for a scan (no network): counts, chart, sortable/filterable table, details."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources
from typing import Any

VERDICT_COLORS = {"ok": "#2e7d32", "will-not-load": "#ef6c00", "dangerous": "#c62828",
                  "not-a-checkpoint": "#6a1b9a", "unreadable": "#455a64"}


def render_html_report(rows: list[dict[str, Any]], findings: list[dict[str, Any]]) -> str:
    import jinja2

    by_path: dict[str, list[dict[str, Any]]] = {}
    for f in findings:
        by_path.setdefault(f["path"], []).append(f)
    verdicts = Counter(r["verdict"] for r in rows)
    ids = Counter(f["id"] for f in findings)
    max_count = max([*verdicts.values(), *ids.values(), 1])
    from ckptdoctor.report.units import human_bytes

    base = _common_folder([r["path"] for r in rows])
    files = [{**r, "findings": by_path.get(r["path"], []), "name": r["path"][len(base):].lstrip("/") or r["path"],
              "size_h": human_bytes(r["size"] or 0)} for r in rows]
    template = resources.files("ckptdoctor").joinpath("data/templates/scan_report.html.j2").read_text()
    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson_safe"] = lambda v: json.dumps(v, default=str).replace("</", "<\\/")
    return env.from_string(template).render(
        files=files, verdicts=sorted(verdicts.items(), key=lambda kv: -kv[1]),
        ids=sorted(ids.items(), key=lambda kv: -kv[1]), max_count=max_count, colors=VERDICT_COLORS,
        total=len(rows), base=base,
    )


def _common_folder(paths: list[str]) -> str:
    """The longest common folder prefix of the paths (shown once in the header instead of on every row)."""
    if len(paths) < 2:
        return paths[0].rsplit("/", 1)[0] if paths else ""
    prefix = paths[0]
    for p in paths[1:]:
        while not p.startswith(prefix):
            prefix = prefix[:-1]
    return prefix[: prefix.rfind("/") + 1] if "/" in prefix else ""


def write_html_report(rows: list[dict[str, Any]], findings: list[dict[str, Any]], path: str) -> None:
    import os
    import tempfile

    html = render_html_report(rows, findings)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".report-", suffix=".html")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(html)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
