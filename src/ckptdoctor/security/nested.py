"""Payloads hidden inside a pickle's values: bytes that are themselves a pickle or a torch file.

``pickle.loads(b"...")``, ``torch.storage._load_from_bytes(b"PK...")`` and
friends deserialise bytes the outer pickle carries. Those bytes may be
spelled directly, or computed by pure data transforms (``_codecs.encode`` for
protocol 2 bytes, ``base64.b64decode``, ``zlib.decompress`` ...). We evaluate
only those transforms, from our own code, with bounded output.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import lzma
import zlib
from typing import Any

from ckptdoctor.pickle.objects import Global, PickledObject
from ckptdoctor.security.table import decoder

MAX_DECODED = 64 << 20
TEXT_ENCODINGS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1", "utf-8", "utf8", "ascii", "us-ascii"}
CODEC_DECODERS = {"base64": "base64", "base_64": "base64", "base64_codec": "base64", "hex": "hex", "hex_codec": "hex",
                  "zlib": "zlib", "zip": "zlib", "zlib_codec": "zlib", "bz2": "bz2", "bz2_codec": "bz2"}


def looks_like_payload(data: bytes | bytearray) -> bool:
    """Bytes a loader could deserialise: a pickle (any protocol), a zip / torch archive, a legacy stream."""
    if len(data) < 4:
        return False
    head = bytes(data[:2])
    if head[:1] == b"\x80" and head[1] <= 5:
        return True
    if data[:4] == b"PK\x03\x04":
        return True
    if head[:1] in (b"c", b"(", b"]", b"}", b"i", b"\x93", b"\x8c", b"S", b"V", b"X") and data[-1:] == b".":
        return True  # a protocol 0/1 pickle (or a frameless 4+) ending in STOP
    return False


def _bounded_inflate(data: bytes, wbits: int) -> bytes | None:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, MAX_DECODED + 1)
    except zlib.error:
        return None
    return out if len(out) <= MAX_DECODED else None


def _transform(how: str, data: Any, extra: tuple) -> bytes | None:
    if isinstance(data, str):
        raw_text = data
        data_b = None
    elif isinstance(data, (bytes, bytearray)):
        raw_text = None
        data_b = bytes(data)
    else:
        return None
    try:
        if how == "latin1":  # _codecs.encode(text, encoding)
            enc = str(extra[0]).lower() if extra else "utf-8"
            if raw_text is None or enc not in TEXT_ENCODINGS:
                return data_b
            return raw_text.encode(enc, "surrogatepass" if enc.startswith("utf") else "strict")
        if how == "bytes":
            if data_b is not None:
                return data_b
            enc = str(extra[0]).lower() if extra else ""
            return raw_text.encode(enc) if enc in TEXT_ENCODINGS else None  # type: ignore[union-attr]
        src = data_b if data_b is not None else raw_text.encode("ascii", "ignore")  # type: ignore[union-attr]
        if how == "codec":
            enc = str(extra[0]).lower() if extra else ""
            if enc in TEXT_ENCODINGS:
                return src
            how = CODEC_DECODERS.get(enc, "")
        if how == "base64":
            return base64.b64decode(src)
        if how == "base64url":
            return base64.urlsafe_b64decode(src)
        if how == "base32":
            return base64.b32decode(src)
        if how == "base16":
            return base64.b16decode(src, casefold=True)
        if how == "a85":
            return base64.a85decode(src)
        if how == "b85":
            return base64.b85decode(src)
        if how == "hex":
            return binascii.unhexlify(src.strip())
        if how == "zlib":
            return _bounded_inflate(src, 15)
        if how == "gzip":
            return _bounded_inflate(src, 31)
        if how == "bz2":
            out = bz2.BZ2Decompressor().decompress(src, MAX_DECODED + 1)
            return out if len(out) <= MAX_DECODED else None
        if how == "lzma":
            out = lzma.LZMADecompressor().decompress(src, MAX_DECODED + 1)
            return out if len(out) <= MAX_DECODED else None
    except (ValueError, TypeError, binascii.Error, lzma.LZMAError, OSError, EOFError, UnicodeError, LookupError):
        return None
    return None


def evaluate_bytes(value: Any, depth: int = 0) -> bytes | None:
    """The bytes ``value`` stands for, if it is bytes or a chain of pure decoders over bytes/text."""
    if depth > 6:
        return None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return None
    if isinstance(value, PickledObject) and isinstance(value.callee, Global) and value.args:
        how = decoder(value.callee.canonical)
        if how is None:
            return None
        inner = value.args[0]
        if isinstance(inner, PickledObject):
            inner = evaluate_bytes(inner, depth + 1)
            if inner is None:
                return None
        return _transform(how, inner, tuple(value.args[1:]))
    return None


def text_or_bytes(value: Any) -> bytes | None:
    """Bytes for a value a deserialiser receives: bytes, decoded chains, or text (protocol 0 strings)."""
    b = evaluate_bytes(value)
    if b is not None:
        return b
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass")
    return None


def codec_name(value: Any) -> str:
    if isinstance(value, PickledObject) and isinstance(value.callee, Global):
        return value.callee.canonical
    return type(value).__name__


__all__ = ["looks_like_payload", "evaluate_bytes", "text_or_bytes", "codec_name"]
