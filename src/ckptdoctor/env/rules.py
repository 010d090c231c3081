"""Environment rules: each is a small function ``Environment -> Iterator[Finding]`` with a stable id.

Fix commands use the tool the environment already uses for the package (pip,
uv or conda, and the same conda channel), because mixing installers is itself
a common cause of broken installs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterator

from ckptdoctor.env import compat
from ckptdoctor.env.metadata import Dist
from ckptdoctor.env.snapshot import REPORTED, Environment, Source
from ckptdoctor.findings import Finding, Fix, Severity

Rule = Callable[[Environment], Iterator[Finding]]
PYTORCH_INDEX = "https://download.pytorch.org/whl/"
_CONDA_NAME = {"torch": "pytorch"}


# ---------------------------------------------------------------------------
# fix commands


def _py(env: Environment) -> str:
    return shlex.quote(env.python.executable) if env.python.executable else "python"


def install_command(env: Environment, specs: dict[str, str], like: str = "torch") -> str:
    """Install ``{name: version}`` with the tool (and channel / wheel index) that installed ``like``."""
    src = env.source(like)
    if src is not None and src.tool == "conda":
        chan = f"-c {src.channel} " if src.channel and src.channel not in ("defaults", "?") else ""
        pkgs = " ".join(f"{_CONDA_NAME.get(n, n)}={v}" if v else _CONDA_NAME.get(n, n) for n, v in specs.items())
        return f"conda install {chan}{pkgs}"
    pkgs = " ".join(shlex.quote(f"{n}=={v}" if v else n) for n, v in specs.items())
    extra = ""
    d = env.dist(like)
    if d is not None and d.local and src is not None and src.channel == "pytorch-index":
        extra = f" --index-url {PYTORCH_INDEX}{d.local}"
    if src is not None and src.tool == "uv":
        return f"uv pip install --python {_py(env)} {pkgs}{extra}"
    return f"{_py(env)} -m pip install {pkgs}{extra}"


def uninstall_command(env: Environment, name: str, src: Source | None) -> str:
    if src is not None and src.tool == "conda":
        return f"conda remove --force {_CONDA_NAME.get(name, name)}"
    if src is not None and src.tool == "uv":
        return f"uv pip uninstall --python {_py(env)} {name}"
    return f"{_py(env)} -m pip uninstall -y {name}"


def _ver(d: Dist | None) -> str:
    return d.version if d else "-"


# ---------------------------------------------------------------------------
# rules


def rule_no_torch(env: Environment) -> Iterator[Finding]:
    if env.dist("torch") is None:
        yield Finding(
            "CKD-ENV-NO-TORCH", Severity.WARNING, "torch is not installed in this environment",
            "No torch distribution was found on the interpreter's path. ckptdoctor itself reads checkpoints "
            "without torch, but nothing here can torch.load them.",
            {"paths": list(env.python.path)},
            Fix("install torch", f"{_py(env)} -m pip install torch"),
        )


_REQ = re.compile(r"^\s*torch\s*(?:\(([^)]*)\)|([<>=!~][^;]*))?\s*(?:;.*)?$")


def required_torch(d: Dist) -> str | None:
    """The ``torch`` specifier in a wheel's Requires-Dist (``==2.5.1``, ``>=2.14.0``), if any."""
    for req in d.requires:
        if ";" in req and "extra" in req.split(";", 1)[1]:
            continue
        m = _REQ.match(req)
        if m and (m.group(1) or m.group(2)):
            return (m.group(1) or m.group(2)).replace(" ", "")
    return None


def _release(v: str) -> tuple[int, ...] | None:
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)\s*$", v.split("+")[0])
    return tuple(int(x) for x in m.group(1).split(".")) if m else None


def _pad(a: tuple[int, ...], n: int) -> tuple[int, ...]:
    return a + (0,) * (n - len(a))


def _simple_satisfies(version: str, spec: str) -> bool | None:
    """Plain release numbers against ``==,!=,>=,<=,>,<`` clauses; None when packaging is needed."""
    have = _release(version)
    if have is None:
        return None
    ops = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, ">=": lambda a, b: a >= b,
           "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, "<": lambda a, b: a < b}
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = re.match(r"^(==|!=|>=|<=|>|<)\s*(.+)$", clause)
        want = _release(m.group(2)) if m else None
        if m is None or want is None:
            return None
        n = max(len(have), len(want))
        if not ops[m.group(1)](_pad(have, n), _pad(want, n)):
            return False
    return True


def _satisfies(version: str, spec: str) -> bool:
    quick = _simple_satisfies(version, spec)
    if quick is not None:
        return quick
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion

    try:
        return SpecifierSet(spec).contains(version, prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True


def companion_for(env: Environment, name: str) -> str | None:
    """The torchvision/torchaudio version to install beside the installed torch (None if unknown)."""
    torch = env.dist("torch")
    row = compat.row_for_torch(torch.version) if torch else None
    if torch is None or row is None:
        return None
    src = env.source("torch")
    conda = src is not None and src.tool == "conda"  # conda builds: pick the series, let the solver match
    if name == "torchvision":
        exact = row.torchvision_for(torch.public)
        return row.torchvision if conda else (exact or f"{row.torchvision}.*")
    if name == "torchaudio" and row.torchaudio:
        if compat.minor_tuple(torch.version) >= (2, 0):
            return compat.minor(torch.version) if conda else torch.public
        return row.torchaudio if conda else f"{row.torchaudio}.*"
    return None


def _companion_mismatch(env: Environment, name: str, fid: str) -> Iterator[Finding]:
    torch, comp = env.dist("torch"), env.dist(name)
    if torch is None or comp is None:
        return
    spec = required_torch(comp)
    how = ""
    if spec is not None:
        bad = not _satisfies(torch.public, spec)
        how = f"{name} {comp.version} declares Requires-Dist torch{spec}"
    else:
        if name == "torchvision":
            row = compat.row_for_torchvision(comp.version)
            expected_minor = row.torch if row else None
        else:
            # torchaudio follows torch's numbering from 2.0 on
            expected_minor = compat.minor(comp.version) if compat.minor_tuple(comp.version) >= (2, 0) else None
        if expected_minor is None:
            return
        bad = compat.minor(torch.version) != expected_minor
        how = f"the compatibility table pairs {name} {compat.minor(comp.version)} with torch {expected_minor}"
    if not bad:
        return
    want = companion_for(env, name)
    cmd = install_command(env, {name: want}, like="torch") if want else None
    yield Finding(
        fid, Severity.ERROR, f"{name} {comp.version} was built for a different torch than {torch.version}",
        f"{how}, but torch {torch.version} is installed. Compiled {name} operators do not load against "
        f"another torch build: expect 'operator {name}::nms does not exist', 'undefined symbol' or "
        f"'Couldn't load custom C++ ops' at import time.",
        {"torch": torch.version, name: comp.version, "requires": spec, "expected": want},
        Fix(f"install the {name} release made for torch {torch.public}" if want else
            f"install the {name} release made for torch {torch.public} (not in ckptdoctor's table)", cmd),
    )


def rule_tv_mismatch(env: Environment) -> Iterator[Finding]:
    yield from _companion_mismatch(env, "torchvision", "CKD-ENV-TV-MISMATCH")


def rule_ta_mismatch(env: Environment) -> Iterator[Finding]:
    yield from _companion_mismatch(env, "torchaudio", "CKD-ENV-TA-MISMATCH")


def _family(src: Source) -> str | None:
    """conda:<channel> or pip; None for source builds whose binaries match whatever they were built on."""
    if src.kind == "conda":
        return f"conda:{src.channel or '?'}"
    if src.kind == "pip":
        return "pip"
    return None


def rule_mixed_source(env: Environment) -> Iterator[Finding]:
    tsrc = env.source("torch")
    if tsrc is None or _family(tsrc) is None:
        return
    tfam = _family(tsrc)
    for name in ("torchvision", "torchaudio"):
        src = env.source(name)
        if src is None or _family(src) is None or _family(src) == tfam:
            continue
        fam = _family(src)
        d = env.dist(name)
        want = companion_for(env, name) or (d.public if d else None)
        fix_cmd = f"{uninstall_command(env, name, src)} && {install_command(env, {name: want}, like='torch')}"
        yield Finding(
            "CKD-ENV-MIXED-SOURCE", Severity.ERROR,
            f"torch from {tfam.replace(':', ' ')} but {name} from {fam.replace(':', ' ')}",
            f"torch came from {tsrc.detail}; {name} came from {src.detail}. Their compiled extensions are "
            f"built against different libtorch builds (conda keeps libtorch in <prefix>/lib, pip wheels in "
            f"site-packages/torch/lib; C++ ABI flags differ), which fails as 'undefined symbol: _ZN...', "
            f"'libc10.so: cannot open shared object file' or missing torchvision operators.",
            {"torch": tsrc.to_dict(), name: src.to_dict()},
            Fix(f"reinstall {name} from the same source as torch", fix_cmd),
        )


def rule_duplicate(env: Environment) -> Iterator[Finding]:
    for name in REPORTED:
        copies = env.installed.copies(name)
        if len(copies) > 1:
            same_dir = len({c.location for c in copies}) < len(copies)
            first = copies[0]
            yield Finding(
                "CKD-ENV-DUPLICATE", Severity.ERROR if same_dir else Severity.WARNING,
                f"{len(copies)} copies of {name}: " + ", ".join(c.version for c in copies),
                (f"Several {name} records sit in one directory ({first.location}): one install overwrote "
                 f"another's files, so the package on disk is a mix of both." if same_dir else
                 f"{name} {first.version} in {first.location} is imported; the copy in "
                 + ", ".join(c.location for c in copies[1:])
                 + " is shadowed. Tools that read another path (a different interpreter, PYTHONPATH, an IDE) "
                   "see a different version, and upgrades can land in the shadowed copy."),
                {"copies": [c.to_dict() for c in copies]},
                Fix(f"uninstall {name} until none is left, then install one copy",
                    f"{uninstall_command(env, name, env.source(name))}  # repeat until gone, then: "
                    + install_command(env, {name: first.public}, like=name)),
            )
        conda = env.conda_record(name)
        d = env.dist(name)
        src = env.source(name)
        if conda is not None and d is not None and src is not None and src.kind != "conda":
            yield Finding(
                "CKD-ENV-DUPLICATE", Severity.ERROR,
                f"{name} installed by {d.installer or 'another tool'} over conda's {conda.name} {conda.version}",
                f"conda-meta records {conda.name} {conda.version} ({conda.channel}, build {conda.build}) but "
                f"site-packages holds {name} {d.version} installed by {d.installer}. conda still believes its "
                f"files are there; 'conda update' will overwrite half of the tree, and shared libraries in "
                f"<prefix>/lib may not match the Python package.",
                {"conda": conda.to_dict(), "dist": d.to_dict()},
                Fix("keep one installer: drop the conda record and reinstall with pip (or the reverse)",
                    f"conda remove --force {conda.name} && {_py(env)} -m pip install --force-reinstall "
                    f"{shlex.quote(f'{name}=={d.public}')}"),
            )


def _numpy1(env: Environment) -> str:
    src = env.source("numpy")
    return "1.26" if src is not None and src.tool == "conda" else "1.*"


def rule_numpy_abi(env: Environment) -> Iterator[Finding]:
    torch, numpy = env.dist("torch"), env.dist("numpy")
    if torch is None or numpy is None:
        return
    try:
        np_major = int(numpy.public.split(".")[0])
    except ValueError:
        return
    row = compat.row_for_torch(torch.version)
    if row is not None:
        ok = np_major in row.numpy_majors
    else:
        ok = np_major < 2 or compat.minor_tuple(torch.version) >= (2, 3)
    if ok:
        return
    yield Finding(
        "CKD-ENV-NUMPY-ABI", Severity.ERROR,
        f"numpy {numpy.version} with torch {torch.version} (built for NumPy 1)",
        "torch releases before 2.3 were compiled against the NumPy 1.x C API. Under NumPy 2 importing torch "
        "warns 'A module that was compiled using NumPy 1.x cannot be run in NumPy 2', and anything that "
        "crosses into numpy fails ('Numpy is not available'), including checkpoints that pickle numpy arrays.",
        {"torch": torch.version, "numpy": numpy.version},
        Fix("install NumPy 1.x (or upgrade torch to 2.3 or later)",
            install_command(env, {"numpy": _numpy1(env)}, like="numpy")),
    )


def rule_python(env: Environment) -> Iterator[Finding]:
    torch = env.dist("torch")
    if torch is None:
        return
    py = env.python.minor
    if torch.requires_python and not _satisfies(env.python.version, torch.requires_python):
        yield Finding(
            "CKD-ENV-PYTHON", Severity.ERROR,
            f"torch {torch.version} requires Python {torch.requires_python}, this is {env.python.version}",
            "The installed torch declares it does not support this Python; it was forced in or copied.",
            {"python": env.python.version, "requires_python": torch.requires_python},
            Fix("use a supported Python in a fresh environment", None),
        )
        return
    row = compat.row_for_torch(torch.version)
    if row is None or row.python_min <= py <= row.python_max:
        return
    lo, hi = ".".join(map(str, row.python_min)), ".".join(map(str, row.python_max))
    yield Finding(
        "CKD-ENV-PYTHON", Severity.WARNING,
        f"Python {env.python.version} is outside torch {row.torch}'s official range {lo}-{hi}",
        f"No official torch {row.torch} wheels exist for Python {py[0]}.{py[1]}: this build came from source, "
        f"a third party or a nightly. Prefer Python {lo}-{hi} for torch {row.torch}.",
        {"python": env.python.version, "python_min": lo, "python_max": hi, "torch": torch.version},
        Fix(f"create an environment with Python {hi}",
            f"conda create -n torch{row.torch} python={hi}" if env.is_conda else f"uv venv --python {hi}"),
    )


def _runtime_major(name: str, version: str) -> str:
    """The CUDA major of a runtime wheel: ``nvidia-cuda-runtime-cu12`` names it (CUDA <= 12);
    from CUDA 13 the wheel is plain ``nvidia-cuda-runtime`` and its version says it (13.0.96)."""
    m = re.fullmatch(r"nvidia-cuda-runtime-cu(\d+)", name)
    return m.group(1) if m else version.split(".")[0]


def rule_cuda(env: Environment) -> Iterator[Finding]:
    tb = env.build("torch")
    if tb is None:
        return
    vb = env.build("torchvision")
    if vb is not None and "unknown" not in (tb.flavour, vb.flavour) and tb.flavour != vb.flavour:
        t_cu, v_cu = tb.flavour.startswith("cu"), vb.flavour.startswith("cu")
        major_clash = t_cu and v_cu and (tb.cuda or "").split(".")[0] != (vb.cuda or "").split(".")[0]
        cuda_tv_on_cpu_torch = v_cu and not t_cu
        if major_clash:
            why = ("torchvision refuses to load when its CUDA major differs from torch's ('Detected that "
                   "PyTorch and torchvision were compiled with different CUDA major versions').")
        elif cuda_tv_on_cpu_torch:
            why = ("A CUDA build of torchvision links torch's CUDA libraries, which a CPU torch does not have: "
                   "its operators fail to register ('operator torchvision::nms does not exist').")
        else:
            why = ("torch and torchvision come from different build flavours; torchvision's compiled ops may be "
                   "missing for the device you use ('Could not run torchvision::nms with arguments from the "
                   "CUDA backend').")
        yield Finding(
            "CKD-ENV-CUDA", Severity.ERROR if major_clash or cuda_tv_on_cpu_torch else Severity.WARNING,
            f"torch is a {tb.flavour} build but torchvision a {vb.flavour} build", why,
            {"torch": tb.to_dict(), "torchvision": vb.to_dict()},
            Fix(f"install the torchvision {tb.flavour} build",
                install_command(env, {"torchvision": (env.dist("torchvision") or env.dist("torch")).public},
                                like="torch")),
        )
    nv = {d.name: d.version for d in env.installed.dists if d.name.startswith("nvidia-cuda-runtime")}
    if tb.flavour.startswith("cu") and tb.cuda and nv:
        majors = {_runtime_major(n, v) for n, v in nv.items()}
        if tb.cuda.split(".")[0] not in majors:
            yield Finding(
                "CKD-ENV-CUDA", Severity.WARNING,
                f"torch built for CUDA {tb.cuda} but CUDA runtime wheels are "
                + ", ".join(f"{n} {v}" for n, v in nv.items()),
                "The nvidia-* runtime wheels do not match the CUDA major torch was built for; torch may pick up "
                "the wrong libraries or fail with 'libcudart.so.X: cannot open shared object file'.",
                {"torch": tb.to_dict(), "nvidia": nv},
                Fix("reinstall torch so pip brings matching CUDA wheels",
                    install_command(env, {"torch": env.dist("torch").public}, like="torch")  # type: ignore[union-attr]
                    + " --force-reinstall"),
            )
    if tb.flavour == "cpu":
        yield Finding(
            "CKD-ENV-CPU-BUILD", Severity.INFO, f"torch {_ver(env.dist('torch'))} is a CPU-only build",
            "Checkpoints saved on a GPU keep their device in the file; load them with map_location='cpu' "
            "(otherwise: 'Attempting to deserialize object on a CUDA device but torch.cuda.is_available() "
            "is False').",
            {"torch": tb.to_dict()},
            Fix("map CUDA tensors to the CPU when loading", None, "torch.load(path, map_location='cpu')"),
        )


def rule_pillow(env: Environment) -> Iterator[Finding]:
    tv, pil = env.dist("torchvision"), env.dist("pillow")
    if tv is None or pil is None:
        return
    if compat.minor_tuple(tv.version) < (0, 5) and compat.minor_tuple(pil.version) >= (7, 0):
        yield Finding(
            "CKD-ENV-PILLOW", Severity.ERROR, f"torchvision {tv.version} does not import with Pillow {pil.version}",
            "torchvision 0.4 and older import PILLOW_VERSION, which Pillow 7 removed: "
            "'cannot import name PILLOW_VERSION from PIL'.",
            {"torchvision": tv.version, "pillow": pil.version},
            Fix("install Pillow < 7 (or torchvision >= 0.5)", install_command(env, {"pillow": "6.*"}, like="pillow")),
        )


def rule_source_build(env: Environment) -> Iterator[Finding]:
    for name in ("torch", "torchvision", "torchaudio"):
        src = env.source(name)
        if src is not None and src.kind in ("editable", "vcs", "local"):
            yield Finding(
                "CKD-ENV-SOURCE-BUILD", Severity.INFO, f"{name} is a {src.kind} install",
                f"{name}: {src.detail}. Version pins and the compatibility table describe official builds; a "
                f"source build is compatible with whatever it was compiled against.",
                {name: src.to_dict()},
            )


def rule_table(env: Environment) -> Iterator[Finding]:
    torch = env.dist("torch")
    if torch is not None and compat.row_for_torch(torch.version) is None:
        yield Finding(
            "CKD-ENV-UNKNOWN-TORCH", Severity.INFO,
            f"torch {compat.minor(torch.version)} is not in ckptdoctor's compatibility table",
            f"The table covers torch {min(compat.load_table(), key=compat.minor_tuple)}-{compat.newest_torch()}; "
            "pairings for this release are checked only through the wheels' own Requires-Dist.",
            {"torch": torch.version},
        )


def rule_conda_channel(env: Environment) -> Iterator[Finding]:
    src, torch = env.source("torch"), env.dist("torch")
    if src is None or torch is None or src.kind != "conda" or src.channel != "pytorch":
        return
    if compat.minor_tuple(torch.version) > (2, 5):
        yield Finding(
            "CKD-ENV-CONDA-CHANNEL", Severity.WARNING,
            f"torch {torch.version} claims the pytorch conda channel, which stopped at 2.5",
            "The pytorch conda channel published its last release with 2.5 (pytorch/pytorch#138506); a newer "
            "package there is not an official build.",
            {"torch": src.to_dict()},
            Fix("use conda-forge or the pip wheels", "conda install -c conda-forge pytorch"),
        )


# ---------------------------------------------------------------------------
# results of `--import` (a subprocess that really imports the packages)


def rule_import(env: Environment) -> Iterator[Finding]:
    res = env.extra.get("import")
    if not res:
        return
    if res.get("error"):
        yield Finding(
            "CKD-ENV-IMPORT", Severity.ERROR, f"the import subprocess failed: {res['error']}",
            "Importing torch / torchvision / numpy in a fresh interpreter crashed or hung.",
            {"returncode": res.get("returncode"), "stderr": res.get("stderr", "")[-2000:]},
        )
        return
    for name, info in res.get("modules", {}).items():
        if info.get("error") and not info.get("missing"):
            yield Finding(
                "CKD-ENV-IMPORT", Severity.ERROR, f"import {name} fails: {info['error'].splitlines()[-1][:200]}",
                f"A fresh interpreter could not import {name}; see the other findings for the usual causes.",
                {"module": name, "error": info["error"][-2000:]},
            )
    if "NumPy 1.x cannot be run in" in res.get("stderr", "") or res.get("numpy_bridge", {}).get("error"):
        yield Finding(
            "CKD-ENV-NUMPY-ABI", Severity.ERROR, "torch cannot exchange arrays with the installed numpy",
            "torch.from_numpy failed or torch warned that it was compiled against NumPy 1.x.",
            {"numpy_bridge": res.get("numpy_bridge"), "stderr": res.get("stderr", "")[-1000:]},
            Fix("install NumPy 1.x or a torch built for NumPy 2 (>= 2.3)",
                install_command(env, {"numpy": _numpy1(env)}, like="numpy")),
        )
    t = res.get("modules", {}).get("torch", {})
    if t.get("cuda_built") and t.get("cuda_available") is False:
        yield Finding(
            "CKD-ENV-CUDA-UNAVAILABLE", Severity.INFO, f"torch is built for CUDA {t.get('cuda_built')} but sees no GPU",
            "torch.cuda.is_available() is False: no driver, a driver too old for this CUDA, or no visible device.",
            {"torch": t},
        )


ALL_RULES: tuple[Rule, ...] = (
    rule_no_torch, rule_tv_mismatch, rule_ta_mismatch, rule_mixed_source, rule_duplicate, rule_numpy_abi,
    rule_python, rule_cuda, rule_pillow, rule_source_build, rule_table, rule_conda_channel, rule_import,
)


def diagnose(env: Environment) -> list[Finding]:
    """All findings, worst first."""
    out = [f for rule in ALL_RULES for f in rule(env)]
    return sorted(out, key=lambda f: -int(f.severity))
