"""Our zip and legacy files against the files torch 2.13 writes for the same object.

zip: same records in the same order at the same offsets, identical local headers (FB
padding), data descriptors and central directory, byte-identical data.pkl and storages
(only ``.data/serialization_id`` differs: torch hashes names with std::hash).
legacy: the five pickles disassemble identically once storage keys (pointers) are
normalised; the records (i64 count + bytes) are the same, back to back.
"""

from __future__ import annotations

import collections
import io
import pickle
import pickletools
import re
import struct
import warnings
import zipfile

import pytest

from ckptdoctor.fixes.apply import convert_file
from fix.conftest import fixture_objects
from fix.helpers import assert_same, load, torch

NAMES = list(fixture_objects(torch))
SERIAL = ".data/serialization_id"


def _torch_save(obj, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(obj, path, **kw)


def local_header(data: bytes, off: int) -> tuple[bytes, bytes]:
    nlen, xlen = struct.unpack("<HH", data[off + 26 : off + 30])
    return data[off : off + 30], data[off + 30 + nlen : off + 30 + nlen + xlen]


@pytest.fixture(scope="module")
def pairs(fixtures, tmp_path_factory):
    """name -> (torch's zip, ours) with the same file name (so the same archive root)."""
    tdir, odir = tmp_path_factory.mktemp("torch"), tmp_path_factory.mktemp("ours")
    out = {}
    for name, fx in fixtures.items():
        t, o = tdir / f"{name}.pt", odir / f"{name}.pt"
        _torch_save(fx["obj"], t)
        convert_file(str(fx["legacy"]), str(o), to="zip")  # from torch's *legacy* file: nothing copied over
        out[name] = (t, o)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_zip_records_offsets_headers_match_torch(pairs, name):
    t, o = pairs[name]
    zt, zo = zipfile.ZipFile(t), zipfile.ZipFile(o)
    assert zo.testzip() is None  # every CRC32 right
    it, io_ = zt.infolist(), zo.infolist()
    assert [i.filename for i in it] == [i.filename for i in io_]
    assert [(i.header_offset, i.file_size, i.flag_bits, i.compress_type) for i in it] == \
           [(i.header_offset, i.file_size, i.flag_bits, i.compress_type) for i in io_]
    bt, bo = t.read_bytes(), o.read_bytes()
    assert len(bt) == len(bo)
    for a, b in zip(it, io_, strict=True):
        assert local_header(bt, a.header_offset) == local_header(bo, b.header_offset), a.filename
        data_at = a.header_offset + 30 + len(a.filename) + len(local_header(bt, a.header_offset)[1])
        assert data_at % 64 == 0, a.filename
        if not a.filename.endswith(SERIAL):
            assert zt.read(a) == zo.read(b), a.filename  # data.pkl and every storage byte-identical
            assert a.CRC == b.CRC, a.filename
    # central directory and end records: identical apart from the serialization id's CRC
    ser = it[-1]
    assert ser.filename.endswith(SERIAL)
    cd_start = bt.index(b"PK\x01\x02", ser.header_offset)
    cd_t, cd_o = bytearray(bt[cd_start:]), bytearray(bo[cd_start:])
    pos = cd_t.rfind(ser.filename.encode()) - 46  # the serialization id's central header
    cd_t[pos + 16 : pos + 20] = cd_o[pos + 16 : pos + 20]
    assert cd_t == cd_o


@pytest.mark.parametrize("name", NAMES)
def test_zip_loads_with_mmap_and_computed_offsets(pairs, name, monkeypatch):
    from torch.utils.serialization import config

    t, o = pairs[name]
    monkeypatch.setenv("TORCH_SERIALIZATION_DEBUG", "1")  # torch asserts its computed offsets
    # torch's own patch, not monkeypatch: pytest >= 9.2 undoes setattr on an object without the name in
    # its __dict__ by deleting it, which removes the option from torch's config proxy for the session
    with config.patch("load.calculate_storage_offsets", True):
        assert_same(load(t, mmap=True), load(o, mmap=True))


def _pickles(path) -> tuple[list[str], int, bytes, list[str], int]:
    data = open(path, "rb").read()
    f = io.BytesIO(data)
    texts, keys, obj_start = [], None, 0
    for i in range(5):
        start = f.tell()
        if i == 3:
            obj_start = start
        s = io.StringIO()
        pickletools.dis(f, out=s)
        texts.append(s.getvalue())
        if i == 4:
            keys = pickle.loads(data[start : f.tell()])  # a list of str written by the test's own files
    return texts, f.tell(), data, keys, obj_start


def _norm(text: str, keys: list[str]) -> str:
    text = re.sub(r"^\s*\d+:", "", text, flags=re.M)
    text = re.sub(r"\(MARK at \d+\)", "(MARK)", text)
    for k in keys:
        text = text.replace(f"'{k}'", "'<storage key>'")
    return text


class _Dummy:
    def __setstate__(self, state):  # BUILD on a placeholder
        pass


class _PidRecorder(pickle.Unpickler):
    """Reads our *test* files' object pickle only to list storage ids in order of first use."""

    def __init__(self, f):
        super().__init__(f)
        self.pids: dict[str, tuple[str, int]] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if name.endswith("Storage"):
            return type(name, (), {})
        return lambda *a, **k: _Dummy()

    def persistent_load(self, pid):
        if pid[0] == "storage":
            cls = pid[1]
            self.pids.setdefault(pid[2], (getattr(cls, "__name__", str(cls)), pid[4]))
        return _Dummy()


SIZES = {"DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
         "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
         "QInt8Storage": 1, "QUInt8Storage": 1, "QInt32Storage": 4, "ComplexFloatStorage": 8,
         "ComplexDoubleStorage": 16, "UntypedStorage": 1}


def _records(data: bytes, end: int, keys: list[str], obj_start: int) -> tuple[list, int]:
    """(count, bytes) of each storage in order of first use in the object pickle; and where they end."""
    f = io.BytesIO(data)
    f.seek(obj_start)
    u = _PidRecorder(f)
    u.load()
    sizes = {k: SIZES[u.pids[k][0]] for k in keys}
    at, pos = {}, end
    for k in keys:
        (n,) = struct.unpack("<q", data[pos : pos + 8])
        assert n == u.pids[k][1], k  # count = the pid's numel
        at[k] = (n, data[pos + 8 : pos + 8 + n * sizes[k]])
        pos += 8 + n * sizes[k]
    return [at[k] for k in u.pids], pos


@pytest.mark.parametrize("name", [n for n in NAMES if n != "new_dtypes"])
def test_legacy_stream_matches_torch(fixtures, tmp_path, name):
    t = fixtures[name]["legacy"]
    o = tmp_path / "ours.pt"
    convert_file(str(fixtures[name]["zip"]), str(o), to="legacy")
    ta, ta_end, tdata, tkeys, tstart = _pickles(t)
    oa, oa_end, odata, okeys, ostart = _pickles(o)
    assert [_norm(x, tkeys) for x in ta] == [_norm(x, okeys) for x in oa]
    assert okeys == sorted(okeys) and len(okeys) == len(tkeys)
    trec, tend = _records(tdata, ta_end, tkeys, tstart)
    orec, oend = _records(odata, oa_end, okeys, ostart)
    assert trec == orec
    assert tend == len(tdata) and oend == len(odata)  # records back to back, nothing after them


def test_legacy_new_dtypes_differ_from_torch_only_in_storage_class(fixtures, tmp_path):
    """torch 2.13 writes UntypedStorage ids it cannot read back; we write ByteStorage (same bytes)."""
    t = fixtures["new_dtypes"]["legacy"]
    o = tmp_path / "ours.pt"
    convert_file(str(fixtures["new_dtypes"]["zip"]), str(o), to="legacy")
    ta, _e, _d, tkeys, _s = _pickles(t)
    oa, _e2, _d2, okeys, _s2 = _pickles(o)
    theirs = _norm(ta[3], tkeys).replace("'torch.storage UntypedStorage'", "'torch ByteStorage'")
    assert theirs == _norm(oa[3], okeys)
    with pytest.raises(AttributeError):
        load(t)  # torch's own file
    assert_same(load(fixtures["new_dtypes"]["zip"]), load(o))
