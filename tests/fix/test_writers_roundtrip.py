"""Writers round-trip: generated fixtures -> zip / legacy / safetensors -> torch 2.13 (weights_only) / safetensors."""

from __future__ import annotations

import pytest

from ckptdoctor.errors import CkptdoctorError
from ckptdoctor.fixes.apply import convert_file
from fix.conftest import NO_SAFETENSORS, fixture_objects
from fix.helpers import assert_safetensors_match, assert_same, flatten, load, torch

NAMES = list(fixture_objects(torch))


def reference(fx, name):
    """What torch itself gives back for the fixture (its own zip round trip)."""
    return load(fx[name]["zip"])


@pytest.mark.parametrize("out_kind", ["zip", "legacy"])
@pytest.mark.parametrize("in_kind", ["zip", "legacy"])
@pytest.mark.parametrize("name", NAMES)
def test_torch_containers_round_trip(fixtures, tmp_path, name, in_kind, out_kind):
    out = tmp_path / f"{name}.{out_kind}.pt"
    r = convert_file(str(fixtures[name][in_kind]), str(out), to=out_kind)
    assert r.written and r.verification.ok
    assert not [c for c in r.changes if c.step == "weights-only-safe"], "fixtures need no content change"
    assert_same(reference(fixtures, name), load(out))
    if out_kind == "zip":
        assert_same(reference(fixtures, name), load(out, mmap=True))


@pytest.mark.parametrize("in_kind", ["zip", "legacy"])
@pytest.mark.parametrize("name", [n for n in NAMES if n not in NO_SAFETENSORS])
def test_safetensors_round_trip(fixtures, tmp_path, name, in_kind):
    out = tmp_path / f"{name}.safetensors"
    r = convert_file(str(fixtures[name][in_kind]), str(out))
    assert r.container == "safetensors" and r.verification.ok
    assert_safetensors_match(out, flatten(reference(fixtures, name)))


@pytest.mark.parametrize(("name", "why"), [("sparse", "sparse_coo tensors cannot be stored in safetensors"),
                                           ("complex128", "dtype complex128 has no safetensors code"),
                                           ("meta", "a tensor without data")])
def test_safetensors_refusals_are_clean(fixtures, tmp_path, name, why):
    out = tmp_path / f"{name}.safetensors"
    with pytest.raises(CkptdoctorError, match=why):
        convert_file(str(fixtures[name]["zip"]), str(out))
    assert not out.exists() and not list(tmp_path.iterdir())


def test_safetensors_keeps_metadata_and_records_shared_storage(fixtures, tmp_path):
    from safetensors import safe_open

    first = tmp_path / "a.safetensors"
    r = convert_file(str(fixtures["shared"]["zip"]), str(first))
    assert any("shares its storage" in n for n in r.notes) and any("same tensor" in n for n in r.notes)
    with safe_open(str(first), "pt") as f:
        f.metadata()  # readable header
    from safetensors.torch import save_file

    src = tmp_path / "meta.safetensors"
    save_file({"w": torch.ones(2)}, str(src), metadata={"format": "pt", "note": "kept"})
    again = tmp_path / "again.safetensors"
    convert_file(str(src), str(again))
    with safe_open(str(again), "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "kept"}


def test_quantized_parameters_in_safetensors_metadata(fixtures, tmp_path):
    import json

    from safetensors import safe_open

    out = tmp_path / "q.safetensors"
    convert_file(str(fixtures["quantized"]["zip"]), str(out))
    with safe_open(str(out), "pt") as f:
        q = json.loads(f.metadata()["ckptdoctor.quantization"])
    assert q["per_tensor_qint8"] == {"dtype": "qint8", "qscheme": "per_tensor_affine", "scale": 0.05, "zero_point": 3}
    assert q["per_channel"]["axis"] == 0 and q["per_channel"]["scales"] == [0.1, 0.2, 0.3]
