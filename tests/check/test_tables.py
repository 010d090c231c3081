"""The shipped weights_only tables against the torch installed for tests (2.13), and their shape."""

from __future__ import annotations

import inspect
import io
import pickle
import pickletools
import re

import pytest

from ckptdoctor.rules._tables import parse_version, weights_only_table, weights_only_versions


def test_every_release_from_1_13_has_a_table():
    versions = weights_only_versions()
    assert versions[0] == "1.13"
    for v in ("2.0", "2.4", "2.5", "2.6", "2.13", "2.14"):
        assert v in versions
    assert weights_only_table("1.12") is None
    assert weights_only_table("2.13.1+cu126")["torch"] == "2.13"
    assert weights_only_table("9.9")["torch"] == versions[-1]


def test_allowlist_for_installed_torch_equals_torch(torch):
    from torch._weights_only_unpickler import _get_allowed_globals

    installed = parse_version(torch.__version__)
    table = weights_only_table(torch.__version__)
    assert table["torch"] == f"{installed.major}.{installed.minor}"
    assert set(table["allowed_globals"]) == set(_get_allowed_globals())


def test_opcodes_for_installed_torch_equal_torch(torch):
    """Which opcodes the installed unpickler handles, from its source and by feeding it each opcode."""
    import torch._weights_only_unpickler as wo

    table = weights_only_table(torch.__version__)
    src = inspect.getsource(wo.Unpickler.load)
    from_source = set(re.findall(r"\b([A-Z][A-Z0-9_]+)\[0\]", src))
    assert from_source == set(table["allowed_opcodes"])
    refused = set()
    for op in pickletools.opcodes:
        code = op.code.encode("latin-1")
        try:
            wo.Unpickler(io.BytesIO(code + b"\x00" * 64)).load()
        except pickle.UnpicklingError as e:
            if str(e) == f"Unsupported operand {code[0]}":
                refused.add(op.name)
        except Exception:  # noqa: BLE001 - handled, then failed on our junk arguments
            pass
    handled = {op.name for op in pickletools.opcodes} - refused
    assert handled == set(table["allowed_opcodes"])


def test_blocklist_and_semantics_for_installed_torch(torch):
    import torch._weights_only_unpickler as wo

    table = weights_only_table(torch.__version__)
    assert table["blocklisted_modules"] == wo._blocklisted_modules
    assert table["py2_name_mapping"] == "always"
    assert table["setitem_targets"] == ["builtins.dict", "collections.OrderedDict", "collections.Counter"]
    assert table["load"]["weights_only_default"] is True
    assert table["load"]["add_safe_globals"] and table["load"]["safe_globals_context"]


@pytest.mark.parametrize(("version", "present", "absent"), [
    ("1.13", ["torch.nn.parameter.Parameter", "torch._utils._rebuild_sparse_csr_tensor", "torch.float32"],
     ["torch.bool", "torch._tensor._rebuild_from_type_v2", "collections.Counter", "builtins.set"]),
    ("2.0", ["torch._tensor._rebuild_from_type_v2"], ["torch.float8_e4m3fn", "_codecs.encode"]),
    ("2.2", ["torch.float8_e4m3fn", "torch._utils._rebuild_tensor_v3"], ["torch.device"]),
    ("2.4", ["collections.Counter", "torch.device", "torch.per_tensor_affine", "torch.bool"],
     ["_codecs.encode", "builtins.set"]),
    ("2.5", ["_codecs.encode", "builtins.bytearray", "torch._utils._rebuild_device_tensor_from_numpy"],
     ["builtins.set"]),
    ("2.6", ["builtins.set", "builtins.complex", "torch._utils._rebuild_device_tensor_from_cpu_tensor"],
     ["torch.uint1", "numpy.core.multiarray.scalar"]),
    ("2.7", ["torch.uint1", "torch.int7"], ["numpy.dtype"]),
])
def test_release_differences(version, present, absent):
    allowed = weights_only_table(version)["allowed_set"]
    for n in present:
        assert n in allowed, (version, n)
    for n in absent:
        assert n not in allowed, (version, n)


def test_opcodes_per_release():
    assert "BINFLOAT" not in weights_only_table("1.13")["opcode_set"]
    assert "BINFLOAT" in weights_only_table("2.0")["opcode_set"]
    for v in weights_only_versions():
        ops = weights_only_table(v)["opcode_set"]
        assert not ops & {"FRAME", "MEMOIZE", "SHORT_BINUNICODE", "STACK_GLOBAL", "BINSTRING", "BINBYTES"}, v
        assert {"GLOBAL", "REDUCE", "BINPERSID", "BUILD", "SHORT_BINSTRING"} <= ops, v


def test_api_facts_per_release():
    def load(v):
        return weights_only_table(v)["load"]

    assert not load("2.3")["add_safe_globals"] and load("2.4")["add_safe_globals"]
    assert not load("2.4")["safe_globals_context"] and load("2.5")["safe_globals_context"]
    assert not load("2.5")["weights_only_default"] and load("2.6")["weights_only_default"]
    assert load("2.5")["torchscript_weights_only_message"] is None
    assert load("2.6")["torchscript_weights_only_message"].startswith("Cannot use ``weights_only=True``")
    assert weights_only_table("2.4")["py2_name_mapping"] == "protocol-2"
    assert weights_only_table("2.3")["py2_name_mapping"] == "never"
    assert weights_only_table("2.4")["blocklisted_modules"] == []
    assert weights_only_table("2.5")["blocklisted_modules"] == ["sys", "os", "posix", "nt"]
