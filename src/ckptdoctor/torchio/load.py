"""``ckptdoctor.load``: a drop-in for ``torch.load`` that never executes pickle code.

See docs/load.md. The file is read by the core reader (``ckptdoctor.open``);
this module only turns its value tree into torch objects.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from ckptdoctor.errors import UnreadableFile
from ckptdoctor.report.units import human_bytes
from ckptdoctor.torchio.policy import NeedsTorch, Options, ReplacedObjectWarning

REFUSED = {
    "pt2": "a torch.export archive (.pt2): load it with torch.export.load",
    "sharded-index": "an index of a sharded checkpoint: load each shard it lists",
}


@dataclass(slots=True)
class LoadInfo:
    """What one load built (for ``ckptdoctor inspect --load`` and the benchmark)."""

    path: str
    format: str
    seconds: float = 0.0
    tensors: int = 0
    parameters: int = 0
    quantized: int = 0
    sparse: int = 0
    storages: int = 0
    mapped: int = 0  # storages that are slices of the copy-on-write file mapping (zero-copy)
    copied: int = 0
    nbytes: int = 0
    placeholders: int = 0
    replaced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def import_torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise NeedsTorch("ckptdoctor.load builds torch objects and needs torch: "
                         "pip install 'ckptdoctor[torch]' (or use ckptdoctor.open to read without torch)") from e
    return torch


def load(f: Any, map_location: Any = None, *, allow: Any = (), on_unknown: str = "placeholder") -> Any:
    """What ``torch.load(f, map_location)`` returns, built without running any code from the file.

    ``allow``: classes (or functions) from a trusted file to rebuild as pickle would.
    ``on_unknown``: what becomes of other objects: ``"placeholder"`` (a :class:`Placeholder`;
    pickled ``nn.Module`` objects become their ``state_dict()``), ``"dict"`` (plain dicts) or
    ``"error"`` (raise :class:`UnknownObjectError`). Anything replaced is named in one
    :class:`ReplacedObjectWarning`.
    """
    obj, _ = load_with_info(f, map_location, allow=allow, on_unknown=on_unknown, _stacklevel=3)
    return obj


def load_with_info(f: Any, map_location: Any = None, *, allow: Any = (), on_unknown: str = "placeholder",
                   _stacklevel: int = 3) -> tuple[Any, LoadInfo]:
    torch = import_torch()
    options = Options.make(allow, on_unknown)
    t0 = time.perf_counter()
    import ckptdoctor
    from ckptdoctor.torchio.convert import Converter
    from ckptdoctor.torchio.storages import StorageMaker, restore_location

    restore_location(torch, map_location)  # reject a bad map_location before reading anything
    ckpt = ckptdoctor.open(f)
    owned = isinstance(f, (str, os.PathLike))  # a caller's file object stays open, as with torch.load
    name = os.path.basename(ckpt.path) if isinstance(ckpt.path, str) else str(ckpt.path)
    info = LoadInfo(path=ckpt.path, format=ckpt.format)
    try:
        if ckpt.format in REFUSED:
            raise UnreadableFile(f"{ckpt.path} is {REFUSED[ckpt.format]}", kind=ckpt.format)
        if ckpt.format == "dcp":  # DCP folders load like any file unless some tensor has no data here
            from ckptdoctor.formats.dcp import without_data

            if (why := without_data(ckpt)) is not None:
                raise UnreadableFile(why, kind=ckpt.format)
        storages = StorageMaker(torch, ckpt, map_location)
        conv = Converter(torch, storages, options, map_location)
        try:
            out = conv(ckpt.root)
        except RecursionError:
            raise UnreadableFile(f"{ckpt.path}: structure nested too deeply to rebuild", kind="corrupt") from None
        if ckpt.format == "safetensors" and isinstance(out, dict):
            out = dict(out)  # torch.load (via safetensors.torch.load_file) returns a plain dict
        if ckpt.format == "pickle":
            info.notes.append("a bare pickle, not a torch.save file: torch.load would refuse it "
                              "(invalid magic number); its data was loaded")
    finally:
        if owned:
            ckpt.close()
    tb = conv.tensors
    info.seconds = time.perf_counter() - t0
    info.tensors, info.parameters, info.quantized, info.sparse = tb.count, tb.parameters, tb.quantized, tb.sparse
    info.storages, info.mapped, info.copied, info.nbytes = (len(storages.made), storages.mapped, storages.copied,
                                                            storages.nbytes)
    info.placeholders = conv.placeholders
    if conv.replaced:
        msg = conv.replaced.message(name)
        info.replaced.append(msg)
        warnings.warn(msg, ReplacedObjectWarning, stacklevel=_stacklevel)
    for note in info.notes:
        warnings.warn(f"ckptdoctor.load({name}): {note}", ReplacedObjectWarning, stacklevel=_stacklevel)
    return out, info


def count_built(obj: Any) -> dict[str, int]:
    """Walk a loaded result: tensors by kind, distinct storages, bytes, numpy arrays, placeholders, modules."""
    import numpy as np
    import torch

    from ckptdoctor.torchio.policy import Placeholder

    c = dict.fromkeys(("tensors", "parameters", "quantized", "sparse", "meta", "storages", "nbytes", "numpy",
                       "placeholders", "modules", "objects"), 0)
    ptrs: set[int] = set()
    seen: set[int] = set()
    todo = [obj]
    while todo:
        v = todo.pop()
        if v is None or isinstance(v, (str, bytes, int, float, complex)) or id(v) in seen:
            continue
        seen.add(id(v))
        if isinstance(v, torch.Tensor):
            c["tensors"] += 1
            c["parameters"] += isinstance(v, torch.nn.Parameter)
            c["quantized"] += v.is_quantized
            c["meta"] += v.device.type == "meta"
            if v.layout != torch.strided:
                c["sparse"] += 1
                continue
            if v.device.type != "meta" and not v.is_nested:
                st = v.untyped_storage()
                if st.data_ptr() not in ptrs:
                    ptrs.add(st.data_ptr())
                    c["nbytes"] += st.nbytes()
            continue
        if isinstance(v, dict):
            todo.extend(v.values())
        elif isinstance(v, (list, tuple, set, frozenset)):
            todo.extend(v)
        elif isinstance(v, np.ndarray):
            c["numpy"] += 1
        elif isinstance(v, Placeholder):
            c["placeholders"] += 1
            todo.extend((v.args, v.state, v.listitems))
        elif isinstance(v, torch.nn.Module):
            c["modules"] += 1
            todo.extend(vars(v).values())
        elif hasattr(v, "__dict__") and not isinstance(v, type):
            c["objects"] += 1
            todo.extend(vars(v).values())
    c["storages"] = len(ptrs)
    return c


def summary(obj: Any, info: LoadInfo) -> str:
    """One line: what torch objects were built, from what, how."""
    top = type(obj).__name__
    if isinstance(obj, dict):
        top += f" of {len(obj)} entries"
    elif isinstance(obj, (list, tuple)):
        top += f" of {len(obj)} items"
    c = count_built(obj)
    kinds = [f"{c[k]} {label}" for k, label in (("parameters", "Parameters"), ("quantized", "quantized"),
                                                  ("sparse", "sparse"), ("meta", "meta")) if c[k]]
    kind = f" ({', '.join(kinds)})" if kinds else ""
    how = f"{info.mapped} zero-copy from the file mapping" if info.mapped else "none mapped"
    if info.copied:
        how += f", {info.copied} copied"
    extra = [f"{c[k]} {label}" for k, label in (("modules", "nn.Modules"), ("numpy", "numpy arrays"),
                                                 ("objects", "other objects"), ("placeholders", "placeholders")) if c[k]]
    extra_s = f"; {', '.join(extra)}" if extra else ""
    rep = "; something was replaced (see note)" if info.replaced else ""
    return (f"loaded {info.format} into torch in {info.seconds:.3f}s: {top}; {c['tensors']} tensors{kind} in "
            f"{c['storages']} storages, {human_bytes(c['nbytes'])} (storages: {how}){extra_s}{rep}")
