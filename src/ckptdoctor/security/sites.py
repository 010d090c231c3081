"""Find every pickle a loader could run in a file, whatever the container claims to be.

The security scan does not trust the happy path of the reader: it walks the
raw container itself and scans

* zip archives (torch zip, TorchScript, .pt2, npz, any zip): every member that
  holds a pickle, *including duplicate names* and members outside the torch
  layout, nested archives inside members, and ``code/`` sources;
* streams (legacy files, bare pickles, impostors): the pickles from byte 0 on
  (five for a legacy file, every consecutive one otherwise) and whatever
  follows them;
* torch 0.1 tar archives, .npy object arrays;
* a zip archive appended to or hidden behind a stream (polyglots);
* bytes inside pickles that are themselves pickles or torch files (nested).
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.errors import CkptdoctorError
from ckptdoctor.formats.sniff import LEGACY_MAGIC_P2
from ckptdoctor.formats.zipdir import EOCD, LFH, ZipArchive, ZipEntry
from ckptdoctor.limits import DEFAULT_LIMITS, Limits
from ckptdoctor.pickle.vm import OPNAMES
from ckptdoctor.security.nested import looks_like_payload
from ckptdoctor.security.pickles import PickleScan, run_recorded
from ckptdoctor.source import FileObjSource

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_LABELS = ("magic number", "protocol version", "sys_info", "object", "storage keys")
MAX_STREAM_PICKLES = 64
MAX_DEPTH = 3
MAX_MEMBER = 256 << 20
CODE_LIMIT = 64 << 20
CRC_LIMIT = 1 << 20
TEXT_RECORDS = {"byteorder", "version", ".data/version", ".format_version", ".storage_alignment",
                ".data/serialization_id", "archive_format", "extra/producer_info.json"}


@dataclass(slots=True)
class MemberInfo:
    name: str
    method: int
    csize: int
    usize: int
    crc: int
    flags: int
    header_offset: int
    local_name: str | None = None  # name in the local header, when it differs
    crc_ok: bool | None = None  # CRC-32 checked against the bytes (None: not checked or written as 0)
    error: str | None = None  # why the member could not be read


@dataclass(slots=True)
class ZipFacts:
    root: str
    members: list[MemberInfo] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    offset: int = 0  # where the archive starts in the file (0 unless prepended data)
    comment: bytes = b""
    kind: str = "zip"  # zip | torchscript | pt2 | npz | other-zip
    error: str | None = None  # central directory unreadable (local headers were walked instead)


@dataclass(slots=True)
class Nested:
    where: str  # member name, or "pickle label @ byte N"
    deserialiser: str | None  # the callable that deserialises it (pickle.loads, torch.storage._load_from_bytes ...)
    passed_to: str | None  # the callable it is an argument of
    scan: FileScan
    risky: bool = True  # deserialised, or handed to something that may deserialise it


@dataclass(slots=True)
class FileScan:
    name: str
    size: int
    kind: str  # zip | stream | legacy | tar | npy | safetensors | empty
    pickles: list[PickleScan] = field(default_factory=list)
    nested: list[Nested] = field(default_factory=list)  # payloads found inside members or pickle values
    zip: ZipFacts | None = None
    code: list[tuple[str, str]] = field(default_factory=list)  # (member, text) of TorchScript code/
    trailing: int = 0  # bytes after the last pickle of a stream (not counting legacy storage data)
    stream_end: int = 0
    embedded_zip: FileScan | None = None  # a zip archive found behind a stream (polyglot)
    notes: list[str] = field(default_factory=list)
    depth: int = 0


class SliceSource:
    """A window of another ByteSource (a zip that starts after prepended bytes)."""

    def __init__(self, source: Any, start: int) -> None:
        self.source = source
        self.start = start
        self.size = source.size - start
        self.name = f"{source.name}@{start}"

    def read(self, offset: int, n: int) -> bytes:
        return self.source.read(self.start + offset, n)

    def view(self, offset: int, n: int) -> memoryview:
        return memoryview(self.read(offset, n))

    def close(self) -> None:
        pass


def scan_source(source: Any, name: str, *, limits: Limits = DEFAULT_LIMITS, depth: int = 0) -> FileScan:
    """Every pickle in ``source`` (and in what it nests), each scanned without executing anything."""
    fs = _scan_container(source, name, limits, depth)
    for holder in (fs, fs.embedded_zip):
        if holder is None:
            continue
        for p in list(holder.pickles):
            for emb in p.embedded:
                _nest(holder, emb.data, f"{p.label} @ byte {emb.offset}", emb.deserialised_by or None, limits,
                      passed_to=emb.passed_to, risky=emb.risky)
    return fs


def _scan_container(source: Any, name: str, limits: Limits, depth: int) -> FileScan:
    size = source.size
    if size == 0:
        return FileScan(name, 0, "empty", depth=depth)
    head = source.read(0, min(size, 4096))
    if head[:4] in (LFH, b"PK\x05\x06"):
        fs = FileScan(name, size, "zip", depth=depth)
        _scan_zip(fs, source, 0, limits)
        return fs
    if len(head) >= 262 and head[257:262] == b"ustar":
        fs = FileScan(name, size, "tar", depth=depth)
        _scan_tar(fs, source, limits)
        return fs
    if head[:6] == b"\x93NUMPY":
        fs = FileScan(name, size, "npy", depth=depth)
        _scan_npy(fs, source, limits)
        return fs
    if len(head) >= 10 and head[8:9] == b"{" and 2 <= struct.unpack("<Q", head[:8])[0] <= size - 8:
        return FileScan(name, size, "safetensors", depth=depth)  # JSON header + raw bytes: nothing to run
    fs = FileScan(name, size, "stream", depth=depth)
    _scan_stream(fs, source, limits)
    _scan_appended_zip(fs, source, limits)
    return fs


def scan_bytes(data: bytes, name: str, *, limits: Limits = DEFAULT_LIMITS, depth: int = 0) -> FileScan:
    return scan_source(FileObjSource(io.BytesIO(data), name=name, size=len(data)), name, limits=limits, depth=depth)


# ------------------------------------------------------------------ streams
def _buffer(source: Any, n: int | None = None) -> Any:
    """The mmap for local files; otherwise the first ``n`` bytes (all by default)."""
    mm = getattr(source, "_mm", None)
    if mm is not None:
        return mm
    return source.read(0, source.size if n is None else min(n, source.size))


def _starts_pickle(buf: Any, pos: int, first: bool) -> bool:
    b = buf[pos]
    if b == 0x80:
        return pos + 1 < len(buf) and buf[pos + 1] <= 5
    return first and b in OPNAMES


def _scan_stream(fs: FileScan, source: Any, limits: Limits, base_label: str = "") -> None:
    """Pickles from byte 0; remote/stream sources are read as a growing prefix, never whole."""
    n = 1 << 20
    while True:
        buf = _buffer(source, n)
        attempt = FileScan(fs.name, fs.size, fs.kind, depth=fs.depth)
        _scan_stream_in(attempt, buf, source.size, limits, base_label)
        last = attempt.pickles[-1] if attempt.pickles else None
        cut = last is not None and last.end is None and len(buf) < source.size \
            and (last.error_offset is None or last.error_offset >= len(buf) - 1)
        if not cut:
            break
        n *= 8  # the pickle ran into the end of what was read: read more
    fs.pickles.extend(attempt.pickles)
    fs.kind = attempt.kind
    fs.stream_end = attempt.stream_end
    fs.trailing = attempt.trailing


def _scan_stream_in(fs: FileScan, buf: Any, size: int, limits: Limits, base_label: str) -> None:
    end = min(size, len(buf))
    pos = 0
    legacy = False
    for i in range(MAX_STREAM_PICKLES):
        if pos >= end or not _starts_pickle(buf, pos, i == 0 or legacy):
            break
        if legacy:
            label, who = f"{LEGACY_LABELS[i]} pickle (legacy stream)", "torch.load"
        elif i == 0:
            label, who = "pickle at byte 0", "torch.load and pickle.load"
        else:
            label, who = f"pickle {i + 1} of the stream (byte {pos})", "pickle.load called again on the file " \
                         "(torch.load stops after the first)"
        scan = run_recorded(buf, pos, end, limits=limits, label=base_label + label, executed_by=who)
        fs.pickles.append(scan)
        if scan.end is None:
            pos = size
            break
        if i == 0 and scan.value == LEGACY_MAGIC and not scan.calls:
            legacy = True
            fs.kind = "legacy"
            scan.label = base_label + "magic number pickle (legacy stream)"
            scan.executed_by = "torch.load"
        pos = scan.end
        if legacy and i == len(LEGACY_LABELS) - 1:
            break
    fs.stream_end = pos
    if not legacy:
        fs.trailing = max(0, size - pos)


def _scan_appended_zip(fs: FileScan, source: Any, limits: Limits) -> None:
    """A zip whose end record sits at the end of a non-zip file: readers that trust the end record see it."""
    size = source.size
    tail_len = min(size, 22 + 65535)
    tail = source.read(size - tail_len, tail_len)
    at = tail.rfind(EOCD)
    if at < 0 or at + 22 > len(tail):
        return
    eocd_at = size - tail_len + at
    _n, cd_size, cd_off = struct.unpack("<HII", tail[at + 10 : at + 20])
    start = eocd_at - cd_size - cd_off
    if start < 0 or start >= size:
        start = 0
    sub = FileScan(f"{fs.name} (embedded zip at byte {start})", size - start, "zip", depth=fs.depth)
    _scan_zip(sub, SliceSource(source, start) if start else source, start, limits)
    if sub.zip is not None and (sub.zip.members or sub.pickles):
        fs.embedded_zip = sub


# ------------------------------------------------------------------ zip
def _classify_zip(names: list[str], root: str) -> str:
    rel = {n[len(root) + 1 :] for n in names if root and n.startswith(root + "/")}
    if "constants.pkl" in rel:
        return "torchscript"
    if "data.pkl" in rel:
        return "zip"
    if "archive_format" in rel:
        return "pt2"
    if names and all(n.endswith(".npy") for n in names if not n.endswith("/")):
        return "npz"
    return "other-zip"


def _storage_record(rel: str) -> bool:
    return rel.startswith(("data/", ".data/", "constants/")) and "/" not in rel.split("/", 1)[1] \
        and not rel.endswith((".pkl", ".py"))


def _scan_zip(fs: FileScan, source: Any, offset: int, limits: Limits) -> None:
    try:
        z = ZipArchive(source, limits)
        entries = list(z.entries)
        facts = ZipFacts(root=z.root, duplicates=list(z.duplicates), offset=offset, comment=z.comment)
    except CkptdoctorError as e:
        entries = _walk_local_headers(source, limits)
        facts = ZipFacts(root=entries[0].name.split("/", 1)[0] if entries and "/" in entries[0].name else "",
                         offset=offset, error=str(e))
        seen: set[str] = set()
        for e2 in entries:
            if e2.name in seen:
                facts.duplicates.append(e2.name)
            seen.add(e2.name)
        z = None
    fs.zip = facts
    names = [e.name for e in entries]
    facts.kind = _classify_zip(names, facts.root)
    root = facts.root
    code_total = 0
    for e in entries:
        info = MemberInfo(e.name, e.method, e.csize, e.usize, e.crc, e.flags, e.header_offset)
        facts.members.append(info)
        if e.name.endswith("/"):
            continue
        rel = e.name[len(root) + 1 :] if root and e.name.startswith(root + "/") else e.name
        try:
            if _storage_record(rel) and not rel.endswith(".npy"):
                continue  # raw tensor bytes: never unpickled (sizes are checked by integrity)
            info.local_name = _local_name(source, e)
            is_code = rel.startswith("code/") and rel.endswith(".py")
            if e.crc and e.usize <= CRC_LIMIT and e.method in (0, 8):
                info.crc_ok = zlib.crc32(_member_bytes(source, z, e, limits)) == e.crc
            if e.usize > MAX_MEMBER and not rel.endswith(".pkl"):
                continue
            peek = _member_head(source, z, e, limits)
            if is_code:
                if code_total + e.usize <= CODE_LIMIT:
                    code_total += e.usize
                    fs.code.append((e.name, _member_bytes(source, z, e, limits).decode("utf-8", "replace")))
                continue
            if rel.endswith(".npy") or peek[:6] == b"\x93NUMPY":
                sub = scan_bytes(_member_bytes(source, z, e, limits), f"{fs.name}:{e.name}", limits=limits,
                                 depth=fs.depth + 1)
                for p in sub.pickles:
                    p.label = f"{e.name} (object array)"
                fs.pickles.extend(sub.pickles)
                continue
            if rel in TEXT_RECORDS:
                continue
            if rel.endswith(".pkl") or looks_like_payload(peek) or (peek[:1] in _P0 and peek[:1] != b"P"):
                data = _member_bytes(source, z, e, limits)
                if data[:4] == LFH or data.startswith(LEGACY_MAGIC_P2):
                    _nest(fs, data, e.name, None, limits)
                    continue
                who = _who_runs(facts.kind, rel)
                scan = run_recorded(data, 0, len(data), limits=limits, label=e.name, executed_by=who)
                if fs.zip is not None and fs.zip.offset:
                    scan.label = f"{e.name} (zip at byte {fs.zip.offset})"
                fs.pickles.append(scan)
                if scan.end is not None and scan.end < len(data):
                    extra = data[scan.end :]
                    if extra[:1] == b"\x80" or looks_like_payload(extra):
                        later = run_recorded(data, scan.end, len(data), limits=limits,
                                             label=f"{e.name} (second pickle after STOP)",
                                             executed_by="no loader of this member (hidden after STOP)")
                        fs.pickles.append(later)
        except CkptdoctorError as err:
            info.error = str(err)


_P0 = {bytes([b]) for b in OPNAMES if chr(b) in "(c]}lI"}


def _who_runs(kind: str, rel: str) -> str:
    if kind == "zip" and rel == "data.pkl":
        return "torch.load"
    if kind == "torchscript" and rel in ("data.pkl", "constants.pkl"):
        return "torch.jit.load (TorchScript's unpickler) and any Python unpickler of the member"
    if kind == "pt2":
        return "torch.export.load"
    return "no torch loader (any tool that unpickles this member)"


def _local_name(source: Any, e: ZipEntry) -> str | None:
    head = source.read(e.header_offset, 30)
    if head[:4] != LFH:
        raise _corrupt(f"member {e.name} has no local header at byte {e.header_offset}")
    nlen = struct.unpack("<H", head[26:28])[0]
    raw = source.read(e.header_offset + 30, nlen)
    name = raw.decode("utf-8" if e.flags & 0x800 else "cp437", "replace")
    return name if name != e.name else None


def _corrupt(msg: str) -> CkptdoctorError:
    from ckptdoctor.errors import UnreadableFile

    return UnreadableFile(msg, kind="corrupt")


def _member_head(source: Any, z: ZipArchive | None, e: ZipEntry, limits: Limits) -> bytes:
    if e.method == 0:
        off = _data_offset(source, e)
        n = min(e.csize, 64, max(0, source.size - off))
        return source.read(off, n)
    return _member_bytes(source, z, e, limits)[:64]


def _data_offset(source: Any, e: ZipEntry) -> int:
    if e._data_offset is None:
        head = source.read(e.header_offset, 30)
        nlen, xlen = struct.unpack("<HH", head[26:30])
        e._data_offset = e.header_offset + 30 + nlen + xlen
    return e._data_offset


def _member_bytes(source: Any, z: ZipArchive | None, e: ZipEntry, limits: Limits) -> bytes:
    if z is not None:
        return z.read(e, limit=min(limits.max_pickle_record, MAX_MEMBER))
    off = _data_offset(source, e)
    raw = source.read(off, min(e.csize, max(0, source.size - off)))
    if e.method == 8:
        try:
            return zlib.decompressobj(-15).decompress(raw, limits.max_inflate)
        except zlib.error:
            raise _corrupt(f"corrupt deflate data in {e.name}") from None
    return raw


def _walk_local_headers(source: Any, limits: Limits) -> list[ZipEntry]:
    """Members found by their local headers (when the central directory is unreadable)."""
    out: list[ZipEntry] = []
    pos = 0
    size = source.size
    while pos + 30 <= size and len(out) < 100_000:
        head = source.read(pos, 30)
        if head[:4] != LFH:
            break
        flags, method = struct.unpack("<HH", head[6:10])
        crc, csize, usize, nlen, xlen = struct.unpack("<IIIHH", head[14:30])
        name = source.read(pos + 30, min(nlen, size - pos - 30)).decode("utf-8", "replace")
        e = ZipEntry(name, method, csize, usize, crc, pos, flags)
        e._data_offset = pos + 30 + nlen + xlen
        out.append(e)
        if flags & 0x8 and csize == 0:
            break  # sizes in a data descriptor: cannot walk further without inflating
        pos = e._data_offset + csize
    return out


def _nest(fs: FileScan, data: bytes, where: str, deserialiser: str | None, limits: Limits,
          passed_to: str | None = None, risky: bool = True) -> None:
    if fs.depth >= MAX_DEPTH:
        fs.notes.append(f"{where}: nested payload not scanned (nesting deeper than {MAX_DEPTH})")
        return
    sub = scan_bytes(data, f"{fs.name}:{where}", limits=limits, depth=fs.depth + 1)
    fs.nested.append(Nested(where, deserialiser, passed_to, sub, risky))


# ------------------------------------------------------------------ tar / npy
def _scan_tar(fs: FileScan, source: Any, limits: Limits) -> None:
    from ckptdoctor.formats.tar import _SourceFile

    try:
        tf = tarfile.open(fileobj=io.BufferedReader(_SourceFile(source)), mode="r:")
        members = {m.name: m for m in tf.getmembers() if m.isfile()}
    except (tarfile.TarError, OSError, CkptdoctorError) as e:
        fs.notes.append(f"tar archive unreadable: {e}")
        _scan_stream(fs, source, limits)
        return
    for name, m in members.items():
        if m.offset_data + m.size > source.size:
            fs.notes.append(f"tar member {name} extends past the end of the file")
            continue
        data = source.read(m.offset_data, min(m.size, MAX_MEMBER))
        if name == "storages":
            _tar_records(fs, data, m.offset_data, name, limits, storages=True)
        elif name == "tensors":
            _tar_records(fs, data, m.offset_data, name, limits, storages=False)
        elif data[:1] == b"\x80" or name in ("pickle", "sys_info") or name.endswith(".pkl"):
            sub = FileScan(f"{fs.name}:{name}", len(data), "stream", depth=fs.depth)
            _scan_stream(sub, FileObjSource(io.BytesIO(data), name=name, size=len(data)), limits,
                         base_label=f"tar member {name}: ")
            for p in sub.pickles:
                p.executed_by = "torch.load (torch 0.1 tar layout)"
                p.start += m.offset_data
            fs.pickles.extend(sub.pickles)


def _tar_records(fs: FileScan, data: bytes, base: int, member: str, limits: Limits, *, storages: bool) -> None:
    who = "torch.load (torch 0.1 tar layout)"
    first = run_recorded(data, 0, len(data), base=base, limits=limits, label=f"tar member {member}: count",
                         executed_by=who)
    fs.pickles.append(first)
    if first.end is None or not isinstance(first.value, int):
        return
    pos = first.end - base
    for i in range(min(first.value, 1_000_000)):
        rec = run_recorded(data, pos, len(data), base=base, limits=limits,
                           label=f"tar member {member}: record {i}", executed_by=who)
        fs.pickles.append(rec)
        if rec.end is None:
            return
        pos = rec.end - base
        v = rec.value
        try:
            if storages:
                dt = dtypes.from_storage_class(getattr(v[2], "name", str(v[2])))
                (count,) = struct.unpack("<q", data[pos : pos + 8])
                pos += 8 + max(0, count) * (dt.itemsize if dt else 1)
            else:
                (ndim,) = struct.unpack("<i", data[pos : pos + 4])
                pos += 8 + 16 * max(0, ndim) + 8
        except (TypeError, IndexError, struct.error, AttributeError):
            return
        if pos > len(data):
            return
    if storages and pos < len(data):
        fs.pickles.append(run_recorded(data, pos, len(data), base=base, limits=limits,
                                       label=f"tar member {member}: views", executed_by=who))


def _scan_npy(fs: FileScan, source: Any, limits: Limits) -> None:
    head = source.read(0, min(source.size, 16))
    if len(head) < 10:
        return
    major = head[6]
    if major == 1:
        hlen, start = struct.unpack("<H", head[8:10])[0], 10
    else:
        if len(head) < 12:
            return
        hlen, start = struct.unpack("<I", head[8:12])[0], 12
    if start + hlen > source.size:
        return
    header = source.read(start, min(hlen, 65536)).decode("latin-1")
    if "'|O'" not in header and '"|O"' not in header:
        return
    buf = source.read(start + hlen, source.size - start - hlen)
    fs.pickles.append(run_recorded(buf, 0, len(buf), base=start + hlen, limits=limits,
                                   label="object array pickle (.npy)",
                                   executed_by="numpy.load(allow_pickle=True)"))
