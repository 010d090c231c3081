"""Types the target torch lacks: dtypes, storage classes, rebuild functions, layouts.

First/last releases come from data/torch_features.json (tools/extract_torch_features.py reads
them from each release's source).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from packaging.version import Version

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.rules._common import finding, fix_cmd
from ckptdoctor.rules._tables import has, span, torch_features

if TYPE_CHECKING:
    from ckptdoctor.check import Context, Target

STAGE = 2
FINDINGS = {
    "CKD-TYPE-DTYPE": "a tensor dtype the target torch does not have (bfloat16 < 1.2, float8 < 2.2, uint16/32/64 < 2.3 ...)",
    "CKD-TYPE-STORAGE": "a storage class the target torch does not have (UntypedStorage < 1.13, QUInt2x4Storage < 1.11 ...)",
    "CKD-TYPE-REBUILD": "a tensor rebuild function the target torch does not have (_rebuild_tensor_v3 < 2.2 ...)",
    "CKD-TYPE-LAYOUT": "a tensor layout the target torch does not have (sparse_csr < 1.11, sparse_bsr < 1.12 ...)",
}
DTYPE_ALIASES = {"float": "float32", "double": "float64", "half": "float16", "long": "int64", "int": "int32",
                 "short": "int16", "cfloat": "complex64", "cdouble": "complex128", "chalf": "complex32"}


def classify(name: str) -> tuple[str, str] | None:
    """(table, key) for a global that is a torch type, else None."""
    module, _, attr = name.rpartition(".")
    if attr.startswith("_rebuild_") and module in ("torch._utils", "torch._tensor", "torch.tensor"):
        return "rebuild_functions", name
    if module in ("torch", "torch.cuda", "torch.storage") and attr.endswith("Storage"):
        return "storage_classes", attr
    if module == "torch" and DTYPE_ALIASES.get(attr, attr) in torch_features().get("dtypes", {}):
        return "dtypes", DTYPE_ALIASES.get(attr, attr)
    return None


def missing_in_target(name: str, target: Target) -> tuple[str, str | None, str | None] | None:
    """(table, first, last) when the target torch lacks this torch type; None if it has it (or we cannot say)."""
    c = classify(name)
    if c is None:
        return None
    table, key = c
    if has(table, key, target.torch) is False:
        first, last = span(table, key) or (None, None)
        return table, first, last
    return None


def _when(first: str | None, last: str | None) -> str:
    if last is not None:
        return f"torch {first}..{last} only"
    return f"added in torch {first}"


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None or ckpt.format in ("safetensors", "dcp", "sharded-index", "torchscript-json"):
        return
    t = ctx.target
    offsets: dict[str, int] = {}
    if ctx.pickles:
        for full, _raw, off, _label in ctx.sim(False).globals:
            offsets.setdefault(full, off)
    seen: set[str] = set()
    ids = {"rebuild_functions": "CKD-TYPE-REBUILD", "storage_classes": "CKD-TYPE-STORAGE", "dtypes": "CKD-TYPE-DTYPE"}
    for name in ckpt.globals:
        m = missing_in_target(name, t)
        if m is None or name in seen:
            continue
        seen.add(name)
        table, first, last = m
        short = name.rpartition(".")[2]
        module = name.rpartition(".")[0]
        err = f"AttributeError: Can't get attribute '{short}' on <module '{module}'>"
        if t.loads_weights_only and t.torch_at_least("1.13"):
            from ckptdoctor.rules._common import render_template, wo_message
            from ckptdoctor.rules._tables import weights_only_table

            tb = weights_only_table(t.torch)
            if tb:
                err = wo_message(tb, render_template(tb["messages"]["global"], full_path=name,
                                                     name=short).partition(": ")[2])
        what = {"rebuild_functions": "tensor rebuild function", "storage_classes": "storage class",
                "dtypes": "dtype"}[table]
        yield ctx.ordered(finding(
            ids[table], Severity.ERROR, f"torch {t.torch} has no {what} {name} ({_when(first, last)})",
            f"The file uses {name} (byte {offsets.get(name, '?')}); torch {t.torch} does not define it "
            f"({_when(first, last)}), so unpickling fails.",
            evidence={"global": name, "first": first, "last": last, "offset": offsets.get(name), "torch_error": err},
            fix=_fix(ctx, table, first), blocks=True), STAGE, offsets.get(name))
    # tensor dtypes/layouts not visible as globals (typed storages carry the dtype in the class name)
    dtypes_seen: dict[str, str] = {}
    layouts: dict[str, str] = {}
    for path, tr in ckpt.tensors():
        dtypes_seen.setdefault(tr.dtype.name, path)
        if tr.layout != "strided":
            layouts.setdefault(tr.layout, path)
    for dt, path in dtypes_seen.items():
        if has("dtypes", dt, t.torch) is False and f"torch.{dt}" not in seen:
            first, last = span("dtypes", dt) or (None, None)
            yield ctx.ordered(finding(
                "CKD-TYPE-DTYPE", Severity.ERROR, f"torch {t.torch} has no dtype {dt} ({_when(first, last)})",
                f"Tensor {path or '<root>'} is {dt}; torch {t.torch} has no such dtype.",
                evidence={"dtype": dt, "key": path, "first": first},
                fix=_fix(ctx, "dtypes", first), blocks=True), STAGE, None)
    for layout, path in layouts.items():
        ok = has("layouts", layout, t.torch)
        first = (span("layouts", layout) or (None, None))[0]
        if ok is False and first is not None and Version(first) >= Version("1.11"):
            yield ctx.ordered(finding(
                "CKD-TYPE-LAYOUT", Severity.ERROR, f"torch {t.torch} has no layout torch.{layout} (from {first})",
                f"Tensor {path} has layout torch.{layout}; torch {t.torch} cannot rebuild it.",
                evidence={"layout": layout, "key": path, "first": first},
                fix=Fix(f"use torch >= {first}, or convert the tensor to dense before saving"), blocks=True),
                STAGE, None)


def _fix(ctx: Context, table: str, first: str | None) -> Fix:
    if table == "dtypes":
        return Fix(f"use torch >= {first}, or convert those tensors to a dtype torch {ctx.target.torch} has "
                   "(e.g. float32) before saving")
    return Fix(f"rewrite the file the way torch {ctx.target.torch_release} writes it (or use torch >= {first})",
               command=fix_cmd(ctx))
