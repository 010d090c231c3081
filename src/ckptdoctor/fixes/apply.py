"""Run a plan on a file: read, change in memory, write atomically, verify, record.

The input is never modified: the output is written to a temporary file in
the output's directory and renamed over ``OUT`` only after every tensor of
it, re-read by ckptdoctor, has the sha256 it must have. On any failure the
temporary file is removed and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.fixes.auto import auto_plan, check_target, convert_plan
from ckptdoctor.fixes.extract import script_modules_to_state_dicts
from ckptdoctor.fixes.plan import (
    Change,
    FixError,
    Plan,
    Step,
    Tree,
    VerificationFailed,
    default_container,
    parse_version,
)
from ckptdoctor.fixes.progress import NoProgress, ProgressSink
from ckptdoctor.fixes.safe import needs_weights_only_safe
from ckptdoctor.fixes.verify import Verification, distinct_nbytes, expected_tensors, verify_file
from ckptdoctor.walk import iter_tensors

RECORD_SUFFIX = ".changes.json"


@dataclass
class FixResult:
    input: str
    output: str
    input_format: str
    container: str
    target: str
    steps: list[tuple[str, str]] = field(default_factory=list)  # (id, description)
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: bool = False
    verification: Verification | None = None
    record_path: str | None = None
    seconds: float = 0.0
    output_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        from ckptdoctor import __version__

        return {
            "ckptdoctor": __version__,
            "input": {"path": self.input, "format": self.input_format},
            "output": {"path": self.output, "container": self.container, "size": self.output_size,
                       "written": self.written},
            "target_torch": self.target,
            "steps": [{"id": i, "description": d} for i, d in self.steps],
            "changes": [c.to_dict() for c in self.changes],
            "notes": self.notes,
            "verification": self.verification.to_dict() if self.verification else None,
            "seconds": round(self.seconds, 3),
        }


def same_file(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


PlanMaker = Callable[[Tree], tuple[Plan, list[Change]]]


def run(in_path: str, out_path: str, plan: PlanMaker, *, target: str | None = None, container: str | None = None,
        plan_only: bool = False, verify: bool = True, record: bool = False,
        progress: ProgressSink | None = None) -> FixResult:
    """Read ``in_path``, apply the plan ``plan(tree)`` builds, write ``out_path`` (unless ``plan_only``)."""
    import ckptdoctor
    from ckptdoctor.writers import container_for_path
    from ckptdoctor.writers.stream import close_fds

    t0 = time.perf_counter()
    if same_file(in_path, out_path):
        raise FixError(f"refusing to write over the input ({out_path}); choose another -o")
    tv = parse_version(target)
    container = container or container_for_path(out_path)
    with ckptdoctor.open(in_path) as ckpt:
        if not ckpt.is_checkpoint:  # impostors are refused by open(); belt and braces
            raise FixError(f"{in_path}: not a checkpoint ({ckpt.format})")
        if ckpt.format == "dcp":
            from ckptdoctor.formats.dcp import without_data

            if (why := without_data(ckpt)) is not None:
                raise FixError(why)
        tree = Tree(root=ckpt.root, format=ckpt.format, container=container or default_container(ckpt.format, tv),
                    target=tv, metadata=ckpt.details.get("metadata") if ckpt.format == "safetensors" else None)
        the_plan, changes = plan(tree)
        if tree.container != "safetensors":
            changes.extend(script_modules_to_state_dicts(tree))
            if needs_weights_only_safe(tree.root, tree.target):
                tree.notes.append(f"the result still holds objects torch {tree.target} refuses with weights_only=True "
                                  f"(add --step weights-only-safe, or load it with weights_only=False)")
        elif tree.metadata is None:
            tree.metadata = {"format": "pt"}  # what safetensors.torch writes; transformers requires it
        check_target(tree)
        result = FixResult(in_path, out_path, ckpt.format, tree.container, str(tv),
                           steps=[(s.id, s.describe()) for s in the_plan.steps], changes=changes)
        result.notes.extend(tree.notes)
        if plan_only:
            result.seconds = time.perf_counter() - t0
            return result
        try:
            _write_verified(tree, out_path, result, verify, progress or NoProgress())
        finally:
            close_fds()
    if record:
        result.record_path = out_path + RECORD_SUFFIX
        _atomic_text(result.record_path, json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    result.seconds = time.perf_counter() - t0
    return result


def _write_verified(tree: Tree, out_path: str, result: FixResult, verify: bool, progress: ProgressSink) -> None:
    from ckptdoctor.writers import OutFile, write_tree
    from ckptdoctor.writers.zip import archive_root

    directory = os.path.dirname(os.path.abspath(out_path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(out_path)}.", suffix=".tmp")
    try:
        expected = expected_tensors(tree.root, tree.container) if verify else {}
        progress.start("write", distinct_nbytes(iter_tensors(tree.root)))
        try:
            write_tree(tree.root, tree.container, OutFile(fd, on_bytes=progress.advance),
                       archive_name=archive_root(out_path), metadata=tree.metadata,
                       numpy_module=tree.numpy_module, note=result.notes.append)
        finally:
            os.close(fd)
        if verify:
            result.verification = verify_file(tmp, expected, progress=progress)
            if not result.verification.ok:
                raise VerificationFailed(f"{result.verification.summary()}; nothing written to {out_path}")
        else:
            result.notes.append("verification skipped (--no-verify): the output was NOT re-read")
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, out_path)
        result.written = True
        result.output_size = os.path.getsize(out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        progress.finish()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _atomic_text(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------- entry points
def fix_file(in_path: str, out_path: str, steps: list[Step] | None = None, *, target: str | None = None,
             container: str | None = None, plan_only: bool = False, verify: bool = True,
             record: bool = False, progress: ProgressSink | None = None) -> FixResult:
    """``ckptdoctor fix``: the named steps (then the container), or the automatic plan if none."""

    def make(tree: Tree) -> tuple[Plan, list[Change]]:
        if steps is None:
            return auto_plan(tree, container)
        from ckptdoctor.fixes.plan import ContainerChange

        chosen = list(steps)
        if not any(isinstance(s, ContainerChange) for s in chosen):
            chosen.append(ContainerChange(container or tree.container))
        p = Plan(chosen)
        return p, p.apply(tree)

    return run(in_path, out_path, make, target=target, container=container, plan_only=plan_only,
               verify=verify, record=record, progress=progress)


def convert_file(in_path: str, out_path: str, *, to: str | None = None, keep_objects: bool = False,
                 target: str | None = None, verify: bool = True, record: bool = False,
                 progress: ProgressSink | None = None) -> FixResult:
    """``ckptdoctor convert``: a container change (content changed only as weights-only loading needs)."""

    def make(tree: Tree) -> tuple[Plan, list[Change]]:
        p = convert_plan(tree, to or tree.container, keep_objects=keep_objects)
        return p, p.apply(tree)

    return run(in_path, out_path, make, target=target, container=to, verify=verify, record=record,
               progress=progress)
