"""zip64: records past 4 GiB (sparse file, fast) and a record larger than 4 GiB (slow)."""

from __future__ import annotations

import os
import struct
import zipfile

import pytest

import ckptdoctor
from ckptdoctor.writers.stream import OutFile
from ckptdoctor.writers.torchpickle import TorchPickler
from ckptdoctor.writers.zip import FILE_FORMAT_VERSION, ZipWriter
from fix.helpers import assert_same, load

GAP = (1 << 32) + 1000  # the storages start beyond 4 GiB (a hole: no disk space used)


def _write_with_gap(src, dst) -> None:
    """write_zip, except that a hole pushes every storage record past 4 GiB."""
    with ckptdoctor.open(src) as ck:
        tp = TorchPickler()
        pkl = tp.dumps(ck.root)
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            out = OutFile(fd)
            z = ZipWriter(out, "big")
            z.add("data.pkl", pkl)
            z.add(".format_version", b"1")
            z.add(".storage_alignment", b"64")
            z.add("byteorder", b"little")
            os.lseek(fd, GAP, os.SEEK_SET)
            out.pos = GAP
            for e in tp.storages:
                off, _n = e.storage.span()
                z.add_stream(f"data/{e.key}", e.nbytes,
                             lambda e=e, off=off: out.copy_region(e.storage.source, off, e.nbytes, crc=True))
            z.add("version", FILE_FORMAT_VERSION.encode())
            z.finish()
        finally:
            os.close(fd)


def test_offsets_beyond_4gib(tmp_path, fixtures, monkeypatch):
    from torch.utils.serialization import config

    dst = tmp_path / "big.pt"
    _write_with_gap(fixtures["dtypes"]["zip"], dst)
    assert os.stat(dst).st_blocks * 512 < 1 << 24  # sparse
    z = zipfile.ZipFile(dst)
    assert z.testzip() is None
    raw = open(dst, "rb")
    for info in z.infolist():
        if not info.filename.startswith("big/data/"):
            continue
        assert info.header_offset >= 1 << 32
        raw.seek(info.header_offset)
        head = raw.read(30)
        nlen, xlen = struct.unpack("<HH", head[26:30])
        extra = raw.read(nlen + xlen)[nlen:]
        hid, size, = struct.unpack("<HH", extra[:4])
        assert (hid, size) == (1, 8) and struct.unpack("<Q", extra[4:12])[0] == info.header_offset
        assert extra[12:14] == b"FB"
        data_at = info.header_offset + 30 + nlen + xlen
        assert data_at % 64 == 0
        raw.seek(data_at + info.file_size)
        assert raw.read(4) == b"PK\x07\x08"  # 24-byte zip64 descriptor follows
        assert struct.unpack("<QQ", raw.read(20)[4:]) == (info.file_size, info.file_size)
    monkeypatch.setenv("TORCH_SERIALIZATION_DEBUG", "1")
    # torch's own patch, not monkeypatch: pytest >= 9.2 undoes setattr on an object without the name in
    # its __dict__ by deleting it, which removes the option from torch's config proxy for the session
    with config.patch("load.calculate_storage_offsets", True):
        assert_same(load(fixtures["dtypes"]["zip"]), load(dst, mmap=True))


@pytest.mark.slow
def test_record_larger_than_4gib(tmp_path):
    """A 4 GiB + 64 byte uint8 tensor (a sparse safetensors source) -> zip: zip64 sizes everywhere."""
    import json

    from ckptdoctor.fixes.apply import convert_file

    n = (1 << 32) + 64
    header = json.dumps({"big": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-(8 + len(header)) % 8)
    src = tmp_path / "big.safetensors"
    with open(src, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + n)  # all zeros, no disk space
    dst = tmp_path / "big.pt"
    r = convert_file(str(src), str(dst), to="zip")
    assert r.verification.ok
    info = zipfile.ZipFile(dst).getinfo("big/data/0")
    assert info.file_size == n
    t = load(dst, mmap=True)["big"]
    assert t.shape == (n,) and int(t[-1]) == 0
