"""safetensors: u64 header length, a JSON header, then the tensors' bytes."""

from __future__ import annotations

import json
import struct

from ckptdoctor import dtypes
from ckptdoctor.errors import TruncatedFile, UnreadableFile
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, Storage, TensorRecord
from ckptdoctor.pickle.objects import OrderedDictValue


def read_safetensors(ckpt: Checkpoint, source, limits: Limits) -> None:
    (n,) = struct.unpack("<Q", source.read(0, 8))
    try:
        header = json.loads(source.read(8, n))
    except (ValueError, UnicodeDecodeError) as e:
        raise UnreadableFile(f"safetensors header is not valid JSON: {e}", kind="corrupt") from None
    if not isinstance(header, dict):
        raise UnreadableFile("safetensors header is not a JSON object", kind="corrupt")
    data_start = 8 + n
    meta = header.pop("__metadata__", None)
    if meta is not None:
        ckpt.details["metadata"] = meta
        if isinstance(meta, dict) and isinstance(meta.get("ckptdoctor.provenance"), str):
            try:
                ckpt.details["provenance"] = json.loads(meta["ckptdoctor.provenance"])
            except ValueError:
                pass
    ckpt.details["header_size"] = n
    root = OrderedDictValue()
    max_end = 0
    for name, info in header.items():
        code = info.get("dtype") if isinstance(info, dict) else None
        dt = dtypes.lookup(dtypes.SAFETENSORS_CODES.get(str(code), "")) if code else None
        if dt is None:
            raise UnreadableFile(f"safetensors tensor {name!r} has unknown dtype {code!r}", kind="corrupt")
        shape = tuple(int(x) for x in info.get("shape", []))
        begin, end = (int(x) for x in info.get("data_offsets", [0, 0]))
        numel = 1
        for s in shape:
            numel *= s
        if end < begin or (end - begin) != numel * dt.itemsize:
            raise UnreadableFile(f"safetensors tensor {name!r}: offsets {begin}..{end} do not match its shape",
                                 kind="corrupt")
        if data_start + end > source.size:
            raise TruncatedFile(f"safetensors tensor {name!r} ends at byte {data_start + end} beyond the file end",
                                offset=source.size, needed=data_start + end)
        max_end = max(max_end, end)
        st = Storage(key=name, dtype=dt, numel=numel, location="cpu", source=source, record=name,
                     _span=(data_start + begin, end - begin))
        stride = []
        acc = 1
        for s in reversed(shape):
            stride.append(acc)
            acc *= s
        root[name] = TensorRecord(dt, shape, tuple(reversed(stride)), st, 0, rebuild="safetensors")
    ckpt.root = root
    ckpt.details["tensors"] = len(root)
