"""torch 0.1.x tar checkpoints (built here byte by byte, per docs/formats.md §2) -> zip / safetensors."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import tarfile

import numpy as np

from ckptdoctor.fixes.apply import convert_file, fix_file
from fix.helpers import load, torch


def make_tar(path) -> dict[str, np.ndarray]:
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    b = np.array([1.5, -2.0, 3.25], dtype=np.float64)
    storages = io.BytesIO()
    storages.write(pickle.dumps(2, protocol=2))
    for key, arr, cls in ((101, w, torch.FloatStorage), (202, b, torch.DoubleStorage)):
        storages.write(pickle.dumps((key, "cpu", cls), protocol=2))
        storages.write(struct.pack("<q", arr.size) + arr.tobytes())
    storages.write(pickle.dumps([], protocol=2))  # no views
    tensors = io.BytesIO()
    tensors.write(pickle.dumps(3, protocol=2))
    # (tensor key, storage key, class, sizes, strides, offset): the weight, its transpose, the bias
    for key, skey, cls, sizes, strides, off in ((1, 101, torch.FloatTensor, (3, 4), (4, 1), 0),
                                                (2, 101, torch.FloatTensor, (4, 3), (1, 4), 0),
                                                (3, 202, torch.DoubleTensor, (2,), (1,), 1)):
        tensors.write(pickle.dumps((key, skey, cls), protocol=2))
        tensors.write(struct.pack("<i4x", len(sizes)) + struct.pack(f"<{len(sizes)}q", *sizes)
                      + struct.pack(f"<{len(sizes)}q", *strides) + struct.pack("<q", off))

    class Obj(pickle.Pickler):
        def persistent_id(self, o):
            return str(o.key) if isinstance(o, Ref) else None

    class Ref:
        def __init__(self, key):
            self.key = key

    obj = io.BytesIO()
    Obj(obj, protocol=2).dump(collections.OrderedDict([("w", Ref(1)), ("w_t", Ref(2)), ("b_tail", Ref(3)),
                                                       ("epoch", 7)]))
    sys_info = pickle.dumps({"protocol_version": 1000, "little_endian": True,
                             "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("sys_info", sys_info), ("pickle", obj.getvalue()), ("tensors", tensors.getvalue()),
                           ("storages", storages.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return {"w": w, "w_t": w.T, "b_tail": b[1:]}


def test_tar_to_zip_and_safetensors(tmp_path):
    want = make_tar(tmp_path / "old.tar")
    r = fix_file(str(tmp_path / "old.tar"), str(tmp_path / "new.pt"))
    assert r.input_format == "tar" and r.container == "zip" and r.verification.ok
    got = load(tmp_path / "new.pt")
    assert list(got) == ["w", "w_t", "b_tail", "epoch"] and got["epoch"] == 7
    for k, arr in want.items():
        assert np.array_equal(got[k].numpy(), arr), k
    assert got["w_t"].stride() == (1, 4)  # still a view of the weight's storage
    assert got["w"].untyped_storage().data_ptr() == got["w_t"].untyped_storage().data_ptr()
    convert_file(str(tmp_path / "old.tar"), str(tmp_path / "new.safetensors"))
    from safetensors.numpy import load_file

    st = load_file(str(tmp_path / "new.safetensors"))
    for k, arr in want.items():
        assert np.array_equal(st[k], arr), k
