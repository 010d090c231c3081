"""The work of ``ckptdoctor check``, without the CLI framework (see docs/check.md).

``ckptdoctor.cli.check_cmd`` declares the options for typer; the console script calls
:func:`run_check` directly for the common spellings (``ckptdoctor.__main__``), so a scripted
``check FILE --torch 2.6 --json`` imports neither typer nor pydantic (~120 ms of a ~0.2 s run).
"""

from __future__ import annotations

import json
import os
import sys

from ckptdoctor.edge import EXIT_UNREADABLE, one_line

EXIT_USAGE = 2


def run_check(path: str, *, torch_version: str | None = None, numpy_version: str | None = None,
              python_path: tuple[str, ...] = (), weights_only: bool | None = None, device: str | None = None,
              map_location: str | None = None, loader: str | None = None, as_json: bool = False,
              as_sarif: bool = False, verbose: bool = False) -> int:
    """Print the result (text, JSON or SARIF) and return the exit code (0 loads, 1 will not, 2 unreadable)."""
    from ckptdoctor.check import Target
    from ckptdoctor.check import check as check_file

    if as_json and as_sarif:
        print("ckptdoctor check: choose one of --json and --sarif", file=sys.stderr)
        return EXIT_USAGE
    try:
        target = Target.current(torch=torch_version, numpy=numpy_version, weights_only=weights_only,
                                device=device, map_location=map_location, python_path=tuple(python_path),
                                loader=loader)
    except ValueError as e:
        print(f"ckptdoctor check: {e}", file=sys.stderr)
        return EXIT_USAGE
    for d in target.python_path:
        if not os.path.isdir(d):
            print(f"ckptdoctor check: --python-path {d}: not a directory", file=sys.stderr)
            return EXIT_USAGE
    try:
        result = check_file(path, target)
    except OSError as e:
        print(f"ckptdoctor check: {one_line(e)}", file=sys.stderr)
        return EXIT_UNREADABLE
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    elif as_sarif:
        from ckptdoctor.report.sarif import to_sarif

        log = to_sarif(((result.path, f) for f in result.findings),
                       invocation={"commandLine": " ".join(["ckptdoctor", *sys.argv[1:]])},
                       properties={"target": result.target.to_dict(), "loads": result.loads,
                                   "predicted_error": result.predicted_error})
        sys.stdout.write(json.dumps(log, indent=1, default=str) + "\n")
    else:
        from rich.console import Console

        from ckptdoctor.report.findings_text import render_check

        render_check(result, Console(highlight=False, soft_wrap=False), verbose=verbose)
        if not result.readable:
            print(f"ckptdoctor: cannot read: {result.findings[0].title if result.findings else path}",
                  file=sys.stderr)
    return result.exit_code
