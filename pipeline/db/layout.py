"""Where an entry lives in the database (DESIGN section 3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.db.names import validate_name

__all__ = [
    "ANNOTATIONS_JSON",
    "DATA_ZIP",
    "GEOMETRIC_JSON",
    "LATTICE_GROUP",
    "MESH_GROUP",
    "METADATA_JSON",
    "VOLUME_GROUP",
    "EntryLocation",
    "entry_key",
    "lattice_grid_key",
    "lattice_group",
    "lattice_key",
    "mesh_group",
    "mesh_key",
    "mesh_segment_key",
    "set_table_key",
    "volume_key",
]

DATA_ZIP = "data.zip"
METADATA_JSON = "metadata.json"
ANNOTATIONS_JSON = "annotations.json"
GEOMETRIC_JSON = "geometric_segmentation.json"
ENTRY_FILES = (DATA_ZIP, METADATA_JSON, ANNOTATIONS_JSON, GEOMETRIC_JSON)

# the attribute of a quantized volume array (DESIGN 7.3)
QUANTIZATION_ATTRIBUTE = "quantization_data_dict"

# data.zip groups (DESIGN 3.2): the only place the archive's key layout is spelled
VOLUME_GROUP = "volume_data"
LATTICE_GROUP = "lattice_segmentation_data"
MESH_GROUP = "mesh_segmentation_data"


def volume_key(level: int, time: int, channel: str) -> str:
    """``volume_data/<level>/<time>/<channel>``: one volume array.

    >>> volume_key(2, 0, "0")
    'volume_data/2/0/0'
    """
    return f"{VOLUME_GROUP}/{level}/{time}/{channel}"


def lattice_group(lattice_id: str) -> str:
    """Prefix of every member of a lattice (with the trailing slash)."""
    return f"{LATTICE_GROUP}/{lattice_id}/"


def lattice_key(lattice_id: str, level: int, time: int, part: str) -> str:
    """``lattice_segmentation_data/<id>/<level>/<time>/<part>``; part ``grid`` or
    ``set_table``."""
    return f"{LATTICE_GROUP}/{lattice_id}/{level}/{time}/{part}"


def lattice_grid_key(lattice_id: str, level: int, time: int) -> str:
    """``lattice_segmentation_data/<lattice>/<level>/<time>/grid``"""
    return lattice_key(lattice_id, level, time, "grid")


def set_table_key(lattice_id: str, level: int, time: int) -> str:
    """``lattice_segmentation_data/<lattice>/<level>/<time>/set_table``"""
    return lattice_key(lattice_id, level, time, "set_table")


def mesh_group(set_id: str) -> str:
    """Prefix of every member of a mesh set (with the trailing slash)."""
    return f"{MESH_GROUP}/{set_id}/"


def mesh_segment_key(set_id: str, time: int | str, segment_id: int | str) -> str:
    """``mesh_segmentation_data/<set>/<time>/<segment>``: the folder of a segment's levels."""
    return f"{MESH_GROUP}/{set_id}/{time}/{segment_id}"


def mesh_key(
    set_id: str,
    time: int | str,
    segment_id: int | str,
    detail: int | str,
    mesh_id: int | str,
    part: str | None = None,
) -> str:
    """``.../<set>/<time>/<segment>/<detail>/<mesh>[/<part>]``; part ``vertices``,
    ``triangles`` or ``normals``."""
    base = f"{mesh_segment_key(set_id, time, segment_id)}/{detail}/{mesh_id}"
    return base if part is None else f"{base}/{part}"


def entry_key(source_db: str, entry_id: str) -> str:
    """``<source_db>/<entry_id>``: how messages and annotation ids name an entry.

    >>> entry_key("emdb", "emd-1832")
    'emdb/emd-1832'
    """
    return f"{source_db}/{entry_id}"


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
    def key(self) -> str:
        """``<source_db>/<entry_id>``: how messages and annotation ids name the entry."""
        return entry_key(self.source_db, self.entry_id)

    @property
    def staging_root(self) -> Path:
        """Reserved folder (ignored by the server) on the database's file system."""
        return self.db_path / "_staging"

    def exists(self) -> bool:
        return self.folder.is_dir()
