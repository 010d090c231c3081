"""ckptdoctor: open, diagnose and repair PyTorch checkpoints without executing pickle code.

Public surface::

    import ckptdoctor
    with ckptdoctor.open("model.pt") as ckpt:
        for path, tensor in ckpt.tensors():
            print(path, tensor.dtype.name, tensor.shape)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from ckptdoctor.model import Checkpoint

__all__ = ["open", "load", "save", "__version__"]


def open(path, *, limits=None) -> Checkpoint:  # noqa: A001 - deliberate, reads like builtins.open
    """Read a checkpoint (any supported format) without executing code. See ``ckptdoctor.reader``."""
    from ckptdoctor.reader import open_checkpoint

    return open_checkpoint(path, limits=limits)


def load(f, map_location=None, *, allow=(), on_unknown="placeholder"):
    """``torch.load`` without executing pickle code (torch extra). See ``ckptdoctor.torchio`` and docs/load.md."""
    from ckptdoctor.torchio.load import load_with_info

    obj, _ = load_with_info(f, map_location, allow=allow, on_unknown=on_unknown, _stacklevel=3)
    return obj


def save(obj, path, *, provenance=None, **torch_save_kwargs) -> None:
    """``torch.save`` that also records provenance (torch extra). See ``ckptdoctor.provenance``."""
    from ckptdoctor.provenance import save as _save

    _save(obj, path, provenance=provenance, **torch_save_kwargs)
