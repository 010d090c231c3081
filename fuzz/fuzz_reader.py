"""atheris harness: the reader, the pickle VM and the security analysis on arbitrary bytes.

Only :class:`ckptdoctor.errors.CkptdoctorError` subclasses may escape; anything
else is a crash. A canary path is checked after every input: nothing the
fuzzer feeds may ever create it (ckptdoctor never executes pickle code).

Setup (its own venv, atheris never enters the project's dependencies)::

    python -m venv fuzz/_work/venv-atheris
    fuzz/_work/venv-atheris/bin/pip install atheris numpy
    python fuzz/make_seeds.py fuzz/_work/seeds          # seeds, built with the project's python
    fuzz/_work/venv-atheris/bin/python fuzz/fuzz_reader.py fuzz/_work/corpus fuzz/_work/seeds \\
        -max_total_time=3600 -rss_limit_mb=256 -max_len=65536 -timeout=30

Every input also goes through the security scan's raw container walk. Each input's first byte picks a mode: the bytes as a file, the bytes run
through the VM directly, or the bytes placed as the pickle of a zip / legacy /
TorchScript container (so mutations reach the container readers' pickle paths).
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

CANARY_DIR = os.environ.get("CKPTDOCTOR_FUZZ_CANARY_DIR", "/tmp/ckptdoctor-fuzz-canary")
CANARY = os.path.join(CANARY_DIR, "CANARY")

import ckptdoctor  # noqa: E402
from ckptdoctor.errors import CkptdoctorError  # noqa: E402
from ckptdoctor.pickle.torch_rebuild import TorchResolver  # noqa: E402
from ckptdoctor.pickle.vm import Machine  # noqa: E402

try:  # the security analysis, when this build has it
    from ckptdoctor.security import analyze as _analyze  # noqa: E402
    from ckptdoctor.security import findings_for as _findings_for  # noqa: E402
    from ckptdoctor.security.sites import scan_bytes as _scan_bytes  # noqa: E402
except ImportError:  # pragma: no cover
    _analyze = _findings_for = _scan_bytes = None

LEGACY_HEAD = (
    b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00(X\x10\x00\x00\x00"
    b"protocol_versionq\x01M\xe9\x03X\r\x00\x00\x00little_endianq\x02\x88X\n\x00\x00\x00type_sizesq"
    b"\x03}q\x04(X\x05\x00\x00\x00shortq\x05K\x02X\x03\x00\x00\x00intq\x06K\x04X\x04\x00\x00\x00longq"
    b"\x07K\x04uu."
)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def container(mode: int, body: bytes) -> bytes:
    if mode == 2:
        return _zip({"archive/data.pkl": body, "archive/byteorder": b"little", "archive/data/0": bytes(64),
                     "archive/version": b"3\n"})
    if mode == 3:
        return LEGACY_HEAD + body + b"\x80\x02]q\x00X\x01\x00\x00\x000q\x01a." + struct.pack("<q", 16) + bytes(64)
    if mode == 4:
        half = len(body) // 2
        return _zip({"archive/data.pkl": body[:half], "archive/constants.pkl": body[half:],
                     "archive/code/__torch__.py": b"class M(Module):\n  __parameters__ = [\"w\", ]\n",
                     "archive/data/0": bytes(64), "archive/version": b"3\n"})
    return body


def exercise(data: bytes) -> None:
    if not data:
        return
    mode = data[0] % 5
    body = data[1:]
    data = container(mode, body)
    try:
        if _scan_bytes is not None:  # the raw security walk sees every input, readable or not
            _findings_for(_scan_bytes(data, "fuzz"))
        if mode == 1:
            r = TorchResolver()
            Machine(resolver=r, build_hook=r.build).run(body)
            return
        with ckptdoctor.open(io.BytesIO(data)) as ckpt:
            for _path, t in ckpt.tensors():
                try:
                    t.sha256()
                except ValueError:
                    pass  # sparse / meta tensors have no strided view (documented)
            if _analyze is not None:
                _analyze(ckpt)
    except CkptdoctorError:
        pass
    finally:
        if os.path.exists(CANARY):
            raise AssertionError(f"canary {CANARY} was created: code ran")


def main() -> None:
    import atheris

    os.makedirs(CANARY_DIR, exist_ok=True)
    if os.path.exists(CANARY):
        os.remove(CANARY)
    _import_everything()
    atheris.instrument_all()  # coverage feedback for the reader code (imported above, incl. lazy modules)
    atheris.Setup(sys.argv, exercise)
    atheris.Fuzz()


def _import_everything() -> None:
    import importlib
    import pkgutil

    for pkg in ("ckptdoctor.formats", "ckptdoctor.pickle", "ckptdoctor.security"):
        try:
            mod = importlib.import_module(pkg)
        except ImportError:
            continue
        for info in pkgutil.iter_modules(mod.__path__):
            try:
                importlib.import_module(f"{pkg}.{info.name}")
            except ImportError:
                pass
    for name in ("ckptdoctor.reader", "ckptdoctor.walk", "ckptdoctor.producer", "ckptdoctor.model"):
        importlib.import_module(name)


if __name__ == "__main__":
    main()
