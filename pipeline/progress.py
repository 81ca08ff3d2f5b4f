"""Progress of a run: one bar per stage on a terminal, one quiet line per stage in logs.

Stages are ``read``, ``levels``, ``segmentations`` and ``commit`` (a pass of the pyramid is one
step of its stage). Counting happens where results are consumed in block order (the append of a
block's chunks), so the same code reports the threaded scheduler and a dask.distributed cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["NO_PROGRESS", "Progress", "Reporter"]

# where a run's warnings go (one line each)
Reporter = Callable[[str], None]

_BAR = 24
_REDRAW = 0.1  # seconds between two redraws of a bar


def _size(nbytes: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes:.0f} B"


class Progress:
    """Reports stages to ``stream``: a redrawn bar when ``tty``, else one line per stage.

    Thread-safe: :meth:`advance` is called from the threads that append finished blocks.
    """

    def __init__(self, stream: TextIO | None, tty: bool = False) -> None:
        self.stream = stream
        self.tty = tty and stream is not None
        self._lock = threading.Lock()
        self._stage = ""
        self._detail = ""
        self._total = 0
        self._done = 0
        self._bytes = 0
        self._started = 0.0
        self._drawn = 0.0

    def start(self, stage: str, detail: str, total: int) -> None:
        """A new step of ``stage`` with ``total`` units of work (blocks)."""
        with self._lock:
            self._stage, self._detail, self._total = stage, detail, total
            self._done, self._bytes = 0, 0
            self._started = time.perf_counter()
            self._drawn = 0.0
            self._draw(force=True)

    def advance(self, units: int = 1, nbytes: int = 0) -> None:
        with self._lock:
            self._done += units
            self._bytes += nbytes
            self._draw(force=self._done >= self._total)

    def finish(self) -> None:
        """End the current step with its summary line (count, bytes, time, throughput)."""
        with self._lock:
            if self.stream is None or not self._stage:
                return
            seconds = time.perf_counter() - self._started
            line = f"{self._stage:<13} {self._detail:<18} {self._done} blocks"
            if self._bytes:
                rate = self._bytes / seconds / 1e6 if seconds > 0 else 0.0
                line += f", {_size(self._bytes)} in {seconds:.1f} s ({rate:.0f} MB/s)"
            else:
                line += f" in {seconds:.1f} s"
            self._write(("\r\x1b[2K" if self.tty else "") + line + "\n")
            self._stage = ""

    def abandon(self) -> None:
        """End a step that failed: the bar's line is closed so the error starts a new one."""
        with self._lock:
            if self.tty and self._stage:
                self._write("\n")
            self._stage = ""

    def note(self, stage: str, text: str) -> None:
        """A one-line step that has no blocks (e.g. reading headers, committing)."""
        with self._lock:
            if self.stream is not None:
                self._write(f"{stage:<13} {text}\n")

    def _draw(self, force: bool) -> None:
        if not self.tty:
            return
        now = time.perf_counter()
        if not force and now - self._drawn < _REDRAW:
            return
        self._drawn = now
        total = max(self._total, 1)
        filled = _BAR * self._done // total
        seconds = now - self._started
        rate = self._bytes / seconds / 1e6 if seconds > 0 else 0.0
        bar = "#" * filled + "-" * (_BAR - filled)
        self._write(
            f"\r\x1b[2K{self._stage:<13} {self._detail:<18} [{bar}] "
            f"{100 * self._done // total:3d}% {self._done}/{self._total} blocks "
            f"{_size(self._bytes)} {rate:.0f} MB/s"
        )

    def _write(self, text: str) -> None:
        assert self.stream is not None
        self.stream.write(text)
        self.stream.flush()


NO_PROGRESS = Progress(None)
