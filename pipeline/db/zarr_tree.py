"""The zarr format 2 hierarchy built in the working folder, chunk-aligned block writes."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numcodecs import Blosc

from pipeline.options import Compressor

__all__ = ["ArrayRef", "ZarrTree", "compressor_codec", "open_array"]


def compressor_codec(kind: Compressor) -> Blosc:
    """Blosc lz4 (default) or zstd, clevel 5, byte shuffle (DESIGN section 3.2)."""
    return Blosc(cname=kind.value, clevel=5, shuffle=Blosc.SHUFFLE)


@dataclass(frozen=True, slots=True)
class ArrayRef:
    """A picklable handle on one array of a tree (what a write task receives)."""

    root: str
    path: str

    def write(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        """Write a block that covers whole chunks (or runs to the array's end)."""
        open_array(self.root, self.path)[region] = block


@lru_cache(maxsize=256)
def open_array(root: str, path: str) -> zarr.Array:
    """Open (once per process) an array of a tree for writing."""
    return zarr.open_array(store=str(Path(root) / path), mode="r+", zarr_format=2)


class ZarrTree:
    """A zarr format 2 directory hierarchy; groups are created on the way to each array."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._ensure_group("")

    def _ensure_group(self, path: str) -> None:
        folder = self.root / path
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / ".zgroup").exists():
            (folder / ".zgroup").write_text(json.dumps({"zarr_format": 2}))

    def _ensure_parents(self, path: str) -> None:
        parts = path.split("/")
        for i in range(len(parts)):
            self._ensure_group("/".join(parts[:i]))

    def create_array(
        self,
        path: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        compressor: Compressor,
        attrs: dict[str, Any] | None = None,
    ) -> ArrayRef:
        """Create an empty array (fill value 0) and return a handle for block writes."""
        self._ensure_parents(path)
        arr = zarr.create_array(
            store=str(self.root / path),
            shape=shape,
            dtype=dtype,
            chunks=tuple(min(c, max(n, 1)) for c, n in zip(chunks, shape, strict=True)),
            compressors=compressor_codec(compressor),
            zarr_format=2,
            fill_value=0,
            overwrite=True,
        )
        if attrs:
            arr.attrs.update(attrs)
        open_array.cache_clear()
        return ArrayRef(str(self.root), path)

    def set_attrs(self, path: str, attrs: dict[str, Any]) -> None:
        arr = zarr.open_array(store=str(self.root / path), mode="r+", zarr_format=2)
        arr.attrs.update(attrs)

    def read(self, path: str) -> zarr.Array:
        return zarr.open_array(store=str(self.root / path), mode="r", zarr_format=2)

    def remove(self, path: str) -> None:
        shutil.rmtree(self.root / path, ignore_errors=True)
        open_array.cache_clear()
