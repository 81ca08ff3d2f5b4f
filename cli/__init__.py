"""Thin click command line over ``pipeline``."""

# The first statements of the program: the C-level ``_signal`` (a built-in; ``signal`` would
# import ``enum`` first, long enough for a Ctrl-C to land in it) installs one-line handlers.
import _signal
import os
import sys

_NAMES = {_signal.SIGINT: "SIGINT", _signal.SIGTERM: "SIGTERM"}


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM while the command line is still importing: one line, nothing written
    (``cli.main`` replaces this handler once it runs)."""
    name = _NAMES.get(signum, str(signum))
    os.write(2, f"error: interrupted ({name}) while starting; nothing was written\n".encode())
    os._exit(128 + signum)


def _install_start_up_handlers() -> None:
    """Only when this package is the program (``python -m cli`` or the console script): a
    library user's own handlers are left alone."""
    program = sys.argv[0] if sys.argv else ""
    if program == "-m" or os.path.basename(program) == "cellstar-preprocessor":
        for signum in _NAMES:
            _signal.signal(signum, _interrupted_while_starting)


_install_start_up_handlers()
