"""Generated benign fixtures: what training code really saves (needs torch; safetensors/scipy when present).

state_dicts in every dtype and container, optimizer / scheduler / scaler states,
training checkpoints with argparse.Namespace, numpy arrays, scalars and RNG
states, whole-model pickles (torch.nn and user classes, hooks, partial
activations), TorchScript, pickle.dump of tensors (nested torch.load bytes),
plain pickles of stdlib data types in every protocol, and look-alikes of
Lightning/OmegaConf/yacs checkpoints spelled the way those libraries pickle.
``write_benign(dir)`` returns the paths. Nothing here is malicious.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import decimal
import fractions
import functools
import pathlib
import pickle
import random
import types
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from security.pickleasm import Asm, Call, G


def _fixtures() -> dict[str, Callable[[Path], None]]:
    import numpy as np
    import torch
    from torch import nn

    from security import benign_models as bm

    torch.manual_seed(0)

    def sd(dtype=torch.float32):
        m = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
        return {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in m.state_dict().items()}

    def opt_state(cls, **kw):
        m = nn.Linear(3, 2)
        o = cls(m.parameters(), **kw)
        m(torch.randn(5, 3)).sum().backward()
        o.step()
        return m, o

    def save(obj, **kw):
        return lambda p: torch.save(obj, p, **kw)

    def training_ckpt():
        m, o = opt_state(torch.optim.Adam, lr=1e-3)
        sched = torch.optim.lr_scheduler.StepLR(o, 10)
        args = argparse.Namespace(lr=1e-3, epochs=90, arch="resnet18", data=pathlib.PosixPath("/data/imagenet"),
                                  gpu=None, seed=42)
        return {
            "epoch": 12, "arch": "resnet18", "state_dict": m.state_dict(), "optimizer": o.state_dict(),
            "scheduler": sched.state_dict(), "args": args, "best_acc1": np.float64(71.3),
            "np_rng": np.random.get_state(), "py_rng": random.getstate(), "torch_rng": torch.get_rng_state(),
            "history": np.linspace(0, 1, 5, dtype=np.float32), "loss_hist": [np.float32(0.5), np.int64(3)],
            "time": datetime.datetime(2024, 1, 2, 3, 4, 5), "tag": uuid.UUID(int=7),
        }

    def whole_model():
        net = bm.Net()
        net.register_forward_hook(bm.log_hook)
        return net

    def weight_norm_model():
        lin = nn.Linear(4, 4)
        return nn.utils.weight_norm(lin)

    def attr_tensor():
        t = torch.arange(4.0)
        t.note = "calibrated"  # Python attributes: pickled through torch._tensor._rebuild_from_type_v2
        p = nn.Parameter(torch.ones(2))
        p.tag = {"frozen": True}
        return {"t": t, "p": p}

    def misc_tensors():
        q = torch.quantize_per_tensor(torch.randn(4), 0.1, 10, torch.quint8)
        return {
            "coo": torch.randn(3, 3).to_sparse(), "csr": torch.randn(3, 3).to_sparse_csr(), "q": q,
            "c": torch.randn(2, dtype=torch.complex64), "bf": torch.randn(2, dtype=torch.bfloat16),
            "b": torch.tensor([True, False]), "i8": torch.tensor([1, -1], dtype=torch.int8),
            "f8": torch.randn(2).to(torch.float8_e4m3fn), "view": torch.arange(10.0)[2:5],
            "size": torch.Size([2, 3]), "dtype": torch.float16, "device": torch.device("cpu"),
        }

    def scripted(trace: bool):
        m = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
        return lambda p: (torch.jit.trace(m, torch.randn(1, 3)) if trace else torch.jit.script(m)).save(str(p))

    def pickled_tensor(proto):
        return lambda p: p.write_bytes(pickle.dumps({"w": torch.randn(3), "step": 1}, protocol=proto))

    def plain(proto):
        value = {
            "od": collections.OrderedDict(a=1), "dd": collections.defaultdict(list, a=[1]),
            "ctr": collections.Counter("aab"), "dq": collections.deque([1, 2]), "set": {1, 2},
            "fs": frozenset({3}), "c": 1 + 2j, "b": b"\x00\x01", "ba": bytearray(b"xy"), "sl": slice(1, 5, 2),
            "rng": range(3), "dt": datetime.date(2024, 5, 1), "td": datetime.timedelta(seconds=5),
            "dec": decimal.Decimal("1.5"), "fr": fractions.Fraction(1, 3), "path": pathlib.PurePosixPath("/x"),
            "ns": types.SimpleNamespace(a=1), "cfg": bm.TrainConfig(), "pt": bm.Point(1.0, 2.0),
            "stage": bm.Stage.EVAL, "none": None, "f": 0.5, "big": 2**70, "s": "text",
        }
        return lambda p: p.write_bytes(pickle.dumps(value, protocol=proto))

    def numpy_things():
        rng = np.random.default_rng(1)
        return {"arr": np.arange(6, dtype=np.int16).reshape(2, 3), "f": np.float16(1.5), "gen": rng,
                "rs": np.random.RandomState(3), "rec": np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
                "m": np.ma.masked_array([1, 2], mask=[0, 1]), "str": np.str_("x")}

    out: dict[str, Callable[[Path], None]] = {
        "sd-fp32.pt": save(sd()), "sd-fp16.pt": save(sd(torch.float16)), "sd-bf16.pt": save(sd(torch.bfloat16)),
        "sd-fp64-legacy.pt": save(sd(torch.float64), _use_new_zipfile_serialization=False),
        "sd-proto4.pt": save(sd(), pickle_protocol=4), "sd-legacy-proto4.pt":
            save(sd(), _use_new_zipfile_serialization=False, pickle_protocol=4),
        "sd-ddp-prefix.pth": save({f"module.{k}": v for k, v in sd().items()}),
        "sd-empty.pt": save(collections.OrderedDict()),
        "opt-sgd.pt": save(opt_state(torch.optim.SGD, lr=0.1, momentum=0.9)[1].state_dict()),
        "opt-adam.pt": save(opt_state(torch.optim.Adam, lr=1e-3)[1].state_dict()),
        "opt-adamw-legacy.pt": save(opt_state(torch.optim.AdamW, lr=1e-3)[1].state_dict(),
                                    _use_new_zipfile_serialization=False),
        "scaler.pt": save(torch.amp.GradScaler("cpu").state_dict()),
        "train-ckpt.pth.tar": save(training_ckpt()),
        "train-ckpt-legacy.pth.tar": save(training_ckpt(), _use_new_zipfile_serialization=False),
        "whole-model.pth": save(whole_model()),
        "whole-model-legacy.pth": save(whole_model(), _use_new_zipfile_serialization=False),
        "whole-bound-method-hook.pt": save(bm.HookedNet()),
        "whole-sequential.pt": save(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.LSTM(4, 4))),
        "whole-weight-norm.pt": save(weight_norm_model()),
        "whole-optimizer.pt": save(opt_state(torch.optim.SGD, lr=0.1)[1]),
        "attrs-tensor.pt": save(attr_tensor()),
        "misc-tensors.pt": save(misc_tensors()),
        "numpy-things.pt": save(numpy_things()),
        "numpy-things-legacy.pt": save(numpy_things(), _use_new_zipfile_serialization=False),
        "scripted.pt": scripted(False), "traced.pt": scripted(True),
        "pickled-tensor-p2.pkl": pickled_tensor(2), "pickled-tensor-p4.pkl": pickled_tensor(4),
        "list-of-tensors.pt": save([torch.randn(2), (torch.ones(1), {"k": torch.zeros(3)})]),
        "shared-storage.pt": save({"a": (base := torch.randn(8)), "b": base[2:6], "c": base.view(2, 4)}),
    }
    for proto in range(0, 6):
        out[f"plain-p{proto}.pkl"] = plain(proto)
    out.update(_lookalikes())
    try:
        from safetensors.torch import save_file

        out["weights.safetensors"] = lambda p: save_file(sd(), str(p))
    except ImportError:  # pragma: no cover
        pass
    try:
        import scipy.sparse as sp

        out["scipy-sparse.pt"] = save({"adj": sp.random(4, 4, density=0.5, format="csr", random_state=0)})
    except ImportError:  # pragma: no cover
        pass
    out["functools-partial.pkl"] = lambda p: p.write_bytes(pickle.dumps(functools.partial(max, 3), protocol=2))
    return out


def _lookalikes() -> dict[str, Callable[[Path], None]]:
    """Checkpoints of libraries not installed here, spelled as they pickle (classes by name, state by BUILD)."""

    def omegaconf_node(value: Any) -> Call:
        return Call(G("omegaconf.nodes", "AnyNode"), (), how="newobj")

    def write(asm_value: Any, zip_: bool = True) -> Callable[[Path], None]:
        from security.malicious import torch_zip

        def w(p: Path) -> None:
            a = Asm(2)
            a.value(asm_value)
            data = a.stop()
            p.write_bytes(torch_zip(data) if zip_ else data)

        return w

    meta = Call(G("omegaconf.base", "ContainerMetadata"), (), how="newobj")
    dictconfig = Call(G("omegaconf.dictconfig", "DictConfig"), (), how="newobj")
    attr = Call(G("pytorch_lightning.utilities.parsing", "AttributeDict"), ())
    cfgnode = Call(G("yacs.config", "CfgNode"), ())
    return {
        "lightning-omegaconf.ckpt": write({"epoch": 3, "global_step": 300, "pytorch-lightning_version": "2.1.0",
                                           "state_dict": Call(G("collections", "OrderedDict"), ()),
                                           "hyper_parameters": {"cfg": dictconfig, "meta": meta,
                                                                "hp": attr, "node": omegaconf_node(1)}}),
        "yacs-config.pth": write({"cfg": cfgnode, "model": Call(G("collections", "OrderedDict"), ())}),
        "easydict-config.pkl": write({"args": Call(G("easydict", "EasyDict"), ())}, zip_=False),
        "hf-config.bin": write({"config": Call(G("transformers.models.bert.configuration_bert", "BertConfig"), (),
                                               how="newobj")}),
    }


def write_benign(directory: str | Path) -> list[Path]:
    import warnings

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, make in _fixtures().items():
            p = d / name
            make(p)
            out.append(p)
    return out


__all__ = ["write_benign"]
