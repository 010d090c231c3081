"""Decide what a file is from its first bytes (and, for zips, the member names)."""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.errors import CkptdoctorError
from ckptdoctor.source import ByteSource

LEGACY_MAGIC_P2 = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
LEGACY_MAGIC_LE = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
LFS_PREFIX = b"version https://git-lfs.github.com/spec/"


@dataclass(slots=True)
class Sniffed:
    kind: str
    details: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


def sniff(source: ByteSource) -> Sniffed:
    size = source.size
    if size == 0:
        return Sniffed("empty", message="the file is empty (0 bytes): the save or download never wrote data")
    head = source.read(0, min(size, 4096))
    if head.startswith(LFS_PREFIX) or head.startswith(b"version https://git-lfs"):
        return _lfs(head, size)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Sniffed("zip-family")  # refined by the zip reader (needs the central directory)
    if head[:8] == b"\x89HDF\r\n\x1a\n":
        return Sniffed("hdf5", message="this is an HDF5 file (Keras/h5py), not a PyTorch checkpoint; open it with h5py")
    if head[:4] == b"GGUF":
        return Sniffed("gguf", message="this is a GGUF file (llama.cpp), not a PyTorch checkpoint; use the gguf package")
    if head[:6] == b"\x93NUMPY":
        return Sniffed("npy", message="this is a NumPy .npy array; load it with numpy.load(path)")
    if head[:8] == b"PYTORCH1":
        return Sniffed("unknown", message="a PyTorch preview-release archive (PYTORCH1); no released torch reads it")
    if _is_html(head):
        return Sniffed("html", message="this is an HTML page (an error page or a 'download' link saved instead of "
                       "the file); download the real file, e.g. with the hub's 'resolve' URL")
    st = _safetensors(head, size)
    if st is not None:
        return st
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Sniffed("tar-family")
    if head.startswith(LEGACY_MAGIC_P2) or LEGACY_MAGIC_LE in head[:32] or head.startswith(b"L119547037146038801333356L"):
        return Sniffed("legacy")
    if _is_onnx(head):
        return Sniffed("onnx", message="this is an ONNX model; load it with onnx.load() or onnxruntime")
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return Sniffed("pickle")
    if head[:1] in (b"(", b"}", b"]", b"c", b"\x80") and size > 1:
        return Sniffed("pickle?")  # protocol 0/1 pickle, or random bytes: the reader decides
    if head.lstrip()[:1] == b"{":
        try:
            doc = json.loads(source.read(0, min(size, 64 << 20)))
            if isinstance(doc, dict) and "weight_map" in doc:
                return Sniffed("sharded-index")
        except (ValueError, UnicodeDecodeError, CkptdoctorError):
            pass
    return Sniffed("unknown", message="unrecognised file: not a PyTorch checkpoint, safetensors, or any format "
                   "ckptdoctor knows")


def _lfs(head: bytes, size: int) -> Sniffed:
    text = head.decode("utf-8", "replace")
    oid = re.search(r"oid sha256:([0-9a-f]{64})", text)
    sz = re.search(r"\nsize (\d+)", text)
    details = {"oid": oid.group(1) if oid else None, "expected_size": int(sz.group(1)) if sz else None}
    msg = "this is a Git LFS pointer, not the weights"
    if details["expected_size"]:
        msg += f" (the real file is {details['expected_size']} bytes)"
    msg += "; run `git lfs pull` (or `git lfs fetch && git lfs checkout`) in the repository"
    return Sniffed("lfs-pointer", details, msg)


def _is_html(head: bytes) -> bool:
    h = head[:1024].lstrip().lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")) or (b"<html" in h and b"</" in h)


def _safetensors(head: bytes, size: int) -> Sniffed | None:
    if len(head) < 10:
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if 2 <= n <= size - 8 and n < (100 << 20) and head[8:9] == b"{":
        return Sniffed("safetensors", {"header_size": n})
    return None


def _is_onnx(head: bytes) -> bool:
    # ModelProto: field 1 (ir_version, varint) first, then producer_name/graph/opset_import fields.
    if len(head) < 4 or head[0] != 0x08:
        return False
    low = head[:512].lower()
    return b"pytorch" in low or b"onnx" in low or head[2] in (0x12, 0x1A, 0x22, 0x3A, 0x42)
