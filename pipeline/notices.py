"""Warnings of a run: single lines ``warning: <file>: <what>`` on stderr.

Readers and checks call :func:`warn`; ``preprocess`` routes them to its reporter (the command
line prints them on stderr) with :func:`reporting_to`. Outside a run they go to stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from pathlib import Path

__all__ = ["reporting_to", "warn", "warning_line"]

Reporter = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_REPORTER: ContextVar[Reporter] = ContextVar("cellstar_warnings", default=_stderr)


def warning_line(message: str, path: str | Path | None = None) -> str:
    """``warning: <path>: <message>`` on one line (line breaks in the message are folded)."""
    text = " ".join(str(message).split())
    return f"warning: {path}: {text}" if path is not None else f"warning: {text}"


def warn(message: str, path: str | Path | None = None) -> None:
    """Report one warning line to the current reporter."""
    _REPORTER.get()(warning_line(message, path))


@contextlib.contextmanager
def reporting_to(reporter: Reporter | None) -> Iterator[None]:
    """Warnings raised inside the block go to ``reporter`` (None: stderr)."""
    token = _REPORTER.set(reporter or _stderr)
    try:
        yield
    finally:
        _REPORTER.reset(token)
