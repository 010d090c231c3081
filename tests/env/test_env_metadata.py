"""Reading dist-info / conda-meta from files, the compat table, and the real environment."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from ckptdoctor.env import compat
from ckptdoctor.env.metadata import channel_label, read_version_py, scan_paths, split_version
from ckptdoctor.env.snapshot import collect

from .fakeenv import FakeEnv


def test_metadata_body_is_not_read_as_headers(tmp_path) -> None:
    fake = FakeEnv(tmp_path / "e")
    fake.dist("torch", "2.5.1")
    [d] = [d for d in fake.collect().installed.dists if d.name == "torch"]
    assert d.version == "2.5.1" and d.installer == "pip" and d.has_record


def test_origins_from_direct_url(tmp_path) -> None:
    fake = FakeEnv(tmp_path / "e")
    fake.dist("torch", "2.6.0a0", direct_url={"url": "file:///src/pytorch", "dir_info": {"editable": True}})
    fake.dist("torchvision", "0.21.0", direct_url={"url": "https://github.com/pytorch/vision",
                                                    "vcs_info": {"vcs": "git", "commit_id": "abc"}})
    fake.dist("numpy", "1.26.4", direct_url={"url": "file:///tmp/numpy-1.26.4.whl", "archive_info": {}})
    env = fake.collect()
    assert env.dist("torch").origin == "editable"
    assert env.dist("torchvision").origin == "vcs"
    assert env.dist("numpy").origin == "local-file"
    assert env.source("torch").kind == "editable"


def test_unknown_installer(tmp_path) -> None:
    fake = FakeEnv(tmp_path / "e")
    fake.dist("torch", "2.5.1", installer=None)
    assert fake.collect().source("torch").kind == "unknown"


def test_irrelevant_dists_are_listed_by_name_only(tmp_path) -> None:
    fake = FakeEnv(tmp_path / "e")
    fake.dist("requests", "2.31.0")
    (fake.site / "six-1.16.0-py3.11.egg-info").mkdir()
    names = {d.name: d for d in scan_paths([str(fake.site)])}
    assert names["requests"].version == "2.31.0" and names["requests"].installer is None
    assert names["six"].version == "1.16.0"


def test_version_py_parsing(tmp_path) -> None:
    (tmp_path / "version.py").write_text(
        "from typing import Optional\n__version__ = '2.13.0+cpu'\ncuda: Optional[str] = None\nhip = None\n")
    assert read_version_py(tmp_path) == {"__version__": "2.13.0+cpu", "cuda": None, "hip": None}
    (tmp_path / "version.py").write_text("__version__ = '2.1.0'\ncuda = '12.1'\n")
    assert read_version_py(tmp_path)["cuda"] == "12.1"


@pytest.mark.parametrize(("url", "label"), [
    ("https://conda.anaconda.org/conda-forge/linux-64", "conda-forge"),
    ("conda-forge", "conda-forge"),
    ("https://conda.anaconda.org/pytorch/linux-64", "pytorch"),
    ("https://repo.anaconda.com/pkgs/main/linux-64", "defaults"),
    ("pkgs/main", "defaults"),
    ("https://conda.anaconda.org/nvidia/label/cuda-12.1.0/linux-64", "nvidia"),
])
def test_channel_labels(url: str, label: str) -> None:
    assert channel_label(url) == label


def test_split_version() -> None:
    assert split_version("2.1.0+cu121") == ("2.1.0", "cu121")
    assert split_version("1.26.4") == ("1.26.4", None)


def test_compat_table_rows_are_sourced_and_consistent() -> None:
    table = compat.load_table()
    assert "2.13" in table and table["2.13"].torchvision == "0.28"
    for row in table.values():
        assert row.source
        assert row.python_min <= row.python_max
        for tv, torch in row.torchvision_pins.items():
            assert compat.minor(tv) == row.torchvision
            assert compat.minor(torch) == row.torch
    assert compat.pinned_torch("0.20.1") == "2.5.1"
    assert compat.row_for_torch("2.5.1+cu121").torchvision_for("2.5.1") == "0.20.1"
    assert compat.row_for_torchvision("0.17.2").torch == "2.2"


torch_installed = importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not torch_installed, reason="torch is not installed")
def test_real_environment_reports_torch() -> None:
    import torch  # only to know the truth to compare with

    env = collect()
    d = env.dist("torch")
    assert d is not None
    assert d.version == torch.__version__  # e.g. 2.13.0+cpu
    assert d.public == torch.__version__.split("+")[0]
    b = env.build("torch")
    expected = torch.version.cuda
    assert b.cuda == expected
    if "+" in torch.__version__:
        assert d.local == torch.__version__.split("+", 1)[1]
        assert env.source("torch").channel == "pytorch-index"
    if torch.__version__ == "2.13.0+cpu":
        assert b.flavour == "cpu"


def test_env_module_never_imports_torch() -> None:
    code = ("import sys\nfrom ckptdoctor.env.snapshot import collect\nfrom ckptdoctor.env.rules import diagnose\n"
            "from ckptdoctor.env.fingerprint import fingerprint\nfrom ckptdoctor.identify import load_known\n"
            "e = collect(); fingerprint(e, diagnose(e)); load_known()\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, sorted(sys.modules)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
