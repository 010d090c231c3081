"""Legacy TorchScript archives (torch 1.0-1.2): model.json + tensors/ + attributes.pkl.

Modern torch refuses these ("Legacy model format is not supported"); we read
them from the JSON description: every tensor's dims, strides, offset, type and
the record that holds its bytes.
"""

from __future__ import annotations

import json
from typing import Any

from ckptdoctor import dtypes
from ckptdoctor.errors import LimitExceeded, UnreadableFile
from ckptdoctor.formats.common import record_pickle, run_pickle
from ckptdoctor.formats.zipdir import ZipArchive
from ckptdoctor.formats.zipfmt import container_details
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, Storage, TensorRecord
from ckptdoctor.pickle.objects import OrderedDictValue
from ckptdoctor.walk import ScriptModuleValue

# caffe2 TensorProto.DataType names used in model.json (protobuf's JSON writes enum names; accept numbers too)
JSON_DTYPES = {
    "FLOAT": "float32", "DOUBLE": "float64", "FLOAT16": "float16", "INT64": "int64", "INT32": "int32",
    "INT16": "int16", "INT8": "int8", "UINT8": "uint8", "BYTE": "uint8", "UINT16": "uint16", "BOOL": "bool",
    "BFLOAT16": "bfloat16",
}
JSON_DTYPE_CODES = {1: "FLOAT", 2: "INT32", 3: "BYTE", 5: "BOOL", 6: "UINT8", 7: "INT8", 8: "UINT16", 9: "INT16",
                    10: "INT64", 12: "FLOAT16", 13: "DOUBLE"}
# torch 1.2 TensorDef.is_quantized: the base type names the quantized type (per-tensor affine only)
MODEL_JSON_LIMIT = 16 << 20
QUANTIZED = {"uint8": "quint8", "int8": "qint8", "int32": "qint32"}


def _tensor_dtype(t: dict[str, Any], i: int) -> dtypes.DType:
    raw = t.get("dataType", "FLOAT")
    name = str(raw)
    if isinstance(raw, int) or name.isdigit():
        name = JSON_DTYPE_CODES.get(int(raw), name)
    base = JSON_DTYPES.get(name)
    if base is not None and t.get("isQuantized"):
        base = QUANTIZED.get(base)
    dt = dtypes.lookup(base) if base else None
    if dt is None:
        q = " quantized" if t.get("isQuantized") else ""
        raise UnreadableFile(f"model.json tensor {i} has{q} data type {raw!r}, which is not a tensor type",
                             kind="corrupt")
    return dt


def _is_count(x: Any) -> bool:
    """A non-negative integer, as JSON or as the decimal string protobuf's JSON uses for int64."""
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return x >= 0
    return isinstance(x, str) and x.isdigit() and len(x) <= 19


def _check_entry(t: Any, i: int) -> None:
    """One ``tensors[i]`` entry of model.json: a dict with dims/strides (same length, <= 64) and an offset."""
    ok = isinstance(t, dict)
    if ok:
        dims, strides, offset = t.get("dims", []), t.get("strides", []), t.get("offset", 0)
        data = t.get("data", {})
        ok = (isinstance(dims, list) and isinstance(strides, list) and len(dims) == len(strides) <= 64
              and all(_is_count(x) for x in dims) and all(_is_count(x) for x in strides) and _is_count(offset)
              and isinstance(data, dict))
    if not ok:
        raise UnreadableFile(f"model.json tensor entry {i} is malformed: {t!r:.120}", kind="corrupt")


def read_torchscript_json(ckpt: Checkpoint, z: ZipArchive, limits: Limits) -> None:
    root = z.root
    ckpt.details.update(container_details(z))
    try:
        # 16 MiB of JSON is ~80k tensors; more would be a bomb (json.loads: ~4x in Python objects)
        model = json.loads(z.read(f"{root}/model.json", limit=MODEL_JSON_LIMIT))
    except ValueError as e:
        raise UnreadableFile(f"model.json is not valid JSON: {e}", kind="corrupt") from None
    if not isinstance(model, dict) or not isinstance(model.get("tensors", []), list):
        raise UnreadableFile("model.json is not a TorchScript model description (no tensor list)", kind="corrupt")
    ckpt.details["producer_version"] = model.get("producerVersion")
    ckpt.details["proto_version"] = model.get("protoVersion")
    storages: dict[str, Storage] = {}
    tensors: list[TensorRecord] = []
    for i, t in enumerate(model.get("tensors", [])):
        _check_entry(t, i)
        dt = _tensor_dtype(t, i)
        key = str(t.get("data", {}).get("key", f"tensors/{i}"))
        entry = z.by_name.get(f"{root}/{key}")
        if key not in storages:
            size = entry.usize if entry else 0
            st = Storage(key=key, dtype=dt, numel=size // dt.itemsize, location=str(t.get("device", "cpu")),
                         source=z.source, record=f"{root}/{key}")
            if entry is not None:
                st.locate = (lambda e=entry: z.span(e))
            storages[key] = st
        shape = tuple(int(x) for x in t.get("dims", []))
        stride = tuple(int(x) for x in t.get("strides", []))
        rec = TensorRecord(dt, shape, stride, storages[key], int(t.get("offset", 0)),
                           bool(t.get("requiresGrad", False)), rebuild="model.json")
        if rec.numel > limits.max_tensor_elements:
            raise LimitExceeded("tensor elements", limits.max_tensor_elements, rec.numel)
        if entry is not None and rec.numel and rec.extent() * dt.itemsize > entry.usize:
            raise UnreadableFile(f"model.json tensor {i} (shape {list(shape)}, {dt.name}) needs "
                                 f"{rec.extent() * dt.itemsize} bytes of {key}, which holds {entry.usize}: "
                                 f"the file is corrupt or hostile", kind="corrupt")
        if dt.quantized:
            rec.quantizer = {"qscheme": "per_tensor_affine", "scale": float(t.get("scale", 0.0)),
                             "zero_point": int(t.get("zeroPoint", 0))}
        tensors.append(rec)

    def module_sd(m: dict[str, Any], prefix: str, out: OrderedDictValue, depth: int = 0) -> None:
        if depth > 1000:
            return
        for p in m.get("parameters", []):
            idx = int(p.get("tensorId", -1))
            if 0 <= idx < len(tensors):
                t = tensors[idx]
                t.is_parameter = not p.get("isBuffer", False)
                out[prefix + p["name"]] = t
        for sub in m.get("submodules", []):
            module_sd(sub, f"{prefix}{sub.get('name')}.", out, depth + 1)

    sd = OrderedDictValue()
    main = model.get("mainModule", {})
    module_sd(main, "", sd)
    attrs = None
    aname = f"{root}/attributes.pkl"
    if aname in z.by_name:
        res = run_pickle(z.read(aname), 0, limits=limits)
        record_pickle(ckpt, res, "attributes.pkl")
        attrs = res.value
    ckpt.details["module_class"] = main.get("name")
    ckpt.root = ScriptModuleValue(str(main.get("name")), sd, raw=model, attributes={"attributes": attrs})
