"""Provenance: which environment wrote a checkpoint, stored so that stock loaders ignore it.

* torch zip files get one extra stored record ``<root>/.ckptdoctor/provenance.json``; torch's reader only
  looks up the records it knows, so ``torch.load`` (``weights_only=True`` included) reads the file unchanged.
* safetensors files carry it as the ``__metadata__`` entry ``ckptdoctor.provenance`` (a JSON string).

``inspect`` shows it and ``check`` uses it as the producer's exact version.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from typing import Any

RECORD = ".ckptdoctor/provenance.json"
META_KEY = "ckptdoctor.provenance"


def collect(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Facts about the running environment (imports torch if it is already importable)."""
    from ckptdoctor import __version__

    info: dict[str, Any] = {
        "ckptdoctor": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch  # noqa: F811 - provenance of a torch save needs torch anyway
        except ImportError:
            torch = None
    if torch is not None:
        info["torch"] = torch.__version__
        info["cuda"] = getattr(torch.version, "cuda", None)
        try:
            info["cudnn"] = torch.backends.cudnn.version()
        except Exception:  # noqa: BLE001 - absent on CPU builds
            info["cudnn"] = None
    if extra:
        info["user"] = dict(extra)
    return info


def save(obj: Any, path: str | os.PathLike, *, provenance: dict[str, Any] | None = None, **torch_save_kwargs: Any) -> None:
    """``torch.save`` plus provenance (torch extra). ``*.safetensors`` paths are written with safetensors."""
    import zipfile

    path = os.fspath(path)
    info = collect(provenance)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ckptdoctor-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import save_file

            save_file(obj, tmp, metadata={META_KEY: json.dumps(info, sort_keys=True)})
        else:
            import torch

            with open(tmp, "wb") as f:  # a file object: torch names the archive root "archive"
                torch.save(obj, f, **torch_save_kwargs)
            with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_STORED) as z:
                names = z.namelist()
                if not names:
                    raise ValueError("torch.save wrote no zip records (legacy format?); provenance needs the zip format")
                first_root = names[0].split("/", 1)[0]
                z.writestr(f"{first_root}/{RECORD}", json.dumps(info, sort_keys=True, indent=1))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(ckpt: Any) -> dict[str, Any] | None:
    """Provenance recorded in an opened checkpoint, if any."""
    return ckpt.details.get("provenance")
