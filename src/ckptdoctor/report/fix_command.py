"""The printing and exit codes of ``ckptdoctor fix`` / ``convert``, without the CLI framework.

``ckptdoctor.cli.fix_cmd`` / ``convert_cmd`` declare the options for typer; the console script calls
:func:`run_convert` directly for ``convert IN -o OUT [--to C] [--torch V] [--no-verify] [--record]
[--json]`` (``ckptdoctor.__main__``), so a scripted conversion does not pay for typer (~0.2 s).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from ckptdoctor.edge import EXIT_OK, EXIT_UNREADABLE, one_line
from ckptdoctor.report.units import human_bytes

EXIT_VERIFICATION_FAILED = 1


def finish(verb: str, go: Callable[[], Any], *, as_json: bool, plan: bool = False) -> int:
    """Run ``go()`` (which returns a FixResult), print the result, return the exit code."""
    from ckptdoctor.errors import CkptdoctorError, UnreadableFile
    from ckptdoctor.fixes.plan import VerificationFailed

    try:
        result = go()
    except UnreadableFile as e:
        print(f"ckptdoctor: cannot read: {e}", file=sys.stderr)
        return EXIT_UNREADABLE
    except VerificationFailed as e:
        print(f"ckptdoctor {verb}: {e}", file=sys.stderr)
        return EXIT_VERIFICATION_FAILED
    except (CkptdoctorError, ValueError, OSError) as e:
        print(f"ckptdoctor {verb}: {one_line(e)}", file=sys.stderr)
        return EXIT_UNREADABLE
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    else:
        render(result, verb, plan=plan)
    return EXIT_OK


def run_fix(path: str, *, output: str | None = None, torch_version: str | None = None, plan: bool = False,
            steps: tuple[str, ...] = (), extract: bool = False, key: str | None = None, renames: tuple[str, ...] = (),
            to: str | None = None, record: bool = False, no_verify: bool = False, as_json: bool = False) -> int:
    """``ckptdoctor fix``: the named steps (or the automatic plan), written and verified; the exit code."""
    if not output:
        print("ckptdoctor fix: -o/--output is required", file=sys.stderr)
        return EXIT_UNREADABLE

    def go():
        from ckptdoctor.fixes.apply import fix_file
        from ckptdoctor.fixes.plan import FixError
        from ckptdoctor.fixes.progress import terminal_progress
        from ckptdoctor.fixes.steps import make_step

        if key and not extract and "extract-state-dict" not in steps:
            raise FixError("--key names the entry to extract: use it with --extract-state-dict")
        chosen = None
        if extract or steps or renames:
            chosen = []
            if extract:
                chosen.append(make_step("extract-state-dict", key=key))
            for s in steps:
                if s == "extract-state-dict" and extract:
                    continue
                chosen.append(make_step(s, key=key, rules=list(renames), container=to))
            if renames and not any(s.id == "rename" for s in chosen):
                chosen.append(make_step("rename", rules=list(renames)))
        return fix_file(path, output, chosen, target=torch_version, container=to, plan_only=plan,
                        verify=not no_verify, record=record, progress=terminal_progress())

    return finish("fix", go, as_json=as_json, plan=plan)


def run_convert(path: str, *, output: str | None = None, to: str | None = None, keep_objects: bool = False,
                torch_version: str | None = None, record: bool = False, no_verify: bool = False,
                as_json: bool = False) -> int:
    """``ckptdoctor convert``: change the container, verified; returns the exit code."""
    if not output:
        print("ckptdoctor convert: -o/--output is required", file=sys.stderr)
        return EXIT_UNREADABLE

    def go():
        from ckptdoctor.fixes.apply import convert_file
        from ckptdoctor.fixes.progress import terminal_progress
        from ckptdoctor.writers import container_for_path

        container = to or container_for_path(output) or ("legacy" if _before_zip(torch_version) else "zip")
        return convert_file(path, output, to=container, keep_objects=keep_objects, target=torch_version,
                            verify=not no_verify, record=record, progress=terminal_progress())

    return finish("convert", go, as_json=as_json)


def _before_zip(v: str | None) -> bool:
    """Whether torch ``v`` predates the zip container (1.6)."""
    from packaging.version import Version

    from ckptdoctor.fixes.plan import parse_version

    return parse_version(v) < Version("1.6")


def render(r: Any, verb: str, *, plan: bool) -> None:
    out = sys.stdout.write
    out(f"{r.input} ({r.input_format}) -> {r.output} ({r.container}, for torch {r.target})\n")
    by_step: dict[str, list] = {}
    for c in r.changes:
        by_step.setdefault(c.step, []).append(c)
    for i, (sid, desc) in enumerate(r.steps, 1):
        out(f"  {i}. {sid}: {desc}\n")
        changes = by_step.pop(sid, [])
        for c in changes[:12]:
            out(f"       - {c}\n")
        if len(changes) > 12:
            out(f"       ... and {len(changes) - 12} more (--json or --record lists all)\n")
    for sid, changes in by_step.items():  # changes made while writing (e.g. TorchScript -> state_dict)
        for c in changes[:12]:
            out(f"     {sid}: {c}\n")
    for n in r.notes:
        out(f"  note: {n}\n")
    if plan:
        out("plan only: nothing written\n")
        return
    if r.verification is not None:
        out(f"verified: {r.verification.summary()} ({human_bytes(r.verification.bytes)})\n")
    out(f"wrote {r.output} ({human_bytes(r.output_size)}) in {r.seconds:.2f}s\n")
    if r.record_path:
        out(f"change record: {r.record_path}\n")
