"""torch objects from any checkpoint without executing pickle code (the ``torch`` extra).

``ckptdoctor.load(path)`` is the entry point; see docs/load.md. Importing this
package does not import torch: :func:`load` does, when called.
"""

from __future__ import annotations

from typing import Any

from ckptdoctor.torchio.policy import (
    ON_UNKNOWN,
    NeedsTorch,
    Placeholder,
    ReplacedObjectWarning,
    UnknownObjectError,
)

__all__ = ["load", "Placeholder", "ReplacedObjectWarning", "UnknownObjectError", "NeedsTorch", "ON_UNKNOWN"]


def load(f: Any, map_location: Any = None, *, allow: Any = (), on_unknown: str = "placeholder") -> Any:
    """See :func:`ckptdoctor.torchio.load.load`."""
    from ckptdoctor.torchio.load import load_with_info

    obj, _ = load_with_info(f, map_location, allow=allow, on_unknown=on_unknown, _stacklevel=3)
    return obj
