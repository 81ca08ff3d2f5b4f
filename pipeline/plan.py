"""Planning a run: everything checked and read (lazily) before a byte is written.

The inputs' kinds, paths and counts; the entry's location; every input through its reader;
the grid segmentations must sit on (this run's volume, or an extended entry's); the level plan.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.algorithms.levels import LevelPlan, plan_from_stored, plan_levels
from pipeline.arrays import CastArray
from pipeline.build.geometric import check_geometric_ids
from pipeline.build.lattices import check_lattice_grid
from pipeline.build.meshes import check_mesh_sets
from pipeline.db.layout import EntryLocation, entry_key
from pipeline.errors import (
    EntryExistsError,
    EntryNotFoundError,
    GridMismatchError,
    InputNotFoundError,
    OptionError,
    UnsupportedInputError,
)
from pipeline.inputs.annotations import read_custom_annotations
from pipeline.inputs.extra_data import read_extra_data
from pipeline.inputs.kinds import DECODED_KINDS, check_input_path
from pipeline.inputs.registry import DIRECTORY_KINDS, READERS, VOLUME_KINDS, Contents, read_input
from pipeline.inputs.source import exists as url_exists
from pipeline.inputs.source import fetched, is_url
from pipeline.model import (
    ExtraData,
    GeometricSegmentation,
    LabelSource,
    MeshSetSource,
    VolumeSource,
)
from pipeline.notices import warn as notice
from pipeline.options import InputKind, InputSpec, Mode, PreprocessOptions
from pipeline.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = [
    "SUPPORTED_KINDS",
    "Grid",
    "check_frames",
    "check_inputs",
    "check_location",
    "check_segmentations",
    "existing_grid",
    "plan_new_entry",
    "read_extra",
    "read_inputs",
    "repeat_count",
    "warn_viewer_id",
]


# extra data and custom annotations describe an entry; every other kind has a reader
SUPPORTED_KINDS = frozenset({*READERS, InputKind.EXTRA_DATA, InputKind.CUSTOM_ANNOTATIONS})


def check_inputs(options: PreprocessOptions) -> None:
    """Everything that can be checked before reading data: kinds, paths, counts, local
    custom annotations."""
    for spec in options.inputs:
        if spec.kind not in SUPPORTED_KINDS:
            raise UnsupportedInputError(f"not supported yet: {spec.kind.value}", spec.path)
        if is_url(spec.path):
            _check_url(spec, options)
            continue
        check_input_path(spec.kind, spec.path)
    volumes = [s for s in options.inputs if s.kind in VOLUME_KINDS]
    if len(volumes) > 1:
        raise OptionError(
            f"an entry has one volume, got {len(volumes)} volume inputs: "
            + ", ".join(str(s.path) for s in volumes)
        )
    if len([s for s in options.inputs if s.kind is InputKind.EXTRA_DATA]) > 1:
        raise OptionError("at most one extra_data input per run")
    if options.mode is Mode.ADD and not volumes:
        names = [kind.value for kind in InputKind if kind in VOLUME_KINDS]
        raise OptionError(
            f"an entry needs a volume input ({', '.join(names[:-1])} or {names[-1]})"
        )
    if options.mode is Mode.EXTEND and volumes:
        raise OptionError(
            f"--mode extend adds segmentations; {volumes[0].path}: the entry already has a volume"
        )
    for spec in options.inputs:
        # a local annotations document is small: its problems are said before any block runs
        # (it is read again, and checked against the entry, when merged)
        if spec.kind is InputKind.CUSTOM_ANNOTATIONS and not is_url(spec.path):
            read_custom_annotations(spec.path)


def _check_url(spec: InputSpec, options: PreprocessOptions) -> None:
    """A URL input names an object (an OME-Zarr URL, a prefix: its reader checks it)."""
    if spec.kind in DIRECTORY_KINDS:
        return
    found = url_exists(str(spec.path), options.storage_options)
    if found is None:
        raise InputNotFoundError("no such object", spec.path)
    if found != "file":
        raise InputNotFoundError(
            f"a {spec.kind.value} input must be an object, not a prefix", spec.path
        )


def warn_viewer_id(options: PreprocessOptions) -> None:
    """The Mol* viewer opens an entry id without ``-`` as ``<source>-<id>``: say so."""
    if options.mode is Mode.ADD and "-" not in options.entry_id:
        notice(
            f"entry id {options.entry_id!r} has no '-': the Mol* viewer opens it as "
            f"'{options.source_db}-{options.entry_id}', which is not this entry (use an id "
            f"like '{options.source_db}-{options.entry_id}' to open it in the viewer)",
            entry_key(options.source_db, options.entry_id),
        )


def check_location(options: PreprocessOptions) -> EntryLocation:
    """The entry's location: a new entry (add) must not exist, an extended one must."""
    location = EntryLocation(options.db_path, options.source_db, options.entry_id)
    if options.mode is Mode.ADD and location.exists():
        raise EntryExistsError(
            f"entry {location.key} already exists (use --mode extend "
            "to add data to it)",
            location.folder,
        )
    if options.mode is Mode.EXTEND and not location.exists():
        raise EntryNotFoundError(
            f"entry {location.key} does not exist (use --mode add)",
            location.folder,
        )
    return location


def _first(options: PreprocessOptions, kinds: frozenset[InputKind]) -> InputSpec | None:
    """The first input of one of ``kinds``."""
    return next((s for s in options.inputs if s.kind in kinds), None)


def read_inputs(
    options: PreprocessOptions,
    extra: ExtraData | None,
    scratch: Path | None,
    progress: Progress = NO_PROGRESS,
    grid: Grid | None = None,
) -> Contents:
    """Every input through its reader (the volume first), merged into one :class:`Contents`.

    Segmentations that are decoded or decompressed into scratch are first read header-only
    and their grids checked against ``grid`` (extend) or this run's volume, so a lattice that
    cannot fit is refused before any of its bytes are decoded.
    """
    started = time.perf_counter()
    specs = sorted(
        (s for s in options.inputs if s.kind in READERS), key=lambda s: s.kind not in VOLUME_KINDS
    )
    volume: VolumeSource | None = None
    lattices: list[LabelSource] = []
    geometric: list[GeometricSegmentation] = []
    meshes: list[MeshSetSource] = []
    for spec in specs:
        target = grid or (Grid.of(volume) if volume is not None else None)
        if scratch is not None and target is not None and spec.kind in DECODED_KINDS:
            for lattice in read_input(spec.kind, spec.path, None, extra).lattices:
                check_lattice_grid(lattice, target.shape, target.voxel, target.path, target.origin)
        contents = read_input(spec.kind, spec.path, scratch, extra)
        volume = volume or contents.volume
        lattices.extend(contents.lattices)
        geometric.extend(contents.geometric)
        meshes.extend(contents.meshes)
    dtype = options.force_volume_dtype
    if volume is not None and dtype is not None and dtype != volume.dtype:
        volume = replace(
            volume,
            frames=tuple(tuple(CastArray(a, dtype) for a in frame) for frame in volume.frames),
        )
    progress.note("read", f"{len(specs)} input(s) opened in {time.perf_counter() - started:.1f} s")
    return Contents(
        volume=volume,
        lattices=tuple(lattices),
        geometric=tuple(geometric),
        meshes=tuple(meshes),
    )


@dataclass(frozen=True, slots=True)
class Grid:
    """The entry volume's level-1 grid that segmentations must sit on."""

    shape: tuple[int, int, int]
    voxel: tuple[float, float, float]
    origin: tuple[float, float, float]
    frames: int
    path: Path  # the volume's file (add) or the entry's folder (extend), for messages

    @classmethod
    def of(cls, volume: VolumeSource) -> Grid:
        return cls(volume.shape, volume.voxel_size, volume.origin, len(volume.frames), volume.path)


def check_segmentations(
    location: EntryLocation,
    contents: Contents,
    grid: Grid,
    documents: EntryDocuments | None,
) -> None:
    """What a run adds, checked before anything is written: every lattice on the volume's grid
    and within its time frames, ids unique in the run and new to the entry (``documents`` of an
    entry being extended), geometric and mesh ids likewise."""
    taken = set(documents.lattice_ids) if documents else set()
    seen: dict[str, Path] = {}
    for lattice in contents.lattices:
        check_lattice_grid(lattice, grid.shape, grid.voxel, grid.path, grid.origin)
        check_frames(f"lattice {lattice.lattice_id}", len(lattice.frames), grid, lattice.path)
        if lattice.lattice_id in seen:
            raise OptionError(
                f"lattice id {lattice.lattice_id!r} given twice: {seen[lattice.lattice_id]} and "
                f"{lattice.path} (map one with segmentation_ids_mapping in extra_data)"
            )
        seen[lattice.lattice_id] = lattice.path
    clash = sorted(set(seen) & taken)
    if clash:
        raise OptionError(
            f"lattice id(s) {', '.join(clash)} already in entry {location.key} "
            f"(from {', '.join(str(seen[i]) for i in clash)}; give new ids "
            "with segmentation_ids_mapping in extra_data)"
        )
    check_geometric_ids(
        contents.geometric, documents.geometric_ids if documents else None, location.key
    )
    check_mesh_sets(contents.meshes, documents.mesh_set_ids if documents else ())
    for mesh_set in contents.meshes:
        check_frames(f"mesh set {mesh_set.set_id}", len(mesh_set.frames), grid, mesh_set.path)


def check_frames(what: str, frames: int, grid: Grid, path: Path) -> None:
    """A segmentation has the volume's time frames, or one frame (then stored at every frame
    of the volume: the viewer asks for every segmentation at every frame it shows)."""
    if frames not in (1, grid.frames):
        raise GridMismatchError(
            f"{frames} time frames, but the volume of {grid.path} has {grid.frames} ({what}: "
            "a segmentation needs the volume's frames, or one frame, then stored at every "
            "frame)",
            path,
        )


def repeat_count(frames: int, grid: Grid) -> int:
    """How often a segmentation's frames are stored: a one-frame segmentation at every frame
    of the volume."""
    return grid.frames if frames == 1 else 1


def plan_new_entry(
    options: PreprocessOptions, location: EntryLocation, contents: Contents
) -> tuple[VolumeSource, LevelPlan]:
    """The volume of a new entry, its inputs checked, and its level plan."""
    volume = contents.volume
    assert volume is not None  # checked in check_inputs
    check_segmentations(location, contents, Grid.of(volume), None)
    plan = plan_levels(volume.shape, volume.dtype.itemsize, options.levels)
    _check_quantize_levels(options, plan)
    return volume, plan


def _check_quantize_levels(options: PreprocessOptions, plan: LevelPlan) -> None:
    """Every level named by --quantize-downsampling-levels must be stored."""
    if options.quantize_levels is None:
        return
    missing = sorted(set(options.quantize_levels) - set(plan.stored_ratios))
    if missing:
        raise OptionError(
            f"--quantize-downsampling-levels: level(s) {', '.join(map(str, missing))} not stored "
            f"(stored: {', '.join(map(str, plan.stored_ratios))})"
        )


def read_extra(options: PreprocessOptions) -> ExtraData | None:
    """The run's extra data input, if any (its path the URL when it was fetched)."""
    spec = _first(options, frozenset({InputKind.EXTRA_DATA}))
    if spec is None:
        return None
    with fetched(spec.path) as local:
        extra = read_extra_data(local)
    return replace(extra, path=spec.path) if is_url(spec.path) else extra


def existing_grid(documents: EntryDocuments, location: EntryLocation) -> tuple[LevelPlan, Grid]:
    """The entry's level plan and level-1 grid (shape, voxel size, origin, time frames)."""
    volumes = documents.metadata.volumes
    box = None if volumes is None else volumes.volume_sampling_info.boxes.get("1")
    if volumes is None or box is None:
        raise EntryNotFoundError("entry has no volume grid in metadata.json", location.folder)
    shape = tuple(box.grid_dimensions)
    voxel = tuple(float(v) for v in box.voxel_size)
    origin = tuple(float(v) for v in box.origin)
    available = set(volumes.volume_sampling_info.available_levels)
    frames = len(volumes.time_info.frames)
    grid = Grid(shape, voxel, origin, frames, location.folder)  # type: ignore[arg-type]
    return plan_from_stored(shape, available, 4), grid  # type: ignore[arg-type]
