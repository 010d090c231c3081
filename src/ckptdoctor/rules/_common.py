"""Helpers shared by the rule families: fixes, torch's message texts, classification of globals."""

from __future__ import annotations

import os
import re
import shlex
from typing import TYPE_CHECKING, Any

from ckptdoctor.findings import Finding, Fix, Severity

if TYPE_CHECKING:
    from ckptdoctor.check import Context, Target

DOCS_MESSAGE = ("\n\nCheck the documentation of torch.load to learn more about types accepted by default with "
                "weights_only https://pytorch.org/docs/stable/generated/torch.load.html.")

# Globals that must never be allowlisted: they run commands, code, imports or arbitrary calls.
NEVER_ALLOW_MODULES = {
    "os", "posix", "nt", "sys", "subprocess", "shutil", "socket", "pty", "runpy", "importlib", "pickle", "_pickle",
    "marshal", "code", "codeop", "ctypes", "webbrowser", "commands", "platform", "multiprocessing", "asyncio",
    "threading", "signal", "tempfile", "pathlib._local", "urllib", "urllib.request", "http.client", "ftplib",
    "smtplib", "telnetlib", "pdb", "bdb", "timeit", "profile", "cProfile", "trace", "dill", "cloudpickle",
    "joblib", "torch.hub", "torch._C", "torch.jit", "torch.ops", "torch.cuda.nvtx", "numpy.testing",
    "numpy.f2py", "numpy.distutils", "operator", "functools", "types", "inspect", "io", "_io", "builtins.exec",
    "zipimport", "pkgutil", "site", "distutils", "setuptools", "pip",
}
NEVER_ALLOW_NAMES = {
    "builtins.eval", "builtins.exec", "builtins.compile", "builtins.open", "builtins.__import__",
    "builtins.getattr", "builtins.setattr", "builtins.delattr", "builtins.globals", "builtins.locals",
    "builtins.vars", "builtins.input", "builtins.breakpoint", "builtins.apply", "builtins.execfile",
    "builtins.file", "builtins.reload", "builtins.memoryview", "builtins.type", "builtins.super",
    "builtins.classmethod", "builtins.staticmethod", "builtins.property", "builtins.print", "builtins.help",
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__", "torch.load", "torch.save",
    "torch.serialization.load", "numpy.load", "numpy.save", "numpy.fromfile", "numpy.memmap",
    "numpy.lib.npyio.load", "torch.storage.UntypedStorage.from_file", "torch.from_file",
}
BENIGN = {
    "argparse.Namespace", "collections.defaultdict", "collections.deque", "collections.Counter",
    "collections.OrderedDict", "builtins.set", "builtins.frozenset", "builtins.complex", "builtins.bytearray",
    "builtins.slice", "builtins.range", "builtins.dict", "builtins.list", "builtins.tuple", "builtins.int",
    "builtins.float", "builtins.str", "builtins.bytes", "builtins.bool", "builtins.object", "_codecs.encode",
    "datetime.datetime", "datetime.date", "datetime.time", "datetime.timedelta", "datetime.timezone",
    "decimal.Decimal", "fractions.Fraction", "uuid.UUID", "pathlib.PosixPath", "pathlib.WindowsPath",
    "pathlib.Path", "pathlib.PurePosixPath", "pathlib.PureWindowsPath", "enum.Enum", "re._compile",
    "torch.device", "torch.Size", "torch.dtype", "torch.float32", "torch.memory_format",
}


MINIZ_SUFFIX = (". This is an internal miniz error. If you are seeing this error, there is a high likelihood that "
                "your checkpoint file is corrupted. This can happen if the checkpoint was not saved properly, was "
                "transferred incorrectly, or the file was modified after saving.")


def miniz(target: Target, message: str) -> str:
    """A PytorchStreamReader error as the target words it (2.13 appends a paragraph; older releases do not)."""
    return message + (MINIZ_SUFFIX if target.torch_at_least("2.13") else "")


def classify_global(name: str) -> str:
    """dangerous | numpy | module | torch | benign | custom."""
    module = name.rsplit(".", 1)[0] if "." in name else name
    if name in NEVER_ALLOW_NAMES or any(module == m or module.startswith(m + ".") for m in NEVER_ALLOW_MODULES):
        return "dangerous"
    if name in BENIGN or module in ("datetime", "decimal", "fractions", "uuid", "enum", "argparse"):
        return "benign"
    if module.split(".")[0] == "numpy":
        return "numpy"
    if module.startswith("torch.nn.modules.") or module.startswith("torch.nn.") and name[-1:].isupper():
        return "module"
    if module.split(".")[0] == "torch":
        return "torch"
    return "custom"


def ansi_strip(s: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", s)


def wo_message(table: dict[str, Any], inner: str) -> str:
    """torch.load's full message for an error of its weights_only unpickler (``inner`` is that error's text)."""
    load = table.get("load", {})
    unsafe = load.get("unsafe_message") or ""
    style = load.get("wo_message_style", "prefix")
    if style == "prefix":  # 1.13 - 2.3: UNSAFE_MESSAGE + str(e)
        return f"UnpicklingError: {unsafe}{inner}"
    has_unsafe_global = re.search(r"GLOBAL (\S+) was not an allowed global by default.", inner) is not None
    has_blocklist = re.search(r"whose module (\S+) is blocked", inner) is not None
    has_import = style == "has_import" and re.search(r"(\S+) must be (\S+) to load", inner) is not None
    if has_unsafe_global:
        msg = ("Weights only load failed. This file can still be loaded, to do so you have two options, "
               "\033[1mdo those steps only if you trust the source of the checkpoint\033[0m. "
               f"\n\t(1) {unsafe}\n\t(2) Alternatively, to load with `weights_only=True` please check "
               "the recommended steps in the following error message.\n\tWeightsUnpickler error: " + inner)
    elif style == "unsafe_global":  # 2.4
        msg = (f"Weights only load failed. {unsafe}\n Please file an issue with the following so that we can make "
               "`weights_only=True` compatible with your use case: WeightsUnpickler error: " + inner)
        return f"UnpicklingError: {msg}"
    elif has_import:
        return f"UnpicklingError: Weights only load failed. {inner}\n {unsafe}\n"
    else:
        msg = f"Weights only load failed. {unsafe}\n"
        if not has_blocklist:
            msg += ("Please file an issue with the following so that we can make "
                    "`weights_only=True` compatible with your use case: WeightsUnpickler error: ")
        msg += "\n\n" + inner
    return f"UnpicklingError: {msg}{DOCS_MESSAGE if style in ('blocklist', 'has_import') else ''}"


def render_template(template: str, **values: Any) -> str:
    """Fill one of torch's f-string error templates (as stored in the tables) with our values."""
    exc, _, src = template.partition(": ")
    text = src
    if len(text) >= 2 and text[0] == "f" and text[1] in "'\"":
        text = text[2:-1]
    elif len(text) >= 2 and text[0] in "'\"":
        text = text[1:-1]

    def sub(m: re.Match[str]) -> str:
        expr = m.group(1)
        for key, val in values.items():
            if key in expr:
                return str(val)
        return "{" + expr + "}"

    return f"{exc}: " + re.sub(r"\{([^{}]+)\}", sub, text)


def type_repr(qualname: str) -> str:
    """``repr(type)`` of a class known by qualified name (``builtins.dict`` -> ``<class 'dict'>``)."""
    return f"<class '{qualname.removeprefix('builtins.')}'>"


def out_name(path: str, suffix: str = "_fixed") -> str:
    base = os.path.basename(path) or "checkpoint.pt"
    stem, ext = os.path.splitext(base)
    if ext in ("", ".tar", ".pkl", ".bin", ".pth"):
        ext = ".pt" if ext in ("", ".tar", ".pkl", ".bin") else ext
    return f"{stem}{suffix}{ext}"


def fix_cmd(ctx: Context, *steps: str, extra: str = "") -> str:
    parts = ["ckptdoctor", "fix", shlex.quote(ctx.path), "-o", shlex.quote(out_name(ctx.path))]
    parts += ["--torch", ctx.target.torch_release]
    for s in steps:
        parts += ["--step", s]
    cmd = " ".join(parts)
    return f"{cmd} {extra}".rstrip()


def load_line(target: Target, *, weights_only: bool | None = None, map_location: str | None = None,
              encoding: str | None = None) -> str:
    args = ["f"]
    if map_location is not None:
        args.append(f"map_location={map_location!r}")
    wo = target.loads_weights_only if weights_only is None else weights_only
    if target.torch_at_least("1.13"):
        args.append(f"weights_only={wo}")
    if encoding:
        args.append(f"encoding={encoding!r}")
    return f"torch.load({', '.join(args)})"


def finding(fid: str, severity: Severity, title: str, explanation: str, *, evidence: dict[str, Any] | None = None,
            fix: Fix | None = None, blocks: bool = False) -> Finding:
    return Finding(fid, severity, title, explanation, evidence or {}, fix, blocks)
