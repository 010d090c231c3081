"""torch.distributed.checkpoint folders: tensors and values read from the shards (no torch needed),
equal to what torch's own dcp_to_torch_save gives; malformed folders refused in one line."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pytest

import ckptdoctor
from ckptdoctor.errors import CkptdoctorError, UnreadableFile


@pytest.fixture(scope="module")
def dcp_folder(torch, tmp_path_factory) -> tuple[Path, dict]:
    import torch.distributed.checkpoint as dcp

    d = tmp_path_factory.mktemp("dcp") / "ckpt"
    g = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(4, 3, generator=g), "b": torch.ones(3, dtype=torch.bfloat16),
          "idx": torch.arange(5, dtype=torch.int64), "half": torch.randn(2, 2, generator=g).half(),
          "step": 7, "cfg": {"lr": 0.1, "name": "adam"},
          "model": {"layer": {"weight": torch.randn(3, 2, generator=g)}}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.distributed is disabled ... assuming a single process"
        dcp.save(sd, checkpoint_id=str(d))
    return d, sd


def sha(torch, t) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def test_tensors_and_values_come_from_the_shards(torch, dcp_folder):
    d, sd = dcp_folder
    with ckptdoctor.open(str(d)) as ckpt:
        assert ckpt.format == "dcp"
        got = dict(ckpt.tensors())
        want = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        want["model.layer.weight"] = sd["model"]["layer"]["weight"]
        assert set(got) == set(want)
        for k, t in got.items():
            assert (t.dtype.name, tuple(t.shape), t.device) == (str(want[k].dtype)[6:], tuple(want[k].shape), "cpu")
            assert t.sha256() == sha(torch, want[k])
        assert ckpt.root["step"] == 7
        assert dict(ckpt.root["cfg"]) == {"lr": 0.1, "name": "adam"}
        assert "sharded_tensors" not in ckpt.details


def test_convert_equals_torchs_dcp_to_torch_save(torch, dcp_folder, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from ckptdoctor.fixes.apply import convert_file

    d, _ = dcp_folder
    ref = tmp_path / "torch.pt"
    dcp_to_torch_save(str(d), str(ref))
    r = convert_file(str(d), str(tmp_path / "ours.pt"))
    assert r.written and r.verification.ok
    ours = torch.load(tmp_path / "ours.pt", weights_only=True)
    theirs = torch.load(ref, weights_only=True)
    assert list(ours) == list(theirs)
    assert same(torch, ours, theirs)
    assert same(torch, ckptdoctor.load(str(d)), theirs)


def same(torch, a, b) -> bool:
    if isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(b, dict):
        return isinstance(a, dict) and list(a) == list(b) and all(same(torch, a[k], b[k]) for k in b)
    return a == b


def copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_a_missing_shard_is_named(dcp_folder, tmp_path):
    d = copy_folder(dcp_folder[0], tmp_path / "c")
    for f in d.glob("*.distcp"):
        f.unlink()
    with pytest.raises(UnreadableFile, match="shard .* is missing") as e:
        ckptdoctor.open(str(d))
    assert e.value.kind == "truncated"


def test_a_truncated_shard_is_refused(dcp_folder, tmp_path):
    d = copy_folder(dcp_folder[0], tmp_path / "c")
    (shard,) = d.glob("*.distcp")
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CkptdoctorError):
        ckptdoctor.open(str(d))


def test_shard_names_cannot_leave_the_folder(dcp_folder, tmp_path):
    d = copy_folder(dcp_folder[0], tmp_path / "c")
    (shard,) = d.glob("*.distcp")
    name = shard.name.encode()
    evil = b"../" + name[3:]  # same length: the pickle stays well formed
    meta = (d / ".metadata").read_bytes()
    assert name in meta
    (d / ".metadata").write_bytes(meta.replace(name, evil))
    with pytest.raises(UnreadableFile, match="outside its folder"):
        ckptdoctor.open(str(d))


class _Payload:
    """Pickles as a call of os.system (torch.save records it; nothing runs until someone loads it)."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.canary}",))


def test_code_in_a_bytes_entry_is_reported_and_never_run(torch, tmp_path):
    """torch.distributed.checkpoint.load passes bytes entries to torch.load(weights_only=False):
    a payload there runs on every torch version. ckptdoctor reads it inertly and flags it."""
    import torch.distributed.checkpoint as dcp

    from ckptdoctor.check import Target, check
    from ckptdoctor.security import analyze_path

    canary = tmp_path / "canary"
    d = tmp_path / "evil"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dcp.save({"w": torch.ones(2), "extra": _Payload(canary)}, checkpoint_id=str(d))
    with ckptdoctor.open(str(d)) as ckpt:
        assert ckpt.root["extra"].qualname == "posix.system"
    res = check(str(d), Target(torch="2.13", weights_only=True))
    [dangerous] = [f for f in res.findings if f.id == "CKD-SEC-DANGEROUS"]
    assert dangerous.evidence["executed_by"] == "torch.distributed.checkpoint.load"
    assert analyze_path(str(d)).verdict == "dangerous"
    assert not canary.exists()


@pytest.mark.parametrize("folder", ["dcp_folder", "sharded_folder"])
def test_damaged_metadata_and_shards_give_clean_errors(folder, request, tmp_path):
    """Random byte damage to .metadata or a shard: a CkptdoctorError or a good read, nothing else."""
    import random

    src = request.getfixturevalue(folder)[0]
    rng = random.Random(7)
    names = [".metadata", *sorted(f.name for f in src.glob("*.distcp"))]
    originals = {n: (src / n).read_bytes() for n in names}
    for i in range(120):
        d = copy_folder(src, tmp_path / f"c{i}")
        target = names[i % len(names)]
        data = bytearray(originals[target])
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (d / target).write_bytes(bytes(data))
        try:
            with ckptdoctor.open(str(d)) as ckpt:
                for _p, t in ckpt.tensors():
                    if t.storage is not None:
                        t.sha256()
        except CkptdoctorError:
            pass


@pytest.fixture(scope="module")
def sharded_folder(torch, tmp_path_factory) -> tuple[Path, dict]:
    """A 2-rank save (two processes, gloo on loopback): tensors split into chunks across shards."""
    import socket
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("dcp2") / "ckpt"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    helper = Path(__file__).with_name("dcp_sharded.py")
    r = subprocess.run([sys.executable, str(helper), str(out), str(port)], capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        pytest.fail(f"could not write the sharded DCP folder: {r.stderr[-2000:]}")
    return out, torch.load(str(out) + ".full.pt", weights_only=True)


def test_sharded_tensors_are_put_back_together(torch, sharded_folder, tmp_path):
    """Chunks along dim 0 (even, uneven), dim 1 and a middle dim: every tensor equals the whole one
    bit for bit, without copying it into memory; convert writes what dcp_to_torch_save writes."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from ckptdoctor.fixes.apply import convert_file

    d, full = sharded_folder
    assert len(list(d.glob("*.distcp"))) == 2
    with ckptdoctor.open(str(d)) as ckpt:
        got = dict(ckpt.tensors())
        assert "sharded_tensors" not in ckpt.details
        for k, v in full.items():
            assert (got[k].dtype.name, tuple(got[k].shape), got[k].device) == (str(v.dtype)[6:], tuple(v.shape), "cpu")
            assert got[k].sha256() == sha(torch, v), k
        assert ckpt.root["step"] == 11
    ref = tmp_path / "torch.pt"
    dcp_to_torch_save(str(d), str(ref))
    for suffix in (".pt", ".safetensors"):
        r = convert_file(str(d), str(tmp_path / f"ours{suffix}"))
        assert r.written and r.verification.ok
    theirs = torch.load(ref, weights_only=True)
    assert same(torch, torch.load(tmp_path / "ours.pt", weights_only=True), theirs)
    assert same(torch, ckptdoctor.load(str(d)), theirs)
    from safetensors.torch import load_file

    st = load_file(tmp_path / "ours.safetensors")
    assert all(torch.equal(st[k], theirs[k]) for k in st) and set(st) == set(full)


def test_a_tensor_without_readable_chunks_is_listed_and_refused(torch, sharded_folder, tmp_path, monkeypatch):
    """A chunk the metadata does not place (as for compressed chunks): the tensor is listed without
    data, and convert / load refuse the folder naming torch's tool instead of writing it incomplete."""
    from ckptdoctor.fixes.apply import convert_file
    from ckptdoctor.fixes.plan import FixError
    from ckptdoctor.formats import dcp

    real = dcp._storage_index
    monkeypatch.setattr(dcp, "_storage_index", lambda md: {k: v for k, v in real(md).items() if k[0] != "w1"})
    d = str(sharded_folder[0])
    with ckptdoctor.open(d) as ckpt:
        t = dict(ckpt.tensors())["w1"]
        assert (t.storage, t.device, ckpt.details["sharded_tensors"]) == (None, "dcp-shard", ["w1"])
    with pytest.raises(FixError, match=r"\(w1\) need torch: .*dcp_to_torch_save"):
        convert_file(d, str(tmp_path / "o.pt"))
    assert not (tmp_path / "o.pt").exists()
    with pytest.raises(UnreadableFile, match="dcp_to_torch_save"):
        ckptdoctor.load(d)
