"""`ckptdoctor fix` / `convert` on the command line: plan, record, refusals, atomicity."""

from __future__ import annotations

import json
import os
import warnings

import pytest

from ckptdoctor.fixes.apply import convert_file, fix_file
from ckptdoctor.fixes.plan import FixError, VerificationFailed
from fix.fixmodels import make_model
from fix.helpers import assert_same, leftovers, load, run_cli, torch


@pytest.fixture()
def whole(tmp_path):
    p = tmp_path / "whole.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save({"model": make_model(), "epoch": 4}, p)
    return p


def test_plan_writes_nothing(tmp_path, whole):
    out = tmp_path / "o.pt"
    r = run_cli("fix", str(whole), "-o", str(out), "--plan")
    assert r.returncode == 0, r.stderr
    assert "1. weights-only-safe" in r.stdout and "module object -> its state_dict" in r.stdout
    assert "plan only: nothing written" in r.stdout
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["whole.pt"]


def test_record_and_json(tmp_path, whole):
    out = tmp_path / "o.pt"
    r = run_cli("fix", str(whole), "-o", str(out), "--record", "--json")
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    saved = json.loads((tmp_path / "o.pt.changes.json").read_text())
    for rec in (printed, saved):
        assert rec["verification"]["ok"] and rec["output"]["written"]
        assert [s["id"] for s in rec["steps"]] == ["weights-only-safe", "container"]
        assert any(c["action"] == "replaced" and c["path"] == "model" for c in rec["changes"])
    assert_same(make_model().state_dict(), load(out)["model"])


def test_refuses_to_overwrite_the_input(tmp_path, whole):
    before = whole.read_bytes()
    link = tmp_path / "link.pt"
    link.symlink_to(whole)
    for target in (whole, link):
        r = run_cli("fix", str(whole), "-o", str(target))
        assert r.returncode == 2 and "refusing to write over the input" in r.stderr
    assert whole.read_bytes() == before and not leftovers(tmp_path)


def test_missing_input_is_one_line_exit_2(tmp_path):
    r = run_cli("convert", str(tmp_path / "nope.pt"), "-o", str(tmp_path / "o.pt"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_unknown_step_and_bad_version_are_usage_errors(tmp_path, whole):
    r = run_cli("fix", str(whole), "-o", str(tmp_path / "o.pt"), "--step", "frobnicate")
    assert r.returncode == 2 and "unknown step 'frobnicate'" in r.stderr
    r = run_cli("fix", str(whole), "-o", str(tmp_path / "o.pt"), "--torch", "banana")
    assert r.returncode == 2 and "not a version number" in r.stderr
    assert not leftovers(tmp_path)


def test_target_torch_refuses_dtypes_it_lacks(tmp_path, fixtures):
    with pytest.raises(FixError, match=r"torch 1.4 cannot hold these dtypes: float8_e4m3fn"):
        convert_file(str(fixtures["new_dtypes"]["zip"]), str(tmp_path / "o.pt"), target="1.4")
    with pytest.raises(FixError, match="cannot read the zip format"):
        convert_file(str(fixtures["views"]["zip"]), str(tmp_path / "o.pt"), to="zip", target="1.4")
    r = convert_file(str(fixtures["views"]["zip"]), str(tmp_path / "old.pt"), target="1.4")
    assert r.container == "legacy"
    assert_same(load(fixtures["views"]["zip"]), load(tmp_path / "old.pt"))


def flip_byte(fd: int, at: int, mask: int) -> None:
    """Damage one byte of the file being written (XOR with ``mask``)."""
    os.pwrite(fd, bytes([os.pread(fd, 1, at)[0] ^ mask]), at)


def test_verification_failure_leaves_nothing(tmp_path, fixtures, monkeypatch):
    from ckptdoctor.writers import stream

    real = stream.OutFile.copy_region

    def corrupt(self, source, offset, n, *, crc=False):
        value = real(self, source, offset, n, crc=crc)
        if n:  # flip the last byte we just wrote
            flip_byte(self.fd, self.pos - 1, 0xFF)
        return value

    monkeypatch.setattr(stream.OutFile, "copy_region", corrupt)
    out = tmp_path / "o.pt"
    with pytest.raises(VerificationFailed, match="different"):
        fix_file(str(fixtures["dtypes"]["legacy"]), str(out), container="legacy")
    assert not out.exists() and not leftovers(tmp_path)


def test_verification_catches_a_wrong_byte_in_safetensors(tmp_path, fixtures, monkeypatch):
    """The kernel-copy path (copy_file_range at an offset) is checked by the byte comparison too."""
    from ckptdoctor.writers import stream

    real = stream.OutFile.tensor_at

    def corrupt(self, t, pos):
        end = real(self, t, pos)
        if end > pos:
            flip_byte(self.fd, end - 1, 0x01)
        return end

    monkeypatch.setattr(stream.OutFile, "tensor_at", corrupt)
    out = tmp_path / "o.safetensors"
    with pytest.raises(VerificationFailed, match="different"):
        convert_file(str(fixtures["dtypes"]["zip"]), str(out), to="safetensors")
    assert not out.exists() and not leftovers(tmp_path)


def test_keep_objects_writes_the_model_back(tmp_path, whole):
    out = tmp_path / "legacy.pt"
    r = run_cli("convert", str(whole), "-o", str(out), "--to", "legacy", "--keep-objects")
    assert r.returncode == 0, r.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = torch.load(out, weights_only=False)  # the test's own file, classes from fix.fixmodels
    assert type(got["model"]).__name__ == "TinyNet"
    assert_same(make_model().state_dict(), got["model"].state_dict())


def test_convert_defaults(tmp_path, fixtures):
    r = run_cli("convert", str(fixtures["dtypes"]["legacy"]), "-o", str(tmp_path / "m.safetensors"))
    assert r.returncode == 0 and "(safetensors, for torch 2.13)" in r.stdout and "every byte identical" in r.stdout
    r = run_cli("convert", str(fixtures["dtypes"]["legacy"]), "-o", str(tmp_path / "m.pt"))
    assert r.returncode == 0 and "(zip, for torch 2.13)" in r.stdout
    r = run_cli("convert", str(fixtures["views"]["zip"]), "-o", str(tmp_path / "old.pt"), "--torch", "1.5")
    assert r.returncode == 0 and "(legacy, for torch 1.5)" in r.stdout
    r = run_cli("convert", str(fixtures["dtypes"]["zip"]), "-o", str(tmp_path / "old2.pt"), "--torch", "1.5")
    assert r.returncode == 2 and "complex64 (torch >= 1.6)" in r.stderr and not (tmp_path / "old2.pt").exists()


def test_explicit_steps_warn_when_the_result_still_needs_weights_only_false(tmp_path, whole):
    r = run_cli("fix", str(whole), "-o", str(tmp_path / "o.pt"), "--step", "to-cpu")
    assert r.returncode == 0 and "add --step weights-only-safe" in r.stdout


def test_safetensors_from_torch_files_say_format_pt(tmp_path, fixtures):
    from safetensors import safe_open

    out = tmp_path / "v.safetensors"
    convert_file(str(fixtures["views"]["zip"]), str(out))
    with safe_open(str(out), "pt") as f:
        assert f.metadata() == {"format": "pt"}


@pytest.mark.slow
def test_memory_does_not_grow_with_the_file(tmp_path):
    """A 400 MB checkpoint converts (and verifies) in a process that stays under 100 MB."""
    import subprocess
    import sys

    src = tmp_path / "big.pt"
    subprocess.run([sys.executable, "-c", "import torch,sys; torch.save({f'w{i}': torch.randn(1 << 22) for i in "
                    "range(25)}, sys.argv[1])", str(src)], check=True)
    for out in ("big.safetensors", "big_zip.pt", "big_legacy.pt"):
        kind = "legacy" if "legacy" in out else ("zip" if "zip" in out else "safetensors")
        # the child reports VmHWM (its own peak RSS since exec; wait4's ru_maxrss would also count
        # what it shared with this big pytest process before exec)
        code = ("import atexit, sys; from ckptdoctor.cli import main; atexit.register(lambda: sys.stderr.write("
                "'HWM ' + open('/proc/self/status').read().split('VmHWM:')[1].split()[0] + '\\n')); main()")
        r = subprocess.run([sys.executable, "-c", code, "convert", str(src), "-o", str(tmp_path / out), "--to", kind],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        hwm_kb = int(r.stderr.split("HWM ")[1].split()[0])
        assert hwm_kb < 100 * 1024, (out, hwm_kb)
        (tmp_path / out).unlink()
