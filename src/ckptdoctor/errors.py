"""Every error ckptdoctor raises derives from :class:`CkptdoctorError`.

Errors carry fields, not only prose, so that the CLI, JSON output and the
scanner can act on them. ``str(err)`` is always a one-line message that says
what the file is and what to do next.
"""

from __future__ import annotations


class CkptdoctorError(Exception):
    """Root of every ckptdoctor error."""

    #: short machine-readable reason code, stable across releases
    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, **fields: object) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.fields = fields


class UnreadableFile(CkptdoctorError):
    """The file could not be read as a checkpoint (and we know why).

    ``kind`` is the sniffed format name (``lfs-pointer``, ``html``, ``truncated`` ...).
    """

    code = "unreadable"

    def __init__(self, message: str, *, kind: str = "unknown", **fields: object) -> None:
        super().__init__(message, **fields)
        self.kind = kind


class TruncatedFile(UnreadableFile, EOFError):
    """The data ends before the format says it should."""

    code = "truncated"

    def __init__(self, message: str, *, offset: int, needed: int | None = None, **fields: object) -> None:
        super().__init__(message, kind="truncated", offset=offset, needed=needed, **fields)
        self.offset = offset
        self.needed = needed


class LimitExceeded(CkptdoctorError):
    """A resource limit (see :class:`ckptdoctor.limits.Limits`) was hit: likely a bomb."""

    code = "limit"

    def __init__(self, resource: str, limit: int, actual: int | None = None, *, offset: int | None = None) -> None:
        where = f" at byte {offset}" if offset is not None else ""
        seen = f" (saw {actual})" if actual is not None else ""
        super().__init__(
            f"refusing to continue{where}: {resource} limit of {limit} exceeded{seen}; "
            f"the file is malformed or a deliberate bomb",
            resource=resource,
            limit=limit,
            actual=actual,
            offset=offset,
        )
        self.resource = resource
        self.limit = limit
        self.actual = actual
        self.offset = offset


class PickleError(UnreadableFile):
    """The pickle stream is malformed (bad opcode, stack underflow, ...)."""

    code = "bad-pickle"

    def __init__(self, message: str, *, offset: int | None = None, **fields: object) -> None:
        super().__init__(message, kind=str(fields.pop("kind", "pickle")), offset=offset, **fields)
        self.offset = offset
