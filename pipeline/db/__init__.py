"""The database: entry layout, metadata documents, zarr writing, zip packing, commit, reading."""

from pipeline.db.entry import Entry, open_entry
from pipeline.db.layout import EntryLocation

__all__ = ["Entry", "EntryLocation", "open_entry"]
