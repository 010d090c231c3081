"""Objects ckptdoctor.load does not rebuild by itself: on_unknown, allow=[...], warnings, map_location, errors."""

from __future__ import annotations

import os
import pickle
import sys
import warnings

import pytest

import ckptdoctor
from ckptdoctor.errors import TruncatedFile, UnreadableFile
from ckptdoctor.torchio import NeedsTorch, Placeholder, ReplacedObjectWarning, UnknownObjectError

from .deepcompare import assert_same


class Config:
    """A plain user class pickled by value (not importable by the loader in real life)."""

    def __init__(self, lr: float = 0.1) -> None:
        self.lr = lr
        self.layers = [3, 4]


class Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def torch_load(torch, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, weights_only=False, **kw)


def load_warns(path, **kw) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = ckptdoctor.load(path, **kw)
    return got, [str(w.message) for w in caught if issubclass(w.category, ReplacedObjectWarning)]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory, torch):
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    model.register_buffer("scratch", torch.zeros(2), persistent=False)
    model(torch.randn(5, 3))  # running stats move
    d = tmp_path_factory.mktemp("models")
    paths = {}
    for fmt in ("zip", "legacy"):
        paths[fmt] = d / f"model.{fmt}.pt"
        torch.save({"model": model, "epoch": 2}, paths[fmt], _use_new_zipfile_serialization=fmt == "zip")
    return paths


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_whole_model_becomes_its_state_dict(model_file, fmt, torch):
    got, replaced = load_warns(model_file[fmt])
    ref = torch_load(torch, model_file[fmt])
    assert_same(got["model"], ref["model"].state_dict())  # keys, values, _metadata (BatchNorm version 2)
    assert got["epoch"] == 2
    assert len(replaced) == 1
    for cls in ("Sequential", "torch.nn.modules.linear.Linear", "BatchNorm1d", "ReLU", "allow=["):
        assert cls in replaced[0]


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_allowed_classes_rebuild_the_model(model_file, fmt, torch):
    nn = torch.nn
    got, replaced = load_warns(model_file[fmt], allow=[nn.Sequential, nn.Linear, nn.BatchNorm1d, nn.ReLU])
    assert replaced == []
    ref = torch_load(torch, model_file[fmt])
    assert_same(got, ref)
    x = torch.randn(2, 3)
    got["model"].eval()
    ref["model"].eval()
    assert torch.equal(got["model"](x), ref["model"](x))


def test_on_unknown_error_names_the_class(model_file):
    with pytest.raises(UnknownObjectError, match=r"torch\.nn\.modules\.container\.Sequential.*allow="):
        ckptdoctor.load(model_file["zip"], on_unknown="error")


def test_main_class_matches_by_name(tmp_path, torch, monkeypatch):
    """Training scripts pickle models as __main__.Net; allow=[Net] finds the user's class by name."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(2, 2)

    main = sys.modules["__main__"]
    Net.__module__, Net.__qualname__ = "__main__", "Net"  # a local class: nothing to restore
    monkeypatch.setattr(main, "Net", Net, raising=False)
    net = Net()
    torch.save(net, tmp_path / "net.pt")
    monkeypatch.delattr(main, "Net")
    with pytest.raises(AttributeError):
        torch_load(torch, tmp_path / "net.pt")  # torch cannot find __main__.Net
    sd, replaced = load_warns(tmp_path / "net.pt")
    assert list(sd) == ["fc.weight", "fc.bias"] and "__main__.Net" in replaced[0]
    rebuilt = ckptdoctor.load(tmp_path / "net.pt", allow=[Net, torch.nn.Linear])
    assert type(rebuilt) is Net
    assert_same(rebuilt.state_dict(), net.state_dict())


@pytest.fixture()
def object_file(tmp_path, torch):
    path = tmp_path / "obj.pt"
    torch.save({"config": Config(0.5), "w": torch.ones(2)}, path)
    return path


def test_placeholder_policy(object_file):
    got, replaced = load_warns(object_file)
    ph = got["config"]
    assert isinstance(ph, Placeholder) and ph.qualname.endswith("test_policy.Config")
    assert ph.lr == 0.5 and ph.attrs["layers"] == [3, 4]
    assert "Config -> Placeholder (at config)" in replaced[0]


def test_dict_policy(object_file):
    got, _ = load_warns(object_file, on_unknown="dict")
    assert got["config"] == {"__class__": got["config"]["__class__"], "lr": 0.5, "layers": [3, 4]}


def test_error_policy(object_file):
    with pytest.raises(UnknownObjectError, match="Config at config"):
        ckptdoctor.load(object_file, on_unknown="error")


def test_allowed_plain_class(object_file, torch):
    got, replaced = load_warns(object_file, allow=[Config])
    assert replaced == []
    assert_same(got, torch_load(torch, object_file))


def test_tensor_subclass(tmp_path, torch):
    class Tagged(torch.Tensor):
        pass

    Tagged.__module__, Tagged.__qualname__ = __name__, "Tagged"
    globals()["Tagged"] = Tagged
    try:
        t = torch.arange(3.).as_subclass(Tagged)
        t.note = "x"
        torch.save({"t": t}, tmp_path / "sub.pt")
        ref = torch_load(torch, tmp_path / "sub.pt")
        plain, replaced = load_warns(tmp_path / "sub.pt")
        assert type(plain["t"]) is torch.Tensor and plain["t"].note == "x"
        assert "Tagged -> torch.Tensor" in replaced[0]
        assert_same(ckptdoctor.load(tmp_path / "sub.pt", allow=[Tagged]), ref)
    finally:
        del globals()["Tagged"]


def test_never_runs_code_from_the_file(tmp_path, torch):
    marker = tmp_path / "pwned"
    torch.save({"x": Evil(str(marker)), "w": torch.ones(1)}, tmp_path / "evil.pt")
    for policy in ("placeholder", "dict"):
        got, replaced = load_warns(tmp_path / "evil.pt", on_unknown=policy)
        assert "system" in replaced[0]
    with pytest.raises(UnknownObjectError):
        ckptdoctor.load(tmp_path / "evil.pt", on_unknown="error")
    assert not marker.exists()


def test_bad_arguments(object_file):
    with pytest.raises(ValueError, match="on_unknown"):
        ckptdoctor.load(object_file, on_unknown="ignore")
    with pytest.raises(TypeError, match="allow"):
        ckptdoctor.load(object_file, allow="Config")
    with pytest.raises(TypeError, match="allow"):
        ckptdoctor.load(object_file, allow=[42])
    with pytest.raises(TypeError, match="map_location"):
        ckptdoctor.load(object_file, map_location=3.5)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_map_location_forms(model_file, fmt, torch):
    path = model_file[fmt]
    allow = [torch.nn.Sequential, torch.nn.Linear, torch.nn.BatchNorm1d, torch.nn.ReLU]
    for ml in ("cpu", torch.device("cpu"), {"cpu": "cpu"}, "meta"):
        assert_same(ckptdoctor.load(path, map_location=ml, allow=allow), torch_load(torch, path, map_location=ml))
    calls: list[tuple[str, int]] = []
    theirs: list[tuple[str, int]] = []
    got = ckptdoctor.load(path, map_location=lambda s, loc: calls.append((loc, s.nbytes())), allow=allow)
    ref = torch_load(torch, path, map_location=lambda s, loc: theirs.append((loc, s.nbytes())))
    assert_same(got, ref)
    assert sorted(calls) == sorted(theirs) and calls


def test_without_torch_the_message_says_what_to_install(object_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(NeedsTorch, match=r"ckptdoctor\[torch\]"):
        ckptdoctor.load(object_file)


def test_truncated_files_fail_clearly(case_file, tmp_path):
    for fmt in ("zip", "legacy"):
        data = case_file("shared", fmt).read_bytes()
        cut = tmp_path / f"cut.{fmt}.pt"
        cut.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises((TruncatedFile, UnreadableFile)):
            ckptdoctor.load(cut)


def test_bare_pickle_loads_with_a_note(tmp_path, torch):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2.5], "b": "x"}, protocol=2))
    with pytest.raises(Exception, match="magic number"):
        torch_load(torch, path)
    got, notes = load_warns(path)
    assert got == {"a": [1, 2.5], "b": "x"}
    assert "bare pickle" in notes[0]


def test_invalid_sparse_indices_are_refused(tmp_path, torch):
    bad = torch.sparse_coo_tensor(torch.tensor([[0, 9]]), torch.tensor([1., 2.]), (3,), check_invariants=False)
    torch.save({"s": bad}, tmp_path / "bad.pt")
    with pytest.raises(UnreadableFile, match="sparse tensor s is invalid"):
        ckptdoctor.load(tmp_path / "bad.pt")


def test_warning_points_at_the_caller(model_file):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ckptdoctor.load(model_file["zip"])
    w = [w for w in caught if issubclass(w.category, ReplacedObjectWarning)][0]
    assert w.filename == __file__
