"""ckptdoctor.load == torch.load, bit for bit, on generated checkpoints of every kind torch.save writes."""

from __future__ import annotations

import collections
import io
import sys
import warnings

import pytest

import ckptdoctor
from ckptdoctor.torchio import ReplacedObjectWarning

from .cases import CASES, big_endian_copy, build
from .deepcompare import Mismatch, assert_same

# torch's legacy loader rebuilds nested tensors before it has read the storages' bytes, so its
# result is garbage (or an error); ours reads them properly. Compare nested tensors in zip only.
TORCH_LEGACY_BROKEN = {"nested_tensor"}


def ours(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReplacedObjectWarning)
        return ckptdoctor.load(path, **kw)


def reference(torch, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, weights_only=False, **kw)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_torch_load(case, fmt, case_file, torch):
    if fmt == "legacy" and case in TORCH_LEGACY_BROKEN:
        pytest.skip("torch's legacy loader builds nested tensors from unread storages (no reference)")
    path = case_file(case, fmt)
    got = ours(path)
    try:
        ref = reference(torch, path)
    except Exception as e:  # noqa: BLE001 - e.g. untyped storages in legacy files: torch reads back its own file wrong
        pytest.skip(f"torch {torch.__version__} cannot load the {case} file it wrote as {fmt}: {e}")
    assert_same(got, ref)


@pytest.mark.parametrize("case", ["dtypes", "shared", "params", "views", "quantized"])
def test_same_as_torch_mmap_load(case, case_file, torch):
    path = case_file(case, "zip")
    assert_same(ours(path), reference(torch, path, mmap=True))


def test_all_dtypes_are_covered(torch):
    names = set(build("dtypes", torch, False))
    for dt in ("bfloat16", "float8_e4m3fn", "float8_e5m2", "complex32", "complex128", "uint16", "uint32", "uint64",
               "bool", "float4_e2m1fn_x2", "float8_e8m0fnu"):
        assert dt in names


def test_deep_compare_catches_differences(torch):
    t = torch.arange(4.)
    with pytest.raises(Mismatch, match="stride"):
        assert_same({"a": t.reshape(2, 2).t().contiguous()}, {"a": t.reshape(2, 2).t()})
    with pytest.raises(Mismatch, match="sharing"):
        assert_same([t, t.clone()], [t, t.view(4)])
    with pytest.raises(Mismatch, match="identity"):
        assert_same([t, t.clone()], [t, t])
    with pytest.raises(Mismatch, match="storage bytes"):
        u = t.clone()
        u[0] = -0.0
        v = t.clone()
        v[0] = 0.0
        assert_same(u, v)
    od = collections.OrderedDict(a=1)
    od._metadata = {"": {"version": 1}}
    with pytest.raises(Mismatch, match="attributes"):
        assert_same(collections.OrderedDict(a=1), od)


@pytest.mark.parametrize("case", ["dtypes", "views", "quantized", "shared"])
def test_big_endian_zip_is_byteswapped(case, case_file, case_dir, torch):
    src = case_file(case, "zip")
    be = case_dir / f"{case}.big-endian.pt"
    big_endian_copy(torch, src, be)
    got = ours(be)
    assert_same(got, reference(torch, src))  # the values of the little-endian original
    if case != "dtypes":  # torch's own byteswap fails on bits8/bits16 (torch._utils._element_size)
        assert_same(got, reference(torch, be))


def test_safetensors_like_torch(tmp_path, torch):
    from safetensors.torch import save_file

    sd = {"w": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int16), "h": torch.ones(2, dtype=torch.bfloat16)}
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path))
    got = ours(path)
    assert type(got) is dict
    assert_same(got, reference(torch, path))


def test_in_memory_file_objects_load_too(case_file, torch):
    path = case_file("shared", "zip")
    buf = io.BytesIO(path.read_bytes())
    got = ours(buf)
    assert not buf.closed  # the caller's file object stays open, as with torch.load
    assert_same(got, reference(torch, path))


def test_tensors_are_zero_copy_slices_of_a_private_mapping(case_file, torch):
    for fmt in ("zip", "legacy"):
        path = case_file("views", fmt)
        got = ours(path)
        ptr = got["base"].untyped_storage().data_ptr()
        maps = _maps_of(path)
        assert any(lo <= ptr < hi and "p" in perms for lo, hi, perms in maps), (fmt, hex(ptr), maps)
        before = path.read_bytes()
        got["base"].add_(1)  # copy-on-write: the process's pages change, never the file
        assert path.read_bytes() == before


def _maps_of(path) -> list[tuple[int, int, str]]:
    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc/self/maps")
    out = []
    real = str(path.resolve())
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == real:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi, parts[1]))
    return out


def test_unaligned_legacy_tensors_compute_correctly(case_file, torch):
    # legacy records start wherever the previous one ended: storages are unaligned slices of the mapping
    path = case_file("shared", "legacy")
    got, ref = ours(path), reference(torch, path)
    w, rw = got["enc.weight"], ref["enc.weight"]
    assert torch.equal(w @ w.t(), rw @ rw.t())
    assert torch.equal(w.sum(0), rw.sum(0))
    assert torch.equal(torch.nn.functional.linear(w, w), torch.nn.functional.linear(rw, rw))


def test_legacy_storage_views(case_dir, torch):
    from .cases import make_legacy_with_views

    path = case_dir / "views-legacy.pt"
    make_legacy_with_views(torch, path)
    got = ours(path)
    assert_same(got, reference(torch, path))
    assert got["v1"].tolist() == [[3.0, 4.0], [5.0, 6.0]]


def test_tar_checkpoints(case_dir, torch):
    from .cases import make_tar

    path = case_dir / "old.tar"
    make_tar(torch, path)
    got = ours(path)
    assert_same(got, reference(torch, path))
    assert got["w"].untyped_storage().data_ptr() == got["w_t"].untyped_storage().data_ptr()
    assert got["b_view"].tolist() == [-2.0, 3.25]
