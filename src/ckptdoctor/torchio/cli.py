"""``ckptdoctor inspect --load``: load the file into torch and print one line about what was built."""

from __future__ import annotations

import sys
import warnings

from ckptdoctor.torchio.policy import NeedsTorch, ReplacedObjectWarning


def print_load_summary(path: str, *, to_stderr: bool = False) -> int:
    """Run ckptdoctor.load (onto the CPU); print the summary line. Returns an exit code (0 or 2)."""
    from ckptdoctor.cli.errors import one_line
    from ckptdoctor.cli.exitcodes import ExitCode

    out = sys.stderr if to_stderr else sys.stdout
    try:
        from ckptdoctor.torchio.load import import_torch, load_with_info, summary

        import_torch()
    except NeedsTorch as e:
        print(f"ckptdoctor: --load: {e}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReplacedObjectWarning)
            obj, info = load_with_info(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - the CLI's edge: one line, no traceback
        print(f"ckptdoctor: --load failed: {one_line(e)}", file=sys.stderr)
        return ExitCode.UNREADABLE
    print(summary(obj, info), file=out)
    for w in caught:
        if issubclass(w.category, ReplacedObjectWarning):
            print(f"ckptdoctor: note: {w.message}", file=sys.stderr)
    return ExitCode.OK
