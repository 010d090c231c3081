"""List the files to scan from local folders or fsspec URLs (s3://...)."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

DEFAULT_INCLUDE = ("*.pt", "*.pth", "*.bin", "*.ckpt", "*.tar", "*.pkl", "*.safetensors", "*.jit", "*.pt2",
                   "*.pth.tar", "*.model", "*.index.json")


@dataclass(frozen=True, slots=True)
class FileRef:
    url: str  # local absolute path or protocol URL
    size: int
    etag: str  # ETag for object stores, "mtime:<ns>" for local files: a change means rescan


def _matches(name: str, include: tuple[str, ...], exclude: tuple[str, ...]) -> bool:
    base = name.rsplit("/", 1)[-1]
    if include and not any(fnmatch.fnmatch(base, p) or fnmatch.fnmatch(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatch(base, p) or fnmatch.fnmatch(name, p) for p in exclude)


def is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def list_files(source: str, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (),
               storage_options: dict[str, Any] | None = None) -> Iterator[FileRef]:
    """Every file under ``source`` (a file or folder, local or remote), sorted by path.

    A local folder holding ``.metadata`` is a torch.distributed.checkpoint: it is listed as one
    entry (whatever ``include`` says; ``exclude`` applies to its path) and not descended into."""
    if is_remote(source):
        yield from _list_remote(source, include, exclude, storage_options or {})
        return
    root = os.path.abspath(source.removeprefix("file://"))
    if os.path.isfile(root):
        st = os.stat(root)
        yield FileRef(root, st.st_size, f"mtime:{st.st_mtime_ns}")
        return
    if not os.path.isdir(root):
        raise FileNotFoundError(2, "No such file or directory", source)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        if DCP_MARKER in filenames:  # a torch.distributed.checkpoint folder is one checkpoint
            dcp = _dcp_ref(dirpath, filenames)
            rel = os.path.relpath(dirpath, root)
            if dcp is not None and (rel == "." or _matches(rel, (), exclude)):
                found.append(dcp)
            dirnames[:] = []
            continue
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            rel = os.path.relpath(p, root)
            if not _matches(rel, include, exclude):
                continue
            try:
                st = os.stat(p)
            except OSError:
                continue
            found.append(FileRef(p, st.st_size, f"mtime:{st.st_mtime_ns}"))
    yield from sorted(found, key=lambda f: f.url)


DCP_MARKER = ".metadata"


def _dcp_ref(folder: str, filenames: list[str]) -> FileRef | None:
    """One row for a DCP folder: its files' total size; any file's change (mtime) means rescan."""
    size, newest = 0, 0
    for fn in filenames:
        try:
            st = os.stat(os.path.join(folder, fn))
        except OSError:
            continue
        size += st.st_size
        newest = max(newest, st.st_mtime_ns)
    return FileRef(folder, size, f"mtime:{newest}:{len(filenames)}") if newest else None


def _list_remote(source: str, include: tuple[str, ...], exclude: tuple[str, ...],
                 storage_options: dict[str, Any]) -> Iterator[FileRef]:
    import fsspec

    fs, path = fsspec.core.url_to_fs(source, **storage_options)
    protocol = source.split("://", 1)[0]
    details = fs.find(path, detail=True) if fs.isdir(path) else {path: fs.info(path)}
    for name in sorted(details):
        info = details[name]
        if info.get("type") == "directory":
            continue
        rel = name[len(path.rstrip("/")) + 1 :] if name.startswith(path.rstrip("/") + "/") else name
        if not _matches(rel, include, exclude):
            continue
        etag = str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or "")
        yield FileRef(f"{protocol}://{name}", int(info.get("size") or 0), etag.strip('"'))
