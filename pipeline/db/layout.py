"""Where an entry lives in the database (DESIGN section 3.1)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.db.safefs import refuse_symlinks
from pipeline.errors import EntryNotFoundError, InputFormatError
from pipeline.options import validate_name

__all__ = [
    "ANNOTATIONS_JSON",
    "DATA_ZIP",
    "GEOMETRIC_JSON",
    "METADATA_JSON",
    "EntryLocation",
    "lattice_grid_key",
    "mesh_key",
    "set_table_key",
    "volume_key",
]

DATA_ZIP = "data.zip"
METADATA_JSON = "metadata.json"
ANNOTATIONS_JSON = "annotations.json"
GEOMETRIC_JSON = "geometric_segmentation.json"
_FILES = (DATA_ZIP, METADATA_JSON, ANNOTATIONS_JSON, GEOMETRIC_JSON)


# --- keys of data.zip (DESIGN section 3.2) --------------------------------------------------


def volume_key(level: int, time: int, channel: str) -> str:
    """``volume_data/<level>/<time>/<channel>``

    >>> volume_key(2, 0, "0")
    'volume_data/2/0/0'
    """
    return f"volume_data/{level}/{time}/{channel}"


def lattice_grid_key(lattice_id: str, level: int, time: int) -> str:
    """``lattice_segmentation_data/<lattice>/<level>/<time>/grid``"""
    return f"lattice_segmentation_data/{lattice_id}/{level}/{time}/grid"


def set_table_key(lattice_id: str, level: int, time: int) -> str:
    """``lattice_segmentation_data/<lattice>/<level>/<time>/set_table``"""
    return f"lattice_segmentation_data/{lattice_id}/{level}/{time}/set_table"


def mesh_key(set_id: str, time: int, segment_id: int, detail: int, mesh_id: int) -> str:
    """``mesh_segmentation_data/<set>/<time>/<segment>/<detail>/<mesh>`` (the group of the
    mesh's ``vertices``, ``triangles`` and ``normals``)."""
    return f"mesh_segmentation_data/{set_id}/{time}/{segment_id}/{detail}/{mesh_id}"


@dataclass(frozen=True, slots=True)
class EntryLocation:
    """``<db_path>/<source_db>/<entry_id>``; names are checked so they cannot leave db_path."""

    db_path: Path
    source_db: str
    entry_id: str

    def __post_init__(self) -> None:
        validate_name(self.source_db, "--source-db")
        validate_name(self.entry_id, "--entry-id")

    @property
    def folder(self) -> Path:
        return self.db_path / self.source_db / self.entry_id

    @property
    def staging_root(self) -> Path:
        """Reserved folder (ignored by the server) on the database's file system."""
        return self.db_path / "_staging"

    def exists(self) -> bool:
        return self.folder.is_dir()

    def read_documents(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The entry's metadata.json and annotations.json (a missing or damaged entry is a
        user error naming its folder)."""
        refuse_symlinks(self.db_path, self.source_db, self.entry_id, _FILES)
        if not self.exists():
            raise EntryNotFoundError(
                f"entry {self.source_db}/{self.entry_id} does not exist", self.folder
            )
        try:
            return (
                json.loads((self.folder / METADATA_JSON).read_text()),
                json.loads((self.folder / ANNOTATIONS_JSON).read_text()),
            )
        except (OSError, ValueError) as exc:
            raise InputFormatError(
                f"entry is damaged ({exc}); delete it or add it again", self.folder
            ) from exc
