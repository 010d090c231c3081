"""Progress of a write and its verification, for a progress bar (``ckptdoctor fix`` / ``convert``).

The writers and the verification report bytes as they go to a :class:`ProgressSink`; the CLI's sink
draws a rich progress bar on stderr when stderr is a terminal and the file is large enough to wait
for. The API's default sink does nothing.
"""

from __future__ import annotations

import sys
from typing import Protocol

SHOW_ABOVE = 64 << 20  # bytes of tensor data below which a bar would only flicker


class ProgressSink(Protocol):
    def start(self, phase: str, total: int) -> None:
        """A phase ("write", "verify") begins; ``total`` bytes of tensor data will pass."""

    def advance(self, n: int) -> None:
        """``n`` more bytes done (called from worker threads too)."""

    def finish(self) -> None:
        """No more phases."""


class NoProgress:
    def start(self, phase: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass

    def finish(self) -> None:
        pass


class RichProgress:
    """A transient bar on stderr per phase, with bytes, speed and time left."""

    LABELS = {"write": "writing", "verify": "verifying"}

    def __init__(self) -> None:
        self._progress = None
        self._task = None

    def start(self, phase: str, total: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.finish()
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        self._task = self._progress.add_task(self.LABELS.get(phase, phase), total=max(total, 1))

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class _Gate:
    """Passes phases on to ``inner`` only when they are big enough to be worth a bar."""

    def __init__(self, inner: ProgressSink) -> None:
        self.inner = inner
        self.on = False

    def start(self, phase: str, total: int) -> None:
        self.on = total >= SHOW_ABOVE
        if self.on:
            self.inner.start(phase, total)

    def advance(self, n: int) -> None:
        if self.on:
            self.inner.advance(n)

    def finish(self) -> None:
        self.inner.finish()


def terminal_progress() -> ProgressSink:
    """The CLI's sink: a bar on stderr if it is a terminal, else nothing."""
    if not sys.stderr.isatty():
        return NoProgress()
    return _Gate(RichProgress())
