"""Structural integrity findings, and the zip quirks torch accepts while other readers refuse them."""

from __future__ import annotations

import io
import struct
import warnings
import zipfile

import pytest

from ckptdoctor.findings import Severity
from ckptdoctor.security import analyze_path
from security.malicious import BENIGN_TS_CONSTANTS, BENIGN_TS_DATA, TS_CODE, _zip, torchscript_zip
from security.pickleasm import Asm, Call, G


def ids(path) -> dict[str, list]:
    out: dict[str, list] = {}
    for f in analyze_path(path).findings:
        out.setdefault(f.id, []).append(f)
    return out


@pytest.fixture
def saved(torch, tmp_path):
    p = tmp_path / "sd.pt"
    torch.save({"w": torch.arange(4.0), "b": torch.zeros(2, dtype=torch.int64)}, p)
    return p


def rewrite(src, dst, *, drop=(), replace=None, add=()):
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for info in z.infolist():
            if any(info.filename.endswith(d) for d in drop):
                continue
            data = z.read(info)
            if replace and info.filename.endswith(replace[0]):
                data = replace[1](data)
            out.writestr(info.filename, data)
        for name, data in add:
            out.writestr(name, data)
    return dst


def test_clean_file_has_no_integrity_findings(saved):
    assert not [i for i in ids(saved) if i.startswith("CKD-INT")]


def test_missing_short_long_and_orphan_storage_records(saved, tmp_path):
    f = ids(rewrite(saved, tmp_path / "m.pt", drop=("data/1",)))
    assert f["CKD-INT-STORAGE-MISSING"][0].blocks_load and "1" in f["CKD-INT-STORAGE-MISSING"][0].evidence["missing"]
    f = ids(rewrite(saved, tmp_path / "s.pt", replace=("data/0", lambda d: d[:8])))
    assert f["CKD-INT-STORAGE-SIZE"][0].severity == Severity.ERROR  # 8 bytes where 4 float32 need 16
    f = ids(rewrite(saved, tmp_path / "l.pt", replace=("data/0", lambda d: d + b"hidden payload bytes")))
    assert "CKD-INT-STORAGE-EXTRA" in f
    root = zipfile.ZipFile(saved).namelist()[0].split("/")[0]
    f = ids(rewrite(saved, tmp_path / "o.pt", add=((f"{root}/data/7", b"\x00" * 32),)))
    assert f["CKD-INT-STORAGE-ORPHAN"][0].evidence["orphans"] == [f"{root}/data/7"]


def _flip(data: bytes, old: bytes, new: bytes) -> bytes:
    return data.replace(old, new)


def test_zip_quirks_torch_accepts_but_zipfile_refuses(torch, saved):
    """Benign files only: torch.load(weights_only=True) reads them, Python's zipfile raises, ckptdoctor says so."""
    good = saved.read_bytes()
    z = zipfile.ZipFile(saved)
    pkl = next(n for n in z.namelist() if n.endswith("data.pkl"))
    crc = struct.pack("<I", z.getinfo(pkl).CRC)
    variants = {
        "CRC-32": _flip(good, crc, b"\x01\x00\x00\x00"),
        "local header names another file": good.replace(pkl.encode(), pkl[:-1].encode() + b"X", 1),
    }
    for words, data in variants.items():
        out = torch.load(io.BytesIO(data), weights_only=True)
        assert out["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
        with pytest.raises(zipfile.BadZipFile):
            with zipfile.ZipFile(io.BytesIO(data)) as zz:
                for n in zz.namelist():
                    zz.read(n)
        p = saved.with_name(f"q{len(words)}.pt")
        p.write_bytes(data)
        f = ids(p)["CKD-INT-ZIP-ANOMALY"][0]
        assert words in f.explanation and f.severity == Severity.WARNING


def test_duplicates_torch_and_zipfile_disagree(torch, tmp_path):
    """Which duplicate torch loads depends on the rest of the directory; zipfile always takes the last."""
    import pickle

    copies = [("archive/data.pkl", pickle.dumps({"w": "first"}, protocol=2)),
              ("archive/data.pkl", pickle.dumps({"w": "last"}, protocol=2))]
    version = [("archive/version", b"3\n")]
    dup = tmp_path / "dup.pt"
    picks = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for members in (copies + version, version + copies):  # same files, another directory order
            dup.write_bytes(_zip(members))
            picks.add(torch.load(dup, weights_only=True)["w"])
            with zipfile.ZipFile(dup) as zf:
                assert zf.read("archive/data.pkl") == copies[1][1]  # zipfile: always the last copy
            f = ids(dup)["CKD-INT-ZIP-DUPLICATE"][0]
            assert f.evidence["duplicates"] == ["archive/data.pkl"] and "binary search" in f.explanation
    assert picks == {"first", "last"}


def test_both_duplicate_copies_are_scanned(tmp_path):
    from ckptdoctor.security import scan_file
    from ckptdoctor.source import open_source

    evil = Asm(2).call(Call(G("os", "system"), ("true",))).stop()
    for order in ((b"\x80\x02}.", evil), (evil, b"\x80\x02}.")):
        p = tmp_path / "d.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p.write_bytes(_zip([("archive/data.pkl", order[0]), ("archive/data.pkl", order[1])]))
        src = open_source(str(p))
        assert len(scan_file(src, str(p)).pickles) == 2
        src.close()
        assert analyze_path(p).verdict == "dangerous"


def test_after_stop_and_multiple_pickles(tmp_path):
    p = tmp_path / "a.pkl"
    p.write_bytes(b"\x80\x02}." + b"trailing junk")
    assert ids(p)["CKD-INT-AFTER-STOP"][0].evidence["trailing"] == 13
    p.write_bytes(b"\x80\x02}." + b"\x80\x02]." + b"\x80\x02K\x01.")
    f = ids(p)["CKD-INT-MULTIPLE-PICKLES"][0]
    assert len(f.evidence["pickles"]) == 3
    # a pickle hidden after STOP inside data.pkl: torch never runs it, it is scanned anyway
    hidden = Asm(2).call(Call(G("os", "system"), ("true",))).stop()
    z = tmp_path / "h.pt"
    z.write_bytes(_zip([("archive/data.pkl", b"\x80\x02}." + hidden), ("archive/version", b"3\n")]))
    f = ids(z)
    assert "second pickle hidden after STOP" in f["CKD-INT-AFTER-STOP"][0].title
    assert f["CKD-SEC-DANGEROUS"][0].evidence["executed_by"].startswith("no loader")


def test_polyglot_and_broken_pickle(tmp_path):
    from security.malicious import polyglot

    def evil():
        return Asm(2, stack_global=False).call(Call(G("os", "system"), ("true",)))

    p = tmp_path / "poly.pt"
    p.write_bytes(polyglot(evil().stop()))
    assert "CKD-INT-POLYGLOT" in ids(p)
    p.write_bytes(bytes(evil().out) + b"\xff")
    f = ids(p)
    assert "CKD-INT-BROKEN-PICKLE" in f and "CKD-SEC-DANGEROUS" in f


def test_torchscript_code(tmp_path):
    p = tmp_path / "ts.pt"
    p.write_bytes(torchscript_zip(BENIGN_TS_DATA, BENIGN_TS_CONSTANTS, TS_CODE))
    assert not [i for i in ids(p) if i.startswith("CKD-SEC-TS")]
    bad = TS_CODE.replace(b"return x", b"return torch.from_file('/etc/passwd', False, 4)")
    p.write_bytes(torchscript_zip(BENIGN_TS_DATA, BENIGN_TS_CONSTANTS, bad))
    assert ids(p)["CKD-SEC-TS-CODE"][0].severity == Severity.CRITICAL
    esc = TS_CODE.replace(b"return x", b"__import__('os').system('x')\n    return x")
    p.write_bytes(torchscript_zip(BENIGN_TS_DATA, BENIGN_TS_CONSTANTS, esc))
    assert ids(p)["CKD-SEC-TS-CODE"][0].severity == Severity.WARNING
    ops = TS_CODE.replace(b"return x", b"return ops.mylib.secret(x)")
    p.write_bytes(torchscript_zip(BENIGN_TS_DATA, BENIGN_TS_CONSTANTS, ops))
    assert ids(p)["CKD-SEC-TS-OPS"][0].evidence["namespaces"] == ["mylib"]


def test_real_torchscript_code_is_clean(torch, tmp_path):
    m = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Dropout()))
    p = tmp_path / "m.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.save(str(p))
    assert not [i for i in ids(p) if i.startswith(("CKD-SEC-TS", "CKD-SEC-DANGER", "CKD-INT"))]


def test_impostor_with_pickled_code(tmp_path):
    from security.malicious import bypasses

    npy = next(s for s in bypasses("/nonexistent/CANARY") if s.name.endswith(".npy"))
    p = tmp_path / "x.npy"
    p.write_bytes(npy.data)
    f = ids(p)
    assert "CKD-INT-IMPOSTOR-CODE" in f and "numpy.load(allow_pickle=True)" in f["CKD-SEC-DANGEROUS"][0].explanation
