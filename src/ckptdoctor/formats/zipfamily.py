"""Everything that starts with ``PK``: torch zip, TorchScript (both generations), .pt2, or not torch at all."""

from __future__ import annotations

from ckptdoctor.errors import UnreadableFile
from ckptdoctor.formats.zipdir import ZipArchive
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint
from ckptdoctor.source import ByteSource


def classify(z: ZipArchive) -> str:
    names = z.names()
    root = z.root
    rel = {n[len(root) + 1 :] for n in names if root and n.startswith(root + "/")}
    if root and "model.json" in rel:
        return "torchscript-json"
    if root and "constants.pkl" in rel:
        return "torchscript"
    if root and ("archive_format" in rel or any(r.startswith("models/") and r.endswith(".json") for r in rel)) \
            and "data.pkl" not in rel:
        return "pt2"
    if root and "data.pkl" in rel:
        return "zip"
    if names and all(n.endswith(".npy") for n in names if not n.endswith("/")):
        return "npz"
    return "other-zip"


def read_zip_family(ckpt: Checkpoint, source: ByteSource, limits: Limits) -> None:
    z = ZipArchive(source, limits)
    kind = classify(z)
    ckpt.format = kind
    if kind == "zip":
        from ckptdoctor.formats.zipfmt import read_zip

        read_zip(ckpt, z, limits)
    elif kind == "torchscript":
        from ckptdoctor.formats.torchscript import read_torchscript

        read_torchscript(ckpt, z, limits)
    elif kind == "torchscript-json":
        from ckptdoctor.formats.torchscript_json import read_torchscript_json

        read_torchscript_json(ckpt, z, limits)
    elif kind == "pt2":
        from ckptdoctor.formats.pt2 import read_pt2

        read_pt2(ckpt, z, limits)
    elif kind == "npz":
        raise UnreadableFile("this is a NumPy .npz archive, not a PyTorch checkpoint; load it with numpy.load(path)",
                             kind="npz")
    else:
        members = ", ".join(z.names()[:6])
        hint = ""
        if any(n.endswith("policy.pth") for n in z.names()):
            hint = " (a Stable-Baselines3 model: load it with stable_baselines3's Model.load)"
        raise UnreadableFile(
            f"a zip archive that is not a PyTorch checkpoint{hint}; members: {members}"
            + (" ..." if len(z.entries) > 6 else ""),
            kind="other-zip",
            members=z.names()[:50],
        )
