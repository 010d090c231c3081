"""numpy objects in checkpoints: numpy 2 names (numpy._core) for a numpy 1 target, missing numpy,
and numpy objects that block weights_only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.pickle.objects import Global, PickledObject
from ckptdoctor.rules._common import finding, fix_cmd

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 2
FINDINGS = {
    "CKD-NUMPY-CORE": "numpy 2 names (numpy._core.*) with a numpy 1 target: No module named 'numpy._core'",
    "CKD-NUMPY-DTYPES": "numpy.dtypes.* classes (numpy >= 1.25) with an older numpy target",
    "CKD-NUMPY-MISSING": "numpy objects in the file and no numpy in the target environment",
    "CKD-NUMPY-OBJECTS": "numpy scalars/arrays/dtypes inside the checkpoint (where they are; weights_only refuses them)",
}
# numpy 1.26.1 (not 1.26.0) ships numpy/_core/ shims for these submodules only (read from the wheels).
CORE_SHIMS_1_26 = {"numpy._core", "numpy._core.multiarray", "numpy._core.umath", "numpy._core._internal",
                   "numpy._core._dtype", "numpy._core._dtype_ctypes", "numpy._core._multiarray_umath"}


def numpy_paths(root: Any, globals_: list[str] | None = None, limit: int = 200_000) -> dict[str, str]:
    """First key path of each numpy global used as an object in the value tree (numpy scalars, arrays and
    dtypes the reader rebuilt are attributed to the file's global for them)."""
    import numpy as np

    gl = globals_ or []
    scalar = next((g for g in gl if g.endswith("multiarray.scalar")), "numpy.core.multiarray.scalar")
    recon = next((g for g in gl if g.endswith("multiarray._reconstruct")), "numpy.core.multiarray._reconstruct")
    out: dict[str, str] = {}
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack and len(seen) < limit:
        v, path = stack.pop()
        if id(v) in seen or (isinstance(v, (str, bytes, int, float, bool)) and not isinstance(v, np.generic)) \
                or v is None:
            continue
        seen.add(id(v))
        sep = "." if path else ""
        if isinstance(v, np.generic):
            out.setdefault(scalar, path or "<root>")
            continue
        if isinstance(v, np.ndarray):
            out.setdefault(recon, path or "<root>")
            continue
        if isinstance(v, np.dtype):
            out.setdefault("numpy.dtype", path or "<root>")
            continue
        if isinstance(v, dict):
            stack.extend((x, f"{path}{sep}{k}") for k, x in reversed(list(v.items())))
        elif isinstance(v, (list, tuple)):
            stack.extend((x, f"{path}{sep}{i}") for i, x in reversed(list(enumerate(v))))
        elif isinstance(v, PickledObject):
            q = v.qualname
            if q.startswith("numpy"):
                out.setdefault(q, path or "<root>")
            if isinstance(v.callee, Global) and v.callee.qualname.startswith("numpy"):
                out.setdefault(v.callee.qualname, path or "<root>")
            stack.extend((x, f"{path}{sep}{k}") for k, x in v.attrs.items())
    return out


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None or not ckpt.globals:
        return
    t = ctx.target
    nglobals = [g for g in ckpt.globals if g.split(".")[0] == "numpy"]
    if not nglobals:
        return
    full = not (t.loads_weights_only and t.torch_at_least("1.13"))
    offsets = {}
    if ctx.pickles:
        for full_name, _raw, off, _label in ctx.sim(False).globals:
            offsets.setdefault(full_name, off)
    paths = numpy_paths(ckpt.root, nglobals)
    where = ", ".join(f"{p} ({g.rsplit('.', 1)[1]})" for g, p in list(paths.items())[:5])
    yield finding(
        "CKD-NUMPY-OBJECTS", Severity.INFO if full else Severity.WARNING,
        f"numpy objects in the checkpoint ({len(nglobals)} numpy globals)",
        f"The file holds numpy objects ({', '.join(nglobals)})" + (f" at {where}" if where else "") + ". "
        "Unpickling them imports numpy; weights_only refuses them unless allowlisted. Replacing them by "
        "plain Python numbers/lists/tensors removes both needs.",
        evidence={"globals": nglobals, "paths": paths},
        fix=Fix("replace numpy objects by plain data", command=fix_cmd(ctx, "weights-only-safe")))
    if t.numpy is None:
        if full:
            g = nglobals[0]
            yield ctx.ordered(finding(
                "CKD-NUMPY-MISSING", Severity.ERROR, "numpy objects, and no numpy in the target",
                f"Unpickling {g} imports numpy, which the target environment does not have.",
                evidence={"global": g, "offset": offsets.get(g), "torch_error": "ModuleNotFoundError: No module "
                                                                                "named 'numpy'"},
                fix=Fix("install numpy, or replace the numpy objects", command="pip install numpy"), blocks=True),
                STAGE, offsets.get(g))
        return
    nv = Version(t.numpy.split("+")[0])
    for g in nglobals:
        module = g.rpartition(".")[0]
        if module.startswith("numpy._core") and nv < Version("2"):
            shim = nv >= Version("1.26.1") and module in CORE_SHIMS_1_26
            if shim:
                continue
            missing = "numpy._core" if nv < Version("1.26.1") else module
            err = f"ModuleNotFoundError: No module named '{missing}'"
            yield ctx.ordered(finding(
                "CKD-NUMPY-CORE", Severity.ERROR if full else Severity.WARNING,
                f"{g}: written by numpy 2, target has numpy {t.numpy}",
                f"The file was pickled with numpy >= 2, which names its internals numpy._core; numpy {t.numpy} "
                "has no such module" + (" (1.26.1+ has shims for multiarray/umath only)" if missing != "numpy._core"
                                        else " (numpy 1.26.1 added shims)") + f": unpickling raises {err}.",
                evidence={"global": g, "offset": offsets.get(g), "numpy": t.numpy, "torch_error": err},
                fix=Fix("rewrite the numpy names as numpy.core (readable by every numpy), or upgrade numpy",
                        command=fix_cmd(ctx, "numpy-core"), python="# or: pip install 'numpy>=2'"),
                blocks=full), STAGE, offsets.get(g))
        elif module.startswith("numpy.dtypes") and nv < Version("1.25"):
            err = "ModuleNotFoundError: No module named 'numpy.dtypes'"
            yield ctx.ordered(finding(
                "CKD-NUMPY-DTYPES", Severity.ERROR if full else Severity.WARNING,
                f"{g}: numpy.dtypes needs numpy >= 1.25 (target {t.numpy})",
                f"numpy.dtypes classes were added in numpy 1.25; numpy {t.numpy} raises {err}.",
                evidence={"global": g, "offset": offsets.get(g), "torch_error": err},
                fix=Fix("replace the numpy objects by plain data, or upgrade numpy",
                        command=fix_cmd(ctx, "weights-only-safe")), blocks=full), STAGE, offsets.get(g))
