"""fix/convert report their progress: every tensor byte written and verified reaches the sink."""

from __future__ import annotations

import threading

import pytest

from ckptdoctor.fixes.apply import convert_file


class Recorder:
    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.done: dict[str, int] = {}
        self.finished = False
        self._lock = threading.Lock()

    def start(self, phase: str, total: int) -> None:
        self.phases.append((phase, total))
        self.done[phase] = 0

    def advance(self, n: int) -> None:
        with self._lock:
            self.done[self.phases[-1][0]] += n

    def finish(self) -> None:
        self.finished = True


@pytest.mark.parametrize("to", ["zip", "legacy", "safetensors"])
def test_every_tensor_byte_is_reported(tmp_path, fixtures, to):
    rec = Recorder()
    out = tmp_path / ("o.safetensors" if to == "safetensors" else "o.pt")
    r = convert_file(str(fixtures["dtypes"]["zip"]), str(out), to=to, progress=rec)
    assert r.written and r.verification.ok and rec.finished
    (write, total), (verify, vtotal) = rec.phases
    assert (write, verify) == ("write", "verify") and total > 0
    assert rec.done["write"] >= total  # tensor bytes plus headers and pickles
    assert rec.done["write"] <= out.stat().st_size
    assert rec.done["verify"] == vtotal


def test_terminal_progress_is_silent_when_stderr_is_not_a_terminal(capsys):
    from ckptdoctor.fixes.progress import NoProgress, terminal_progress

    assert isinstance(terminal_progress(), NoProgress)
