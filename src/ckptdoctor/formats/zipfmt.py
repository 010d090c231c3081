"""torch.save's zip container (torch >= 1.6 default; opt-in 1.4/1.5)."""

from __future__ import annotations

from typing import Any

from ckptdoctor.errors import TruncatedFile, UnreadableFile
from ckptdoctor.formats.common import (
    StorageTable,
    check_storage_pid,
    record_pickle,
    run_pickle,
    storage_dtype,
)
from ckptdoctor.formats.zipdir import ZipArchive
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint, Storage

SMALL_RECORDS = ("version", ".data/version", "byteorder", ".data/serialization_id", ".format_version",
                 ".storage_alignment", "archive_format")


def container_details(z: ZipArchive) -> dict[str, Any]:
    root = z.root
    d: dict[str, Any] = {"root": root, "records": len(z.entries)}
    for rec in SMALL_RECORDS:
        e = z.by_name.get(f"{root}/{rec}")
        if e is not None and e.usize < 256:
            try:
                d[rec.lstrip(".").replace("/", "_")] = z.read(e, limit=256).decode("utf-8", "replace").strip()
            except UnreadableFile:
                pass
    prov = z.by_name.get(f"{root}/.ckptdoctor/provenance.json")
    if prov is not None and prov.usize < (1 << 20):
        import json

        try:
            d["provenance"] = json.loads(z.read(prov, limit=1 << 20))
        except (ValueError, UnreadableFile):
            d["provenance_error"] = "unreadable provenance record"
    if z.duplicates:
        d["duplicate_records"] = z.duplicates
    compressed = [e.name for e in z.entries if e.method != 0]
    if compressed:
        d["compressed_records"] = len(compressed)
    return d


def storage_loader(z: ZipArchive, root: str, table: StorageTable, folders: tuple[str, ...] = ("data",)):
    """persistent_load for ('storage', type, key, location, numel) ids whose bytes are zip records."""

    def load(pid: Any) -> Any:
        if isinstance(pid, tuple) and pid and pid[0] == "module":  # defensive: not written by torch.save zip
            return pid[1] if len(pid) > 1 else pid
        storage_type, key, location, numel = check_storage_pid(pid, (5,))[1:5]
        key = str(key)
        if not isinstance(numel, int) or numel < 0:
            raise UnreadableFile(f"storage {key!r} has an invalid size {numel!r}", kind="corrupt")

        def make() -> Storage:
            dt = storage_dtype(storage_type)
            entry = None
            for folder in folders:
                entry = z.by_name.get(f"{root}/{folder}/{key}")
                if entry is not None:
                    break
            st = Storage(key=key, dtype=dt, numel=numel, location=str(location), source=z.source,
                         record=entry.name if entry else f"{root}/{folders[0]}/{key}")
            if entry is None:
                def missing() -> tuple[int, int]:
                    raise TruncatedFile(f"record {st.record} is missing from the archive", offset=z.source.size)

                st.locate = missing
                return st
            z.prefetch_header(entry)
            if entry.method != 0:
                raise UnreadableFile(f"storage record {entry.name} is compressed; torch writes them stored",
                                     kind="corrupt")
            nbytes = st.nbytes
            if entry.usize == nbytes + 8:  # 1.5/1.6 non-CPU storages may carry the legacy count header
                st.locate = lambda: (z.span(entry)[0] + 8, entry.usize - 8)
            else:
                st.locate = lambda: z.span(entry)
            if entry.usize < nbytes:
                raise TruncatedFile(
                    f"storage record {entry.name} has {entry.usize} bytes but the pickle declares "
                    f"{numel} {dt.name} elements ({nbytes} bytes)",
                    offset=entry.header_offset,
                    needed=nbytes,
                )
            return st

        return table.get(key, make)

    return load


def read_zip(ckpt: Checkpoint, z: ZipArchive, limits: Limits) -> None:
    root = z.root
    ckpt.details.update(container_details(z))
    pkl_name = f"{root}/data.pkl"
    entry = z.by_name.get(pkl_name)
    if entry is None:
        raise UnreadableFile(f"{ckpt.path}: zip archive has no data.pkl", kind="other-zip")
    data = z.read(entry)
    base = z.data_offset(entry) if entry.method == 0 else 0
    table = StorageTable()
    res = run_pickle(data, 0, limits=limits, persistent_load=storage_loader(z, root, table), base=base)
    record_pickle(ckpt, res, "data.pkl")
    ckpt.root = res.value
    ckpt.details["storages"] = len(table.by_key)
    if res.end < len(data):
        ckpt.details["bytes_after_stop"] = len(data) - res.end
    ckpt.details["storage_keys"] = "pointer" if any(len(k) > 8 for k in table.by_key) else "index"
