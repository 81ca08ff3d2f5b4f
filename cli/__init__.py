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


def _start_program() -> None:
    """Only when this package is the program (``python -m cli`` or the console script): a
    library user's own handlers and settings are left alone.

    OpenBLAS (numpy's linear algebra) starts a thread per core whose busy-waiting takes CPU
    from the block threads, and nothing here multiplies large matrices: one thread unless
    the user set OPENBLAS_NUM_THREADS or OMP_NUM_THREADS (numpy is not imported yet)."""
    program = sys.argv[0] if sys.argv else ""
    if program == "-m" or os.path.basename(program) == "cellstar-preprocessor":
        for signum in _NAMES:
            _signal.signal(signum, _interrupted_while_starting)
        if not {"OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"} & os.environ.keys():
            os.environ["OPENBLAS_NUM_THREADS"] = "1"


_start_program()
