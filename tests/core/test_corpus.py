"""Every corpus file: the format we detect and, where torch could load it, every tensor bit-exact."""

from __future__ import annotations

import pytest

import ckptdoctor
from ckptdoctor.errors import UnreadableFile
from conftest import CORPUS, corpus_params, corpus_truth

# The manifest says "torchscript-zip"; ckptdoctor's documented name is "torchscript" (docs/formats.md).
MANIFEST_ALIASES = {"torchscript-zip": "torchscript"}


def detected_format(path) -> str:
    try:
        with ckptdoctor.open(path) as ckpt:
            return ckpt.format
    except UnreadableFile as e:
        return e.kind


@pytest.mark.parametrize("row", corpus_params())
def test_format_matches_manifest(row):
    path = CORPUS / "files" / row["file"]
    expected = MANIFEST_ALIASES.get(row["container"], row["container"])
    assert detected_format(path) == expected


@pytest.mark.parametrize("row", corpus_params())
def test_tensors_match_truth(row):
    truth = corpus_truth(row["file"])
    if truth is None:
        pytest.skip("torch 2.13 could not load this file: no truth")
    expected = {k: v for k, v in truth["tensors"].items() if k != "__errors__"}
    with ckptdoctor.open(CORPUS / "files" / row["file"]) as ckpt:
        got = dict(ckpt.tensors())
        assert sorted(got) == sorted(expected)
        for path, t in got.items():
            want = expected[path]
            assert t.dtype.name == want["dtype"], path
            assert list(t.shape) == want["shape"], path
            assert t.sha256() == want["sha256"], path
            if want.get("quantized"):
                assert t.quantizer["qscheme"] == want["qscheme"]
                if "q_scale" in want:
                    assert t.quantizer["scale"] == pytest.approx(want["q_scale"])
                    assert t.quantizer["zero_point"] == want["q_zero_point"]
