"""Analyse one file for the scanner: a plain function, picklable, so processes and Dask workers can run it.

It opens the file itself (workers read from the source directly), reads only
what the format needs (zip directory, data.pkl, headers — never tensor data
unless ``want_hash``), and returns a plain dict row plus finding dicts.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.scan.sources import FileRef, is_remote

# Remote files up to this size are fetched whole in one request (see _open_source).
WHOLE_FILE_BELOW = 256 << 10

VERDICTS = ("ok", "will-not-load", "dangerous", "not-a-checkpoint", "unreadable")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    torch: str | None = None  # target torch version; None = the installed one
    weights_only: bool | None = None  # None = the target's default
    want_hash: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict)
    read_log: str | None = None  # append each analysed path here (used by tests to count reads)

    @property
    def key(self) -> str:
        wo = "default" if self.weights_only is None else ("weights_only" if self.weights_only else "full")
        return f"torch={self.torch or 'installed'},{wo}"


def _open_source(ref: FileRef, spec: TaskSpec):
    from ckptdoctor.source import FileObjSource, LocalSource

    if not is_remote(ref.url):
        return LocalSource(ref.url)
    import fsspec

    fs, path = fsspec.core.url_to_fs(ref.url, **spec.storage_options)
    # cache_type="none": every read is exactly one ranged request, so bytes_read is what crossed the wire.
    f = fs.open(path, "rb", block_size=1 << 16, cache_type="none")
    if ref.size is not None and ref.size <= WHOLE_FILE_BELOW:
        # A small file costs less in one request than in the ~6 ranged reads its format needs
        # (head, zip directory, local headers, data.pkl ...): request latency, not bytes, is the cost.
        with f:
            data = f.read()
        return _FetchedSource(data, ref.url)
    return FileObjSource(f, name=ref.url, size=ref.size)


class _FolderSource:
    """A DCP folder already opened as a checkpoint; bytes_read counts its metadata and shards."""

    def __init__(self, ckpt: Any) -> None:
        self.ckpt = ckpt

    @property
    def bytes_read(self) -> int:
        sources = [self.ckpt.source, *self.ckpt.extra_sources]
        return sum(getattr(s, "bytes_read", 0) for s in sources if s is not None)

    def close(self) -> None:
        self.ckpt.close()


class _FetchedSource:
    """A remote file fetched whole: reads are served from memory; bytes_read is what was fetched."""

    def __init__(self, data: bytes, name: str) -> None:
        from ckptdoctor.source import FileObjSource

        self._inner = FileObjSource(io.BytesIO(data), name=name, size=len(data))
        self.name, self.size, self.bytes_read = name, len(data), len(data)

    def read(self, offset: int, n: int) -> bytes:
        return self._inner.read(offset, n)

    def view(self, offset: int, n: int) -> memoryview:
        return self._inner.view(offset, n)

    def close(self) -> None:
        self._inner.close()


def _hash_source(src) -> str:
    h = hashlib.sha256()
    chunk = 8 << 20
    for off in range(0, src.size, chunk):
        h.update(src.read(off, min(chunk, src.size - off)))
    return h.hexdigest()


def analyze(ref: FileRef, spec: TaskSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from ckptdoctor.errors import CkptdoctorError, UnreadableFile
    from ckptdoctor.formats import IMPOSTOR_KINDS
    from ckptdoctor.limits import DEFAULT_LIMITS
    from ckptdoctor.reader import read_source

    if spec.read_log:
        with open(spec.read_log, "a") as log:
            log.write(ref.url + "\n")
    row: dict[str, Any] = {"path": ref.url, "size": ref.size, "etag": ref.etag, "target": spec.key,
                           "scanned_at": time.time()}
    findings: list[dict[str, Any]] = []
    src = None
    try:
        folder = not is_remote(ref.url) and os.path.isdir(ref.url)  # a DCP folder (see sources.list_files)
        if not folder:
            src = _open_source(ref, spec)
        try:
            if folder:
                from ckptdoctor.reader import open_checkpoint

                src = _FolderSource(open_checkpoint(ref.url, limits=DEFAULT_LIMITS))
                ckpt = src.ckpt
            else:
                ckpt = read_source(ref.url, src, DEFAULT_LIMITS)
        except UnreadableFile as e:
            row["format"] = e.kind
            row["error"] = str(e).replace("\n", " ")
            row["verdict"] = "not-a-checkpoint" if e.kind in IMPOSTOR_KINDS and e.kind != "truncated" else "unreadable"
            findings = _diagnose(None, e, spec)
        else:
            row["format"] = ckpt.format
            row["producer_earliest"] = ckpt.producer.earliest
            row["producer_latest"] = ckpt.producer.latest
            row["tensors"] = sum(1 for _ in ckpt.tensors())
            findings = _diagnose(ckpt, None, spec)
            row["verdict"] = _verdict(findings)
        if spec.want_hash and src is not None and not isinstance(src, _FolderSource):  # no file hash for a folder
            row["sha256"] = _hash_source(src)
    except (CkptdoctorError, OSError) as e:
        row.setdefault("format", "unknown")
        row["verdict"] = "unreadable"
        row["error"] = str(e).replace("\n", " ")[:500]
    except Exception as e:  # noqa: BLE001 - one bad file must never stop a 10,000-file scan
        row.setdefault("format", "unknown")
        row["verdict"] = "unreadable"
        row["error"] = f"internal error ({type(e).__name__}): {e}"[:500]
    finally:
        if src is not None:
            row["bytes_read"] = getattr(src, "bytes_read", None)
            try:
                src.close()
            except Exception:  # noqa: BLE001
                pass
    return row, findings


def _verdict(findings: list[dict[str, Any]]) -> str:
    if any(f["severity"] == "critical" for f in findings):
        return "dangerous"
    if any(f.get("blocks_load") for f in findings):
        return "will-not-load"
    return "ok"


def _diagnose(ckpt: Any, error: Any, spec: TaskSpec) -> list[dict[str, Any]]:
    """Findings from ``ckptdoctor check`` for the scan's target (empty if check is unavailable)."""
    from ckptdoctor.scan.diagnose import diagnose

    return [f.to_dict() for f in diagnose(ckpt, error, torch=spec.torch, weights_only=spec.weights_only)]


def local_path_size(path: str) -> int:
    return os.path.getsize(path)
