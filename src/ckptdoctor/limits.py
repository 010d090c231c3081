"""Resource limits, one frozen object passed down to every reader.

The defaults keep peak memory well below 256 MB on hostile input (pickle and
zip bombs, absurd shapes) while admitting every real checkpoint we know of.
They are documented in ``docs/limits.md``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    #: opcodes executed per pickle
    max_ops: int = 50_000_000
    #: entries in the pickle memo
    max_memo: int = 5_000_000
    #: depth of the value stack plus mark stack
    max_stack: int = 1_000_000
    #: nesting depth of containers built by the pickle (and walked afterwards)
    max_depth: int = 2_000
    #: bytes of strings/bytes a single pickle may allocate in total
    max_pickle_bytes: int = 512 * 1024 * 1024
    #: bytes of one pickle record we read into memory (data.pkl, constants.pkl, ...)
    max_pickle_record: int = 1024 * 1024 * 1024
    #: items one container may receive (APPENDS/SETITEMS) across the pickle
    max_container_items: int = 50_000_000
    #: elements a single tensor may claim
    max_tensor_elements: int = 1 << 50
    #: uncompressed bytes we inflate from a compressed zip member
    max_inflate: int = 256 * 1024 * 1024
    #: compression ratio above which a deflated member is refused
    max_inflate_ratio: int = 1000
    #: zip central-directory entries
    max_zip_entries: int = 1_000_000


DEFAULT_LIMITS = Limits()
