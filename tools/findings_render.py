"""Render docs/findings.md from one real example per finding id (see tools/findings_examples.py)."""

from __future__ import annotations

import re
from pathlib import Path

from ckptdoctor.rules import ALL_RULES

ROOT = Path(__file__).resolve().parent.parent
MINE = ("impostors", "container", "weights_only", "whole_model", "numpy", "py2", "dtypes", "devices", "batchnorm",
        "producer")
HEAD = """# Findings of `ckptdoctor check`

Every finding is data (`ckptdoctor.findings.Finding`): a stable **id**, a **severity** (`info`, `warning`,
`error`, `critical`), a one-line **title**, a plain **explanation**, structured **evidence** (the global, byte
offset, key path, record, and `torch_error`: what torch itself would raise), a **fix** (a shell command and/or
an exact Python line) and **blocks_load** (this alone makes `torch.load` fail in the target). `check` exits 1
when any finding blocks the load. The same findings come out as text, `--json` and `--sarif`.

The rules live in `src/ckptdoctor/rules/`, one module per family, registered in `ALL_RULES`. Every example
below is real: `tools/findings_examples.py` wrote the file (with torch) or took it from the corpus, ran
`check` on it and rendered what came out (paths shortened).

"""


def _short(s: str) -> str:
    s = re.sub(r"/tmp/ckd-findings-[^/\s]+/", "", s)
    return re.sub(r"[^\s(']*/shared/corpus/files/", "", s)


def render(examples: dict) -> None:
    out = [HEAD]
    for rule in ALL_RULES:
        if rule.family not in MINE:
            continue
        doc = (rule.module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        out.append(f"## {rule.family} (`rules/{rule.module.__name__.rsplit('.', 1)[1]}.py`)\n\n{doc}\n")
        for fid, desc in rule.findings.items():
            ex = examples.get(fid)
            out.append(f"### {fid}\n\n{desc}.\n")
            if ex is None:
                out.append("_(no example)_\n")
                continue
            out.append(f"Example: `{ex['file']}`, target {ex['target']}:\n")
            block = [f"{ex['severity'].upper()} {fid}{' (blocks load)' if ex['blocks'] else ''}  {ex['title']}",
                     f"  {ex['explanation']}"]
            fix = ex.get("fix") or {}
            if fix:
                block.append(f"  fix: {fix['summary']}")
                if fix.get("command"):
                    block.append(f"    $ {fix['command']}")
                for line in (fix.get("python") or "").split("\n"):
                    if line:
                        block.append(f"    >>> {line}")
            if ex.get("torch_error"):
                te = " ".join(ex["torch_error"].replace("\x1b[1m", "").replace("\x1b[0m", "").split())
                te = te.split(" Check the documentation of torch.load")[0]
                if "WeightsUnpickler error:" in te:
                    head, _, tail = te.partition("WeightsUnpickler error:")
                    te = f"{head[:60]}... WeightsUnpickler error:{tail}"
                block.append(f"  torch says: {te[:400]}{'...' if len(te) > 400 else ''}")
            out.append("```\n" + _short("\n".join(block)) + "\n```\n")
    (ROOT / "docs" / "findings.md").write_text("\n".join(out))
