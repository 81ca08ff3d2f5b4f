"""Reading an entry back: the API tests, tools and later stages use."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.storage import ZipStore

from pipeline.algorithms.quantize import dequantize
from pipeline.db.layout import (
    ANNOTATIONS_JSON,
    DATA_ZIP,
    METADATA_JSON,
    QUANTIZATION_ATTRIBUTE,
    EntryLocation,
    lattice_grid_key,
    set_table_key,
    volume_key,
)
from pipeline.db.metadata import quantization_params
from pipeline.errors import EntryNotFoundError

__all__ = ["Entry", "open_entry"]

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


class Entry:
    """An opened database entry (read-only). Use as a context manager or call :meth:`close`."""

    def __init__(self, location: EntryLocation) -> None:
        if not location.exists():
            raise EntryNotFoundError(f"entry {location.key} does not exist", location.folder)
        self.location = location
        folder = location.folder
        self.metadata: dict[str, Any] = json.loads((folder / METADATA_JSON).read_text())
        self.annotations: dict[str, Any] = json.loads((folder / ANNOTATIONS_JSON).read_text())
        self._store = ZipStore(folder / DATA_ZIP, mode="r")
        self.root = zarr.open_group(store=self._store, mode="r", zarr_format=2)

    def __enter__(self) -> Entry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._store.close()

    @property
    def volume_levels(self) -> list[int]:
        """Levels available in data.zip for the volume, ascending."""
        info = self.metadata["volumes"]["volume_sampling_info"]
        return [lv["level"] for lv in info["spatial_downsampling_levels"] if lv["available"]]

    def volume_array(self, level: int, time: int = 0, channel: str = "0") -> zarr.Array:
        """The stored (possibly quantized) array ``volume_data/<level>/<time>/<channel>``."""
        return self.root[volume_key(level, time, channel)]  # type: ignore[return-value]

    def read_volume(
        self, level: int, time: int = 0, channel: str = "0", box: Box | None = None
    ) -> np.ndarray:
        """Voxels ``[x, y, z]`` of a level inside ``box`` (half-open per axis; all if None),
        dequantized when the array is quantized."""
        arr = self.volume_array(level, time, channel)
        region = tuple(slice(a, b) for a, b in box) if box is not None else ...
        data = np.asarray(arr[region])
        attrs = dict(arr.attrs)
        if QUANTIZATION_ATTRIBUTE in attrs:
            return dequantize(data, quantization_params(attrs[QUANTIZATION_ATTRIBUTE]))
        return data

    def lattice_grid(self, lattice_id: str, level: int, time: int = 0) -> zarr.Array:
        """The stored category grid of a lattice level (uint32, ``[x, y, z]``)."""
        return self.root[lattice_grid_key(lattice_id, level, time)]  # type: ignore[return-value]

    def set_table(self, lattice_id: str, level: int, time: int = 0) -> dict[int, list[int]]:
        """A level's set table: category id -> segment ids.

        The table is a zarr 2 object array (JSON codec) that zarr-python 3 cannot open; it is
        decoded the way zarr 2 does: the chunk through the compressor, then the filters.
        """
        path = set_table_key(lattice_id, level, time)
        meta = json.loads(self._store_bytes(f"{path}/.zarray"))
        data: Any = self._store_bytes(f"{path}/0")
        if meta.get("compressor"):
            data = numcodecs.get_codec(meta["compressor"]).decode(data)
        for config in reversed(meta.get("filters") or []):
            data = numcodecs.get_codec(config).decode(data)
        document = np.asarray(data, dtype=object).reshape(meta["shape"])[0]
        return {int(k): list(v) for k, v in document.items()}

    def read_lattice(
        self, lattice_id: str, level: int, time: int = 0, box: Box | None = None
    ) -> tuple[np.ndarray, dict[int, list[int]]]:
        """Category grid (inside ``box``) and set table of a lattice level."""
        arr = self.lattice_grid(lattice_id, level, time)
        region = tuple(slice(a, b) for a, b in box) if box is not None else ...
        return np.asarray(arr[region]), self.set_table(lattice_id, level, time)

    def _store_bytes(self, key: str) -> bytes:
        with zipfile.ZipFile(self.location.folder / DATA_ZIP) as zf:
            return zf.read(key)


def open_entry(db_path: Path, source_db: str, entry_id: str) -> Entry:
    """Open ``<db_path>/<source_db>/<entry_id>`` for reading.

    >>> open_entry(Path("/nonexistent"), "emdb", "emd-1")
    Traceback (most recent call last):
    ...
    pipeline.errors.EntryNotFoundError: /nonexistent/emdb/emd-1: entry emdb/emd-1 does not exist
    """
    return Entry(EntryLocation(Path(db_path), source_db, entry_id))
