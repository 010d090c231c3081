"""Classification of names and of the ways a pickle reaches them."""

from __future__ import annotations

import pytest

from ckptdoctor.findings import Severity
from ckptdoctor.security.classify import pickle_findings
from ckptdoctor.security.pickles import run_recorded
from ckptdoctor.security.table import classify
from security.pickleasm import Asm, Call, G


@pytest.mark.parametrize("module,name,category,kind", [
    ("torch._utils", "_rebuild_tensor_v2", "tensor-rebuild", None),
    ("torch", "HalfStorage", "tensor-rebuild", None),
    ("collections", "OrderedDict", "benign-data", None),
    ("__builtin__", "set", "benign-data", None),
    ("copy_reg", "_reconstructor", "needs-allowlist", None),
    ("argparse", "Namespace", "needs-allowlist", None),
    ("numpy.core.multiarray", "_reconstruct", "needs-allowlist", None),
    ("torch.nn.modules.linear", "Linear", "needs-allowlist", None),
    ("omegaconf.dictconfig", "DictConfig", "needs-allowlist", None),
    ("__main__", "Net", "unknown", None),
    ("mypackage.models", "ResNet", "unknown", None),
    ("os", "system", "dangerous", "process"),
    ("posix", "system", "dangerous", "process"),
    ("nt", "system", "dangerous", "process"),
    ("commands", "getoutput", "dangerous", "process"),
    ("__builtin__", "eval", "dangerous", "code"),
    ("__builtins__", "exec", "dangerous", "code"),
    ("builtins", "getattr", "dangerous", "attribute"),
    ("operator", "attrgetter", "dangerous", "attribute"),
    ("_operator", "methodcaller", "dangerous", "attribute"),
    ("importlib", "import_module", "dangerous", "import"),
    ("builtins", "__import__", "dangerous", "import"),
    ("pkgutil", "resolve_name", "dangerous", "import"),
    ("runpy", "_run_code", "dangerous", "code"),
    ("pickle", "loads", "dangerous", "deserialise"),
    ("cPickle", "loads", "dangerous", "deserialise"),
    ("torch", "load", "dangerous", "deserialise"),
    ("numpy", "load", "dangerous", "deserialise"),
    ("shutil", "rmtree", "dangerous", "file"),
    ("socket", "create_connection", "dangerous", "network"),
    ("webbrowser", "open", "dangerous", "process"),
    ("ctypes", "CDLL", "dangerous", "ffi"),
    ("code", "InteractiveInterpreter.runcode", "dangerous", "code"),
    ("pdb", "run", "dangerous", "code"),
    ("torch.hub", "load", "dangerous", "import"),
    ("torch.jit", "load", "dangerous", "deserialise"),
    ("torch.jit", "_script_if_tracing", "dangerous", "torch-escape"),
    ("torch.ops.aten", "from_file", "dangerous", "file"),
    ("torch.jit._pickle", "build_intlist", "tensor-rebuild", None),
    ("pip", "main", "dangerous", "package"),
    ("ensurepip", "_run_pip", "dangerous", "package"),
    ("torch", "serialization.os.system", "dangerous", "process"),  # protocol 4 attribute path
    ("numpy", "__builtins__", "dangerous", "traversal"),
    ("mymodule", "system", "dangerous", "traversal"),  # a module re-exporting os.system
    ("antigravity", "geohash", "dangerous", "import-side-effect"),
    ("torch.utils.bottleneck.__main__", "run_cprofile", "dangerous", "import-side-effect"),
    ("subproces", "call", "dangerous", "lookalike"),
    ("Os", "system", "dangerous", "traversal"),
    ("оs", "system", "dangerous", "lookalike"),  # Cyrillic o
    ("re", "sub", "dangerous", "stdlib"),  # unlisted stdlib: dangerous when called
])
def test_names(module, name, category, kind):
    c = classify(module, name)
    assert (c.category, c.kind) == (category, kind), c


def test_unlisted_stdlib_counts_only_when_called():
    assert classify("re", "sub").only_when_called
    assert not classify("os", "system").only_when_called


def _findings(data: bytes):
    scan = run_recorded(data, 0, len(data))
    return scan, pickle_findings(scan)


def test_a_class_merely_referenced_is_not_dangerous():
    # a dangerous class pushed and stored as a value, never instantiated
    _, fs = _findings(Asm(2).value({"cls": G("subprocess", "Popen")}).stop())
    assert [f.id for f in fs] == ["CKD-SEC-DANGEROUS-REF"] and fs[0].severity == Severity.WARNING
    # an unknown user class referenced: informational only
    _, fs = _findings(Asm(2).value({"cls": G("mymodels", "Net")}).stop())
    assert {f.severity for f in fs} == {Severity.INFO}


def test_instantiated_user_class_is_unknown_not_dangerous():
    data = Asm(2).call(Call(G("mymodels", "Net"), (), how="newobj")).build({"training": True}).stop()
    _, fs = _findings(data)
    assert [f.id for f in fs] == ["CKD-SEC-UNKNOWN"] and fs[0].severity == Severity.WARNING
    assert "NEWOBJ at byte" in fs[0].explanation


@pytest.mark.parametrize("how", ["reduce", "newobj", "newobj_ex", "inst", "obj"])
def test_every_call_opcode_reaches(how):
    data = Asm(2 if how != "newobj_ex" else 4).call(Call(G("os", "system"), ("x",), how=how, kwargs={})).stop()
    scan, fs = _findings(data)
    f = next(f for f in fs if f.id == "CKD-SEC-DANGEROUS")
    assert f.severity == Severity.CRITICAL
    assert f.evidence["opcode"] in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "INST", "OBJ")
    assert f"{f.evidence['opcode']} at byte {f.evidence['offset']}" in f.explanation
    assert data[f.evidence["offset"]:f.evidence["offset"] + 1] in (b"R", b"\x81", b"\x92", b"i", b"o")


def test_passed_where_torch_calls_it():
    data = Asm(2).call(Call(G("torch._tensor", "_rebuild_from_type_v2"),
                            (G("os", "system"), G("torch", "Tensor"), ("x",), {}))).stop()
    scan, fs = _findings(data)
    r = scan.reaches[("os.system", "called-later")]
    assert r.via == ["torch._tensor._rebuild_from_type_v2"]
    assert any(f.severity == Severity.CRITICAL and "which calls it" in f.explanation for f in fs)


def test_defaultdict_factory_and_hooks_are_calls():
    data = Asm(2).call(Call(G("collections", "defaultdict"), (G("builtins", "exec"),))).stop()
    scan, _ = _findings(data)
    assert ("builtins.exec", "called-later") in scan.reaches
    hooks = Asm(2).call(Call(G("torch.nn.modules.linear", "Linear"), (), how="newobj")).build(
        {"_forward_hooks": {0: G("os", "system")}}).stop()
    scan, fs = _findings(hooks)
    assert scan.reaches[("os.system", "passed")].via == ["torch.nn.modules.linear.Linear.__setstate__"]
    assert any(f.severity == Severity.CRITICAL for f in fs)


def test_computed_callable_and_build_gadgets():
    chain = Call(Call(G("builtins", "getattr"), (G("codecs", "builtins"), "exec")), ("x",))
    scan, fs = _findings(Asm(2).call(chain).stop())
    assert any(f.id == "CKD-SEC-INDIRECT-CALL" for f in fs)
    a = Asm(2)
    a.glob(G("numpy", "prod")).build((None, {"a": "os"}))
    scan, fs = _findings(a.stop())
    assert scan.reaches[("numpy.prod", "built-on")].cls.kind == "state"
    a = Asm(2).call(Call(G("argparse", "Namespace"), (), how="newobj")).build((None, {"__setstate__": "x"}))
    scan, fs = _findings(a.stop())
    assert any("__setstate__" in i.source for i in scan.indirect)


def test_ext_codes_are_unresolvable_calls():
    scan, fs = _findings(b"\x80\x02\x82\x05X\x01\x00\x00\x00x\x85R.")
    f = next(f for f in fs if f.id == "CKD-SEC-DANGEROUS")
    assert f.evidence["opcode"] == "REDUCE" and "extension code 5" in f.explanation


def test_partial_results_survive_a_broken_pickle():
    data = Asm(2, stack_global=False).call(Call(G("os", "system"), ("x",))).out + b"\xff"
    scan, fs = _findings(bytes(data))
    assert scan.error and scan.end is None
    assert any(f.id == "CKD-SEC-DANGEROUS" for f in fs)


def test_nested_payload_in_codecs_bytes():
    from ckptdoctor.security.sites import scan_bytes
    from security.malicious import _inner, nested_in_bytes, torch_zip

    fs = scan_bytes(nested_in_bytes(_inner("/nonexistent/CANARY")), "x.pt")
    assert fs.nested and fs.nested[0].deserialiser == "torch.storage._load_from_bytes"
    assert fs.nested[0].scan.kind == "zip"
    # bytes that are only carried (not deserialised) are reported, capped at WARNING
    carried = torch_zip(Asm(2).value({"blob": _inner("/nonexistent/CANARY")}).stop())
    from ckptdoctor.security import findings_for

    out = findings_for(scan_bytes(carried, "y.pt"))
    emb = [f for f in out if f.id == "CKD-SEC-EMBEDDED"]
    assert emb and all(f.severity == Severity.WARNING for f in emb)


def test_bound_method_of_a_built_object_is_not_a_gadget():
    inst = Call(G("mymodels", "Net"), (), how="newobj")
    scan, fs = _findings(Asm(2).value({"hook": Call(G("builtins", "getattr"), (inst, "_hook"))}).stop())
    assert scan.reaches[("builtins.getattr", "called")].cls.matched == "bound-method"
    assert Severity.CRITICAL not in {f.severity for f in fs}
    # ...but getattr on a module object, on a dunder, or calling the bound method stays dangerous
    for value in (Call(G("builtins", "getattr"), (G("codecs", "builtins"), "exec")),
                  Call(G("builtins", "getattr"), (inst, "__class__")),
                  Call(Call(G("builtins", "getattr"), (inst, "_hook")), ())):
        _, fs = _findings(Asm(2).value(value).stop())
        assert Severity.CRITICAL in {f.severity for f in fs}, value


def test_bound_classmethod_and_joblib_wrappers():
    scan, fs = _findings(Asm(2).value(Call(G("builtins", "getattr"), (G("mymodels", "Net"), "from_config"))).stop())
    assert Severity.CRITICAL not in {f.severity for f in fs}
    assert classify("joblib.numpy_pickle", "NumpyArrayWrapper").category == "needs-allowlist"
    assert classify("joblib", "load").category == "dangerous"
