"""The ``ckptdoctor`` console script (and ``python -m ckptdoctor``).

``ckptdoctor inspect FILE [--json] [--hash] [--all]``, the spelling scripts run once per file, goes
straight to :func:`ckptdoctor.report.inspect_command.run_inspect`: importing typer and click (~30 ms)
and typer's pydantic-based parameter coercion (~100 ms) would be most of its run time. Every other
command line goes to the typer app in :mod:`ckptdoctor.cli`, which calls the same function for
``inspect``; ``tests/core/test_inspect_cli.py`` checks that both give identical output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

FAST_INSPECT_FLAGS = {"--json": "as_json", "--hash": "with_hash", "--all": "show_all"}


def fast_inspect(argv: list[str]) -> Callable[[], None] | None:
    """The direct call for ``inspect FILE`` plus any of FAST_INSPECT_FLAGS (each once), else None."""
    if not argv or argv[0] != "inspect":
        return None
    paths = [a for a in argv[1:] if not a.startswith("-")]
    flags = [a for a in argv[1:] if a.startswith("-")]
    if len(paths) != 1 or len(set(flags)) != len(flags) or not set(flags) <= FAST_INSPECT_FLAGS.keys():
        return None

    def run() -> None:
        from ckptdoctor.report.inspect_command import run_inspect

        sys.exit(run_inspect(paths[0], **{FAST_INSPECT_FLAGS[f]: True for f in flags}))

    return run


def main() -> None:
    """Console-script entry point. Never lets a traceback reach the user."""
    from ckptdoctor.edge import guarded

    run = fast_inspect(sys.argv[1:])
    if run is None:
        from ckptdoctor.cli import app

        run = app
    sys.exit(guarded(run))


if __name__ == "__main__":
    main()
