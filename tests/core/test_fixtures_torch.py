"""The core reader against torch 2.13 itself, on checkpoints torch writes here and now.

Every case is saved in both containers (zip and legacy) with pickle protocols
2-5, loaded back with ``torch.load(weights_only=False)``, and every tensor
ckptdoctor finds must match torch's: same dotted paths, dtype, shape, stride,
storage offset, requires_grad, bytes (sha256), storage sharing, quantizer and
sparse parts. Non-tensor values (numbers, strings, numpy, Namespace, modules)
must decode to the same data.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="torch (test extra) not installed")

import torch_fixtures as tf  # noqa: E402  (needs torch)

import ckptdoctor  # noqa: E402

PARAMS = [pytest.param(case, container, proto, id=f"{case}-{container}-p{proto}")
          for case in tf.CASES for container in tf.CONTAINERS for proto in tf.PROTOCOLS]


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize(("case", "container", "protocol"), PARAMS)
def test_reads_like_torch(case: str, container: str, protocol: int, tmp_path: Path) -> None:
    path = tf.save(tf.build(case, container), tmp_path / f"{case}.pt", container, protocol)
    tf.check_file(path, tf.load(path), container, protocol)


@pytest.mark.parametrize("protocol", tf.PROTOCOLS)
def test_new_dtypes_in_legacy_container(protocol: int, tmp_path: Path) -> None:
    """torch 2.13 writes untyped-storage dtypes into the legacy container but cannot load them back
    (``UntypedStorage`` has no ``dtype``); ckptdoctor reads them: compare with the tensors saved."""
    obj = tf._dtype_cases(tf.NEW_DTYPES)
    path = tf.save(obj, tmp_path / "new.pt", "legacy", protocol)
    tf.check_file(path, obj, "legacy", protocol)


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(how: str, tmp_path: Path) -> None:
    """A scripted/traced module with a buffer and a submodule: tensors of torch.jit.load(f).state_dict()."""
    path = tmp_path / f"{how}.pt"
    loaded = tf.save_script(how, path)
    expected = tf.torch_tensors({"state_dict": loaded.state_dict(keep_vars=True)})
    assert len(expected) == 4
    with ckptdoctor.open(path) as ckpt:
        assert ckpt.format == "torchscript"
        got = dict(ckpt.tensors())
        assert list(got) == list(expected)  # module.state_dict() order
        for p, want in expected.items():
            tf.assert_tensor(p, want, got[p])
        tf.assert_sharing(expected, got)
