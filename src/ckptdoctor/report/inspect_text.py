"""Human-readable ``inspect`` output (rich)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rich.console import Console
from rich.table import Table

from ckptdoctor.report.units import human_bytes, human_count


def render_inspect(report: dict[str, Any], console: Console, *, depth: int | None = None, limit: int = 200) -> None:
    s = report["summary"]
    d = report["details"]
    console.print(f"[bold]{report['path']}[/bold]")
    fmt = report["format"]
    extra = []
    for k in ("root", "version", "byteorder", "protocol_version", "module_class"):
        if k in d and d[k] is not None:
            extra.append(f"{k}={d[k]}")
    console.print(f"  format      {fmt}" + (f"  ({', '.join(extra)})" if extra else ""))
    console.print(f"  size        {human_bytes(report['size'])}")
    p = report["producer"]
    if p["earliest"] or p["latest"]:
        console.print(f"  written by  torch {p['earliest'] or '?'} .. {p['latest'] or 'latest'}"
                      f"  [dim]({'; '.join(p['reasons'][:3])})[/dim]")
    if report["pickle_protocol"] is not None:
        console.print(f"  pickle      protocol {report['pickle_protocol']}")
    console.print(f"  tensors     {s['tensors']}  ({human_count(s['elements'])} elements, "
                  f"{human_bytes(s['tensor_bytes'])})")
    if s["dtypes"]:
        console.print("  dtypes      " + ", ".join(f"{k} x{v}" for k, v in s["dtypes"].items()))
    if s["devices"]:
        console.print("  devices     " + ", ".join(f"{k} x{v}" for k, v in s["devices"].items()))
    interesting = [g for g in report["globals"] if not g.startswith(("torch._utils.", "collections.OrderedDict"))
                   and not g.endswith("Storage")]
    if interesting:
        shown = ", ".join(interesting[:12]) + (f" (+{len(interesting) - 12} more)" if len(interesting) > 12 else "")
        console.print(f"  globals     {shown}")
    prov = d.get("provenance")
    if isinstance(prov, dict):
        keys = ("torch", "cuda", "numpy", "python", "platform", "saved_at")
        console.print("  provenance  " + ", ".join(f"{k}={prov[k]}" for k in keys if prov.get(k)))
        if prov.get("user"):
            console.print(f"              user: {prov['user']}")
    if "metadata" in d and d["metadata"]:
        console.print(f"  metadata    {d['metadata']}")
    tensors = report["tensors"]
    if not tensors:
        return
    console.print()
    if depth is not None:
        groups: OrderedDict[str, list[int]] = OrderedDict()
        for t in tensors:
            key = ".".join(t["path"].split(".")[:depth])
            g = groups.setdefault(key, [0, 0, 0])
            n = 1
            for x in t["shape"]:
                n *= x
            g[0] += 1
            g[1] += n
            g[2] += t["nbytes"]
        table = Table("prefix", "tensors", "elements", "size", box=None, pad_edge=False)
        for k, (c, n, b) in groups.items():
            table.add_row(k, str(c), human_count(n), human_bytes(b))
        console.print(table)
        return
    table = Table("path", "dtype", "shape", "elements", "size", box=None, pad_edge=False)
    show_hash = any("sha256" in t for t in tensors)
    if show_hash:
        table.add_column("sha256")
    for t in tensors[:limit]:
        n = 1
        for x in t["shape"]:
            n *= x
        row = [t["path"], t["dtype"] + ("" if t["device"] == "cpu" else f" @{t['device']}"),
               "[" + ", ".join(map(str, t["shape"])) + "]", human_count(n), human_bytes(t["nbytes"])]
        if show_hash:
            row.append(t.get("sha256", "")[:16])
        table.add_row(*row)
    console.print(table)
    if len(tensors) > limit:
        console.print(f"  … {len(tensors) - limit} more tensors (use --all, --depth N to group, or --json)")
