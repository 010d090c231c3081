"""Fake environments on disk -> the right finding ids."""

from __future__ import annotations

import pytest

from ckptdoctor.env.rules import diagnose, required_torch
from ckptdoctor.findings import Severity

from .fakeenv import CONDA_FORGE, PYTORCH_CHANNEL, FakeEnv, by_id, ids

CU124 = 'nvidia-cuda-runtime-cu12==12.4.127; platform_system == "Linux" and platform_machine == "x86_64"'


@pytest.fixture
def fake(tmp_path) -> FakeEnv:
    return FakeEnv(tmp_path / "env")


def test_consistent_pip_install(fake: FakeEnv) -> None:
    fake.dist("torch", "2.5.1", requires=("filelock", CU124), requires_python=">=3.8.0")
    fake.dist("torchvision", "0.20.1", requires=("numpy", "torch (==2.5.1)", "pillow!=8.3.*,>=5.3.0"))
    fake.dist("torchaudio", "2.5.1", requires=("torch==2.5.1",))
    fake.dist("numpy", "1.26.4")
    fake.dist("pillow", "10.4.0")
    fake.dist("nvidia-cuda-runtime-cu12", "12.4.127")
    env = fake.collect()
    findings = diagnose(env)
    assert [f for f in findings if f.severity >= Severity.WARNING] == []
    assert env.build("torch").flavour == "cu124" and env.build("torch").cuda == "12.4"
    assert env.source("torch").kind == "pip" and env.source("torch").channel == "pypi"


def test_torchvision_mismatch_from_requires_dist(fake: FakeEnv) -> None:
    fake.dist("torch", "2.5.1")
    fake.dist("torchvision", "0.19.1", requires=("numpy", "torch (==2.4.1)"))
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-TV-MISMATCH")
    assert f.severity == Severity.ERROR
    assert f.evidence["requires"] == "==2.4.1"
    assert "torchvision==0.20.1" in f.fix.command and "-m pip install" in f.fix.command


def test_torchvision_mismatch_from_table_and_pytorch_index(fake: FakeEnv) -> None:
    # no Requires-Dist pin (a source-less repack): the shipped table decides; suffix -> PyTorch index URL
    fake.dist("torch", "2.2.2+cu121")
    fake.dist("torchvision", "0.18.1+cu121", installer="uv")
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-TV-MISMATCH")
    assert "torchvision==0.17.2" in f.fix.command
    assert "https://download.pytorch.org/whl/cu121" in f.fix.command


def test_torchaudio_mismatch(fake: FakeEnv) -> None:
    fake.dist("torch", "2.6.0")
    fake.dist("torchaudio", "2.5.0", requires=("torch==2.5.0",))
    assert "CKD-ENV-TA-MISMATCH" in ids(diagnose(fake.collect()))


def test_conda_forge_torch_with_pip_torchvision(fake: FakeEnv) -> None:
    fake.conda("pytorch", "2.5.1", "cpu_generic_py311_h740418c_8", CONDA_FORGE)
    fake.conda("python", "3.11.7", "hab00c5b_1_cpython", CONDA_FORGE)
    fake.dist("torch", "2.5.1", installer="conda")
    fake.dist("torchvision", "0.20.1", installer="pip", requires=("torch (==2.5.1)",))
    env = fake.collect()
    assert env.is_conda
    assert env.source("torch").kind == "conda" and env.source("torch").channel == "conda-forge"
    assert env.build("torch").flavour == "cpu"
    findings = diagnose(env)
    [f] = by_id(findings, "CKD-ENV-MIXED-SOURCE")
    assert f.severity == Severity.ERROR
    assert "pip uninstall -y torchvision" in f.fix.command
    assert "conda install -c conda-forge torchvision=0.20" in f.fix.command
    assert "CKD-ENV-TV-MISMATCH" not in ids(findings)


def test_mixed_and_mismatched_fixes_agree(fake: FakeEnv) -> None:
    fake.conda("pytorch", "2.1.2", "cpu_generic_py311h3496f23_1", CONDA_FORGE)
    fake.dist("torch", "2.1.2", installer="conda")
    fake.dist("torchvision", "0.17.0", requires=("torch (==2.2.0)",))
    findings = diagnose(fake.collect())
    [mixed] = by_id(findings, "CKD-ENV-MIXED-SOURCE")
    [mismatch] = by_id(findings, "CKD-ENV-TV-MISMATCH")
    assert mixed.fix.command.endswith("conda install -c conda-forge torchvision=0.16")
    assert mismatch.fix.command == "conda install -c conda-forge torchvision=0.16"


def test_conda_forge_torch_with_pytorch_channel_torchvision(fake: FakeEnv) -> None:
    fake.conda("pytorch", "2.4.1", "cuda124_py311h1234567_300", CONDA_FORGE)
    fake.conda("torchvision", "0.19.1", "py311_cu124", PYTORCH_CHANNEL)
    fake.dist("torch", "2.4.1", installer="conda")
    fake.dist("torchvision", "0.19.1", installer="conda")
    env = fake.collect()
    assert env.build("torch").cuda == "12.4"
    assert "CKD-ENV-MIXED-SOURCE" in ids(diagnose(env))


def test_conda_consistent(fake: FakeEnv) -> None:
    fake.conda("pytorch", "2.5.1", "cpu_generic_py311_h740418c_8", CONDA_FORGE)
    fake.conda("torchvision", "0.20.1", "cpu_py311_h1234567_0", CONDA_FORGE)
    fake.dist("torch", "2.5.1", installer="conda")
    fake.dist("torchvision", "0.20.1", installer="conda")
    fake.dist("numpy", "2.1.0", installer="conda")
    findings = diagnose(fake.collect())
    assert [f.id for f in findings if f.severity >= Severity.WARNING] == []


def test_two_copies_of_torch_on_the_path(fake: FakeEnv) -> None:
    fake.dist("torch", "2.5.1")
    fake.dist("torch", "2.3.0", site=fake.user_site())
    env = fake.collect()
    assert env.dist("torch").version == "2.3.0"  # the user site comes first and wins
    [f] = by_id(diagnose(env), "CKD-ENV-DUPLICATE")
    assert f.severity == Severity.WARNING
    assert [c["version"] for c in f.evidence["copies"]] == ["2.3.0", "2.5.1"]
    assert "pip uninstall -y torch" in f.fix.command


def test_two_torch_records_in_one_directory(fake: FakeEnv) -> None:
    fake.dist("torch", "2.5.1")
    fake.dist("torch", "2.4.0")
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-DUPLICATE")
    assert f.severity == Severity.ERROR


def test_pip_torch_over_conda_torch(fake: FakeEnv) -> None:
    fake.conda("pytorch", "2.1.2", "cpu_generic_py311h3496f23_1", CONDA_FORGE)
    fake.dist("torch", "2.3.0", installer="pip")
    env = fake.collect()
    [f] = by_id(diagnose(env), "CKD-ENV-DUPLICATE")
    assert f.severity == Severity.ERROR
    assert f.evidence["conda"]["version"] == "2.1.2"
    assert "conda remove --force pytorch" in f.fix.command


def test_numpy2_with_torch_built_for_numpy1(fake: FakeEnv) -> None:
    fake.dist("torch", "2.1.2")
    fake.dist("numpy", "2.0.1")
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-NUMPY-ABI")
    assert f.severity == Severity.ERROR
    assert "numpy==1.*" in f.fix.command


def test_numpy2_with_torch_built_for_numpy1_conda(fake: FakeEnv) -> None:
    fake.conda("numpy", "2.0.1", "py311h1234567_0", CONDA_FORGE)
    fake.dist("numpy", "2.0.1", installer="conda")
    fake.dist("torch", "1.13.1")
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-NUMPY-ABI")
    assert f.fix.command.startswith("conda install -c conda-forge numpy=1.26")


@pytest.mark.parametrize("torch_version", ["2.3.0", "2.13.0+cpu", "2.99.0"])
def test_numpy2_fine_with_newer_torch(fake: FakeEnv, torch_version: str) -> None:
    fake.dist("torch", torch_version)
    fake.dist("numpy", "2.0.1")
    assert "CKD-ENV-NUMPY-ABI" not in ids(diagnose(fake.collect()))


def test_python_outside_official_range(tmp_path) -> None:
    fake = FakeEnv(tmp_path / "e", python="3.12.1")
    fake.dist("torch", "2.1.2")
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-PYTHON")
    assert f.severity == Severity.WARNING
    assert f.evidence["python_max"] == "3.11"


def test_python_violates_requires_python(tmp_path) -> None:
    fake = FakeEnv(tmp_path / "e", python="3.9.18")
    fake.dist("torch", "2.9.0", requires_python=">=3.10")
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-PYTHON")
    assert f.severity == Severity.ERROR


def test_cuda_major_clash_between_torch_and_torchvision(fake: FakeEnv) -> None:
    fake.dist("torch", "2.4.1+cu118", installer="pip")
    fake.dist("torchvision", "0.19.1+cu121", requires=("torch==2.4.1",))
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-CUDA")
    assert f.severity == Severity.ERROR
    assert "--index-url https://download.pytorch.org/whl/cu118" in f.fix.command


def test_cpu_torchvision_with_cuda_torch(fake: FakeEnv) -> None:
    fake.dist("torch", "2.5.1", requires=(CU124,))
    fake.dist("torchvision", "0.20.1+cpu", requires=("torch==2.5.1",))
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-CUDA")
    assert f.severity == Severity.WARNING


def test_cuda_torchvision_with_cpu_torch(fake: FakeEnv) -> None:
    # seen for real: torch 2.13.0+cpu with the PyPI torchvision 0.28.0 (+cu130) -> torchvision::nms does not exist
    fake.dist("torch", "2.13.0+cpu")
    fake.dist("torchvision", "0.28.0", requires=("torch (==2.13.0)",), version_py={"__version__": "0.28.0+cu130"},
              direct_url={"url": "file:///tmp/torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                          "archive_info": {}})
    env = fake.collect()
    assert env.build("torchvision").flavour == "cu130"
    assert env.source("torchvision").kind == "pip"  # a wheel file is a binary install, not a source build
    findings = diagnose(env)
    [f] = by_id(findings, "CKD-ENV-CUDA")
    assert f.severity == Severity.ERROR and "torchvision::nms" in f.explanation
    assert "--index-url https://download.pytorch.org/whl/cpu" in f.fix.command
    assert "CKD-ENV-SOURCE-BUILD" not in ids(findings)


def test_cuda_from_version_py(fake: FakeEnv) -> None:
    fake.dist("torch", "2.5.1", version_py={"__version__": "2.5.1", "cuda": "12.1"})
    b = fake.collect().build("torch")
    assert (b.flavour, b.cuda) == ("cu121", "12.1")


def test_cpu_build_info(fake: FakeEnv) -> None:
    fake.dist("torch", "2.13.0+cpu", version_py={"__version__": "2.13.0+cpu"})
    [f] = by_id(diagnose(fake.collect()), "CKD-ENV-CPU-BUILD")
    assert f.severity == Severity.INFO and "map_location" in f.fix.python


def test_no_torch(fake: FakeEnv) -> None:
    fake.dist("numpy", "1.26.4")
    assert "CKD-ENV-NO-TORCH" in ids(diagnose(fake.collect()))


def test_editable_torchvision_is_source_build_not_mixed(fake: FakeEnv) -> None:
    fake.conda("pytorch", "2.5.1", "cpu_generic_py311_h740418c_8", CONDA_FORGE)
    fake.dist("torch", "2.5.1", installer="conda")
    fake.dist("torchvision", "0.21.0a0", direct_url={"url": "file:///src/vision", "dir_info": {"editable": True}})
    findings = diagnose(fake.collect())
    assert "CKD-ENV-SOURCE-BUILD" in ids(findings)
    assert "CKD-ENV-MIXED-SOURCE" not in ids(findings)


def test_pytorch_channel_after_2_5(fake: FakeEnv) -> None:
    fake.conda("pytorch", "2.7.0", "py3.11_cuda12.6_cudnn9_0", PYTORCH_CHANNEL)
    fake.dist("torch", "2.7.0", installer="conda")
    env = fake.collect()
    assert env.build("torch").flavour == "cu126"
    assert "CKD-ENV-CONDA-CHANNEL" in ids(diagnose(env))


def test_old_torchvision_with_pillow7(fake: FakeEnv) -> None:
    fake.dist("torch", "1.2.0")
    fake.dist("torchvision", "0.4.0", requires=("torch (==1.2.0)",))
    fake.dist("pillow", "7.0.0")
    assert "CKD-ENV-PILLOW" in ids(diagnose(fake.collect()))


def test_import_results_become_findings(fake: FakeEnv) -> None:
    fake.dist("torch", "2.5.1")
    env = fake.collect()
    env.extra["import"] = {"modules": {
        "torch": {"version": "2.5.1", "cuda_built": "12.4", "cuda_available": False},
        "torchvision": {"error": "Traceback...\nRuntimeError: operator torchvision::nms does not exist"},
        "torchaudio": {"missing": True, "error": "No module named 'torchaudio'"},
    }, "stderr": ""}
    found = diagnose(env)
    [imp] = by_id(found, "CKD-ENV-IMPORT")
    assert "torchvision::nms" in imp.title
    assert "CKD-ENV-CUDA-UNAVAILABLE" in ids(found)


@pytest.mark.parametrize(("req", "spec"), [
    ("torch (==2.0.1)", "==2.0.1"), ("torch==2.9.0", "==2.9.0"), ("torch (>=2.14.0)", ">=2.14.0"),
    ("torch ==2.4.0", "==2.4.0"), ("torchaudio==2.5.0", None), ("torch; extra == 'x'", None),
    ("torch>=2.0; extra == \"train\"", None),
])
def test_required_torch(fake: FakeEnv, req: str, spec: str | None) -> None:
    fake.dist("torchvision", "0.20.0", requires=(req,))
    assert required_torch(fake.collect().dist("torchvision")) == spec


def test_cpu_build_with_a_cuda_tagged_checkpoint_via_check(fake: FakeEnv, torch, tmp_path, monkeypatch) -> None:
    """A CPU build of torch in the (fake) environment, on a machine that even has GPUs: `check` with
    no flags reads the environment and predicts the CUDA deserialisation error, with map_location."""
    import sys

    import torch.serialization as ser

    from ckptdoctor import check as check_mod

    path = tmp_path / "gpu_saved.pt"
    monkeypatch.setattr(ser, "location_tag", lambda storage: "cuda:0")  # as a save on a GPU tags storages
    torch.save({"w": torch.arange(4.0)}, path)
    monkeypatch.undo()

    fake.dist("torch", "2.13.0+cpu", version_py={"__version__": "2.13.0+cpu"})
    assert "CKD-ENV-CPU-BUILD" in ids(diagnose(fake.collect()))
    monkeypatch.setattr(sys, "path", [str(fake.site), *sys.path])  # the fake torch is what is installed
    monkeypatch.setattr(check_mod, "_gpu_count", lambda: 2)  # GPUs present: the build decides
    target = check_mod.Target.current()
    assert (target.torch, target.device) == ("2.13.0+cpu", "cpu")
    res = check_mod.check(str(path), target)
    assert not res.loads and res.first_cause.id == "CKD-DEVICE-CUDA"
    assert "map_location='cpu'" in res.first_cause.fix.python


CU130 = 'cuda-toolkit[cublas,cudart]==13.0.3; platform_system == "Linux"'  # how torch 2.14 declares CUDA 13


@pytest.mark.parametrize("runtime,version,clash", [
    ("nvidia-cuda-runtime", "13.0.96", False),  # CUDA 13 wheels carry the major in the version, not the name
    ("nvidia-cuda-runtime", "12.8.90", True),
    ("nvidia-cuda-runtime-cu12", "12.4.127", True),
])
def test_cuda_runtime_wheel_major_from_name_or_version(fake: FakeEnv, runtime: str, version: str, clash: bool) -> None:
    fake.dist("torch", "2.14.1", requires=("filelock", CU130))
    fake.dist(runtime, version)
    env = fake.collect()
    assert env.build("torch").cuda.split(".")[0] == "13"
    assert ("CKD-ENV-CUDA" in ids(diagnose(env))) is clash
