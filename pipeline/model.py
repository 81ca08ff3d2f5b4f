"""The one source model every reader returns (DESIGN section 2).

Arrays are lazy dask arrays indexed ``[x, y, z]``; geometry is in Angstrom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.arrays import LazyArray
from pipeline.errors import InputFormatError, OptionError
from pipeline.options import validate_name

__all__ = [
    "ExtraData",
    "MeshArrays",
    "MeshSetSource",
    "MeshSource",
    "TimeInfo",
    "Vec3",
    "VolumeSource",
]

Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class TimeInfo:
    """``time_info`` of metadata.json: frames ``start..end`` inclusive."""

    start: int = 0
    end: int = 0
    units: str = "millisecond"
    kind: str = "range"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "end": self.end, "units": self.units}


def _check_vec3(name: str, value: Vec3, positive: bool) -> None:
    if len(value) != 3 or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be three finite numbers, got {value}")
    if positive and not all(v > 0 for v in value):
        raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True, eq=False)
class VolumeSource:
    """A volume: one lazy 3-D array ``[x, y, z]`` per time frame and channel.

    ``frames[t][c]`` is the :class:`pipeline.arrays.LazyArray` of frame ``t`` and channel
    ``channel_ids[c]`` (``as_dask`` wraps it as a dask array).
    """

    path: Path
    frames: tuple[tuple[LazyArray, ...], ...]
    channel_ids: tuple[str, ...]
    voxel_size: Vec3
    origin: Vec3
    original_axis_order: tuple[int, int, int] = (0, 1, 2)
    time_units: str = "millisecond"
    channel_labels: tuple[str | None, ...] | None = None
    source_axes_units: dict[str, str] = field(default_factory=dict)
    memory_order: str = "C"  # layout of the blocks the reader produces ("C" or "F")

    def __post_init__(self) -> None:
        if self.memory_order not in ("C", "F"):
            raise ValueError(f"memory_order must be 'C' or 'F', got {self.memory_order!r}")
        if not self.frames or not self.frames[0]:
            raise ValueError("a volume needs at least one frame and one channel")
        shape = self.frames[0][0].shape
        dtype = self.frames[0][0].dtype
        for frame in self.frames:
            if len(frame) != len(self.channel_ids):
                raise ValueError(
                    f"{len(frame)} arrays in a frame but {len(self.channel_ids)} channel ids"
                )
            for arr in frame:
                if arr.ndim != 3 or arr.shape != shape or arr.dtype != dtype:
                    raise ValueError("every array of a volume must be 3-D with one shape and dtype")
        if len(set(self.channel_ids)) != len(self.channel_ids):
            raise ValueError(f"channel ids must be unique, got {self.channel_ids}")
        _check_vec3("voxel_size", self.voxel_size, positive=True)
        _check_vec3("origin", self.origin, positive=False)
        if sorted(self.original_axis_order) != [0, 1, 2]:
            raise ValueError(f"original_axis_order must permute 0,1,2: {self.original_axis_order}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.frames[0][0].shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.frames[0][0].dtype

    @property
    def time_info(self) -> TimeInfo:
        return TimeInfo(start=0, end=len(self.frames) - 1, units=self.time_units)


@dataclass(frozen=True, slots=True)
class ExtraData:
    """The validated content of an ``extra_data`` JSON file (see ``inputs/extra_data.py``)."""

    path: Path | None = None
    volume_voxel_size: Vec3 | None = None
    channel_ids_mapping: dict[str, str] = field(default_factory=dict)
    volume_dataset_specific: dict[str, Any] = field(default_factory=dict)
    segmentation_voxel_size: Vec3 | None = None
    segmentation_ids_mapping: dict[str, str] = field(default_factory=dict)
    segment_names: dict[str, dict[str, str]] = field(default_factory=dict)
    segmentation_dataset_specific: dict[str, Any] = field(default_factory=dict)
    entry_metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ExternalReference:
    resource: str | None = None
    accession: str | None = None
    label: str | None = None
    description: str | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """A segment of a lattice: its id (the label value) and what is known about it."""

    id: int
    name: str | None = None
    description: str | None = None
    color: tuple[float, float, float, float] | None = None  # RGBA 0..1
    external_references: tuple[ExternalReference, ...] = ()
    value: int | None = None  # its label value in the lattice, when not its id


@dataclass(frozen=True, slots=True, eq=False)
class LabelSource:
    """A lattice segmentation: one lazy 3-D label array ``[x, y, z]`` per time frame.

    ``segments`` lists the segments the source describes (SFF segment lists, names from extra
    data); label values without an entry are segments too, with nothing known about them.
    ``voxel_size``/``origin`` are None when the format does not say (the volume's then apply).
    """

    path: Path
    lattice_id: str
    frames: tuple[LazyArray, ...]
    segments: tuple[Segment, ...] = ()
    voxel_size: Vec3 | None = None
    origin: Vec3 | None = None
    memory_order: str = "C"
    name: str | None = None
    details: str | None = None

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("a lattice needs at least one frame")
        shape = self.frames[0].shape
        for arr in self.frames:
            if arr.ndim != 3 or arr.shape != shape:
                raise ValueError("every frame of a lattice must be 3-D with one shape")
            if np.dtype(arr.dtype).kind not in "iuf":
                raise ValueError(f"labels must be integers, got {arr.dtype}")
        try:
            validate_name(self.lattice_id, "lattice id")
        except OptionError as exc:  # a name from the file or from extra data
            raise InputFormatError(exc.message, self.path) from None
        if self.voxel_size is not None:
            _check_vec3("voxel_size", self.voxel_size, positive=True)
        if self.memory_order not in ("C", "F"):
            raise ValueError(f"memory_order must be 'C' or 'F', got {self.memory_order!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.frames[0].shape)  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class MeshArrays:
    """One mesh's arrays: vertices (n, 3) float32 in Angstrom, triangles (m, 3) int32 indices
    into the vertices, normals (n, 3) float32 or None when the source gives none."""

    vertices: np.ndarray
    triangles: np.ndarray
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        v, t, n = self.vertices, self.triangles, self.normals
        if v.ndim != 2 or v.shape[1] != 3 or v.dtype != np.float32:
            raise ValueError(f"vertices must be float32 (n, 3), got {v.dtype} {v.shape}")
        if t.ndim != 2 or t.shape[1] != 3 or t.dtype != np.int32:
            raise ValueError(f"triangles must be int32 (m, 3), got {t.dtype} {t.shape}")
        if n is not None and (n.shape != v.shape or n.dtype != np.float32):
            raise ValueError(f"normals must be float32 {v.shape}, got {n.dtype} {n.shape}")


@dataclass(frozen=True, slots=True, eq=False)
class MeshSource:
    """One mesh of a segment: its id and a loader of its arrays (read when written, one mesh
    at a time, so a mesh set never sits in memory whole)."""

    id: int
    load: Callable[[], MeshArrays]


@dataclass(frozen=True, slots=True, eq=False)
class MeshSetSource:
    """A mesh segmentation (DESIGN 3.2 ``mesh_segmentation_data/<set_id>``): per time frame,
    segment id -> its meshes. ``segments`` describes the segments (names, colours...)."""

    path: Path
    set_id: str
    frames: tuple[dict[int, tuple[MeshSource, ...]], ...]
    segments: tuple[Segment, ...] = ()
    name: str | None = None
    details: str | None = None

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("a mesh set needs at least one frame")
        try:
            validate_name(self.set_id, "mesh set id")
        except OptionError as exc:  # a name from the file or from extra data
            raise InputFormatError(exc.message, self.path) from None
