"""Bad input through the real CLI: every case exits 2 with one ``ckptdoctor:`` line, no traceback, < 256 MB.

Each case runs ``ckptdoctor inspect`` in a fresh child process (see ``cli_child.py``: the child
reports its own peak RSS), with and without ``--json``; ``--json`` must still print one valid JSON
document (with ``"error"``) on stdout. Inputs are generated here: small real checkpoints written
by torch 2.13 and cut at 50 offsets each, random bytes, and hand-assembled bombs (``hostile.py``).

The default run takes a representative subset of the truncation and random-bytes matrices (and
one run per case); ``-m slow`` runs all 2 x 50 offsets and every case in both output modes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import pickletools
import random
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import hostile as H
import pytest
from cli_child import assert_clean_refusal, run_cli

import ckptdoctor

N_OFFSETS = 50
DEFAULT_EVERY = 12  # the default run keeps every 12th offset of each 50-offset matrix (5 of 50)


# ------------------------------------------------------------------ real checkpoints to break
def _state(torch) -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "layer.weight": torch.randn(16, 8, generator=g),
        "layer.bias": torch.randn(16, generator=g),
        "emb": torch.randn(32, 4, generator=g).to(torch.bfloat16),
        "view": torch.arange(40.0)[5:25:2],
        "step": 3,
        "nested": [torch.arange(10), {"x": torch.ones(3, dtype=torch.int64)}],
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bad_input")


@pytest.fixture(scope="module")
def real(work, torch) -> dict[str, Path]:
    out = {}
    for container in ("zip", "legacy"):
        p = work / f"real_{container}.pt"
        torch.save(_state(torch), p, _use_new_zipfile_serialization=(container == "zip"))
        out[container] = p
    return out


def _spread(lo: int, hi: int, n: int) -> list[int]:
    """``n`` offsets spread over [lo, hi)."""
    if hi <= lo:
        return []
    return sorted({lo + (hi - lo) * i // n for i in range(n)})


def _fill(must: list[int], size: int) -> list[int]:
    """``must`` (in order, deduplicated, within (0, size)) topped up to N_OFFSETS with evenly spread ones."""
    out: list[int] = []
    for o in [*must, *_spread(1, size, size)]:
        if 0 < o < size and o not in out:
            out.append(o)
        if len(out) == N_OFFSETS:
            break
    return out


def zip_offsets(data: bytes) -> list[int]:
    """Cuts inside the central directory, data.pkl, storage records and at the edges, then spread."""
    size = len(data)
    eocd = data.rfind(b"PK\x05\x06")
    cd_start = struct.unpack("<I", data[eocd + 16 : eocd + 20])[0]
    pkl = stor = None
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        spans = {}
        for i in z.infolist():
            nlen, xlen = struct.unpack("<HH", data[i.header_offset + 26 : i.header_offset + 30])
            start = i.header_offset + 30 + nlen + xlen
            spans[i.filename] = (i.header_offset, start, start + i.compress_size)
    pkl = next(v for k, v in spans.items() if k.endswith("/data.pkl"))
    stor = [v for k, v in spans.items() if "/data/" in k]
    must = [*_spread(cd_start, size, 10),                       # inside the central directory (and EOCD)
            *_spread(pkl[1], pkl[2], 10),                        # inside data.pkl
            *[s[1] + (s[2] - s[1]) // 2 for s in stor],          # inside each storage record
            *[s[0] + 10 for s in stor[:3]],                      # inside storage records' local headers
            1, 3, pkl[0] + 15, pkl[2], size - 22, size - 1]      # edges: magic, headers, EOCD
    return _fill(must, size)


def legacy_offsets(data: bytes) -> list[int]:
    """Cuts inside each of the five pickles, inside the storage records (and their i64 counts), at edges."""
    bio = io.BytesIO(data)
    ends = []
    for _ in range(5):
        for op, _arg, pos in pickletools.genops(bio):  # decodes opcodes, never executes them
            if op.name == "STOP":
                ends.append(pos + 1)
                break
    starts = [0, *ends[:-1]]
    size = len(data)
    must = [*ends,                                               # right after each pickle
            *[s + (e - s) // 2 for s, e in zip(starts, ends, strict=True)],  # inside each pickle
            *_spread(starts[3], ends[3], 10),                    # inside the object pickle
            ends[4] + 4,                                         # inside the first record's count
            *_spread(ends[4] + 8, size, 12),                     # inside the storage records
            1, size - 1]
    return _fill(must, size)


def _matrix(kind: str) -> list:
    params = []
    for i in range(N_OFFSETS):
        marks = [] if i % DEFAULT_EVERY == 0 else [pytest.mark.slow]
        params.append(pytest.param(kind, i, marks=marks, id=f"{kind}-{i}"))
    return params


@pytest.mark.parametrize(("container", "index"), _matrix("zip") + _matrix("legacy"))
def test_truncated(container, index, real, work):
    data = real[container].read_bytes()
    offsets = zip_offsets(data) if container == "zip" else legacy_offsets(data)
    assert len(offsets) == N_OFFSETS
    cut = offsets[index]
    p = work / f"cut_{container}_{cut}.pt"
    p.write_bytes(data[:cut])
    as_json = index % 2 == 0 or os.environ.get("CKPTDOCTOR_SLOW_BOTH")
    r = run_cli("inspect", str(p), *(["--json"] if as_json else []), tmp=work)
    doc = assert_clean_refusal(r, as_json=bool(as_json))
    if doc is not None:
        assert doc["format"] in ("truncated", "corrupt", "unknown", "pickle", "empty"), doc
    p.unlink()


def test_truncation_offsets_cover_the_structures(real):
    """The matrix really cuts inside the central directory, data.pkl, storage records and each pickle."""
    zdata = real["zip"].read_bytes()
    offs = zip_offsets(zdata)
    cd_start = struct.unpack("<I", zdata[zdata.rfind(b"PK\x05\x06") + 16:][:4])[0]
    assert sum(o > cd_start for o in offs) >= 10
    ldata = real["legacy"].read_bytes()
    assert len(set(legacy_offsets(ldata))) == N_OFFSETS and len(set(offs)) == N_OFFSETS


# ------------------------------------------------------------------ random bytes
RANDOM_PREFIXES = {
    "plain": b"",
    "zip": b"PK\x03\x04",
    "pickle": b"\x80\x02",
    "legacy": H.PROTO2 + b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".",
    "safetensors": struct.pack("<Q", 64) + b'{"a":',
}


def _random_params() -> list:
    out = []
    for seed, size in [(0, 1), (1, 7), (2, 100), (3, 4096), (4, 65_537), (5, 1 << 20)]:
        for prefix in RANDOM_PREFIXES:
            fast = (prefix, seed) in (("plain", 4), ("pickle", 2))
            out.append(pytest.param(seed, size, prefix, marks=[] if fast else [pytest.mark.slow],
                                    id=f"{prefix}-{size}-{seed}"))
    return out


@pytest.mark.parametrize(("seed", "size", "prefix"), _random_params())
def test_random_bytes(seed, size, prefix, work):
    data = RANDOM_PREFIXES[prefix] + random.Random(seed).randbytes(size)
    p = work / f"random_{prefix}_{seed}.bin"
    p.write_bytes(data)
    as_json = seed % 2 == 0
    assert_clean_refusal(run_cli("inspect", str(p), *(["--json"] if as_json else []), tmp=work), as_json=as_json)


# ------------------------------------------------------------------ paths that are not files
def test_empty_file(work):
    p = work / "empty.pt"
    p.write_bytes(b"")
    doc = assert_clean_refusal(run_cli("inspect", str(p), "--json", tmp=work), as_json=True)
    assert doc["format"] == "empty"


def test_directory(work):
    d = work / "a_folder.pt"
    d.mkdir(exist_ok=True)
    doc = assert_clean_refusal(run_cli("inspect", str(d), "--json", tmp=work), as_json=True)
    assert doc["format"] == "directory"
    r = run_cli("inspect", str(d), tmp=work)
    assert_clean_refusal(r)
    assert "directory" in r.stderr


def test_missing_path(work):
    p = work / "no" / "such.pt"
    doc = assert_clean_refusal(run_cli("inspect", str(p), "--json", tmp=work), as_json=True)
    assert doc["format"] == "missing"
    r = run_cli("inspect", str(p), tmp=work)
    assert_clean_refusal(r)
    assert "no such file" in r.stderr


def _drop_dac_capabilities() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from the bounding set.

    root keeps its uid but, after exec, no longer bypasses file modes: the kernel really denies
    opening a mode-000 file, as it would for any other user.
    """
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_capbset_drop = 24
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            os._exit(97)


def test_permission_denied(work):
    """A mode-000 file. Non-root: as is. root: the child runs without the DAC-override capabilities
    (prctl PR_CAPBSET_DROP before exec), so the kernel enforces the mode for it too; no monkeypatching."""
    p = work / "secret.pt"
    p.write_bytes(b"PK\x03\x04 not readable anyway")
    p.chmod(0)
    try:
        preexec = _drop_dac_capabilities if os.geteuid() == 0 else None
        r = run_cli("inspect", str(p), tmp=work, preexec=preexec)
        if r.returncode == 97:
            pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE: no honest permission-denied path")
        assert_clean_refusal(r)
        assert "permission denied" in r.stderr
        doc = assert_clean_refusal(run_cli("inspect", str(p), "--json", tmp=work, preexec=preexec), as_json=True)
        assert doc["format"] == "permission-denied"
    finally:
        p.chmod(0o600)


# ------------------------------------------------------------------ bombs and absurd claims
def _bare(work: Path, name: str, data: bytes) -> Path:
    p = work / name
    p.write_bytes(data)
    return p


def laughs_with_tensors(work: Path, torch, container: str) -> Path:
    """torch itself writes a billion-laughs tree: 10 references per level, 30 levels, a tensor at the bottom."""
    p = work / f"laughs_{container}.pt"
    level: object = [torch.arange(4)]
    for _ in range(30):
        level = [level] * 10
    torch.save({"model": level}, p, _use_new_zipfile_serialization=(container == "zip"))
    return p


def _patch_int(pkl: bytes, after_string: str, value: int) -> bytes:
    """Replace the first integer opcode after the string ``after_string`` (memo opcodes skipped) by LONG1."""
    ops = list(pickletools.genops(pkl))  # decodes, never executes
    n = next(i for i, (_op, arg, _pos) in enumerate(ops) if arg == after_string) + 1
    while ops[n][0].name in ("BINPUT", "LONG_BINPUT", "MEMOIZE", "PUT"):
        n += 1
    assert ops[n][0].name in ("BININT", "BININT1", "BININT2", "LONG1"), ops[n]
    return pkl[: ops[n][2]] + H.long1(value) + pkl[ops[n + 1][2] :]


def huge_storage_zip(work: Path, real: Path) -> Path:
    """A real zip whose data.pkl declares a 10**15-element storage (the numel after 'cpu' in the id)."""
    members = H.zip_members(real)
    name, pkl = next((n, d) for n, d in members if n.endswith("/data.pkl"))
    pkl = _patch_int(pkl, "cpu", 10**15)
    p = work / "huge_storage.pt"
    H.write_zip(p, [(n, pkl if n == name else d) for n, d in members])
    return p


def huge_shape_zip(work: Path, torch) -> Path:
    """torch writes a 1234567-element tensor; its size tuple is then patched to claim 10**15 elements."""
    src = work / "shape_src.pt"
    torch.save({"w": torch.zeros(1234567)}, src)
    members = H.zip_members(src)
    name, pkl = next((n, d) for n, d in members if n.endswith("/data.pkl"))
    ops = list(pickletools.genops(pkl))
    at = [i for i, (op, arg, _) in enumerate(ops) if arg == 1234567]
    assert len(at) == 2, at  # the numel in the storage id, then the size tuple
    start, end = ops[at[1]][2], ops[at[1] + 1][2]
    pkl = pkl[:start] + H.long1(10**15) + pkl[end:]
    p = work / "huge_shape.pt"
    H.write_zip(p, [(n, pkl if n == name else d) for n, d in members])
    return p


class _Scripted:
    """A module for torch.jit.script (which needs its source in a file)."""

    @staticmethod
    def make(torch):
        class Small(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lin = torch.nn.Linear(2, 2)

            def forward(self, x):
                return self.lin(x)

        return torch.jit.script(Small())


def torchscript_code_bomb(work: Path, torch) -> Path:
    """A real TorchScript archive whose code/ declares ``__parameters__`` with 6M names (30 MB, deflated
    to ~60 KB): parsing that list literal took 12 GB before declarations were capped."""
    src = work / "script_src.pt"
    _Scripted.make(torch).save(str(src))
    members = H.zip_members(src)
    code = next(n for n, d in members if n.endswith(".py") and b"__parameters__ = [" in d)
    decl = b"__parameters__ = [" + b'"a", ' * (6 << 20) + b'"a"]\n  __unused__ = ['
    out = [(n, d.replace(b"__parameters__ = [", decl, 1) if n == code else d) for n, d in members]
    p = work / "script_code_bomb.pt"
    H.write_zip(p, out, deflate=[code])
    return p


def torchscript_json_bomb(work: Path) -> Path:
    """A torch 1.0-1.2 style archive whose model.json inflates to 48 MB of ``0,`` (a noisy ~300:1 ratio)."""
    noise = random.Random(0)
    body = b"".join(b"0," * 150 + str(noise.randrange(10)).encode() + b"," for _ in range(160_000))
    doc = b'{"protoVersion": "6", "tensors": [], "mainModule": {"x": [' + body + b'0]}}'
    p = work / "tsjson_bomb.pt"
    H.write_zip(p, [("m/model.json", doc), ("m/attributes.pkl", b"\x80\x02)."), ("m/version", b"1")],
                deflate=["m/model.json"])
    return p


def _bomb_cases() -> list:
    slow = {"memo_flood", "dict_memo_flood", "laughs_legacy", "deep_marks", "long4_huge", "binunicode8_1tib"}
    out = []
    for n in BOMBS:
        for mode in ("json", "text"):
            fast = n not in slow and (mode == "json" or n == "laughs_zip")
            out.append(pytest.param(n, mode, marks=[] if fast else [pytest.mark.slow], id=f"{n}-{mode}"))
    return out


BOMBS = {
    "laughs_zip": lambda w, r, t: laughs_with_tensors(w, t, "zip"),
    "laughs_legacy": lambda w, r, t: laughs_with_tensors(w, t, "legacy"),
    "dup_laughs": lambda w, r, t: _bare(w, "dup.pkl", H.dup_laughs(60)),
    "memo_flood": lambda w, r, t: _bare(w, "memo.pkl", H.memo_flood(3_000_000)),
    "set_flood": lambda w, r, t: _bare(w, "sets.pkl", H.PROTO2 + H.EMPTY_LIST + b"\x8fa" * 3_000_000 + H.STOP),
    "dict_memo_flood": lambda w, r, t: _bare(w, "dicts.pkl", H.PROTO4 + b"}\x940" * 3_000_000 + H.NONE + H.STOP),
    "deep_nesting": lambda w, r, t: _bare(w, "deep.pkl", H.deep_nesting(100_000)),
    "deep_marks": lambda w, r, t: _bare(w, "marks.pkl", H.deep_marks(100_000)),
    "zip_bomb": lambda w, r, t: H.zip_bomb(w / "zbomb.pt"),  # 256 MiB of zeros in ~250 KB, honest headers
    "zip_bomb_lying": lambda w, r, t: H.zip_bomb(w / "zbomb_lying.pt", declared=1000),  # headers say 1000 B
    "storage_1e15": lambda w, r, t: huge_storage_zip(w, r["zip"]),
    "shape_1e15": lambda w, r, t: huge_shape_zip(w, t),
    "binbytes8_1tib": lambda w, r, t: _bare(w, "bb8.pkl", H.huge_binbytes8()),
    "binunicode8_1tib": lambda w, r, t: _bare(w, "bu8.pkl", H.huge_binunicode8()),
    "long4_huge": lambda w, r, t: _bare(w, "long4.pkl", H.huge_long4()),
    "long4_present": lambda w, r, t: _bare(w, "long4p.pkl", H.huge_long4_present()),
    "torchscript_code_bomb": lambda w, r, t: torchscript_code_bomb(w, t),
    "torchscript_json_bomb": lambda w, r, t: torchscript_json_bomb(w),
}


@pytest.fixture(scope="module")
def bombs(work, real, torch) -> Callable[[str], Path]:
    """Builds each bomb on first use (the default run uses only some)."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            made[name] = BOMBS[name](work, real, torch)
        return made[name]

    return get


EXPECTED_REASON = {
    "laughs_zip": "shared", "laughs_legacy": "shared", "dup_laughs": "values walked",
    "memo_flood": "memory", "set_flood": "memory", "dict_memo_flood": "memory",
    "deep_nesting": "nesting depth", "deep_marks": "nesting depth",
    "zip_bomb": "inflated size", "zip_bomb_lying": "zip bomb",
    "storage_1e15": "1000000000000000", "shape_1e15": "1000000000000000",
    "binbytes8_1tib": "1099511627776", "binunicode8_1tib": "1099511627776",
    "long4_huge": "integer size", "long4_present": "integer size",
    "torchscript_code_bomb": "__parameters__ declaration", "torchscript_json_bomb": "model.json",
}


@pytest.mark.parametrize(("case", "mode"), _bomb_cases())
def test_bomb(case, mode, bombs, work):
    as_json = mode == "json"
    r = run_cli("inspect", str(bombs(case)), *(["--json"] if as_json else []), tmp=work, timeout=180)
    assert_clean_refusal(r, as_json=as_json)
    assert EXPECTED_REASON[case] in r.stderr, r.describe()


def test_the_samples_themselves_read_fine(real):
    """The untouched checkpoints the matrix cuts read fine (so the refusals above are about the damage)."""
    for p in real.values():
        with ckptdoctor.open(p) as ckpt:
            assert len(list(ckpt.tensors())) == 6
