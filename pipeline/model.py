"""The one source model every reader returns (DESIGN section 2).

Arrays are lazy dask arrays indexed ``[x, y, z]``; geometry is in Angstrom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.arrays import LazyArray
from pipeline.db.names import validate_name
from pipeline.errors import InputFormatError, OptionError

__all__ = [
    "RGBA",
    "Contents",
    "ExtraData",
    "GeometricSegmentation",
    "MeshArrays",
    "MeshSetSource",
    "MeshSource",
    "TimeInfo",
    "Vec3",
    "VolumeSource",
    "normalise_primitive",
]

Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class TimeInfo:
    """``time_info`` of metadata.json: frames ``start..end`` inclusive."""

    start: int = 0
    end: int = 0
    units: str = "millisecond"
    kind: str = "range"


def _check_vec3(name: str, value: Vec3, positive: bool) -> None:
    if len(value) != 3 or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{name} must be three finite numbers, got {value}")
    if positive and not all(v > 0 for v in value):
        raise ValueError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True, eq=False)
class VolumeSource:
    """A volume: one lazy 3-D array ``[x, y, z]`` per time frame and channel.

    ``frames[t][c]`` is the :class:`pipeline.arrays.LazyArray` of frame ``t`` and channel
    ``channel_ids[c]``.
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
    # RGBA 0..1 per channel (None: the palette's) when the source gives colours
    channel_colors: tuple[tuple[float, float, float, float] | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.memory_order not in ("C", "F"):
            raise ValueError(f"memory_order must be 'C' or 'F', got {self.memory_order!r}")
        if self.channel_colors is not None and len(self.channel_colors) != len(self.channel_ids):
            raise ValueError("one colour (or None) per channel expected")
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
    # STAR file options by file stem (``pipeline.inputs.star.StarOptions``)
    star_files: dict[str, Any] = field(default_factory=dict)


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
    time_units: str = "millisecond"
    # formats that place data in world coordinates (NIfTI affine, NGFF translation): the
    # lattice must then start where the volume starts; MRC masks are matched by grid index
    placed_by_origin: bool = False
    # the format's index -> Angstrom transform (3x4, index order x, y, z; an SFF lattice's
    # transform): the lattice must then lie on the volume's samples within half a voxel
    transform: tuple[tuple[float, float, float, float], ...] | None = None
    transform_name: str | None = None  # how the file names it, for messages

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


# --- geometric segmentations (DESIGN 6) ----------------------------------------------------

RGBA = tuple[float, float, float, float]

# the parameters of each primitive kind, in the order geometric_segmentation.json lists them
PRIMITIVE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "sphere": ("center", "radius"),
    "cylinder": ("start", "end", "radius_bottom", "radius_top"),
    "box": ("translation", "scaling", "rotation"),
    "pyramid": ("translation", "scaling", "rotation"),
    "ellipsoid": ("dir_major", "dir_minor", "center", "radius_scale"),
}
# the parameters that are positions (moved when a segmentation is placed on a volume)
_POSITIONS = {"center", "start", "end", "translation"}


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _vector(value: Any, name: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"{name} must be a list of three numbers, got {value!r}")
    return [_number(v, name) for v in value]


def _nonzero(vector: list[float], name: str) -> list[float]:
    if not any(vector):
        raise ValueError(f"{name} must not be the zero vector")
    return vector


def _radius(value: Any, name: str) -> float:
    r = _number(value, name)
    if r < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return r


def _parameter(name: str, value: Any) -> Any:
    if name in ("radius", "radius_bottom", "radius_top"):
        return _radius(value, name)
    if name in ("dir_major", "dir_minor"):
        return _nonzero(_vector(value, name), name)
    if name == "radius_scale":
        return [_radius(v, name) for v in _vector(value, name)]
    if name == "scaling":
        scaling = _vector(value, name)
        if not all(v > 0 for v in scaling):
            raise ValueError(f"scaling must be three numbers > 0, got {value!r}")
        return scaling
    if name == "rotation":
        if not isinstance(value, dict) or set(value) != {"axis", "radians"}:
            raise ValueError(
                f"rotation must be an object {{axis: [x, y, z], radians}}, got {value!r}"
            )
        return {
            "axis": _nonzero(_vector(value["axis"], "rotation.axis"), "rotation.axis"),
            "radians": _number(value["radians"], "rotation.radians"),
        }
    return _vector(value, name)  # center, start, end, translation


def normalise_primitive(kind: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """The parameters of one primitive checked and in the order of DESIGN 6 (numbers as float).

    Raises ValueError naming the first problem.

    >>> normalise_primitive("sphere", {"radius": 2, "center": [0, 1, 2]})
    {'center': [0.0, 1.0, 2.0], 'radius': 2.0}
    """
    if kind not in PRIMITIVE_PARAMETERS:
        raise ValueError(
            f"unknown kind (expected one of: {', '.join(sorted(PRIMITIVE_PARAMETERS))})"
        )
    names = PRIMITIVE_PARAMETERS[kind]
    unknown = sorted(set(parameters) - set(names))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} (expected: {', '.join(names)})"
        )
    missing = [n for n in names if n not in parameters]
    if missing:
        raise ValueError(f"missing parameter(s) {', '.join(missing)}")
    out = {name: _parameter(name, parameters[name]) for name in names}
    if kind == "ellipsoid" and not np.any(np.cross(out["dir_major"], out["dir_minor"])):
        raise ValueError("dir_major and dir_minor must not be parallel")
    return out


@dataclass(frozen=True, slots=True, eq=False)
class GeometricSegmentation:
    """A geometric segmentation: shape primitives per time frame (DESIGN 6).

    ``frames[t]`` lists the primitives of frame ``t`` in the form geometric_segmentation.json
    stores (``{"id": int, "kind": str, <parameters in Angstrom>}``); ``colors`` and ``labels``
    (by primitive id, for annotations.json) hold what the input says (None: not given).
    ``anchor`` says where the positions are measured from: ``"absolute"`` (the volume's frame),
    ``"volume_origin"`` (sample 0 of the entry's volume) or ``"volume_centre"`` (its centre,
    RELION 5); preprocess places the other two on the entry's volume.
    """

    path: Path
    segmentation_id: str
    frames: dict[int, tuple[dict[str, Any], ...]]
    colors: dict[int, RGBA | None] = field(default_factory=dict)
    labels: dict[int, str | None] = field(default_factory=dict)
    time_units: str = "millisecond"
    anchor: str = "absolute"

    def __post_init__(self) -> None:
        try:
            validate_name(self.segmentation_id, "segmentation id")
        except OptionError as exc:  # a name from the file or from extra data
            raise InputFormatError(exc.message, self.path) from None
        if not self.frames or any(not isinstance(t, int) or t < 0 for t in self.frames):
            raise ValueError(f"frames must be keyed by time indices >= 0, got {list(self.frames)}")
        if self.anchor not in ("absolute", "volume_origin", "volume_centre"):
            raise ValueError(f"unknown anchor {self.anchor!r}")
        for t, primitives in self.frames.items():
            ids = [p["id"] for p in primitives]
            if len(set(ids)) != len(ids) or not all(type(i) is int for i in ids):
                raise ValueError(f"primitive ids of frame {t} must be unique integers")
            for p in primitives:
                params = {k: v for k, v in p.items() if k not in ("id", "kind")}
                if normalise_primitive(p["kind"], params) != params:
                    raise ValueError(f"primitive {p['id']} of frame {t} is not normalised")

    @property
    def primitive_ids(self) -> list[int]:
        """Every primitive id, in order of first appearance."""
        return list(dict.fromkeys(p["id"] for t in sorted(self.frames) for p in self.frames[t]))

    @property
    def time_info(self) -> TimeInfo:
        return TimeInfo(start=min(self.frames), end=max(self.frames), units=self.time_units)

    def translated(self, offset: Vec3) -> GeometricSegmentation:
        """The same primitives moved by ``offset`` (Angstrom), anchored absolutely."""
        frames = {
            t: tuple(
                {
                    k: [a + b for a, b in zip(v, offset, strict=True)] if k in _POSITIONS else v
                    for k, v in p.items()
                }
                for p in primitives
            )
            for t, primitives in self.frames.items()
        }
        return replace(self, frames=frames, anchor="absolute")


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


@dataclass(frozen=True, slots=True, eq=False)
class Contents:
    """What one input holds, as every reader returns it (``reader(path, scratch, extra)``):
    at most one volume, and any number of lattices, mesh sets and geometric segmentations.

    >>> Contents().volume is None, Contents().lattices
    (True, ())
    """

    volume: VolumeSource | None = None
    lattices: tuple[LabelSource, ...] = ()
    geometric: tuple[GeometricSegmentation, ...] = ()
    meshes: tuple[MeshSetSource, ...] = ()

    def __post_init__(self) -> None:
        for name in ("lattices", "geometric", "meshes"):
            if not isinstance(getattr(self, name), tuple):
                raise TypeError(f"Contents.{name} must be a tuple")
