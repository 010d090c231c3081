"""Every corpus file through ckptdoctor.load, against torch 2.13 wherever torch can load it."""

from __future__ import annotations

import hashlib
import importlib
import warnings

import pytest

import ckptdoctor
from ckptdoctor.errors import UnreadableFile
from ckptdoctor.torchio import ReplacedObjectWarning
from conftest import CORPUS, corpus_params, corpus_rows

from .deepcompare import assert_same

TORCHSCRIPT = ("torchscript-zip", "torchscript", "torchscript-json")
NOT_TORCH_FILES = ("lfs-pointer", "hdf5", "onnx", "other-zip", "truncated", "html", "npz")


def _path(row):
    return CORPUS / "files" / row["file"]


def torch_classes(path) -> list:
    """The torch classes a file names (what a user who trusts it would pass as allow=[...])."""
    with ckptdoctor.open(path) as ckpt:
        names = list(ckpt.globals)
    out = []
    for q in names:
        mod, _, name = q.rpartition(".")
        if not mod.startswith("torch.") or mod.startswith(("torch._utils", "torch._tensor", "torch.storage")):
            continue
        obj = getattr(importlib.import_module(mod), name, None)  # the reference side may import torch modules
        if isinstance(obj, type):
            out.append(obj)
    return out


def tensor_sha(torch, t) -> str:
    x = t.detach()
    if x.is_quantized:
        x = x.int_repr()
    x = x.resolve_conj().resolve_neg().contiguous().reshape(-1)
    return hashlib.sha256(x.view(torch.uint8).numpy().tobytes()).hexdigest()


def quiet_torch_load(torch, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", **kw)


@pytest.mark.parametrize("row", corpus_params())
def test_corpus_file_loads_like_torch(row, torch):
    """Files torch 2.13 loads: an identical result (classes torch needs are passed as allow=[...])."""
    path = _path(row)
    if row["container"] in NOT_TORCH_FILES:
        with pytest.raises(UnreadableFile):
            ckptdoctor.load(path, map_location="cpu")
        return
    if row["container"] in TORCHSCRIPT or row["torch2.13_full"] != "ok":
        pytest.skip("torch.load does not return plain data for this file: see test_corpus_file_loads_as_documented")
    ref = quiet_torch_load(torch, path, weights_only=False)
    allow = torch_classes(path) if row["torch2.13_weights_only"] != "ok" else []
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplacedObjectWarning)
        got = ckptdoctor.load(path, map_location="cpu", allow=allow)
    assert_same(got, ref)


BLOCKED = [r for r in corpus_rows() if r["torch2.13_weights_only"] != "ok" and r["container"] not in NOT_TORCH_FILES]


@pytest.mark.parametrize("row", [pytest.param(r, id=r["file"]) for r in BLOCKED] or corpus_params()[:1])
def test_corpus_file_loads_as_documented(row, torch):
    """Files torch.load refuses by default: data only, anything replaced named in one warning."""
    if row is None:
        pytest.skip("no corpus")
    path = _path(row)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ckptdoctor.load(path, map_location="cpu")
    replaced = [str(w.message) for w in caught if issubclass(w.category, ReplacedObjectWarning)]
    with ckptdoctor.open(path) as ckpt:
        needs_code = [g for g in ckpt.globals if not g.startswith(("torch._utils", "collections.", "numpy.",
                                                                    "_codecs", "torch.", "__builtin__"))
                      or g.startswith(("torch.nn.", "torch.optim."))]
        fmt = ckpt.format
    if fmt in ("torchscript", "torchscript-json"):
        assert len(replaced) == 1 and "TorchScript module" in replaced[0] and "state_dict()" in replaced[0]
    elif needs_code:
        assert len(replaced) == 1, replaced
        assert any(g.rsplit(".", 1)[1] in replaced[0] for g in needs_code), (needs_code, replaced)
    else:  # e.g. numpy scalars: torch's weights_only refuses them, but nothing needed replacing
        assert replaced == []
        assert_same(got, quiet_torch_load(torch, path, weights_only=False))
        return
    # the replaced results hold every tensor, bit for bit
    if fmt == "torchscript" or (row["torch2.13_full"] == "ok" and fmt != "torchscript-json"):
        full = quiet_torch_load(torch, path, weights_only=False)
        if isinstance(full, torch.nn.Module):  # whole model or TorchScript: we return its state_dict()
            ref = full.state_dict()
            assert_same(dict(got) if fmt == "torchscript" else got, dict(ref) if fmt == "torchscript" else ref)
        return
    # torch cannot load it at all: the core reader's view of the same tensors is the reference
    with ckptdoctor.open(path) as ckpt:
        want = {p.removeprefix("state_dict."): t.sha256() for p, t in ckpt.tensors()}
    assert {k: tensor_sha(torch, v) for k, v in got.items()} == want


def test_cuda_storages_need_map_location_like_torch(torch):
    path = CORPUS / "files" / "richzhang__PerceptualSimilarity__alex.pth"
    if not path.exists() or torch.cuda.is_available():
        pytest.skip("needs the corpus and a CPU-only torch")
    with pytest.raises(RuntimeError, match="map_location"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.load(path)
    with pytest.raises(RuntimeError, match="map_location"):
        ckptdoctor.load(path)
    for ml in ("cpu", torch.device("cpu"), {"cuda:0": "cpu"}, lambda s, loc: s):
        assert_same(ckptdoctor.load(path, map_location=ml), quiet_torch_load(torch, path))


def test_whole_model_rebuilt_for_a_trusted_class(torch):
    """A whole-model pickle of a __main__ class torch cannot find: allow=[YourClass] rebuilds it."""
    path = CORPUS / "files" / "kamaalg__qSound__entire_model.pth"
    if not path.exists():
        pytest.skip("needs the corpus")

    class FeedforwardNN(torch.nn.Module):  # stands in for the user's own definition
        def forward(self, x):
            return self.fc3(self.relu(self.fc2(self.relu(self.fc1(x)))))

    nn = torch.nn
    model = ckptdoctor.load(path, allow=[FeedforwardNN, nn.Linear, nn.ReLU, nn.Dropout])
    assert type(model) is FeedforwardNN
    sd = ckptdoctor.load(path)
    assert_same(model.state_dict(), sd)
    assert model(torch.ones(1, model.fc1.in_features)).shape[0] == 1
