"""Small generated checkpoints covering what torch.save can write (kept tiny: 2 shared cores)."""

from __future__ import annotations

import argparse
import collections
import io
import pathlib
import pickle
import struct
import tarfile
import warnings
import zipfile
from typing import Any

import numpy as np

# dtypes the legacy (non-zip) format can hold: the ones with a typed storage class
LEGACY_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
                 "complex64", "complex128")
ZIP_ONLY_DTYPES = ("complex32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
                   "float8_e8m0fnu", "float4_e2m1fn_x2", "uint16", "uint32", "uint64", "bits8", "bits16",
                   "bits1x8", "bits2x4", "bits4x2")


def _rand_bytes_tensor(torch: Any, dtype: Any, shape: tuple[int, ...], seed: int) -> Any:
    """A tensor of `dtype` with random bit patterns (every dtype, even ones without arithmetic)."""
    g = torch.Generator().manual_seed(seed)
    n = 1
    for s in shape:
        n *= s
    raw = torch.randint(0, 256, (n * dtype.itemsize,), dtype=torch.uint8, generator=g)
    if dtype == torch.bool:
        return (raw[:n] & 1).bool().reshape(shape)
    return raw.view(dtype).reshape(shape)


def dtypes_case(torch: Any, legacy: bool) -> dict:
    names = LEGACY_DTYPES if legacy else LEGACY_DTYPES + ZIP_ONLY_DTYPES
    out = {}
    for i, name in enumerate(names):
        dt = getattr(torch, name)
        out[name] = _rand_bytes_tensor(torch, dt, (3, 4), i)
        out[name + ".scalar"] = _rand_bytes_tensor(torch, dt, (), 100 + i)
        out[name + ".t"] = out[name].t()  # a non-contiguous view sharing the storage
    return out


def views_case(torch: Any) -> dict:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {
        "base": base, "row": base[1], "col": base[:, 2], "t": base.t(), "narrow": base.narrow(1, 2, 3),
        "step": base[::2, ::3], "expand": torch.ones(3, 1).expand(3, 4), "scalar": torch.tensor(3.5),
        "empty": torch.empty(0, 5), "empty_view": base[4:],
        "channels_last": torch.arange(120.).reshape(2, 3, 4, 5).to(memory_format=torch.channels_last),
        "tail_of_other": torch.arange(10, dtype=torch.int64)[7:],
    }


def shared_case(torch: Any) -> dict:
    w = torch.randn(5, 3, generator=torch.Generator().manual_seed(3))
    b = torch.zeros(7)
    return {"enc.weight": w, "dec.weight": w, "list": [w, b[2:], b], "tuple": (b[:3], w.t()),
            "half_a": b[:4], "half_b": b[4:]}


def params_case(torch: Any) -> dict:
    p = torch.nn.Parameter(torch.randn(3, 2))
    frozen = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    tagged = torch.nn.Parameter(torch.zeros(4))
    tagged.tag = "tied"
    tagged.extra = (1, 2.5)
    leaf = torch.randn(2, 2).requires_grad_()
    attrs = torch.arange(3.)
    attrs.label = "positions"
    attrs.shape_hint = (3,)
    return {"p": p, "frozen": frozen, "tagged": tagged, "leaf": leaf, "attrs": attrs, "again": p, "view": p.data[1]}


def quantized_case(torch: Any) -> dict:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 6, generator=g)
    scales = torch.rand(4, generator=g) + 0.05
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {
            "qint8": torch.quantize_per_tensor(x, 0.05, 3, torch.qint8),
            "quint8": torch.quantize_per_tensor(x, 0.1, 128, torch.quint8),
            "qint32": torch.quantize_per_tensor(x, 0.001, -5, torch.qint32),
            "per_channel": torch.quantize_per_channel(x, scales.double(), torch.randint(-3, 3, (4,), generator=g),
                                                      0, torch.qint8),
            "per_channel_axis1": torch.quantize_per_channel(x, torch.rand(6, generator=g).double() + 0.1,
                                                            torch.zeros(6, dtype=torch.long), 1, torch.quint8),
            "float_qparams": torch.quantize_per_channel(x, scales, torch.randn(4, generator=g), 0, torch.quint8),
            "quint4x2": torch.quantize_per_channel(x, scales, torch.zeros(4), 0, torch.quint4x2),
        }
        out["q_t"] = out["qint8"].t()
    return out


def sparse_case(torch: Any) -> dict:
    dense = torch.tensor([[0., 1, 0, 2], [3, 0, 0, 0], [0, 0, 4, 5], [0, 6, 0, 0]])
    idx = torch.tensor([[0, 2, 0], [1, 3, 1]])
    return {
        "coo": dense.to_sparse(),
        "coo_uncoalesced": torch.sparse_coo_tensor(idx, torch.tensor([1., 2, 3]), (3, 4)),
        "csr": dense.to_sparse_csr(), "csc": dense.to_sparse_csc(),
        "bsr": dense.to_sparse_bsr((2, 2)), "bsc": dense.to_sparse_bsc((2, 2)),
    }


def complex_bits_case(torch: Any) -> dict:
    g = torch.Generator().manual_seed(9)
    z = torch.randn(3, 2, dtype=torch.complex64, generator=g)
    w = torch.randn(4, dtype=torch.complex128, generator=g)
    return {"z": z, "conj": z.conj(), "conj_view": z[1].conj(), "neg": w.conj().imag}


def containers_case(torch: Any) -> dict:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    od = collections.OrderedDict(a=1, b=[2, 3])
    od.note = "custom attribute"
    t = torch.ones(2)
    return {
        "nested": [1, (2, 3.5, None, float("nan"), -0.0), {"x": {"y": [t, (t,)]}}],
        "set": {1, 2, "three"}, "frozenset": frozenset({"a", 4}), "bytes": b"\x00\xff", "bytearray": bytearray(b"xy"),
        "complex": 1.5 - 2j, "slice": slice(1, 9, 2), "big_int": 1 << 70, "unicode": "naïve ✓",
        "od": od, "state_dict": model.state_dict(), "tuple_keys": {(1, "a"): "v", 2.5: None, None: 0},
        "empty": {"list": [], "dict": {}, "tuple": (), "od": collections.OrderedDict()},
        "self_ref_list": _loop(),
    }


def _loop() -> list:
    loop: list = [1]
    loop.append(loop)
    return loop


def numpy_case(torch: Any) -> dict:
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32), "i64": np.arange(6).reshape(2, 3),
        "fortran": np.asfortranarray(rng.standard_normal((3, 2))), "bool": np.array([True, False]),
        "big_endian": np.arange(4, dtype=">f4"), "zero_d": np.array(2.5), "empty": np.zeros((0, 3)),
        "strings": np.array(["ab", "c"]), "objects": np.array(["a", None, 3], dtype=object),
        "f64_scalar": np.float64(1.25), "i32_scalar": np.int32(-7), "bool_scalar": np.bool_(True),
        "f16_scalar": np.float16(0.5), "dtype": np.dtype("float32"), "dtype_be": np.dtype(">i2"),
        "with_tensor": [np.arange(3), torch.arange(3)],
    }


def torch_values_case(torch: Any) -> dict:
    return {
        "cpu": torch.device("cpu"), "cuda1": torch.device("cuda", 1), "dtype": torch.float32,
        "bf16": torch.bfloat16, "f8": torch.float8_e4m3fn, "size": torch.Size([2, 3]), "empty_size": torch.Size([]),
        "layout": torch.sparse_coo, "strided": torch.strided, "qscheme": torch.per_channel_affine,
        "meta": torch.empty(3, 4, device="meta"), "meta_grad": torch.empty(2, device="meta", requires_grad=True),
    }


def namespace_case(torch: Any) -> dict:
    args = argparse.Namespace(lr=0.1, layers=[64, 64], name="run-1", nested=argparse.Namespace(seed=3),
                              device=torch.device("cpu"))
    return {"args": args, "epoch": 3, "weights": {"w": torch.ones(2)}}


def stdlib_case(torch: Any) -> dict:
    dd = collections.defaultdict(list)
    dd["a"].append(1)
    return {"defaultdict": dd, "counter": collections.Counter("abca"), "path": pathlib.PosixPath("/tmp/x.pt")}


def nested_tensor_case(torch: Any) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nt = torch.nested.nested_tensor([torch.arange(6.).reshape(2, 3), torch.ones(4, 3)])
    return {"nt": nt}


def storages_case(torch: Any) -> dict:
    t = torch.arange(6.)
    u = torch.arange(4, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage is deprecated, but files hold them
        return {"t": t, "typed": t.storage(), "untyped": u.untyped_storage(), "u": u}


CASES = {
    "dtypes": dtypes_case, "views": views_case, "shared": shared_case, "params": params_case,
    "quantized": quantized_case, "sparse": sparse_case, "complex_bits": complex_bits_case,
    "containers": containers_case, "numpy": numpy_case, "torch_values": torch_values_case,
    "namespace": namespace_case, "stdlib": stdlib_case, "nested_tensor": nested_tensor_case,
    "storages": storages_case,
}

def build(name: str, torch: Any, legacy: bool) -> Any:
    fn = CASES[name]
    return fn(torch, legacy) if name == "dtypes" else fn(torch)


def big_endian_copy(torch: Any, src: pathlib.Path, dst: pathlib.Path) -> None:
    """Rewrite a torch zip checkpoint as a big-endian machine would have written it.

    Every storage record is byte-swapped per element (the tensors' dtype) and the
    ``byteorder`` record says ``big``; records are stored, as torch writes them.
    """
    import ckptdoctor
    from ckptdoctor.model import TensorRecord

    elem = {}

    def note(t: Any) -> None:
        if isinstance(t, TensorRecord):
            if t.storage is not None and t.layout == "strided":
                elem[t.storage.record] = t.dtype
            for part in list((t.quantizer or {}).values()) + list(t.sparse_parts or ()):
                note(part)

    with ckptdoctor.open(src) as ckpt:
        for _, t in ckpt.tensors():
            note(t)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif info.filename in elem:
                dt = elem[info.filename]
                size = dt.itemsize // 2 if dt.name.startswith("complex") else dt.itemsize
                if size > 1:
                    fmt = {2: "H", 4: "I", 8: "Q"}[size]
                    n = len(data) // size
                    data = struct.pack(f">{n}{fmt}", *struct.unpack(f"<{n}{fmt}", data))
            zout.writestr(info.filename, data)


class _StorageRef:
    """Pickles as a persistent id (see the picklers below)."""

    def __init__(self, pid: Any) -> None:
        self.pid = pid


class _TensorCall:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, torch: Any, ref: _StorageRef, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (ref, offset, size, stride, False, collections.OrderedDict())
        self.fn = torch._utils._rebuild_tensor_v2

    def __reduce__(self):
        return (self.fn, self.args)


def _pickler(buf: Any) -> pickle.Pickler:
    class P(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return obj.pid if isinstance(obj, _StorageRef) else None

    return P(buf, protocol=2)


def make_legacy_with_views(torch: Any, path: Any) -> None:
    """A legacy-stream file whose tensors use storage *views* (pre-1.0 torch wrote these)."""
    root = np.arange(10, dtype=np.float32)
    other = np.array([7, 8, 9], dtype=np.int64)
    v1 = _StorageRef(("storage", torch.FloatStorage, "100", "cpu", 10, ("101", 2, 5)))  # root[2:7]
    v2 = _StorageRef(("storage", torch.FloatStorage, "100", "cpu", 10, ("102", 6, 4)))  # root[6:10]
    whole = _StorageRef(("storage", torch.FloatStorage, "100", "cpu", 10, None))
    ints = _StorageRef(("storage", torch.LongStorage, "200", "cpu", 3, None))
    obj = collections.OrderedDict([
        ("whole", _TensorCall(torch, whole, 0, (10,), (1,))),
        ("v1", _TensorCall(torch, v1, 1, (2, 2), (2, 1))),
        ("v2", _TensorCall(torch, v2, 0, (4,), (1,))),
        ("v1_again", _TensorCall(torch, v1, 0, (5,), (1,))),
        ("ints", _TensorCall(torch, ints, 0, (3,), (1,))),
    ])
    buf = io.BytesIO()
    for head in (0x1950A86A20F9469CFC6C, 1001,
                 {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}):
        pickle.dump(head, buf, protocol=2)
    _pickler(buf).dump(obj)
    pickle.dump(["100", "200"], buf, protocol=2)
    for arr in (root, other):
        buf.write(struct.pack("<q", arr.size) + arr.tobytes())
    pathlib.Path(path).write_bytes(buf.getvalue())


def make_tar(torch: Any, path: Any) -> None:
    """A torch 0.1.x tar checkpoint (docs/formats.md §2), with a storage view and tensors sharing storages."""
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    b = np.array([1.5, -2.0, 3.25, 4.0], dtype=np.float64)
    storages = io.BytesIO()
    pickle.dump(2, storages, protocol=2)
    for key, arr, cls in ((101, w, torch.FloatStorage), (202, b, torch.DoubleStorage)):
        pickle.dump((key, "cpu", cls), storages, protocol=2)
        storages.write(struct.pack("<q", arr.size) + arr.tobytes())
    pickle.dump([(303, 202, 1, 2)], storages, protocol=2)  # view 303 = storage 202[1:3]
    tensors = io.BytesIO()
    rows = ((1, 101, torch.FloatTensor, (3, 4), (4, 1), 0), (2, 101, torch.FloatTensor, (4, 3), (1, 4), 0),
            (3, 202, torch.DoubleTensor, (2,), (1,), 1), (4, 303, torch.DoubleTensor, (2,), (1,), 0))
    pickle.dump(len(rows), tensors, protocol=2)
    for key, skey, cls, sizes, strides, off in rows:
        pickle.dump((key, skey, cls), tensors, protocol=2)
        tensors.write(struct.pack("<i4x", len(sizes)) + struct.pack(f"<{len(sizes)}q", *sizes)
                      + struct.pack(f"<{len(sizes)}q", *strides) + struct.pack("<q", off))
    obj = io.BytesIO()
    _pickler(obj).dump(collections.OrderedDict([("w", _StorageRef("1")), ("w_t", _StorageRef("2")),
                                                ("b_tail", _StorageRef("3")), ("b_view", _StorageRef("4")),
                                                ("epoch", 7)]))
    sys_info = pickle.dumps({"protocol_version": 1000, "little_endian": True,
                             "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("sys_info", sys_info), ("pickle", obj.getvalue()), ("tensors", tensors.getvalue()),
                           ("storages", storages.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
