"""Write a seed corpus for fuzz_reader.py (run with the project's python; torch optional).

Seeds carry the harness's mode byte first (see fuzz_reader.py): small corpus
files as files (0), their pickles through the VM (1) and inside a zip (2),
legacy (3) and TorchScript (4) templates, plus pickles of typical checkpoint
values. Only pickle *dumping* happens here; nothing is loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.environ.get("CKPTDOCTOR_CORPUS", os.path.join(os.path.dirname(HERE), "..", "shared", "corpus"))
MAX = 60_000


def seeds() -> list[bytes]:
    out: list[bytes] = []
    files = os.path.join(CORPUS, "files")
    if os.path.isdir(files):
        for name in sorted(os.listdir(files)):
            path = os.path.join(files, name)
            with open(path, "rb") as f:
                data = f.read()
            if len(data) <= MAX:
                out.append(b"\x00" + data)
            if data[:4] == b"PK\x03\x04":
                try:
                    with zipfile.ZipFile(io.BytesIO(data)) as z:
                        for n in z.namelist():
                            if n.endswith(".pkl") and z.getinfo(n).file_size <= MAX:
                                pk = z.read(n)
                                out += [b"\x01" + pk, b"\x02" + pk, b"\x04" + pk]
                except zipfile.BadZipFile:
                    pass
    values = [
        OrderedDict(a=1, b=[1.5, "x"], c=(None, True)), {"epoch": 3, "lr": 0.1, "s": {1, 2}}, [b"\x00" * 10],
        {"k": frozenset([1]), "c": complex(1, 2), "sl": slice(1, 2), "ba": bytearray(b"ab")},
    ]
    for v in values:
        for proto in range(0, 6):
            pk = pickle.dumps(v, protocol=proto)
            out += [b"\x01" + pk, b"\x02" + pk, b"\x03" + pk]
    try:  # a torch 0.1.x tar, built by the test suite's helper
        import tempfile

        sys.path.append(os.path.join(os.path.dirname(HERE), "tests"))
        from fix.test_tar_input import make_tar

        with tempfile.TemporaryDirectory() as d:
            make_tar(os.path.join(d, "old.tar"))
            with open(os.path.join(d, "old.tar"), "rb") as f:
                out.append(b"\x00" + f.read())
    except ImportError:
        pass
    try:
        import torch

        sd = OrderedDict(w=torch.arange(6, dtype=torch.float32).reshape(2, 3), b=torch.zeros(2, dtype=torch.int64))
        for legacy in (False, True):
            buf = io.BytesIO()
            torch.save({"state_dict": sd, "epoch": 1}, buf, _use_new_zipfile_serialization=not legacy)
            out.append(b"\x00" + buf.getvalue())
    except ImportError:
        pass
    return out


def hostile_seeds(canary: str, every: int = 7) -> list[bytes]:
    """A slice of the malicious suite (tests/security/malicious.py), payloads aimed at the harness's canary."""
    import warnings

    sys.path.append(os.path.join(os.path.dirname(HERE), "tests"))
    from security.malicious import generate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        suite = generate(canary)
    return [b"\x00" + s.data for i, s in enumerate(suite) if (i % every == 0 or s.source != "product")
            and len(s.data) <= MAX]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("outdir")
    ap.add_argument("--hostile", action="store_true", help="add malicious-suite samples aimed at the fuzz canary")
    a = ap.parse_args(argv)
    os.makedirs(a.outdir, exist_ok=True)
    n = 0
    extra: list[bytes] = []
    if a.hostile:
        canary_dir = os.environ.get("CKPTDOCTOR_FUZZ_CANARY_DIR", "/tmp/ckptdoctor-fuzz-canary")
        extra = hostile_seeds(os.path.join(canary_dir, "CANARY"))
    for s in seeds() + extra:
        with open(os.path.join(a.outdir, hashlib.sha1(s).hexdigest()), "wb") as f:
            f.write(s)
        n += 1
    print(f"{n} seeds in {a.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
