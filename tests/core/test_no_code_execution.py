"""Malicious pickles in every container: ckptdoctor reads (or cleanly refuses) them, reports the
dangerous globals, and nothing in them ever runs.

Each payload (``payloads.py``) would create a canary file if unpickled: ``test_payloads_are_live``
proves that with Python's own ``pickle`` in a separate process. ckptdoctor then gets the same bytes
as a bare pickle, as the object pickle of a legacy stream, as ``data.pkl`` of a torch zip, as
``constants.pkl`` and as ``data.pkl`` of a TorchScript archive, and as the ``pickle`` member of a
torch 0.1 tar archive (each built from a real file torch, or the tar writer, produced).

While ckptdoctor parses, an audit hook (``sys.addaudithook``) is armed: it records process,
code-execution and unpickling events (os.system, subprocess.Popen, os.exec*/spawn*/fork,
exec/compile of code that is not a module file, pickle.find_class, marshal.loads, imports of new
modules) and any ``open`` of a path in the canary folder, and makes the event's operation fail (so
nothing runs even if ckptdoctor tried; the recorded event fails the test). The hook stays installed for the rest of
the pytest process (hooks cannot be removed) but does nothing unless armed. Modules ckptdoctor
imports lazily are imported before arming, by reading a benign file of each container.
"""

from __future__ import annotations

import ast
import codecs
import json
import os
import pickletools
import subprocess
import sys
import tarfile
import uuid
from contextlib import contextmanager
from pathlib import Path

import hostile as H
import payloads as P
import pytest
from cli_child import run_cli

import ckptdoctor
from ckptdoctor.errors import CkptdoctorError

CONTAINERS = ("pickle", "legacy", "zip", "torchscript-constants", "torchscript-data", "tar")
EXPECTED_FORMAT = {"pickle": "pickle", "legacy": "legacy", "zip": "zip", "torchscript-constants": "torchscript",
                   "torchscript-data": "torchscript", "tar": "tar"}

# ------------------------------------------------------------------ the audit hook
_ARMED: list[list[tuple[str, str]]] = []
_WATCH: list[str] = []  # folders whose files nobody may open while armed
PROCESS_EVENTS = {"os.system", "subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                  "os.forkpty", "os.startfile", "pty.spawn", "pickle.find_class", "marshal.loads",
                  "marshal.load", "ctypes.dlopen", "ctypes.call_function", "builtins.input", "code.__new__",
                  "function.__new__", "os.kill", "os.putenv", "sys.settrace", "sys.setprofile"}


def _is_module_file(filename: object) -> bool:
    return isinstance(filename, str) and filename.endswith(".py") and os.path.isfile(filename)


def _in_ast_parse() -> bool:
    """compile() called by ast.parse builds a syntax tree only (TorchScript code/ is parsed, never run)."""
    f = sys._getframe(2)
    while f is not None:
        if f.f_code.co_name == "parse" and f.f_code.co_filename == ast.__file__:
            return True
        f = f.f_back
    return False


def _audit(event: str, args: tuple) -> None:
    if not _ARMED:
        return
    bad = event in PROCESS_EVENTS
    if event == "exec":  # builtins.exec/eval of a code object: imports exec module files, payloads don't
        code = args[0] if args else None
        bad = not _is_module_file(getattr(code, "co_filename", None))
    elif event == "compile":  # compile(source, filename): of module files when importing, or by ast.parse
        bad = not _is_module_file(args[1] if len(args) > 1 else None) and not _in_ast_parse()
    elif event == "import":  # any module import while armed: everything legitimate was imported before
        bad = True
    elif event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        name = os.fsdecode(args[0])
        bad = any(name.startswith(w) for w in _WATCH)
    if bad:
        _ARMED[-1].append((event, repr(args)[:300]))
        raise RuntimeError(f"audit hook: {event} while ckptdoctor was parsing")  # and stop it happening


sys.addaudithook(_audit)


@contextmanager
def armed():
    seen: list[tuple[str, str]] = []
    _ARMED.append(seen)
    try:
        yield seen
    finally:
        _ARMED.pop()


# ------------------------------------------------------------------ real files to carry the payloads
@pytest.fixture(scope="module")
def lab(tmp_path_factory, torch) -> dict:
    """A canary folder on sys.path (so an import *would* succeed) and a real file of each container."""
    root = tmp_path_factory.mktemp("no_exec")
    canary = P.Canary(root / "canary", uuid.uuid4().hex[:10])
    canary.folder.mkdir()
    canary.install()
    sys.path.insert(0, str(canary.folder))
    _WATCH.append(str(canary.folder))
    base = root / "base"
    base.mkdir()
    torch.save({"w": torch.arange(6.0)}, base / "zip.pt")
    torch.save({"w": torch.arange(6.0)}, base / "legacy.pt", _use_new_zipfile_serialization=False)

    class Small(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x)

    torch.jit.script(Small()).save(str(base / "script.pt"))
    from tar_writer import write_tar

    write_tar(base / "tar.pt", {"w": torch.arange(6.0)})
    # warm-up: every module ckptdoctor imports lazily is imported now, before any hook is armed
    for codec in ("raw-unicode-escape", "cp437", "latin-1", "utf-8", "ascii", "unicode-escape"):
        codecs.lookup(codec)
    for name in ("zip.pt", "legacy.pt", "script.pt", "tar.pt"):
        with ckptdoctor.open(base / name) as ckpt:
            list(ckpt.tensors())
    warm = root / "warm.pkl"
    warm.write_bytes(P.p_os_system(P.Canary(root, "warm")))  # an unknown-callable pickle, never run
    ckptdoctor.open(warm).close()
    yield {"root": root, "canary": canary, "base": base}
    sys.path.remove(str(canary.folder))
    _WATCH.remove(str(canary.folder))


def _legacy_head(data: bytes) -> bytes:
    """magic, protocol version and sys_info pickles of a real legacy file (found by decoding opcodes)."""
    pos = 0
    for _ in range(3):
        for op, _arg, at in pickletools.genops(data[pos:]):
            if op.name == "STOP":
                pos += at + 1
                break
    return data[:pos]


def wrap(container: str, payload: bytes, base: Path, out: Path) -> Path:
    """The payload as the object pickle of a real file of ``container``."""
    if container == "pickle":
        out.write_bytes(payload)
    elif container == "legacy":  # ... then an empty storage-key list and no storage records
        out.write_bytes(_legacy_head((base / "legacy.pt").read_bytes()) + payload + H.PROTO2 + H.EMPTY_LIST + H.STOP)
    elif container == "zip":
        H.replace_member(base / "zip.pt", out, "/data.pkl", payload)
    elif container == "torchscript-constants":
        H.replace_member(base / "script.pt", out, "/constants.pkl", payload)
    elif container == "torchscript-data":
        H.replace_member(base / "script.pt", out, "/data.pkl", payload)
    elif container == "tar":
        with tarfile.open(base / "tar.pt") as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
            for m in src.getmembers():
                data = payload if m.name == "pickle" else src.extractfile(m).read()
                info = tarfile.TarInfo(m.name)
                info.size = len(data)
                dst.addfile(info, __import__("io").BytesIO(data))
    else:  # pragma: no cover
        raise ValueError(container)
    return out


# ------------------------------------------------------------------ the payloads are live
def _control(cases: list[dict], work: Path, extra_path: str) -> dict:
    spec = work / "control.json"
    spec.write_text(json.dumps(cases))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([extra_path, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", P.CONTROL, str(spec)], capture_output=True, text=True, env=env,
                       cwd=work, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def _control_cases(names: list[str], work: Path) -> list[dict]:
    cases = []
    for name in names:
        c = P.Canary(work, f"ctl{len(cases)}")
        c.install()
        f = work / f"payload{len(cases)}.pkl"
        f.write_bytes(P.PAYLOADS[name][0](c))
        ext = [P.EXT_CODES[name.lower()]] if name.startswith("EXT") else []
        cases.append({"name": name, "file": str(f), "canary": str(c.path), "ext": ext, "ext_target": P.EXT_TARGET})
    return cases


def test_payloads_are_live(tmp_path):
    """Positive control: Python's pickle, in a separate process, creates every canary."""
    names = [n for n in P.PAYLOADS if n != "torch.load"]
    out = _control(_control_cases(names, tmp_path), tmp_path, str(tmp_path))
    for name in names:
        assert out[name]["fired"] is not None, (name, out[name])
        assert out[name]["fired"] == P.FIRES_AS.get(name, out[name]["fired"]), (name, out[name])


@pytest.mark.slow
def test_torch_load_payload_is_live(tmp_path, torch):
    """The nested torch.load payload: functools.partial(torch.load, weights_only=False)(evil.pt)."""
    cases = _control_cases(["torch.load"], tmp_path)
    c = P.Canary(tmp_path, "ctl0")
    torch.save(P._Reduce(os.system, (P.touch(c),)), tmp_path / "evil_ctl0.pt")
    out = _control(cases, tmp_path, str(tmp_path))
    assert out["torch.load"]["fired"] is not None, out


# ------------------------------------------------------------------ ckptdoctor never runs them
@pytest.mark.parametrize("payload", list(P.PAYLOADS))
@pytest.mark.parametrize("container", CONTAINERS)
def test_never_executed(container, payload, lab, tmp_path):
    canary: P.Canary = lab["canary"]
    data = P.PAYLOADS[payload][0](canary)
    f = wrap(container, data, lab["base"], tmp_path / f"evil.{container}")
    with armed() as events:
        try:
            with ckptdoctor.open(f) as ckpt:
                found = set(ckpt.globals)
                fmt = ckpt.format
                list(ckpt.tensors())
        except CkptdoctorError as e:  # a clean refusal is allowed, never a traceback or an execution
            found, fmt = None, None
            assert "\n" not in str(e)
    assert not canary.path.exists(), f"payload {payload} in {container} ran: {canary.path.read_text()}"
    assert events == [], events
    assert fmt == EXPECTED_FORMAT[container], (fmt, found)
    assert P.expected_globals(payload, canary) <= found, found


def test_inspect_json_reports_globals(lab, tmp_path):
    """The real CLI, one payload per container: exit 0, the dangerous globals in --json, no canary."""
    canary: P.Canary = lab["canary"]
    picks = {"pickle": "subprocess.Popen", "legacy": "os.system", "zip": "builtins.exec",
             "torchscript-constants": "runpy.run_path", "torchscript-data": "BUILD-__setstate__",
             "tar": "importlib.import_module"}
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(canary.folder), env_path])  # importable, were it imported
    try:
        for container, payload in picks.items():
            f = wrap(container, P.PAYLOADS[payload][0](canary), lab["base"], tmp_path / f"evil.{container}")
            r = run_cli("inspect", str(f), "--json", tmp=tmp_path)
            assert r.returncode == 0, r.describe()
            doc = json.loads(r.stdout)
            assert doc["format"] == EXPECTED_FORMAT[container], r.describe()
            assert P.expected_globals(payload, canary) <= set(doc["globals"]), r.describe()
            r = run_cli("inspect", str(f), tmp=tmp_path)
            assert r.returncode == 0 and "Traceback" not in r.stderr, r.describe()
            assert not canary.path.exists(), (container, payload)
    finally:
        os.environ["PYTHONPATH"] = env_path


def test_the_audit_hook_sees_execution(tmp_path):
    """The detector works: armed, it records what an executing unpickler would do (our own data)."""
    import pickle

    fresh = f"ckd_hooktest_{uuid.uuid4().hex}"
    (tmp_path / f"{fresh}.py").write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    code = compile("x = 1", "<payload>", "exec")
    attempts = [lambda: os.system("true"),
                lambda: exec("x = 1", {}),  # a string: its compile() is refused
                lambda: exec(code, {}),  # a code object that is not a module file's
                lambda: pickle.loads(pickle.dumps(os.path.join)),  # unpickling a global: pickle.find_class
                lambda: __import__(fresh),  # a module nothing imported before
                lambda: (tmp_path / "x").write_text("")]
    _WATCH.append(str(tmp_path))
    try:
        with armed() as events:
            for attempt in attempts:
                with pytest.raises(RuntimeError, match="audit hook"):
                    attempt()
    finally:
        _WATCH.remove(str(tmp_path))
        sys.path.remove(str(tmp_path))
    assert not (tmp_path / "x").exists()
    kinds = {e for e, _ in events}
    assert {"os.system", "compile", "exec", "pickle.find_class", "import", "open"} <= kinds, events
