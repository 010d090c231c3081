"""Generated fixtures: small torch files covering dtypes, views, sharing, quantized, sparse, plain data."""

from __future__ import annotations

import collections
import math
import warnings
from pathlib import Path

import pytest


def fixture_objects(torch) -> dict:
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    objs: dict = {}

    dt = collections.OrderedDict()
    for name in ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
                 "bool", "complex64"):
        d = getattr(torch, name)
        dt[name] = (r(3, 2) * 10).to(d) if not d.is_complex else torch.complex(r(3, 2), r(3, 2)).to(d)
    objs["dtypes"] = dt
    objs["complex128"] = {"c": torch.complex(r(2), r(2)).to(torch.complex128)}  # no safetensors code
    objs["new_dtypes"] = {
        "float8_e4m3fn": r(5).to(torch.float8_e4m3fn), "float8_e5m2": r(2, 2).to(torch.float8_e5m2),
        "uint16": torch.tensor([1, 2, 65535], dtype=torch.int32).to(torch.uint16),
        "uint32": torch.tensor([7, 2**31], dtype=torch.int64).to(torch.uint32),
        "uint64": torch.tensor([9], dtype=torch.int64).to(torch.uint64),
        "f8_view": r(4, 4).to(torch.float8_e4m3fn)[1:3, ::2],
    }
    base = r(4, 6)
    objs["views"] = {"base": base, "row": base[1], "col": base[:, 2], "t": base.t(), "block": base[1:3, 2:5],
                     "flat_tail": base.view(-1)[5:9], "expanded": r(1, 3).expand(4, 3)}
    x = r(8)
    objs["shared"] = {"a": x, "a_again": x, "half": x[:4], "as_2x4": x.view(2, 4), "list": [x, x[2:]]}
    objs["scalars"] = {"zero_dim": torch.tensor(3.5), "zero_dim_int": torch.tensor(7), "empty": torch.zeros(0, 3),
                       "one": torch.ones(1), "big_stride0": torch.zeros(3, 0, 5)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q = collections.OrderedDict()
        q["per_tensor_qint8"] = torch.quantize_per_tensor(r(4, 3), 0.05, 3, torch.qint8)
        q["per_tensor_quint8"] = torch.quantize_per_tensor(r(6), 0.1, 128, torch.quint8)
        q["per_tensor_qint32"] = torch.quantize_per_tensor(r(2, 2), 0.01, 0, torch.qint32)
        q["per_channel"] = torch.quantize_per_channel(r(3, 4), torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64),
                                                      torch.tensor([0, 1, 2]), 0, torch.qint8)
    objs["quantized"] = q
    p = torch.nn.Parameter(r(3))
    frozen = torch.nn.Parameter(r(2), requires_grad=False)
    leaf = r(2).requires_grad_()
    objs["params"] = {"param": p, "frozen": frozen, "leaf_grad": leaf, "plain": r(2)}
    c = torch.complex(r(3), r(3))
    objs["conj_neg"] = {"conj": c.conj(), "plain": c, "neg": torch._neg_view(r(3))}
    objs["plain_data"] = {
        "ints": [0, 1, 255, 256, 65535, 65536, -1, -(2**31), 2**31, 2**63, -(2**70), 10**30],
        "floats": [0.0, -0.5, 1e300, math.inf, -math.inf, math.nan],
        "text": ["", "a", "ü∂😀", "x" * 300],
        "bytes": [b"\x00\xffabc", b"z"],
        "none_bool": [None, True, False],
        "tuple": (1, (2, 3), (4, 5, 6, 7), ()),
        "set": {1, 2, 3},
        "nested": {"a": {"b": [{"c": 1}]}, 3: "int key", (1, 2): "tuple key"},
        "many": list(range(2500)),
        "bigdict": {f"k{i}": i for i in range(1500)},
        "complex": 1.5 - 2j,
        "dtype": torch.float16, "device": torch.device("cpu"),
    }
    sd = collections.OrderedDict([("w", r(2, 2)), ("b", r(2))])
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("sub", {"version": 2})])
    objs["ordered"] = {"sd": sd, "empty_od": collections.OrderedDict(), "od": collections.OrderedDict(a=1)}
    from fix.fixmodels import make_model

    objs["model_state_dict"] = make_model().state_dict()
    objs["meta"] = {"m": torch.empty(2, 3, device="meta"), "real": r(2)}
    objs["sparse"] = {"coo": torch.sparse_coo_tensor(torch.tensor([[0, 1, 2], [2, 0, 1]]), r(3), (3, 3)),
                      "csr": torch.tensor([[0.0, 1.0], [2.0, 0.0]]).to_sparse_csr()}
    return objs


NO_SAFETENSORS = {"sparse", "complex128", "meta"}  # refused with a one-line reason


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory, torch) -> dict:
    """name -> {"obj": object, "zip": path, "legacy": path}."""
    d = Path(tmp_path_factory.mktemp("fixtures"))
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, obj in fixture_objects(torch).items():
            z, leg = d / f"{name}.pt", d / f"{name}.legacy.pt"
            torch.save(obj, z)
            torch.save(obj, leg, _use_new_zipfile_serialization=False)
            out[name] = {"obj": obj, "zip": z, "legacy": leg}
    return out
