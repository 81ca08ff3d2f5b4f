"""The database: entry layout, metadata documents, zarr writing, staging/commit, reading."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.db.layout import EntryLocation

if TYPE_CHECKING:
    from pipeline.db.entry import Entry, open_entry

__all__ = ["Entry", "EntryLocation", "open_entry"]


def __getattr__(name: str) -> Any:
    # the reader needs zarr-python; keep it out of the writing path's import time
    if name in ("Entry", "open_entry"):
        from pipeline.db import entry

        return getattr(entry, name)
    raise AttributeError(name)
