"""Container formats: sniffing by content and one reader per container.

``KINDS`` are the names ``inspect --json`` reports in ``format``.
"""

from __future__ import annotations

CHECKPOINT_KINDS = (
    "tar", "legacy", "zip", "torchscript", "torchscript-json", "safetensors", "dcp", "pt2",
    "sharded-index", "pickle",
)
IMPOSTOR_KINDS = (
    "lfs-pointer", "html", "hdf5", "onnx", "gguf", "npy", "npz", "other-zip", "empty", "truncated",
    "unknown", "directory",
)
KINDS = CHECKPOINT_KINDS + IMPOSTOR_KINDS
