"""A bare pickle (pickle.dump / torch.save with a custom pickle_module): no container, no tensor data."""

from __future__ import annotations

from ckptdoctor.errors import CkptdoctorError, UnreadableFile
from ckptdoctor.formats.common import record_pickle, run_pickle
from ckptdoctor.formats.legacy import pickle_buffer
from ckptdoctor.limits import Limits
from ckptdoctor.model import Checkpoint


def read_bare_pickle(ckpt: Checkpoint, source, limits: Limits) -> None:
    buf = pickle_buffer(source)
    try:
        res = run_pickle(buf, 0, limits=limits, end=source.size)
    except CkptdoctorError as e:
        if ckpt.format == "pickle?":  # it only looked like a protocol 0/1 pickle
            raise UnreadableFile(f"unrecognised file (not a checkpoint; {e})", kind="unknown") from None
        raise
    ckpt.format = "pickle"
    record_pickle(ckpt, res, "object")
    ckpt.root = res.value
    if res.persistent_ids:
        ckpt.details["persistent_ids"] = res.persistent_ids
    if res.end < source.size:
        ckpt.details["bytes_after_stop"] = source.size - res.end
