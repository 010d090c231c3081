"""``*.index.json`` of a sharded checkpoint (Hugging Face style): names each tensor's shard file."""

from __future__ import annotations

import json

from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint


def read_sharded_index(ckpt: Checkpoint, source, limits: Limits) -> None:
    doc = json.loads(source.read(0, source.size))
    weight_map = doc.get("weight_map", {})
    ckpt.details["shards"] = sorted(set(map(str, weight_map.values())))
    ckpt.details["metadata"] = doc.get("metadata")
    ckpt.details["tensor_names"] = len(weight_map)
    ckpt.root = {"weight_map": dict(weight_map)}
