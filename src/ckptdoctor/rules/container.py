"""The container vs the target torch: zip vs legacy, zip version records, TorchScript, tar, DCP, safetensors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from packaging.version import Version

from ckptdoctor.findings import Finding, Fix, Severity
from ckptdoctor.rules._common import finding, fix_cmd, load_line, miniz
from ckptdoctor.rules._tables import release, torch_features

if TYPE_CHECKING:
    from ckptdoctor.check import Context

STAGE = 1
FINDINGS = {
    "CKD-CONTAINER-ZIP-TOO-NEW": "a zip checkpoint (torch >= 1.6 default) for a torch that reads only the legacy format",
    "CKD-CONTAINER-ZIP-VERSION": "the zip 'version' record is above what the target torch reads",
    "CKD-CONTAINER-TORCHSCRIPT-WO": "a TorchScript archive given to torch.load with weights_only=True",
    "CKD-CONTAINER-TORCHSCRIPT": "a TorchScript archive: torch.load hands it to torch.jit.load (not a state_dict)",
    "CKD-CONTAINER-TORCHSCRIPT-JSON": "a torch 1.0-1.2 TorchScript model.json archive",
    "CKD-CONTAINER-TAR-WO": "a torch 0.1.x tar checkpoint given to torch.load with weights_only=True",
    "CKD-CONTAINER-DCP": "a torch.distributed.checkpoint folder: torch.load cannot read it",
    "CKD-CONTAINER-SHARDED": "a sharded checkpoint index (JSON): load the shards it lists",
    "CKD-CONTAINER-SAFETENSORS": "a safetensors file: which torch.load reads it, else safetensors.torch.load_file",
    "CKD-CONTAINER-PT2": "a torch.export archive (.pt2): torch.export.load",
    "CKD-CONTAINER-PICKLE": "a plain pickle (pickle.dump), not a torch.save file",
    "CKD-CONTAINER-NOT-TORCHSCRIPT": "an eager torch.save file given to torch.jit.load",
    "CKD-CONTAINER-LEGACY-UNTYPED": "a legacy-format file with untyped storages (dtypes saved via UntypedStorage): "
                                    "torch's legacy loader cannot rebuild them",
}
UNTYPED = ("torch.storage.UntypedStorage", "torch.storage._UntypedStorage", "torch._UntypedStorage")


def _container_facts(rel: str) -> dict:
    facts = torch_features().get("container", {})
    if rel in facts:
        return facts[rel]
    known = sorted(facts, key=Version)
    if known and Version(rel) > Version(known[-1]):
        return facts[known[-1]]
    return {}


def run(ctx: Context) -> Iterator[Finding]:
    ckpt = ctx.ckpt
    if ckpt is None:
        return
    t = ctx.target
    fmt = ckpt.format
    rel = t.torch_release
    facts = _container_facts(rel)
    wo = t.loads_weights_only and t.torch_at_least("1.13")
    table = ctx.wo_table
    unsafe = (table or {}).get("load", {}).get("unsafe_message") or ""
    if t.loader == "torch.jit.load":
        yield from _jit(ctx, facts)
        return
    if fmt == "legacy" and t.torch_at_least("1.12"):
        hit = next((g for g in ckpt.globals if g in UNTYPED), None)
        if hit is not None:
            off = next((o for n, _r, o, _l in ctx.sim(False).globals if n == hit), None) if ctx.pickles else None
            cls = hit.rpartition(".")[2]
            yield ctx.ordered(finding(
                "CKD-CONTAINER-LEGACY-UNTYPED", Severity.ERROR,
                "legacy-format file with untyped storages: torch's legacy loader cannot read them",
                f"{ctx.name} is in the legacy (pre-1.6, or _use_new_zipfile_serialization=False) format but stores "
                f"some tensors through {hit} (dtypes without a typed storage class, e.g. uint16/float8, or a "
                f"saved UntypedStorage). torch's _legacy_load reads storage_type.dtype, which {cls} does not "
                f"have, so torch.load fails whatever weights_only says.",
                evidence={"global": hit, "offset": off, "kind": "legacy-untyped",
                          "torch_error": f"AttributeError: type object '{hit}' has no attribute 'dtype'"},
                fix=Fix("rewrite it as a zip checkpoint", command=fix_cmd(ctx)), blocks=True), 2, off)
    if fmt in ("zip", "torchscript"):
        zip_reads = facts.get("torch_load_zip", Version(rel) >= Version("1.4")) if facts else Version(rel) >= Version("1.4")
        version = ckpt.details.get("version") or ckpt.details.get("data_version")
        if fmt == "zip" and not zip_reads:
            yield ctx.ordered(finding(
                "CKD-CONTAINER-ZIP-TOO-NEW", Severity.ERROR, f"zip checkpoint; torch {t.torch} reads only legacy files",
                f"{ctx.name} uses the zip container torch.save writes since 1.6 (opt-in in 1.4/1.5). torch {t.torch} "
                "does not read it: torch.load stops with 'is a zip archive (did you mean to use torch.jit.load()?)'.",
                evidence={"container": "zip", "kind": "zip", "zip_version": version,
                          "torch_error": f"RuntimeError: {ckpt.path} is a zip archive (did you mean to use "
                                         "torch.jit.load()?)"},
                fix=Fix(f"rewrite it in the legacy format torch {t.torch} reads", command=fix_cmd(ctx)),
                blocks=True), STAGE, 0)
        elif version is not None and facts.get("zip_max_version") is not None:
            try:
                v = int(str(version).strip())
            except ValueError:
                v = None
            mx = facts["zip_max_version"]
            if v is not None and v > mx:
                yield ctx.ordered(finding(
                    "CKD-CONTAINER-ZIP-VERSION", Severity.ERROR,
                    f"zip version record {v}; torch {t.torch} reads up to {mx}",
                    f"The archive's version record is {v} but torch {t.torch} supports file format versions "
                    f"1..{mx} (kMaxSupportedFileFormatVersion): the reader refuses it before unpickling.",
                    evidence={"zip_version": v, "max_supported": mx, "kind": "zip-version",
                              "torch_error": "RuntimeError: version_ <= kMaxSupportedFileFormatVersion INTERNAL "
                                             f"ASSERT FAILED ... Attempted to read a PyTorch file with version {v}, "
                                             f"but the maximum supported version for reading is {mx}. Your "
                                             "PyTorch installation may be too old."},
                    fix=Fix(f"rewrite it as torch {t.torch_release} writes it", command=fix_cmd(ctx)),
                    blocks=True), STAGE, 0)
    if fmt == "torchscript":
        msg = (table or {}).get("load", {}).get("torchscript_weights_only_message") if wo else None
        if msg:
            err = "RuntimeError: " + msg.replace("{UNSAFE_MESSAGE}", unsafe)
            yield ctx.ordered(finding(
                "CKD-CONTAINER-TORCHSCRIPT-WO", Severity.ERROR,
                f"TorchScript archive: torch {t.torch} refuses it under weights_only=True",
                f"{ctx.name} was written by torch.jit.save ({ckpt.details.get('module_class', 'a scripted module')}). "
                f"torch.load forwards such archives to torch.jit.load, but torch {t.torch} refuses to do so with "
                "weights_only=True (the default since 2.6). torch.jit.load runs the archive's TorchScript code.",
                evidence={"kind": "torchscript", "module_class": ckpt.details.get("module_class"), "torch_error": err},
                fix=Fix("load it as TorchScript (trusted file), or extract its weights as a state_dict",
                        python="model = torch.jit.load(f, map_location='cpu')",
                        command=fix_cmd(ctx, "extract-state-dict")), blocks=True), STAGE, 0)
        elif not t.torch_at_least("1.3"):
            yield ctx.ordered(finding(
                "CKD-CONTAINER-TORCHSCRIPT", Severity.ERROR, f"TorchScript archive too new for torch {t.torch}",
                f"torch {t.torch}'s torch.jit.load reads only the model.json archives of 1.0-1.2; this is a "
                "torch >= 1.3 TorchScript archive.",
                evidence={"kind": "torchscript"}, fix=Fix("extract the weights as a state_dict",
                                                          command=fix_cmd(ctx, "extract-state-dict")),
                blocks=True), STAGE, 0)
        else:
            yield finding("CKD-CONTAINER-TORCHSCRIPT", Severity.INFO, "TorchScript archive: loads via torch.jit.load",
                          f"torch.load hands {ctx.name} to torch.jit.load and returns a ScriptModule, not a "
                          "state_dict. That runs the archive's TorchScript code (trusted files only).",
                          evidence={"kind": "torchscript", "module_class": ckpt.details.get("module_class")},
                          fix=Fix("to get plain weights instead", command=fix_cmd(ctx, "extract-state-dict")))
    elif fmt == "torchscript-json":
        jit_ok = facts.get("jit_legacy_json", True)
        err = miniz(t, "RuntimeError: PytorchStreamReader failed locating file data.pkl: file not found")
        yield ctx.ordered(finding(
            "CKD-CONTAINER-TORCHSCRIPT-JSON", Severity.ERROR,
            "torch 1.0-1.2 TorchScript archive (model.json): torch.load cannot read it",
            f"{ctx.name} was written by torch.jit.save of torch 1.0-1.2 (model.json + tensors/). torch.load "
            "finds no data.pkl in it"
            + (f"; torch {t.torch}'s torch.jit.load still reads it." if jit_ok else
               f"; torch {t.torch}'s torch.jit.load no longer reads it either (legacy import removed in 2.4: "
               "'Legacy model format is not supported on mobile.')."),
            evidence={"kind": "torchscript-json", "jit_load_reads_it": jit_ok, "torch_error": err},
            fix=Fix("extract its weights without torch", command=fix_cmd(ctx, "extract-state-dict"),
                    python="model = torch.jit.load(f)" if jit_ok else None), blocks=True), STAGE, 0)
    elif fmt == "tar":
        msg = (table or {}).get("load", {}).get("tar_weights_only_message") if wo else None
        if wo:
            err = "RuntimeError: " + msg.replace("{UNSAFE_MESSAGE}", unsafe) if msg else None
            yield ctx.ordered(finding(
                "CKD-CONTAINER-TAR-WO", Severity.ERROR, "torch 0.1.x tar checkpoint: refused under weights_only",
                f"{ctx.name} is a torch 0.1.x tar archive. torch {t.torch} reads it only with weights_only=False"
                + ("" if msg else " (this release has no explicit check; its restricted unpickler cannot rebuild "
                                  "the tar's storages)") + ".",
                evidence={"kind": "tar", "torch_error": err},
                fix=Fix("rewrite it as a zip checkpoint (no code runs)", command=fix_cmd(ctx),
                        python=load_line(t, weights_only=False)), blocks=True), STAGE, 0)
    elif fmt == "dcp":
        yield ctx.ordered(finding(
            "CKD-CONTAINER-DCP", Severity.ERROR, "a torch.distributed.checkpoint folder, not a torch.save file",
            "torch.load reads single files; a DCP folder (.metadata + __*_*.distcp) is read with "
            "torch.distributed.checkpoint.load into an existing state_dict, or converted with "
            "torch.distributed.checkpoint.format_utils.dcp_to_torch_save.",
            evidence={"kind": "dcp", "torch_error": f"IsADirectoryError: [Errno 21] Is a directory: '{ckpt.path}'"},
            fix=Fix("convert it to one file",
                    # ckptdoctor reads single-chunk saves itself; tensors split across chunks need torch
                    command=None if ckpt.details.get("sharded_tensors")
                    else f"ckptdoctor convert {ckpt.path} -o model.pt",
                    python="from torch.distributed.checkpoint.format_utils import dcp_to_torch_save; "
                           f"dcp_to_torch_save({ckpt.path!r}, 'model.pt')"), blocks=True), STAGE, 0)
    elif fmt == "sharded-index":
        yield ctx.ordered(finding(
            "CKD-CONTAINER-SHARDED", Severity.ERROR, "a sharded-checkpoint index (JSON), not the weights",
            "This JSON lists which shard file holds each tensor (weight_map). Load each shard, or the "
            "model with the library that wrote it (transformers' from_pretrained reads the index).",
            evidence={"kind": "sharded-index", "torch_error": "UnpicklingError: invalid load key, '{'."},
            fix=Fix("load the shards listed in weight_map"), blocks=True), STAGE, 0)
    elif fmt == "pt2":
        yield ctx.ordered(finding(
            "CKD-CONTAINER-PT2", Severity.ERROR, "a torch.export archive (.pt2)",
            "Written by torch.export.save; read it with torch.export.load (torch >= 2.1), not torch.load.",
            evidence={"kind": "pt2"}, fix=Fix("use torch.export.load", python="ep = torch.export.load(f)"),
            blocks=True), STAGE, 0)
    elif fmt == "safetensors":
        yield from _safetensors(ctx)
    elif fmt == "pickle":
        yield ctx.ordered(finding(
            "CKD-CONTAINER-PICKLE", Severity.ERROR, "a plain pickle, not a torch.save file",
            "The file is a bare pickle (pickle.dump): torch.load unpickles it as the magic number and then "
            "stops with 'Invalid magic number; corrupt file?'. Use pickle.load only if you trust it, or rewrite "
            "it as a torch checkpoint.",
            evidence={"kind": "pickle", "torch_error": "RuntimeError: Invalid magic number; corrupt file?"},
            fix=Fix("rewrite it as a torch checkpoint (no code runs)", command=fix_cmd(ctx)), blocks=True), STAGE, 1)


def _jit(ctx: Context, facts: dict) -> Iterator[Finding]:
    """torch.jit.load reads TorchScript archives only (model.json ones until 2.3)."""
    ckpt = ctx.ckpt
    assert ckpt is not None
    t = ctx.target
    fmt = ckpt.format
    if fmt == "torchscript" or (fmt == "torchscript-json" and facts.get("jit_legacy_json", True)):
        return
    if fmt == "torchscript-json":
        yield ctx.ordered(finding(
            "CKD-CONTAINER-TORCHSCRIPT-JSON", Severity.ERROR,
            f"torch 1.0-1.2 TorchScript archive: torch {t.torch}'s torch.jit.load no longer reads it",
            "The model.json import was removed in torch 2.4; only torch <= 2.3 loads this archive.",
            evidence={"kind": "torchscript-json", "jit_load_reads_it": False,
                      "torch_error": "RuntimeError: Legacy model format is not supported on mobile."},
            fix=Fix("extract its weights without torch", command=fix_cmd(ctx, "extract-state-dict")), blocks=True),
            STAGE, 0)
        return
    missing = "constants.pkl" if fmt == "zip" else None
    err = (miniz(t, f"RuntimeError: PytorchStreamReader failed locating file {missing}: file not found") if missing
           else miniz(t, "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central "
                         "directory"))
    yield ctx.ordered(finding(
        "CKD-CONTAINER-NOT-TORCHSCRIPT", Severity.ERROR, f"a torch.save file ({fmt}), not TorchScript",
        f"{ctx.name} was written by torch.save, not torch.jit.save: torch.jit.load cannot read it. Use torch.load "
        "(and the model's class) instead.",
        evidence={"kind": fmt, "torch_error": err},
        fix=Fix("load it with torch.load", python=load_line(t)), blocks=True), STAGE, 0)


def _safetensors(ctx: Context) -> Iterator[Finding]:
    t = ctx.target
    table = ctx.wo_table
    dispatch = bool((table or {}).get("load", {}).get("safetensors_dispatch")) and t.torch_at_least("1.13")
    by_path = ctx.path.endswith(".safetensors")
    if dispatch and by_path and t.safetensors:
        yield finding("CKD-CONTAINER-SAFETENSORS", Severity.INFO,
                      f"safetensors: torch {t.torch}'s torch.load reads it (via the safetensors package)",
                      f"torch {t.torch} hands paths ending in .safetensors to safetensors.torch.load_file.",
                      evidence={"kind": "safetensors", "dispatch": True},
                      fix=Fix("or call safetensors directly",
                              python="from safetensors.torch import load_file; sd = load_file(f)"))
        return
    if dispatch and by_path and not t.safetensors:
        why = "the safetensors package is not installed"
        err = ("RuntimeError: Attempting to load a safetensors file but safetensors is not installed. "
               "Please install safetensors with: pip install safetensors")
    else:
        why = (f"torch {t.torch}'s torch.load does not read safetensors" if not dispatch else
               "torch.load recognises safetensors only by a path ending in .safetensors")
        from ckptdoctor.rules.impostors import first_refusal

        hit = first_refusal(ctx.head, table if t.loads_weights_only and t.torch_at_least("1.13") else None)
        err = None
        if hit is not None:
            b = hit[1]
            err = (f"UnpicklingError: ... Unsupported operand {b}" if t.loads_weights_only
                   else "UnpicklingError: invalid load key, '" + (chr(b) if 32 <= b < 127 else f"\\x{b:02x}") + "'.")
    yield ctx.ordered(finding(
        "CKD-CONTAINER-SAFETENSORS", Severity.ERROR, f"safetensors file: torch.load will not read it ({why})",
        f"{ctx.name} is a safetensors file; {why}. Read it with the safetensors package.",
        evidence={"kind": "safetensors", "dispatch": dispatch, "torch_error": err},
        fix=Fix("load it with safetensors", command="pip install safetensors",
                python="from safetensors.torch import load_file; sd = load_file(f)"), blocks=True), STAGE, 0)


__all__ = ["run", "FINDINGS", "release"]
