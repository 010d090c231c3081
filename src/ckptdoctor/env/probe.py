"""Ask an interpreter about itself in a subprocess: its paths (no imports), what importing does, behaviour.

Every script runs in a fresh process so a crashing ``import torch`` (segfault,
missing symbol, hang) is reported instead of taking ckptdoctor down.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from ckptdoctor.env.snapshot import PythonInfo
from ckptdoctor.errors import CkptdoctorError

#: prints sys.path / version / platform; imports nothing beyond the stdlib
INTERPRETER_SCRIPT = r"""
import json, platform, sys
v = sys.version_info
print(json.dumps({"version": "%d.%d.%d" % (v[0], v[1], v[2]),
  "implementation": platform.python_implementation(), "executable": sys.executable,
  "prefix": sys.prefix, "base_prefix": getattr(sys, "base_prefix", sys.prefix),
  "platform": sys.platform, "machine": platform.machine(), "path": [p for p in sys.path if p]}))
"""

IMPORT_SCRIPT = r"""
import json, sys, traceback, warnings
warnings.simplefilter("always")
out = {"modules": {}}
def attempt(name, fn):
    try:
        info = fn()
    except ModuleNotFoundError as e:
        info = {"missing": True, "error": str(e)} if e.name == name else {"error": traceback.format_exc()}
    except BaseException as e:
        info = {"error": traceback.format_exc()}
    out["modules"][name] = info
def t_numpy():
    import numpy
    return {"version": numpy.__version__, "file": numpy.__file__}
def t_torch():
    import torch
    v = torch.version
    d = {"version": torch.__version__, "file": torch.__file__, "cuda_built": getattr(v, "cuda", None),
         "hip": getattr(v, "hip", None), "git_version": getattr(v, "git_version", None),
         "cxx11_abi": getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None)}
    try:
        d["cuda_available"] = bool(torch.cuda.is_available())
        d["device_count"] = torch.cuda.device_count() if d["cuda_available"] else 0
    except BaseException as e:
        d["cuda_error"] = repr(e)
    try:
        d["cudnn"] = torch.backends.cudnn.version()
    except BaseException:
        d["cudnn"] = None
    try:
        import numpy
        torch.from_numpy(numpy.zeros(2))
        out["numpy_bridge"] = {"ok": True}
    except ModuleNotFoundError:
        pass
    except BaseException as e:
        out["numpy_bridge"] = {"error": repr(e)}
    return d
def t_torchvision():
    import torchvision
    d = {"version": torchvision.__version__, "file": torchvision.__file__}
    import torch
    d["nms_op"] = hasattr(torch.ops.torchvision, "nms")
    return d
def t_torchaudio():
    import torchaudio
    return {"version": torchaudio.__version__, "file": torchaudio.__file__}
def t_pil():
    import PIL
    return {"version": PIL.__version__}
for n, f in (("numpy", t_numpy), ("torch", t_torch), ("torchvision", t_torchvision),
             ("torchaudio", t_torchaudio), ("PIL", t_pil)):
    attempt(n, f)
sys.stdout.write("\n@@CKPTDOCTOR@@" + json.dumps(out) + "\n")
"""

#: a fixed small pipeline whose output hashes compare two installs' numerics
PROBE_SCRIPT = r"""
import hashlib, json, struct, sys
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
def h(t):
    t = t.detach().to(torch.float64).contiguous().flatten().tolist()
    return hashlib.sha256(struct.pack("<%dd" % len(t), *t)).hexdigest()
out = {"torch": torch.__version__, "ops": {}}
x = torch.linspace(-1, 1, 3 * 32 * 32, dtype=torch.float32).reshape(1, 3, 32, 32)
x = torch.sin(x * 7.0) + 0.25 * torch.cos(x * 3.0)
w = torch.linspace(-0.5, 0.5, 8 * 3 * 3 * 3, dtype=torch.float32).reshape(8, 3, 3, 3)
ops = out["ops"]
ops["conv2d"] = h(F.conv2d(x, w, padding=1))
ops["interpolate_bilinear"] = h(F.interpolate(x, size=(13, 13), mode="bilinear", align_corners=False))
ops["interpolate_bilinear_antialias"] = h(F.interpolate(x, size=(13, 13), mode="bilinear", align_corners=False, antialias=True))
ops["interpolate_bicubic_antialias"] = h(F.interpolate(x, size=(13, 13), mode="bicubic", align_corners=False, antialias=True))
ops["matmul"] = h(x.reshape(3, -1) @ x.reshape(3, -1).T)
ops["softmax"] = h(torch.softmax(x.reshape(3, -1), dim=1))
try:
    import torchvision
    from torchvision.transforms import functional as TF
except ImportError:
    torchvision = None
    out["torchvision"] = None
except Exception as e:  # a broken torchvision: probe torch alone
    torchvision = None
    out["torchvision"] = None
    out["torchvision_error"] = "%s: %s" % (type(e).__name__, e)
if torchvision is not None:
    out["torchvision"] = torchvision.__version__
    img = (x[0] * 60 + 128).clamp(0, 255).to(torch.uint8)
    try:
        pil = TF.to_pil_image(img)
        ops["tv_to_tensor"] = h(TF.to_tensor(pil))
        ops["tv_resize_pil"] = h(TF.to_tensor(TF.resize(pil, [13, 13])))
    except Exception as e:
        ops["tv_pil"] = "error: %r" % (e,)
    f = img.float() / 255
    ops["tv_normalize"] = h(TF.normalize(f, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]))
    ops["tv_resize_tensor_antialias"] = h(TF.resize(f, [13, 13], antialias=True))
    ops["tv_resize_tensor_no_antialias"] = h(TF.resize(f, [13, 13], antialias=False))
sys.stdout.write("\n@@CKPTDOCTOR@@" + json.dumps(out) + "\n")
"""

MARK = "@@CKPTDOCTOR@@"


class ProbeError(CkptdoctorError):
    code = "env-probe"


def _run(python: str, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError as e:
        raise ProbeError(f"no such interpreter: {python}") from e
    except PermissionError as e:
        raise ProbeError(f"cannot run {python}: permission denied") from e


def interpreter_info(python: str, timeout: float = 20.0) -> PythonInfo:
    """sys.path and friends of another interpreter (stdlib only, so it cannot crash on torch)."""
    try:
        cp = _run(python, INTERPRETER_SCRIPT, timeout)
    except subprocess.TimeoutExpired as e:
        raise ProbeError(f"{python} did not answer within {timeout:.0f} s") from e
    if cp.returncode != 0:
        tail = (cp.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise ProbeError(f"{python} failed to start ({tail[0]})")
    try:
        data = json.loads(cp.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise ProbeError(f"{python} is not a Python interpreter ckptdoctor understands") from e
    return PythonInfo.from_dict(data)


def _run_marked(python: str, script: str, timeout: float) -> dict[str, Any]:
    try:
        cp = _run(python, script, timeout)
    except subprocess.TimeoutExpired as e:
        return {"error": f"timed out after {timeout:.0f} s", "returncode": None,
                "stderr": (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr or "")}
    payload = None
    for line in reversed(cp.stdout.splitlines()):
        if line.startswith(MARK):
            payload = json.loads(line[len(MARK):])
            break
    if payload is None:
        sig = f" (signal {-cp.returncode})" if cp.returncode < 0 else ""
        err = (cp.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit code {cp.returncode}{sig}: {err[:300]}", "returncode": cp.returncode,
                "stderr": cp.stderr[-4000:]}
    payload["returncode"] = cp.returncode
    payload["stderr"] = cp.stderr[-4000:]
    return payload


def import_check(python: str, timeout: float = 120.0) -> dict[str, Any]:
    """Import numpy, torch, torchvision, torchaudio and PIL in a subprocess; versions or exception text."""
    return _run_marked(python, IMPORT_SCRIPT, timeout)


def behaviour_probe(python: str, timeout: float = 120.0) -> dict[str, Any]:
    """sha256 of a fixed conv / interpolate / torchvision transform pipeline (needs torch)."""
    return _run_marked(python, PROBE_SCRIPT, timeout)
