"""The pickles ``torch.load`` unpickles for a file, in the order it unpickles them (for the dry runs)."""

from __future__ import annotations

from typing import Any

from ckptdoctor.model import Checkpoint

LEGACY_LABELS = ("magic number", "protocol version", "sys_info", "object", "storage keys")

Entry = tuple[str, Any, int | None, int, int]  # (label, buffer, start (None: after the previous), end, base)


def torch_load_pickles(ckpt: Checkpoint) -> list[Entry]:
    src = ckpt.source
    if src is None:
        return []
    fmt = ckpt.format
    if fmt == "zip":
        from ckptdoctor.formats.zipdir import ZipArchive

        z = ZipArchive(src)
        entry = z.by_name.get(f"{z.root}/data.pkl")
        if entry is None:
            return []
        data = z.read(entry)
        base = z.data_offset(entry) if entry.method == 0 else 0
        return [("data.pkl", data, 0, len(data), base)]
    if fmt == "legacy":
        obj = next((r for label, r in ckpt.pickles if label == "object"), None)
        if obj is None:
            return []
        mm = getattr(src, "_mm", None)
        end = min(src.size, obj.end + 64 + 64 * int(ckpt.details.get("storages", 0) or 0) + (1 << 16))
        buf = mm if mm is not None else src.read(0, end)
        out: list[Entry] = [(LEGACY_LABELS[0], buf, 0, end, 0)]
        out += [(label, buf, None, end, 0) for label in LEGACY_LABELS[1:]]
        return out
    if fmt == "pickle":
        buf = getattr(src, "_mm", None)
        if buf is None:
            buf = src.read(0, src.size)
        return [("object", buf, 0, src.size, 0)]
    if fmt == "tar":
        import io
        import tarfile

        from ckptdoctor.formats.tar import _SourceFile

        tf = tarfile.open(fileobj=io.BufferedReader(_SourceFile(src)), mode="r:")
        m = tf.getmember("pickle")
        return [("pickle", src.read(m.offset_data, m.size), 0, m.size, m.offset_data)]
    return []
