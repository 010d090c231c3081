"""torch.distributed.checkpoint folders: ``.metadata`` (a pickle) + ``*.distcp`` shards.

We read the metadata pickle with the non-executing VM and list every tensor's
dtype and global shape; tensor bytes stay in the shards.
"""

from __future__ import annotations

import os
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.formats.common import record_pickle, run_pickle
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, TensorRecord
from ckptdoctor.pickle.objects import Global, OrderedDictValue, PickledObject
from ckptdoctor.source import LocalSource


def looks_like_dcp(path: str) -> bool:
    return os.path.isfile(os.path.join(path, ".metadata"))


def _attrs(o: Any) -> dict:
    return o.attrs if isinstance(o, PickledObject) else (o if isinstance(o, dict) else {})


def read_dcp(path: str, limits: Limits) -> Checkpoint:
    src = LocalSource(os.path.join(path, ".metadata"))
    ckpt = Checkpoint(path=path, format="dcp", size=src.size, source=src)
    res = run_pickle(src.read(0, src.size), 0, limits=limits)
    record_pickle(ckpt, res, "object")
    md = _attrs(res.value)
    sdm = md.get("state_dict_metadata") or {}
    root = OrderedDictValue()
    for fqn, item in (sdm.items() if isinstance(sdm, dict) else []):
        a = _attrs(item)
        props = _attrs(a.get("properties"))
        dt_g = props.get("dtype")
        dt = dtypes.lookup(dt_g.name) if isinstance(dt_g, Global) else None
        size = a.get("size")
        if dt is not None and isinstance(size, tuple):
            stride, acc = [], 1
            for s in reversed(size):
                stride.append(acc)
                acc *= s
            root[str(fqn)] = TensorRecord(dt, tuple(size), tuple(reversed(stride)), None,
                                          rebuild="dcp", device_override="dcp-shard")
        else:
            root[str(fqn)] = item
    ckpt.root = root
    ckpt.details["shards"] = sorted(f for f in os.listdir(path) if f.endswith(".distcp"))
    return ckpt
