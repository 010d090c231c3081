"""``open_checkpoint``: sniff a file and hand it to the right container reader."""

from __future__ import annotations

import os
from typing import Any

from ckptdoctor.errors import CkptdoctorError, TruncatedFile, UnreadableFile
from ckptdoctor.formats.sniff import Sniffed, sniff
from ckptdoctor.limits import DEFAULT_LIMITS, Limits
from ckptdoctor.model import Checkpoint
from ckptdoctor.source import open_source


def open_checkpoint(path: Any, *, limits: Limits | None = None) -> Checkpoint:
    """Read any supported checkpoint. Raises :class:`UnreadableFile` (with ``.kind``) otherwise."""
    limits = limits or DEFAULT_LIMITS
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else getattr(path, "name", "<stream>")
    if isinstance(path, (str, os.PathLike)) and os.path.isdir(path):
        from ckptdoctor.formats.dcp import looks_like_dcp, read_dcp

        if looks_like_dcp(name):
            return read_dcp(name, limits)
        raise UnreadableFile(f"{name} is a directory, not a checkpoint file (nor a torch.distributed.checkpoint folder)",
                             kind="directory")
    source = open_source(path)
    try:
        ckpt = read_source(name, source, limits)
    except BaseException:
        source.close()
        raise
    return ckpt


def read_source(name: str, source: Any, limits: Limits) -> Checkpoint:
    """Read an already-open :class:`ByteSource` (used by the scanner for remote files)."""
    s: Sniffed = sniff(source)
    ckpt = Checkpoint(path=name, format=s.kind, size=source.size, source=source)
    ckpt.details.update(s.details)
    kind = s.kind
    try:
        if kind == "zip-family":
            from ckptdoctor.formats.zipfamily import read_zip_family

            read_zip_family(ckpt, source, limits)
        elif kind == "legacy":
            from ckptdoctor.formats.legacy import read_legacy

            read_legacy(ckpt, source, limits)
        elif kind == "tar-family":
            from ckptdoctor.formats.tar import read_tar

            read_tar(ckpt, source, limits)
        elif kind == "safetensors":
            from ckptdoctor.formats.safetensors import read_safetensors

            read_safetensors(ckpt, source, limits)
        elif kind in ("pickle", "pickle?"):
            from ckptdoctor.formats.barepickle import read_bare_pickle

            read_bare_pickle(ckpt, source, limits)
        elif kind == "sharded-index":
            from ckptdoctor.formats.sharded import read_sharded_index

            read_sharded_index(ckpt, source, limits)
        else:
            raise UnreadableFile(f"{name}: {s.message}", kind=kind, **s.details)
    except TruncatedFile as e:
        raise TruncatedFile(_prefix(name, str(e)), offset=e.offset, needed=e.needed) from None
    except UnreadableFile as e:
        if not str(e).startswith(name):
            raise UnreadableFile(_prefix(name, str(e)), kind=e.kind, **e.fields) from None
        raise
    except CkptdoctorError:
        raise
    except RecursionError:
        raise UnreadableFile(f"{name}: structure nested too deeply (malformed or a bomb)", kind="corrupt") from None
    from ckptdoctor.producer import estimate_producer

    ckpt.producer = estimate_producer(ckpt)
    return ckpt


def _prefix(name: str, msg: str) -> str:
    return msg if msg.startswith(name) else f"{name}: {msg}"
