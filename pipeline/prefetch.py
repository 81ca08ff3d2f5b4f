"""Import modules a run needs only at its end in a background thread, while its reads and
passes (numpy, Blosc and file I/O, which release the GIL) keep the main thread waiting.

pydantic and the typed entry documents (:mod:`pipeline.db.documents`) cost about 0.25 s of CPU
to import: a third of what a 384^3 map adds to the read-compress-write floor. A run writes its
documents only once the voxels are in data.zip, so the import can overlap the voxel passes
instead of following them. Nothing depends on the background import succeeding: a failure is
ignored here, and the run's own import (which waits for this one) raises it again.
"""

from __future__ import annotations

import importlib
import sys
import threading

__all__ = ["import_in_background"]


def _import(names: tuple[str, ...]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the run's own import reports it
            return


def import_in_background(*names: str) -> threading.Thread | None:
    """Start importing ``names`` (in order) in a daemon thread; None when all are imported."""
    missing = tuple(n for n in names if n not in sys.modules)
    if not missing:
        return None
    thread = threading.Thread(target=_import, args=(missing,), name="prefetch", daemon=True)
    thread.start()
    return thread
