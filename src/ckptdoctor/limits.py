"""Resource limits, one frozen object passed down to every reader.

The defaults keep peak memory well below 256 MB on hostile input (pickle and
zip bombs, absurd shapes) while admitting every real checkpoint we know of.
They are documented in ``docs/limits.md``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    #: opcodes executed per pickle
    max_ops: int = 50_000_000
    #: entries in the pickle memo
    max_memo: int = 5_000_000
    #: depth of the value stack plus mark stack
    max_stack: int = 1_000_000
    #: nesting depth of containers the tensor walk descends (it recurses: Python's own limit is ~1000)
    max_depth: int = 500
    #: bytes of strings/bytes a single pickle may allocate in total
    max_pickle_bytes: int = 512 * 1024 * 1024
    #: bytes of one pickle record we read into memory (data.pkl, constants.pkl, ...)
    max_pickle_record: int = 1024 * 1024 * 1024
    #: items one container may receive (APPENDS/SETITEMS) across the pickle
    max_container_items: int = 50_000_000
    #: elements a single tensor may claim
    max_tensor_elements: int = 1 << 50
    #: uncompressed bytes we inflate from a compressed zip member (torch never compresses)
    max_inflate: int = 32 * 1024 * 1024
    #: compression ratio above which a deflated member is refused
    max_inflate_ratio: int = 1000
    #: zip central-directory entries
    max_zip_entries: int = 1_000_000
    #: growth of the process's resident memory while one pickle runs; None turns the check off
    max_pickle_memory: int | None = 160 * 1024 * 1024
    #: containers and tensors the tensor walk may enter
    max_walk_nodes: int = 20_000_000
    #: times the walk may re-enter a container or tensor it already walked (shared references)
    max_shared_visits: int = 100_000


DEFAULT_LIMITS = Limits()


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux), else its peak so far, else None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
