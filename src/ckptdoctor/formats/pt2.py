"""torch.export ``.pt2`` archives: listed, not interpreted (use torch.export.load)."""

from __future__ import annotations

from ckptdoctor.formats.zipdir import ZipArchive
from ckptdoctor.formats.zipfmt import container_details
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint


def read_pt2(ckpt: Checkpoint, z: ZipArchive, limits: Limits) -> None:
    ckpt.details.update(container_details(z))
    root = z.root
    ckpt.details["members"] = [n[len(root) + 1 :] for n in z.names()[:200]]
    ckpt.root = {}
