"""Live malicious pickles for tests/core/test_no_code_execution.py: each one creates a canary file if run.

Every payload is assembled by hand, opcode by opcode (``hostile.py``), or by ``pickle.dumps`` of a
class whose ``__reduce__`` names the dangerous callable: writing a pickle never runs it. The test
proves each payload is live by unpickling it with Python's own ``pickle`` in a separate process
(the positive control) and then checks that ckptdoctor, given the same bytes, never creates the
canary. Canaries are files in a temporary folder; the commands only ``touch`` them.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hostile as H
from hostile import MARK, NEWOBJ, NEWOBJ_EX, OBJ, REDUCE, STACK_GLOBAL, STOP, TUPLE1, binget, binput


@dataclass(frozen=True)
class Canary:
    """One canary file, plus a module and a script that create it when imported or run."""

    folder: Path
    tag: str

    @property
    def path(self) -> Path:
        return self.folder / f"CANARY_{self.tag}"

    @property
    def module(self) -> str:
        return f"ckd_canary_{self.tag}"

    @property
    def script(self) -> Path:
        return self.folder / f"ckd_canary_script_{self.tag}.py"

    def install(self) -> None:
        """Write the module (importable once ``folder`` is on sys.path) and the script."""
        (self.folder / f"{self.module}.py").write_text(CANARY_MODULE.format(path=str(self.path)))
        self.script.write_text(f"open({str(self.path)!r}, 'w').write('script')\n")


CANARY_MODULE = '''"""Test canary: importing this module, or making or restoring an Evil, writes the canary file."""
import pathlib

CANARY = pathlib.Path({path!r})


def fire(how):
    CANARY.write_text(how)


fire("import")


class Evil:
    def __new__(cls, *args, **kwargs):
        fire("new")
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        fire("init")

    def __setstate__(self, state):
        fire("setstate")
'''


def g(module: str, name: str) -> bytes:
    return H.global_op(module, name)


def s(text: str) -> bytes:
    return H.unicode(text)


def call(module: str, name: str, *args: bytes) -> bytes:
    """GLOBAL module.name, a tuple of the (already encoded) args, REDUCE."""
    return g(module, name) + MARK + b"".join(args) + H.TUPLE + REDUCE


def touch(c: Canary) -> str:
    return f"touch {c.path}"


def py_touch(c: Canary) -> str:
    return f"open({str(c.path)!r}, 'w').write('python')"


def _list(*items: bytes) -> bytes:
    return H.EMPTY_LIST + MARK + b"".join(items) + H.APPENDS


# ------------------------------------------------------------------ the payloads
def p_os_system(c: Canary) -> bytes:
    return H.PROTO2 + call("os", "system", s(touch(c))) + STOP


def p_popen(c: Canary) -> bytes:
    return H.PROTO2 + call("subprocess", "Popen", _list(s("touch"), s(str(c.path)))) + STOP


def p_run(c: Canary) -> bytes:
    return H.PROTO2 + call("subprocess", "run", _list(s("touch"), s(str(c.path)))) + STOP


def p_check_output(c: Canary) -> bytes:
    return H.PROTO2 + call("subprocess", "check_output", _list(s("touch"), s(str(c.path)))) + STOP


def p_exec(c: Canary) -> bytes:
    return H.PROTO2 + call("builtins", "exec", s(py_touch(c))) + STOP


def p_eval(c: Canary) -> bytes:
    return H.PROTO2 + call("builtins", "eval", s(f"__import__('os').system({touch(c)!r})")) + STOP


def p_compile(c: Canary) -> bytes:
    code = call("builtins", "compile", s(py_touch(c)), s("<payload>"), s("exec"))
    return H.PROTO2 + g("builtins", "exec") + code + TUPLE1 + REDUCE + STOP


def p_import_module(c: Canary) -> bytes:
    return H.PROTO2 + call("importlib", "import_module", s(c.module)) + STOP


def p_dunder_import(c: Canary) -> bytes:
    return H.PROTO2 + call("builtins", "__import__", s(c.module)) + STOP


def p_run_path(c: Canary) -> bytes:
    return H.PROTO2 + call("runpy", "run_path", s(str(c.script))) + STOP


def p_run_module(c: Canary) -> bytes:
    return H.PROTO2 + call("runpy", "run_module", s(c.module)) + STOP


def p_newobj(c: Canary) -> bytes:
    return H.PROTO2 + g(c.module, "Evil") + H.EMPTY_TUPLE + NEWOBJ + STOP


def p_newobj_ex(c: Canary) -> bytes:
    return H.PROTO4 + g(c.module, "Evil") + H.EMPTY_TUPLE + H.EMPTY_DICT + s("k") + H.NONE + H.SETITEM \
        + NEWOBJ_EX + STOP


def p_obj(c: Canary) -> bytes:
    return H.PROTO2 + MARK + g("os", "system") + s(touch(c)) + OBJ + STOP


def p_inst(c: Canary) -> bytes:
    return b"(" + b"V" + touch(c).encode() + b"\n" + b"ios\nsystem\n" + STOP


def p_build_setstate(c: Canary) -> bytes:
    # copyreg._reconstructor(Evil, object, None) makes an Evil without calling Evil.__new__;
    # BUILD then calls Evil.__setstate__.
    make = call("copyreg", "_reconstructor", g(c.module, "Evil"), g("builtins", "object"), H.NONE)
    return H.PROTO2 + make + H.EMPTY_DICT + H.BUILD + STOP


def p_stack_global_memo(c: Canary) -> bytes:
    return (H.PROTO4 + s("os") + binput(0) + H.POP + s("system") + binput(1) + H.POP
            + binget(0) + binget(1) + STACK_GLOBAL + s(touch(c)) + TUPLE1 + REDUCE + STOP)


def p_ext1(c: Canary) -> bytes:
    return H.PROTO2 + b"\x82" + bytes([EXT_CODES["ext1"]]) + s(touch(c)) + TUPLE1 + REDUCE + STOP


def p_ext2(c: Canary) -> bytes:
    return H.PROTO2 + b"\x83" + EXT_CODES["ext2"].to_bytes(2, "little") + s(touch(c)) + TUPLE1 + REDUCE + STOP


def p_ext4(c: Canary) -> bytes:
    return H.PROTO2 + b"\x84" + EXT_CODES["ext4"].to_bytes(4, "little") + s(touch(c)) + TUPLE1 + REDUCE + STOP


def p_nested_pickle_loads(c: Canary) -> bytes:
    inner = p_os_system(c)
    return H.PROTO4 + g("pickle", "loads") + b"B" + len(inner).to_bytes(4, "little") + inner + TUPLE1 + REDUCE + STOP


def p_state_setter(c: Canary) -> bytes:
    """A 6-tuple ``__reduce__`` (Python >= 3.8): ``state_setter(obj, state)`` is ``exec(source, {})``."""
    return pickle.dumps(_StateSetter(py_touch(c)), protocol=5)


def p_torch_load(c: Canary) -> bytes:
    """functools.partial(torch.load, weights_only=False)(evil.pt): a torch.load inside the pickle."""
    partial = g("functools", "partial") + g("torch", "load") + TUPLE1 + REDUCE
    state = MARK + g("torch", "load") + H.EMPTY_TUPLE + H.EMPTY_DICT + s("weights_only") + b"\x89" \
        + H.SETITEM + H.NONE + H.TUPLE
    return H.PROTO2 + partial + state + H.BUILD + s(str(c.folder / f"evil_{c.tag}.pt")) + TUPLE1 + REDUCE + STOP


class _Reduce:
    """``__reduce__`` returning (callable, args): pickle.dumps writes it, never calls it."""

    def __init__(self, fn: Callable, args: tuple) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


class _StateSetter:
    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self):
        return str, (self.source,), {}, None, None, exec


def dumps_protocol(protocol: int) -> Callable[[Canary], bytes]:
    def build(c: Canary) -> bytes:
        return pickle.dumps(_Reduce(os.system, (touch(c),)), protocol=protocol)

    build.__name__ = f"p_reduce_dumps_protocol{protocol}"
    return build


EXT_CODES = {"ext1": 0xF1, "ext2": 0x1F2F, "ext4": 0x3F4F5F6F}
EXT_TARGET = ("os", "system")

# name -> (builder, globals ckptdoctor must report, besides any others)
PAYLOADS: dict[str, tuple[Callable[[Canary], bytes], set[str]]] = {
    "os.system": (p_os_system, {"os.system"}),
    "subprocess.Popen": (p_popen, {"subprocess.Popen"}),
    "subprocess.run": (p_run, {"subprocess.run"}),
    "subprocess.check_output": (p_check_output, {"subprocess.check_output"}),
    "builtins.exec": (p_exec, {"builtins.exec"}),
    "builtins.eval": (p_eval, {"builtins.eval"}),
    "builtins.compile": (p_compile, {"builtins.compile", "builtins.exec"}),
    "importlib.import_module": (p_import_module, {"importlib.import_module"}),
    "builtins.__import__": (p_dunder_import, {"builtins.__import__"}),
    "runpy.run_path": (p_run_path, {"runpy.run_path"}),
    "runpy.run_module": (p_run_module, {"runpy.run_module"}),
    "NEWOBJ": (p_newobj, {"{module}.Evil"}),
    "NEWOBJ_EX": (p_newobj_ex, {"{module}.Evil"}),
    "OBJ": (p_obj, {"os.system"}),
    "INST": (p_inst, {"os.system"}),
    "BUILD-__setstate__": (p_build_setstate, {"copyreg._reconstructor", "{module}.Evil"}),
    "STACK_GLOBAL-memo": (p_stack_global_memo, {"os.system"}),
    "EXT1": (p_ext1, {f"copyreg._extension_registry.{EXT_CODES['ext1']}"}),
    "EXT2": (p_ext2, {f"copyreg._extension_registry.{EXT_CODES['ext2']}"}),
    "EXT4": (p_ext4, {f"copyreg._extension_registry.{EXT_CODES['ext4']}"}),
    "pickle.loads": (p_nested_pickle_loads, {"pickle.loads"}),
    "reduce-state_setter": (p_state_setter, {"builtins.exec", "builtins.str"}),
    "torch.load": (p_torch_load, {"torch.load", "functools.partial"}),
    **{f"dumps-protocol{p}": (dumps_protocol(p), {f"{os.system.__module__}.system"}) for p in range(6)},
}
FIRES_AS = {"NEWOBJ": "new", "NEWOBJ_EX": "new", "BUILD-__setstate__": "setstate"}


def expected_globals(name: str, c: Canary) -> set[str]:
    return {x.format(module=c.module) for x in PAYLOADS[name][1]}


# ------------------------------------------------------------------ positive control (a separate process)
CONTROL = r"""
import copyreg, json, pathlib, pickle, subprocess, sys
cases = json.loads(pathlib.Path(sys.argv[1]).read_text())
out = {}
for c in cases:
    for code in c["ext"]:
        copyreg.add_extension(c["ext_target"][0], c["ext_target"][1], code)
    err = None
    try:
        obj = pickle.loads(pathlib.Path(c["file"]).read_bytes())  # our own payloads: proving they are live
        if isinstance(obj, subprocess.Popen):
            obj.wait()
    except BaseException as e:
        err = repr(e)
    canary = pathlib.Path(c["canary"])
    out[c["name"]] = {"fired": canary.read_text() if canary.exists() else None, "error": err}
    for code in c["ext"]:
        copyreg.remove_extension(c["ext_target"][0], c["ext_target"][1], code)
print(json.dumps(out))
"""
