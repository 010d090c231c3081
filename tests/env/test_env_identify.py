"""`ckptdoctor identify`: hash-named weight files and the known-weights table."""

from __future__ import annotations

import hashlib
import json

import pytest

import ckptdoctor.identify as ident
from ckptdoctor.findings import Severity
from ckptdoctor.identify import KnownWeights, identify, load_known, name_hash

from .test_env_cli import run

PAYLOAD = b"not really a checkpoint, but bytes are bytes\n" * 100
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def write(tmp_path, name: str, data: bytes = PAYLOAD):
    p = tmp_path / name
    p.write_bytes(data)
    return p


@pytest.fixture
def table(monkeypatch):
    entries = (
        KnownWeights("Tiny_Weights.IMAGENET1K_V1", SHA[:8], "0.15", "", "tiny", f"tiny-{SHA[:8]}.pth",
                     f"https://download.pytorch.org/models/tiny-{SHA[:8]}.pth"),
        KnownWeights("Other_Weights.IMAGENET1K_V1", "0123abcd", "0.10", "", "other", "other-0123abcd.pth",
                     "https://download.pytorch.org/models/other-0123abcd.pth"),
    )
    monkeypatch.setattr(ident, "known_weights", lambda: entries)
    return entries


def ids(r) -> list[str]:
    return [f.id for f in r.findings]


def test_name_hash() -> None:
    assert name_hash("resnet18-f37072fd.pth") == ("resnet18", "f37072fd")
    assert name_hash("/x/mnasnet1.0_top1_73.512-f206786ef8.pth") == ("mnasnet1.0_top1_73.512", "f206786ef8")
    assert name_hash("resnet18_fbgemm_16fa66dd.pth") == ("resnet18_fbgemm", "16fa66dd")
    assert name_hash("model.pt") is None
    assert name_hash("model-abc.pt") is None


def test_self_consistent_name(tmp_path) -> None:
    r = identify(write(tmp_path, f"foo-{SHA[:8]}.pth"))
    assert r.sha256 == SHA and r.name_prefix == SHA[:8]
    assert ids(r) == ["CKD-ID-HASH-OK"]


def test_corrupted_file_is_reported(tmp_path) -> None:
    p = write(tmp_path, f"foo-{SHA[:8]}.pth", PAYLOAD[:-10])  # truncated download
    r = identify(p)
    assert ids(r) == ["CKD-ID-HASH-MISMATCH"]
    assert r.findings[0].severity == Severity.ERROR


def test_known_weights_match(tmp_path, table) -> None:
    r = identify(write(tmp_path, f"tiny-{SHA[:8]}.pth"))
    assert ids(r) == ["CKD-ID-KNOWN"]
    assert r.matches[0].architecture == "tiny"


def test_known_weights_under_another_name(tmp_path, table) -> None:
    r = identify(write(tmp_path, "my_model.pt"))
    assert ids(r) == ["CKD-ID-KNOWN"]
    assert "published as tiny-" in r.findings[0].title


def test_known_name_but_different_content(tmp_path, table) -> None:
    r = identify(write(tmp_path, "other-0123abcd.pth", b"something else"))
    [f] = r.findings
    assert f.id == "CKD-ID-HASH-MISMATCH"
    assert f.evidence["expected"]["name"] == "Other_Weights.IMAGENET1K_V1"
    assert f.evidence["actual"] is None
    assert "https://download.pytorch.org/models/other-0123abcd.pth" in f.fix.command


def test_replaced_upstream_file_names_both(tmp_path, table) -> None:
    # the EfficientNet case: a known old name holding another known file's content
    r = identify(write(tmp_path, "other-0123abcd.pth"))
    assert ids(r) == ["CKD-ID-HASH-MISMATCH", "CKD-ID-KNOWN"]
    assert r.findings[0].evidence["actual"]["name"] == "Tiny_Weights.IMAGENET1K_V1"
    assert "actually Tiny_Weights" in r.findings[0].explanation


def test_fine_tuned_copy_named_like_known(tmp_path, table) -> None:
    data = b"fine tuned"
    h = hashlib.sha256(data).hexdigest()[:8]
    r = identify(write(tmp_path, f"other-{h}.pth", data))
    assert ids(r) == ["CKD-ID-UNKNOWN-VARIANT"]


def test_date_suffix_is_not_tampering(tmp_path) -> None:
    r = identify(write(tmp_path, "checkpoint-20240131.pth"))
    assert ids(r) == ["CKD-ID-NAME-NUMBER"]


def test_unknown_plain_name(tmp_path) -> None:
    assert ids(identify(write(tmp_path, "model.pt"))) == ["CKD-ID-UNKNOWN"]


def test_shipped_table() -> None:
    known = load_known()
    assert len(known) > 100
    by_file = {k.filename: k for k in known}
    r18 = by_file["resnet18-f37072fd.pth"]
    assert (r18.name, r18.architecture, r18.sha256_prefix) == ("ResNet18_Weights.IMAGENET1K_V1", "resnet18", "f37072fd")
    assert by_file["efficientnet_b0_rwightman-3dd342df.pth"].torchvision_last == "0.16.0"
    for k in known:
        assert k.url.endswith("/" + k.filename)
        assert name_hash(k.filename)[1] == k.sha256_prefix
        assert all(c in "0123456789abcdef" for c in k.sha256_prefix)


def test_cli(tmp_path, table) -> None:
    good = write(tmp_path, f"tiny-{SHA[:8]}.pth")
    bad = write(tmp_path, "foo-deadbeef.pth")
    r = run("identify", str(good))
    assert r.exit_code == 0 and "CKD-ID-KNOWN" in r.stdout
    r = run("identify", str(good), str(bad), "--json")
    assert r.exit_code == 1
    out = json.loads(r.stdout)
    assert [o["name_matches_hash"] for o in out] == [True, False]
    assert out[1]["findings"][0]["id"] == "CKD-ID-HASH-MISMATCH"
