from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # read fine / loads / clean
    FINDINGS = 1  # will not load, or problems found
    UNREADABLE = 2  # could not read the input (one-line reason on stderr)
    USAGE = 2  # bad command line (click's convention)
