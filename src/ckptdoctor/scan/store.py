"""The SQLite result store (schema in docs/scan.md). Only the coordinating process writes.

Each file's row and its findings are written in one transaction, so a scan
killed at any moment leaves every completed file recorded exactly once and
no half-written file behind; a rerun skips files whose size and etag match.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,        -- local path or URL
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,           -- object ETag, or mtime:<ns> for local files
    format TEXT,                  -- inspect's format name (zip, legacy, lfs-pointer, ...)
    verdict TEXT NOT NULL,        -- ok | will-not-load | dangerous | not-a-checkpoint | unreadable
    producer_earliest TEXT,
    producer_latest TEXT,
    tensors INTEGER,
    bytes_read INTEGER,           -- bytes fetched from the source to analyse this file
    sha256 TEXT,                  -- with --hash: of the whole file
    error TEXT,                   -- one-line reason when unreadable / not a checkpoint
    target TEXT,                  -- target environment the verdict is for, e.g. torch=2.6,weights_only
    scanned_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS findings (
    path TEXT NOT NULL REFERENCES files(path) ON DELETE CASCADE,
    id TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    explanation TEXT,
    evidence TEXT,                -- JSON
    fix TEXT,                     -- JSON {summary, command, python}
    blocks_load INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS findings_path ON findings(path);
CREATE INDEX IF NOT EXISTS findings_id ON findings(id);
"""

FILE_COLUMNS = ("path", "size", "etag", "format", "verdict", "producer_earliest", "producer_latest", "tensors",
                "bytes_read", "sha256", "error", "target", "scanned_at")


class ResultStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)

    def known(self, target: str) -> dict[str, tuple[int, str]]:
        """path -> (size, etag) of files already scanned for this target."""
        rows = self.db.execute("SELECT path, size, etag FROM files WHERE target = ?", (target,))
        return {p: (s, e) for p, s, e in rows}

    def write(self, row: dict[str, Any], findings: Iterable[dict[str, Any]]) -> None:
        row = {**row, "scanned_at": row.get("scanned_at") or time.time()}
        with self.db:  # one transaction per file
            self.db.execute("DELETE FROM findings WHERE path = ?", (row["path"],))
            self.db.execute(
                f"INSERT OR REPLACE INTO files ({', '.join(FILE_COLUMNS)}) VALUES ({', '.join('?' * len(FILE_COLUMNS))})",
                tuple(row.get(c) for c in FILE_COLUMNS),
            )
            self.db.executemany(
                "INSERT INTO findings (path, id, severity, title, explanation, evidence, fix, blocks_load) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (row["path"], f["id"], f["severity"], f["title"], f.get("explanation"),
                     json.dumps(f.get("evidence") or {}, default=str), json.dumps(f.get("fix"), default=str),
                     int(bool(f.get("blocks_load"))))
                    for f in findings
                ],
            )

    def rows(self) -> list[dict[str, Any]]:
        cur = self.db.execute(f"SELECT {', '.join(FILE_COLUMNS)} FROM files ORDER BY path")
        return [dict(zip(FILE_COLUMNS, r, strict=True)) for r in cur]

    def findings(self) -> list[dict[str, Any]]:
        cur = self.db.execute(
            "SELECT path, id, severity, title, explanation, evidence, fix, blocks_load FROM findings ORDER BY path, id")
        out = []
        for path, fid, sev, title, expl, ev, fix, blocks in cur:
            out.append({"path": path, "id": fid, "severity": sev, "title": title, "explanation": expl,
                        "evidence": json.loads(ev or "{}"), "fix": json.loads(fix or "null"),
                        "blocks_load": bool(blocks)})
        return out

    def close(self) -> None:
        self.db.close()
