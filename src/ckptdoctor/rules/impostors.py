"""Impostors and damage: files that are not checkpoints at all, or checkpoints cut short.

Also predicts what torch itself would say: ``torch.load`` tries the zip reader, then tar, then
unpickles from the first byte, so its error depends on the file's first opcodes.
"""

from __future__ import annotations

import pickletools
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.rules._common import finding, miniz, wo_message
from ckptdoctor.rules._sim import _View

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 0
FINDINGS = {
    "CKD-IMPOSTOR-LFS": "a Git LFS pointer file instead of the weights",
    "CKD-IMPOSTOR-HTML": "an HTML page (error page, login wall) saved instead of the file",
    "CKD-IMPOSTOR-FORMAT": "another format (HDF5/Keras, ONNX, GGUF, NumPy, a non-torch zip): names the library to use",
    "CKD-DAMAGE-TRUNCATED": "the file is shorter than its own structure says: bytes present vs expected",
    "CKD-DAMAGE-EMPTY": "the file is empty",
    "CKD-DAMAGE-CORRUPT": "the file's structure is inconsistent (corrupt pickle, zip or records)",
    "CKD-UNREADABLE": "not a format ckptdoctor or torch knows",
}
LIBS = {
    "hdf5": ("an HDF5 file (Keras / h5py)", "h5py.File(path) or keras.models.load_model(path)"),
    "onnx": ("an ONNX model", "onnx.load(path) or onnxruntime.InferenceSession(path)"),
    "gguf": ("a GGUF file (llama.cpp)", "the gguf package (gguf.GGUFReader(path)) or llama.cpp"),
    "npy": ("a NumPy array file", "numpy.load(path)"),
    "npz": ("a NumPy .npz archive", "numpy.load(path)"),
    "other-zip": ("a zip archive that is not a torch checkpoint", "the library that wrote it"),
    "directory": ("a directory", "the files inside it"),
}


def first_refusal(head: bytes, table: dict | None) -> tuple[int, int, str] | None:
    """(offset, byte, opcode-or-'') of the first opcode the unpickler stops at (weights_only: not allowed)."""
    allowed = table["opcode_set"] if table else None
    last = 0
    try:
        for op, _arg, pos in pickletools.genops(_View(head, 0, len(head))):
            last = pos
            if allowed is not None and op.name not in allowed:
                return pos, head[pos], op.name
            if op.name == "STOP":
                return None
    except ValueError as e:
        m = re.search(r"at position (\d+)", str(e))
        pos = int(m.group(1)) if m else last
        if pos < len(head):
            return pos, head[pos], ""
    except Exception:  # noqa: BLE001 - anything else: we cannot say
        return None
    return None


def predicted_error(ctx: Context) -> str | None:
    """What torch.load (target release) raises for this non-checkpoint, when we can tell."""
    head = ctx.head
    kind = ctx.error.kind if ctx.error is not None else ""
    if not head:
        if kind != "empty":
            return None
        wo = ctx.target.loads_weights_only and ctx.target.torch_at_least("1.13")
        return "EOFError: " if wo else "EOFError: Ran out of input"  # torch's own unpickler says nothing
    if head[:4] == b"PK\x03\x04":
        if kind == "other-zip":
            members = (ctx.error.fields.get("members") or []) if ctx.error is not None else []
            first = members[0] if members else ""
            if first and "/" not in first:
                return ("RuntimeError: [enforce fail at inline_container.cc:180] . file in archive is not in a "
                        f"subdirectory: {first}")
            return miniz(ctx.target, "RuntimeError: PytorchStreamReader failed locating file data.pkl: file not found")
        return None
    if kind == "truncated":
        fields = ctx.error.fields if ctx.error is not None else {}
        m = re.search(r"needs bytes up to (\d+)", str(ctx.error))
        end = int(m.group(1)) if m else fields.get("needed")
        if isinstance(end, int) and end > ctx.size:
            return f"RuntimeError: unexpected EOF, expected {end - ctx.size} more bytes. The file might be corrupted."
        return None
    wo = ctx.target.loads_weights_only and ctx.target.torch_at_least("1.13")
    table = ctx.wo_table if wo else None
    hit = first_refusal(head, table)
    if hit is None:
        return None
    pos, byte, _op = hit
    if wo and table is not None:
        from ckptdoctor.rules._common import render_template

        inner = render_template(table["messages"].get("operand", "f'Unsupported operand {key[0]}'"),
                                **{"key[0]": byte}).partition(": ")[2]
        return wo_message(table, inner)
    ch = chr(byte)
    shown = ch if 32 <= byte < 127 else f"\\x{byte:02x}"
    return f"UnpicklingError: invalid load key, '{shown}'."


def run(ctx: Context) -> Iterator[Finding]:
    yield from impostor_findings(ctx)


def impostor_findings(ctx: Context) -> Iterator[Finding]:
    err = ctx.error
    if err is None:
        return
    kind = err.kind
    msg = str(err)
    ev = {"kind": kind, "size": ctx.size, "torch_error": predicted_error(ctx)}
    ev.update({k: v for k, v in err.fields.items() if isinstance(v, (int, str)) and v is not None})
    if kind == "lfs-pointer":
        exp = err.fields.get("expected_size")
        yield ctx.ordered(finding(
            "CKD-IMPOSTOR-LFS", Severity.ERROR, "a Git LFS pointer, not the weights",
            f"{ctx.name} is a {ctx.size}-byte Git LFS pointer text"
            + (f" for a {exp}-byte file" if exp else "") + "; the repository was cloned without LFS content. "
            "torch stops at its first byte ('v').",
            evidence=ev, fix=Fix("fetch the real file", command="git lfs pull"), blocks=True), STAGE, 0)
    elif kind == "html":
        yield ctx.ordered(finding(
            "CKD-IMPOSTOR-HTML", Severity.ERROR, "an HTML page, not a checkpoint",
            f"{ctx.name} is an HTML page ({ctx.size} bytes): a download saved the error/login/redirect page. "
            "Download the file itself (for hubs, the 'resolve'/raw URL; for Google Drive, the confirm link).",
            evidence=ev, fix=Fix("download the real file again"), blocks=True), STAGE, 0)
    elif kind in LIBS:
        what, how = LIBS[kind]
        yield ctx.ordered(finding(
            "CKD-IMPOSTOR-FORMAT", Severity.ERROR, f"{what}, not a PyTorch checkpoint",
            f"{ctx.name} is {what}. torch.load cannot read it; open it with {how}. ({msg})",
            evidence=ev, fix=Fix(f"open it with {how}"), blocks=True), STAGE, 0)
    elif kind == "truncated":
        needed = err.fields.get("needed")
        m = re.search(r"needs bytes up to (\d+)", msg)
        if m:
            needed = int(m.group(1))
        present = ctx.size
        ev.update({"bytes_present": present, "bytes_expected": needed})
        missing = f", {needed - present} bytes missing" if isinstance(needed, int) and needed > present else ""
        yield ctx.ordered(finding(
            "CKD-DAMAGE-TRUNCATED", Severity.ERROR,
            f"truncated: {present} bytes present, at least {needed} expected" if needed else "truncated file",
            f"{msg}{missing}. The download or copy was cut short (or the save was interrupted); nothing can "
            "restore the missing bytes.",
            evidence=ev, fix=Fix("download or copy the file again and compare its size/sha256 with the source"),
            blocks=True), STAGE, 0)
    elif kind == "empty":
        yield ctx.ordered(finding("CKD-DAMAGE-EMPTY", Severity.ERROR, "the file is empty",
                                  f"{ctx.name} has 0 bytes: the save or download never wrote data.",
                                  evidence=ev, fix=Fix("save or download it again"), blocks=True), STAGE, 0)
    elif kind in ("corrupt", "pickle", "unknown") and ctx.head[:4] not in (b"PK\x03\x04",) and kind == "unknown":
        yield ctx.ordered(finding("CKD-UNREADABLE", Severity.ERROR, "not a checkpoint format",
                                  f"{msg}.", evidence=ev, fix=Fix("check where the file came from"), blocks=True),
                          STAGE, 0)
    else:
        yield ctx.ordered(finding("CKD-DAMAGE-CORRUPT", Severity.ERROR, f"unreadable ({kind})",
                                  f"{msg}.", evidence=ev,
                                  fix=Fix("obtain an intact copy (compare sha256 with the source)"), blocks=True),
                          STAGE, 0)
