"""Fixtures for scan tests: a fleet of checkpoint files, a loopback S3 server, a Dask cluster."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORPUS_FILES = REPO.parent / "shared" / "corpus" / "files"


def build_fleet(root: Path, n_generated: int, big_mb: int = 0) -> list[Path]:
    """Corpus files (when present) + small generated checkpoints (+ one big one) under ``root``."""
    torch = pytest.importorskip("torch")
    root.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    if CORPUS_FILES.is_dir():
        for f in sorted(CORPUS_FILES.iterdir()):
            dst = root / "corpus" / f.name
            dst.parent.mkdir(exist_ok=True)
            shutil.copyfile(f, dst)
            out.append(dst)
    gen = root / "generated"
    gen.mkdir(exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n_generated):
        sd = {f"layer{j}.weight": torch.randn(4, 4, generator=g) for j in range(3)}
        p = gen / f"model_{i:04d}.pt"
        if i % 3 == 0:
            torch.save(sd, p, _use_new_zipfile_serialization=False)
        elif i % 3 == 1:
            torch.save({"state_dict": sd, "epoch": i}, p)
        else:
            torch.save(sd, p)
        out.append(p)
    shutil.copyfile(REPO / "samples" / "tiny_checkpoint.pt", gen / "tiny_checkpoint.pt")
    out.append(gen / "tiny_checkpoint.pt")
    if big_mb:
        p = root / "big" / "big_model.pt"
        p.parent.mkdir(exist_ok=True)
        n = big_mb * (1 << 20) // 4 // 100
        torch.save({f"w{i}": torch.zeros(n) for i in range(100)}, p)
        out.append(p)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def s3_server():
    """A moto S3 server on loopback, stopped after the test."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture()
def s3_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
