"""Structural integrity: does the container hold together, and does it hide anything?

Facts come from the raw container walk (:mod:`ckptdoctor.security.sites`) so
they are available even when the reader refuses the file:

* storage records referenced by the pickle vs present; declared numel x itemsize
  vs record size; records nothing references;
* duplicate (shadowed) zip members, local/central name mismatches, encrypted
  flags, CRC mismatches, prepended or appended data, overlapping members, names
  escaping the archive: zip quirks torch accepts but other readers reject (or
  the reverse), which is where scanners and loaders disagree;
* data after STOP, more than one pickle where the format has one;
* TorchScript ``code/`` calling dangerous operations;
* executable content (pickles) in files that are not checkpoints.
"""

from __future__ import annotations

import re
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.formats import IMPOSTOR_KINDS
from ckptdoctor.pickle.objects import Global
from ckptdoctor.security.sites import FileScan, ZipFacts

TS_OK_NAMESPACES = {"aten", "prim", "quantized", "_quantized", "quantized_decomposed", "prepacked", "_caffe2",
                    "rngprim", "profiler", "cuda", "mkldnn", "mkldnn_prepacked", "fbgemm", "xnnpack", "vulkan",
                    "sparse", "_nnapi", "ao", "torchvision", "torchaudio", "torchtext", "image"}
TS_CRITICAL = [
    (re.compile(r"\bfrom_file\s*\("), "torch.from_file reads an arbitrary file into a tensor"),
    (re.compile(r"\bops\.[A-Za-z_]*\.?load_library\b|\bload_library\s*\("), "loads a native library"),
]
TS_PY_ESCAPES = re.compile(  # Python that TorchScript cannot express (getattr(self, "0") and builtins.ValueError can)
    r"(?<![.\w])(__import__|exec|eval|globals|locals|breakpoint|compile)\s*\(|__builtins__|__globals__|"
    r"__subclasses__|__code__|(?<![.\w])(os|subprocess|sys|shutil|socket|importlib|ctypes|pickle|marshal|runpy|"
    r"pty|webbrowser)\.[A-Za-z_]+\s*\(|(?<![.\w])open\s*\(")
TS_OPS = re.compile(r"\bops\.([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")


def integrity_findings(fs: FileScan, ckpt: Any = None, error: BaseException | None = None) -> list[Finding]:
    out: list[Finding] = []
    if error is not None:
        out.append(Finding(
            "CKD-INT-UNREADABLE", Severity.ERROR, "the file does not read as a checkpoint",
            str(error), evidence={"kind": getattr(error, "kind", None), "offset": getattr(error, "offset", None)},
            blocks_load=True,
        ))
    if fs.zip is not None:
        out.extend(_zip_findings(fs, fs.zip))
        out.extend(_storage_findings(fs, fs.zip))
    if fs.embedded_zip is not None and fs.embedded_zip.zip is not None:
        z = fs.embedded_zip.zip
        out.append(Finding(
            "CKD-INT-POLYGLOT", Severity.WARNING, "the file is two things at once: a pickle stream and a zip archive",
            f"{fs.name} starts as a pickle stream (what torch.load runs) but a zip archive of {len(z.members)} "
            f"member(s) starting at byte {z.offset} ends the file (what zip-based scanners and tools read). A "
            "scanner that only looks at one view misses the other.",
            evidence={"zip_offset": z.offset, "members": [m.name for m in z.members[:20]]},
        ))
        out.extend(_zip_findings(fs.embedded_zip, z))
    out.extend(_stream_findings(fs))
    out.extend(_code_findings(fs))
    out.extend(_impostor_findings(fs, ckpt, error))
    for n in fs.nested:
        for f in integrity_findings(n.scan):
            if f.id in ("CKD-INT-UNREADABLE",):
                continue
            out.append(Finding(f.id, min(f.severity, Severity.WARNING), f"nested payload ({n.where}): {f.title}",
                               f.explanation, {**f.evidence, "nested": n.where}, f.fix, False))
    return out


# ------------------------------------------------------------------ zip
def _zip_findings(fs: FileScan, z: ZipFacts) -> list[Finding]:
    out: list[Finding] = []
    if z.error:
        out.append(Finding(
            "CKD-INT-ZIP-DIRECTORY", Severity.WARNING, "zip central directory unreadable; members found by local headers",
            f"{z.error}. Loaders that need the central directory (torch, zipfile) fail, but tools that walk local "
            f"headers still read {len(z.members)} member(s); ckptdoctor scanned those.",
            evidence={"members": [m.name for m in z.members[:20]]},
        ))
    if z.duplicates:
        names = sorted(set(z.duplicates))
        pk = [n for n in names if n.endswith(".pkl")]
        out.append(Finding(
            "CKD-INT-ZIP-DUPLICATE", Severity.WARNING,
            f"duplicate zip member name(s): {', '.join(names[:3])}" + (" ..." if len(names) > 3 else ""),
            "The archive holds several members with the same name. Python's zipfile reads the last copy; torch "
            "(miniz) finds one by binary search over the sorted directory, so which copy it loads depends on the "
            "other members; tools that walk local headers see the first. A scanner can be shown one file and torch "
            "another. " + ("Every copy was scanned. " if pk else "")
            + "torch.save never writes duplicates.",
            evidence={"duplicates": names[:50]},
        ))
    roots = {m.name.split("/", 1)[0] for m in z.members if "/" in m.name}
    if fs.zip is z and z.kind in ("zip", "torchscript") and len(roots) > 1:
        out.append(Finding(
            "CKD-INT-ZIP-ROOTS", Severity.WARNING, f"members under {len(roots)} top-level folders",
            f"torch reads the folder of the first member ({z.root!r}); other tools may pick another folder's "
            f"data.pkl ({', '.join(sorted(roots)[:5])}).", evidence={"roots": sorted(roots)[:20]},
        ))
    quirks: list[str] = []
    mismatch = [m for m in z.members if m.local_name is not None]
    if mismatch:
        quirks.append(f"{len(mismatch)} member(s) whose local header names another file ({mismatch[0].name!r} vs "
                      f"{mismatch[0].local_name!r}): zipfile refuses them, torch reads them by the central directory")
    enc = [m for m in z.members if m.flags & 0x1]
    if enc:
        quirks.append(f"{len(enc)} member(s) flagged as encrypted ({enc[0].name!r}): zipfile and torch 2.13 refuse "
                      "them, scanners that give up on the error see nothing")
    odd = [m for m in z.members if m.method not in (0, 8) and not m.name.endswith("/")]
    if odd:
        quirks.append(f"{len(odd)} member(s) with compression method {odd[0].method} ({odd[0].name!r})")
    bad = [m for m in z.members if m.error]
    if bad:
        quirks.append(f"{len(bad)} unreadable member(s) ({bad[0].name!r}: {bad[0].error})")
    escape = [m for m in z.members if m.name.startswith(("/", "\\")) or ".." in m.name.split("/") or "\\" in m.name]
    if escape:
        quirks.append(f"{len(escape)} member name(s) that escape the archive when extracted ({escape[0].name!r})")
    if z.offset:
        quirks.append(f"the archive starts at byte {z.offset}, after other data: zipfile accepts it, torch needs a zip "
                      "header at byte 0")
    if z.comment and (b"\x80" in z.comment[:2] or b"PK" in z.comment or b"c" == z.comment[:1]):
        quirks.append(f"a {len(z.comment)}-byte archive comment that looks like data")
    crc = _crc_mismatches(fs, z)
    if crc:
        quirks.append(f"{len(crc)} member(s) whose CRC-32 does not match their bytes ({crc[0]!r}): zipfile raises "
                      "'Bad CRC-32', torch does not check and loads them")
    overlap = _overlaps(z)
    if overlap:
        quirks.append(f"members whose data overlap ({overlap}): one byte range read as two files")
    if quirks:
        out.append(Finding(
            "CKD-INT-ZIP-ANOMALY", Severity.WARNING, "zip structure that loaders and scanners read differently",
            "; ".join(quirks) + ". torch.save writes none of these; they are how a file shows one content to a "
            "scanner and another to torch.", evidence={"anomalies": quirks},
        ))
    return out


def _crc_mismatches(fs: FileScan, z: ZipFacts) -> list[str]:
    return [m.name for m in z.members if m.crc_ok is False]


def _overlaps(z: ZipFacts) -> str | None:
    spans = sorted((m.header_offset, m.header_offset + 30 + len(m.name.encode()) + m.csize, m.name)
                   for m in z.members if not m.name.endswith("/"))
    for (a0, a1, an), (b0, _b1, bn) in zip(spans, spans[1:], strict=False):
        if b0 < a1 and b0 != a0:
            return f"{an!r} and {bn!r}"
        if b0 == a0:
            return f"{an!r} and {bn!r} share a header"
    return None


def _pid_storages(fs: FileScan, z: ZipFacts) -> dict[str, tuple[str, int, Any]]:
    """key -> (storage class name, declared numel, dtype) from data.pkl's persistent ids."""
    out: dict[str, tuple[str, int, Any]] = {}
    for p in fs.pickles:
        if not p.label.endswith("data.pkl") and "data.pkl (" not in p.label:
            continue
        for pid in p.pids:
            if (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[4], int) and not isinstance(pid[4], bool)):
                st = pid[1]
                name = st.name if isinstance(st, Global) else str(st)
                out.setdefault(str(pid[2]), (name, pid[4], dtypes.from_storage_class(name)))
    return out


def _storage_findings(fs: FileScan, z: ZipFacts) -> list[Finding]:
    if z.kind not in ("zip", "torchscript") or not z.root:
        return []
    refs = _pid_storages(fs, z)
    complete = any(p.end is not None for p in fs.pickles if p.label.endswith("data.pkl"))
    members = {m.name: m for m in z.members}
    missing, short, long_, = [], [], []
    for key, (sname, numel, dt) in refs.items():
        m = None
        for folder in ("data", ".data", "constants"):
            m = members.get(f"{z.root}/{folder}/{key}")
            if m is not None:
                break
        if m is None:
            missing.append(key)
            continue
        if dt is None:
            continue
        need = numel * dt.itemsize
        if m.usize < need:
            short.append((m.name, m.usize, need, sname))
        elif m.usize > need and m.usize != need + 8:
            long_.append((m.name, m.usize, need))
    referenced = {f"{z.root}/{f}/{k}" for k in refs for f in ("data", ".data", "constants")}
    orphans = [m.name for m in z.members if m.name.startswith(f"{z.root}/data/") and m.name not in referenced
               and not m.name.endswith("/")] if z.kind == "zip" and complete else []
    out: list[Finding] = []
    if missing:
        out.append(Finding(
            "CKD-INT-STORAGE-MISSING", Severity.ERROR, f"{len(missing)} storage record(s) the pickle needs are missing",
            f"data.pkl references storages {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            + f" but {z.root}/data/ has no such records: torch.load fails (the archive was cut or edited).",
            evidence={"missing": missing[:100]}, blocks_load=True,
        ))
    if short:
        n, have, need, sname = short[0]
        out.append(Finding(
            "CKD-INT-STORAGE-SIZE", Severity.ERROR, f"{len(short)} storage record(s) smaller than declared",
            f"{n} holds {have} bytes but the pickle declares a {sname} of {need} bytes (numel x itemsize); torch "
            "fails or reads past the record.", evidence={"records": [list(s[:3]) for s in short[:50]]},
            blocks_load=True,
        ))
    if long_:
        n, have, need = long_[0]
        out.append(Finding(
            "CKD-INT-STORAGE-EXTRA", Severity.WARNING, f"{len(long_)} storage record(s) larger than declared",
            f"{n} holds {have} bytes but the pickle needs only {need}: the extra bytes are never read by torch "
            "(room to hide data).", evidence={"records": [list(s) for s in long_[:50]]},
        ))
    if orphans:
        out.append(Finding(
            "CKD-INT-STORAGE-ORPHAN", Severity.WARNING, f"{len(orphans)} storage record(s) nothing references",
            f"{', '.join(orphans[:5])}" + (" ..." if len(orphans) > 5 else "") + " are in the archive but data.pkl "
            "never uses them: torch ignores them (hidden data, or a pickle that was swapped).",
            evidence={"orphans": orphans[:100]},
        ))
    return out


# ------------------------------------------------------------------ streams and pickles
def _stream_findings(fs: FileScan) -> list[Finding]:
    out: list[Finding] = []
    if fs.kind == "stream" and fs.pickles:
        parsed = [p for p in fs.pickles if p.end is not None]
        if len(fs.pickles) > 1:
            out.append(Finding(
                "CKD-INT-MULTIPLE-PICKLES", Severity.WARNING, f"{len(fs.pickles)} pickles in one stream",
                "torch.load runs only the first; a script that calls pickle.load again runs the next ones "
                f"({', '.join(p.label for p in fs.pickles[1:4])}). Every one was scanned.",
                evidence={"pickles": [{"label": p.label, "start": p.start, "end": p.end} for p in fs.pickles[:20]]},
            ))
        if parsed and fs.trailing and len(parsed) == len(fs.pickles):
            out.append(Finding(
                "CKD-INT-AFTER-STOP", Severity.WARNING, f"{fs.trailing} bytes after the pickle's STOP",
                f"The pickle ends at byte {fs.stream_end} but the file goes on for {fs.trailing} more bytes that no "
                "loader reads (hidden data, an appended archive, or a second payload).",
                evidence={"stop": fs.stream_end, "trailing": fs.trailing},
            ))
    for p in fs.pickles:
        if "(second pickle after STOP)" in p.label:
            out.append(Finding(
                "CKD-INT-AFTER-STOP", Severity.WARNING, f"a second pickle hidden after STOP in {p.label.split(' (')[0]}",
                f"{p.label.split(' (')[0]} holds another pickle after its STOP opcode (from byte {p.start}); torch "
                "never runs it, but it is there to be found by another loader. It was scanned.",
                evidence={"member": p.label, "start": p.start},
            ))
        if p.limited:
            out.append(Finding(
                "CKD-INT-SCAN-LIMIT", Severity.WARNING, f"{p.label}: scan stopped at a resource limit",
                f"{p.error}. Calls before that point were examined; anything after it was not. A pickle this "
                "large or this expansive is either exceptional or a bomb; raise the limits (ckptdoctor.limits."
                "Limits) to examine it all.", evidence={"pickle": p.label, "error": p.error, "calls": p.calls},
            ))
        elif p.error and p.calls and p.end is None:
            out.append(Finding(
                "CKD-INT-BROKEN-PICKLE", Severity.WARNING, f"{p.label} breaks off after {p.calls} call(s)",
                f"The pickle is malformed ({p.error}), but a real unpickler runs every call before the point where "
                "it fails: broken pickles are a known way to hide payloads from scanners that give up on errors. "
                "ckptdoctor scanned the calls before the break.",
                evidence={"pickle": p.label, "error": p.error, "calls_before_error": p.calls},
            ))
    return out


def _code_findings(fs: FileScan) -> list[Finding]:
    out: list[Finding] = []
    for name, text in fs.code:
        crit = [(what, m.group(0)) for rx, what in TS_CRITICAL for m in [rx.search(text)] if m]
        esc = TS_PY_ESCAPES.search(text)
        custom = sorted({m.group(1) for m in TS_OPS.finditer(text) if m.group(1) not in TS_OK_NAMESPACES})
        if crit:
            what, snippet = crit[0]
            out.append(Finding(
                "CKD-SEC-TS-CODE", Severity.CRITICAL, f"TorchScript code {name} calls a dangerous operation",
                f"{name} contains {snippet!r}: {what}. TorchScript code runs when the module is called after "
                "torch.jit.load.", evidence={"member": name, "match": snippet},
            ))
        if esc:
            out.append(Finding(
                "CKD-SEC-TS-CODE", Severity.WARNING, f"TorchScript code {name} contains Python escape hatches",
                f"{name} contains {esc.group(0)!r}, which is not TorchScript: torch.jit.load refuses to compile it, "
                "but a tool that execs the archive's code would run it. torch.jit.save never writes this.",
                evidence={"member": name, "match": esc.group(0)},
            ))
        if custom:
            out.append(Finding(
                "CKD-SEC-TS-OPS", Severity.WARNING, f"TorchScript code {name} calls custom operator namespaces",
                f"{name} calls torch.ops.{custom[0]}... ({', '.join(custom[:5])}): operators from native libraries "
                "that must be loaded before the model; review where they come from.",
                evidence={"member": name, "namespaces": custom[:20]},
                fix=Fix("Load only libraries you trust before torch.jit.load"),
            ))
    return out


def _impostor_findings(fs: FileScan, ckpt: Any, error: BaseException | None) -> list[Finding]:
    kind = getattr(error, "kind", None) if error is not None else (ckpt.format if ckpt is not None else None)
    impostor = (kind in IMPOSTOR_KINDS and kind not in ("truncated", "corrupt")) or fs.kind == "npy" or (fs.zip is not None and fs.zip.kind in ("npz", "other-zip"))
    if not impostor:
        return []
    active = [p for p in fs.pickles if p.calls or p.indirect]
    if not active:
        return []
    calls = sum(p.calls for p in active)
    return [Finding(
        "CKD-INT-IMPOSTOR-CODE", Severity.WARNING, "not a PyTorch checkpoint, but it carries pickled code",
        f"{fs.name} is {kind or fs.kind}, yet {len(active)} pickle(s) inside make {calls} call(s) when loaded "
        f"({', '.join(p.label + ' by ' + p.executed_by for p in active[:3])}).",
        evidence={"pickles": [p.label for p in active[:20]], "calls": calls},
    )]
