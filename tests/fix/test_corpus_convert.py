"""Every readable corpus file -> zip, legacy, safetensors: loads (weights_only / safetensors), identical tensors."""

from __future__ import annotations

import hashlib

import pytest

import ckptdoctor
from ckptdoctor.errors import UnreadableFile
from ckptdoctor.fixes.apply import convert_file
from ckptdoctor.walk import ScriptModuleValue, is_module
from conftest import CORPUS, corpus_params
from fix.helpers import assert_safetensors_match, flatten, load, raw_bytes


def source_tensors(path) -> dict[str, tuple[str, list[int], str]] | None:
    """ckptdoctor's view of the source: path -> (dtype, shape, sha256), with module / TorchScript
    roots named as their state_dict (what the converted file holds)."""
    try:
        with ckptdoctor.open(path) as ck:
            strip = isinstance(ck.root, ScriptModuleValue) or is_module(ck.root)
            out = {}
            for p, t in ck.tensors():
                p = p.removeprefix("state_dict.") if strip else p
                out[p] = (t.dtype.name, list(t.shape), t.sha256())
            return out
    except UnreadableFile:
        return None


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors"])
@pytest.mark.parametrize("row", corpus_params())
def test_convert_round_trip(tmp_path, row, kind):
    src = CORPUS / "files" / row["file"]
    want = source_tensors(src)
    if want is None:
        pytest.skip(f"not a checkpoint ({row['container']}): refused, see test_corpus_fix")
    out = tmp_path / ("out.safetensors" if kind == "safetensors" else "out.pt")
    r = convert_file(str(src), str(out), to=kind)
    assert r.written and r.verification.ok and r.verification.tensors == len(want)
    if kind == "safetensors":
        from safetensors.torch import load_file

        got = load_file(str(out))
        assert_safetensors_match(out, got)  # numpy loader agrees with the torch loader
    else:
        got = flatten(load(out))  # torch 2.13, weights_only=True
    assert sorted(got) == sorted(want)
    for k, (dtype, shape, sha) in want.items():
        t = got[k]
        if kind == "safetensors" and dtype in ("qint8", "quint8", "qint32"):
            dtype = {"qint8": "int8", "quint8": "uint8", "qint32": "int32"}[dtype]
        assert (str(t.dtype).removeprefix("torch."), list(t.shape)) == (dtype, shape), k
        assert hashlib.sha256(raw_bytes(t)).hexdigest() == sha, k
