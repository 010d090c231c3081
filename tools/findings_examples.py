"""Regenerate docs/findings.md: run ``ckptdoctor check`` on real files that trigger every finding id and
render one example per id (tools/findings_render.py).

Run: python tools/findings_examples.py   (needs the test extra: torch, safetensors; and ../shared/corpus)
Files are written here by torch (some edited byte-wise, e.g. a global renamed) or taken from the corpus.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import pickle
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.serialization as ser

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tools")]

from findings_render import render  # noqa: E402

from ckptdoctor.check import Target, check  # noqa: E402
from ckptdoctor.rules import catalog  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus" / "files"
OD = b"ccollections\nOrderedDict\n"


def T(**kw) -> Target:  # noqa: N802 - reads like the class
    return Target.current(**kw)


class Files:
    def __init__(self, d: Path) -> None:
        self.d = d

    def save(self, name: str, obj, **kw) -> Path:
        p = self.d / name
        torch.save(obj, p, **kw)
        return p

    def edited(self, name: str, old: bytes, new: bytes) -> Path:
        p = self.save(name, {"w": torch.ones(2)}, _use_new_zipfile_serialization=False)
        p.write_bytes(p.read_bytes().replace(old, new, 1))
        return p

    def raw(self, name: str, data: bytes) -> Path:
        p = self.d / name
        p.write_bytes(data)
        return p

    def tagged(self, name: str, tag: str) -> Path:
        orig = ser.location_tag
        ser.location_tag = lambda storage: tag
        try:
            return self.save(name, {"w": torch.ones(2)})
        finally:
            ser.location_tag = orig


def cases(f: Files) -> list[tuple[Callable[[], Path], Target]]:
    from tests.fix.test_tar_input import make_tar

    def ts() -> Path:
        p = f.d / "ts.pt"
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), p)
        return p

    def tar() -> Path:
        make_tar(f.d / "old.tar")
        return f.d / "old.tar"

    def st() -> Path:
        from safetensors.torch import save_file

        save_file({"w": torch.ones(2)}, str(f.d / "m.safetensors"))
        return f.d / "m.safetensors"

    def conv() -> Path:
        c = torch.nn.Conv2d(1, 1, 1)
        del c.padding_mode
        return f.save("conv.pt", torch.nn.Sequential(c))

    def bn(meta: bool) -> Path:
        sd = torch.nn.Sequential(torch.nn.BatchNorm1d(2)).state_dict()
        del sd["0.num_batches_tracked"]
        if meta:
            sd._metadata = {"": {"version": 1}, "0": {"version": 2}}
            return f.save("bn2.pt", sd)
        return f.save("bn3.pt", dict(sd))

    def user_code() -> Path:
        (f.d / "src/models").mkdir(parents=True, exist_ok=True)
        (f.d / "src/models/__init__.py").write_text("")
        (f.d / "src/models/yolo.py").write_text("class Model:\n    pass\n")
        return f.edited("ext.pt", OD, b"cmodels.yolo\nModel\n")

    def dcp() -> Path:
        import torch.distributed.checkpoint as d

        d.save({"w": torch.ones(2)}, checkpoint_id=str(f.d / "dcp"))
        return f.d / "dcp"

    def index() -> Path:
        p = f.d / "model.safetensors.index.json"
        p.write_text(json.dumps({"metadata": {}, "weight_map": {"w": "model-00001.safetensors"}}))
        return p

    def pt2() -> Path:
        ep = torch.export.export(torch.nn.Linear(2, 2), (torch.ones(1, 2),))
        torch.export.save(ep, f.d / "m.pt2")
        return f.d / "m.pt2"

    def corrupt() -> Path:
        p = f.save("bad.pt", {"w": torch.ones(2)})
        d = bytearray(p.read_bytes())
        i = d.find(b"data.pkl") + 64
        d[i + 2 : i + 6] = b"\xf0\xf1\xf2\xf3"
        p.write_bytes(bytes(d))
        return p

    def corpus(name: str) -> Callable[[], Path]:
        return lambda: CORPUS / name

    cuda = [None]

    def cuda_file() -> Path:
        if cuda[0] is None:
            cuda[0] = f.tagged("cuda.pt", "cuda:1")
        return cuda[0]

    no_wo = {"weights_only": False}
    out: list[tuple[Callable[[], Path], Target]] = [
        (lambda: f.save("args.pt", {"w": torch.ones(2), "args": argparse.Namespace(lr=0.1)}), T(torch="2.6")),
        (lambda: f.edited("evil.pt", OD, b"csubprocess\nPopen\n"), T(torch="2.13")),
        (lambda: f.edited("evil2.pt", OD, b"cposix\nsystem\n"), T(torch="2.13")),
        (lambda: f.save("p4.pt", {"w": torch.ones(2)}, pickle_protocol=4), T(torch="2.6")),
        (lambda: f.save("dq.pt", {"d": collections.deque([1])}), T(torch="2.13")),
        (lambda: f.save("ns.pt", {"a": argparse.Namespace()}), T(torch="1.12", weights_only=True)),
        (corpus("IamMRM__personalGPT__entire_model.pth"), T(torch="2.13", **no_wo)),
        (user_code, T(torch="2.13", **no_wo)),
        (user_code, T(torch="2.13", python_path=(str(f.d / "src"),), **no_wo)),
        (lambda: f.edited("rm.pt", OD, b"ctorch.nn.modules.adaptive\nlog_softmax\n"), T(torch="2.13", **no_wo)),
        (conv, T(torch="1.1", **no_wo)),
        (lambda: f.save("np2.pt", {"acc": np.float64(0.5)}), T(torch="2.13", numpy="1.24.4", **no_wo)),
        (lambda: f.save("np.pt", {"acc": np.float64(0.5)}), Target(torch="2.13", **no_wo)),
        (lambda: f.save("npdt.pt", {"t": np.dtypes.Float64DType}), T(torch="2.13", numpy="1.24.4", **no_wo)),
        (lambda: f.edited("py2.pt", b"X\x01\x00\x00\x00w", b"U\x01\xff"), T(torch="2.13")),
        (lambda: f.edited("py2ok.pt", b"X\x01\x00\x00\x00w", b"U\x01w"), T(torch="2.13")),
        (lambda: f.save("u16.pt", {"w": torch.ones(2, dtype=torch.uint16)}), T(torch="2.1", **no_wo)),
        (lambda: f.save("u16z.pt", {"w": torch.ones(2, dtype=torch.uint16)}), Target(torch="1.12", **no_wo)),
        (lambda: f.save("u16l.pt", {"w": torch.ones(2, dtype=torch.uint16)}, _use_new_zipfile_serialization=False),
         T(torch="2.13")),
        (lambda: f.save("csr.pt", {"m": torch.ones(2, 2).to_sparse_csr()}), Target(torch="1.10", **no_wo)),
        (lambda: f.save("bn.pt", torch.nn.Sequential(torch.nn.BatchNorm1d(2)).state_dict(),
                        _use_new_zipfile_serialization=False), T(torch="0.4.0")),
        (lambda: bn(True), T(torch="2.13")),
        (lambda: bn(False), T(torch="2.13")),
        (lambda: f.save("dp.pt", torch.nn.DataParallel(torch.nn.Linear(2, 2)).state_dict()), T(torch="2.13")),
        (lambda: f.save("zip.pt", {"w": torch.ones(2)}), T(torch="1.4")),
        (lambda: f.save("zip3.pt", {"w": torch.ones(2)}), T(torch="1.3")),
        (lambda: f.save("eager.pt", {"w": torch.ones(2)}), T(torch="2.13", loader="torch.jit.load")),
        (ts, T(torch="2.13")),
        (ts, T(torch="2.13", **no_wo)),
        (corpus("abc3698__Libtorch_MNIST__mnist_cnn.pt"), T(torch="2.13")),
        (tar, T(torch="2.13")),
        (lambda: f.raw("plain.pkl", pickle.dumps({"a": 1}, protocol=2)), T(torch="2.13", **no_wo)),
        (st, T(torch="2.6")),
        (st, T(torch="2.13")),
        (lambda: f.raw("page.pt", b"<!DOCTYPE html><html></html>"), T(torch="2.13")),
        (lambda: f.raw("empty.pt", b""), T(torch="2.13")),
        (lambda: f.raw("rand.pt", b"\x07" + b"zzzz" * 16), T(torch="2.13")),
        (cuda_file, T(torch="2.13", device="cpu")),
        (cuda_file, T(torch="2.13", device="cuda:0")),
        (cuda_file, T(torch="2.13", map_location="cpu")),
        (lambda: f.tagged("mps.pt", "mps"), T(torch="2.13")),
        (dcp, T(torch="2.13")),
        (index, T(torch="2.13")),
        (pt2, T(torch="2.13")),
        (corrupt, T(torch="2.13")),
        (lambda: f.save("njt.pt", {"n": torch.nested.nested_tensor([torch.ones(2), torch.ones(3)],
                                                                      layout=torch.jagged)}), T(torch="2.13")),
        (corpus("stuartnankai__PyTorch-exercise__cnn.pkl"), T(torch="2.13")),
    ]
    for name in ("drexterman__Tiny_GPT__checkpoint.pth.tar", "ronvree__AlphaZero__checkpoint.pth.tar",
                 "ChengYuHsieh__explanation_robustness__test.pt", "guanidine__serverless-coldstart__a2c.pkl",
                 "txie-93__cgcnn__semi-metal-classification.pth.tar"):
        out.append((corpus(name), T(torch="2.13")))
    return out


def main() -> int:
    d = Path(tempfile.mkdtemp(prefix="ckd-findings-"))
    examples: dict[str, dict] = {}
    try:
        for make, target in cases(Files(d)):
            try:
                path = make()
                res = check(path, target)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"skipped a case: {e}", file=sys.stderr)
                continue
            for f in res.findings:
                if f.id in examples:
                    continue
                fix = None if f.fix is None else {k: v for k, v in (("summary", f.fix.summary),
                                                                     ("command", f.fix.command),
                                                                     ("python", f.fix.python)) if v}
                examples[f.id] = {"file": os.path.basename(str(path)), "target": target.describe(), "title": f.title,
                                  "explanation": f.explanation, "fix": fix, "blocks": f.blocks_load,
                                  "severity": f.severity.label, "torch_error": f.evidence.get("torch_error")}
        render(examples)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    mine = {fid for fid, (family, _desc) in catalog().items()
            if family in ("impostors", "container", "weights_only", "whole_model", "numpy", "py2", "dtypes",
                          "devices", "batchnorm", "producer")}
    missing = sorted(mine - set(examples))
    print(f"{len(mine) - len(missing)}/{len(mine)} finding ids have an example" + (f"; missing: {missing}"
                                                                                   if missing else ""))
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
