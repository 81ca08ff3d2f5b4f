"""What an export needs to know about an entry, read from its typed documents
(:class:`pipeline.db.documents.EntryDocuments`): the one place where the export reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments, TimeInfo

__all__ = ["Box", "EntryView", "LatticeView", "MeshSetView", "SegmentInfo", "entry_view"]

Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Box:
    """One stored level: origin and voxel size (Å, ``[x, y, z]``) and grid ``[nx, ny, nz]``."""

    level: int
    origin: Vec3
    voxel_size: Vec3
    grid: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A segment's annotation: name, colour (RGBA 0..1), external references, details."""

    segment_id: int
    name: str | None
    color: tuple[float, float, float, float] | None
    references: tuple[dict[str, Any], ...]
    details: str | None


@dataclass(frozen=True, slots=True)
class LatticeView:
    """A lattice: its stored levels (on the volume's grid), frames and annotated segments."""

    lattice_id: str
    levels: tuple[Box, ...]  # stored levels, ascending
    frames: tuple[int, ...]
    time_units: str
    segments: tuple[SegmentInfo, ...]


@dataclass(frozen=True, slots=True)
class MeshSetView:
    """A mesh set: the mesh ids of every frame, segment and detail level, and its segments."""

    set_id: str
    # time -> segment id -> detail level -> mesh ids
    timeframes: dict[int, dict[int, dict[int, tuple[int, ...]]]]
    segments: tuple[SegmentInfo, ...]


@dataclass(frozen=True, slots=True)
class EntryView:
    """The parts of an entry an export reads (volume levels in ascending order)."""

    name: str | None
    levels: tuple[Box, ...]
    frames: tuple[int, ...]
    time_units: str
    channel_ids: tuple[str, ...]
    channel_labels: tuple[str | None, ...]
    channel_colors: tuple[tuple[float, float, float, float] | None, ...]
    # channel id -> (min, max) of the finest stored level, frame 0
    channel_ranges: dict[str, tuple[float, float]]
    lattices: tuple[LatticeView, ...]
    mesh_sets: tuple[MeshSetView, ...]
    geometric_ids: tuple[str, ...]
    geometric_segments: dict[str, tuple[SegmentInfo, ...]]  # segmentation id -> primitives
    # segmentation id -> its stored ``primitives`` object (frame -> primitive list), as JSON
    geometric_primitives: dict[str, dict[str, Any]]
    geometric_primitive_ids: dict[str, tuple[int, ...]]  # segmentation id -> primitive ids


def _boxes(sampling: Any) -> tuple[Box, ...]:
    out = []
    for level in sorted(sampling.available_levels):
        b = sampling.boxes[str(level)]
        out.append(
            Box(
                level=int(level),
                origin=tuple(float(v) for v in b.origin),  # type: ignore[arg-type]
                voxel_size=tuple(float(v) for v in b.voxel_size),  # type: ignore[arg-type]
                grid=tuple(int(v) for v in b.grid_dimensions),  # type: ignore[arg-type]
            )
        )
    return tuple(out)


def _frames(time_info: TimeInfo) -> tuple[tuple[int, ...], str]:
    return tuple(time_info.frames), str(time_info.units or "millisecond")


def _segments(
    documents: EntryDocuments, kind: str, segmentation_id: str
) -> tuple[SegmentInfo, ...]:
    """Segments of one segmentation: colours from segment annotations, names, references and
    details from descriptions; ordered by segment id."""
    annotations = documents.annotations
    colors: dict[int, tuple[float, float, float, float]] = {}
    for item in annotations.segment_annotations:
        if item.segment_kind == kind and item.segmentation_id == segmentation_id:
            colors[item.segment_id] = tuple(float(v) for v in item.color)  # type: ignore[assignment]
    described: dict[int, Any] = {}
    for item in annotations.descriptions.values():
        target = item.target_id
        if (
            item.target_kind == kind
            and target is not None
            and target.segmentation_id == segmentation_id
        ):
            described[target.segment_id] = item
    out = []
    for segment in sorted(set(colors) | set(described)):
        d = described.get(segment)
        out.append(
            SegmentInfo(
                segment_id=segment,
                name=None if d is None else d.name,
                color=colors.get(segment),
                references=tuple(
                    r.dump() for r in ((d.external_references or ()) if d is not None else ())
                ),
                details=None if d is None or d.details is None else d.details.text,
            )
        )
    return tuple(out)


def _mesh_sets(documents: EntryDocuments) -> tuple[MeshSetView, ...]:
    meshes = documents.metadata.segmentation_meshes
    out = []
    for set_id in meshes.segmentation_ids:
        info = meshes.segmentation_metadata[set_id]
        frames: dict[int, dict[int, dict[int, tuple[int, ...]]]] = {}
        for t, frame in info.mesh_timeframes.items():
            frames[int(t)] = {
                int(seg): {
                    int(lvl): tuple(int(m) for m in detail.mesh_ids)
                    for lvl, detail in seg_info.detail_lvls.items()
                }
                for seg, seg_info in frame.segment_ids.items()
            }
        out.append(MeshSetView(set_id, frames, _segments(documents, "mesh", set_id)))
    return tuple(out)


def entry_view(documents: EntryDocuments) -> EntryView:
    """The export's view of an entry's (parsed and checked) documents."""
    metadata, annotations = documents.metadata, documents.annotations
    volumes = metadata.volumes
    sampling = None if volumes is None else volumes.volume_sampling_info
    levels = _boxes(sampling) if sampling is not None else ()
    frames, units = _frames(volumes.time_info) if volumes is not None and levels else (
        (),
        "millisecond",
    )
    channel_ids = tuple(volumes.channel_ids) if volumes is not None else ()
    by_channel = {a.channel_id: a for a in annotations.volume_channels_annotations}
    ranges: dict[str, tuple[float, float]] = {}
    if levels and sampling is not None:
        stats = sampling.descriptive_statistics.get(str(levels[0].level), {})
        first = stats.get(str(frames[0]), {}) if frames else {}
        for c in channel_ids:
            if c in first:
                ranges[c] = (float(first[c].min), float(first[c].max))
    section = metadata.segmentation_lattices
    lattices = []
    for lattice_id in section.segmentation_ids:
        lattice_frames, lattice_units = _frames(section.time_info[lattice_id])
        lattices.append(
            LatticeView(
                lattice_id=lattice_id,
                levels=_boxes(section.segmentation_sampling_info[lattice_id]),
                frames=lattice_frames,
                time_units=lattice_units,
                segments=_segments(documents, "lattice", lattice_id),
            )
        )
    geometric_ids = tuple(metadata.geometric_segmentation.segmentation_ids)
    items = {g.segmentation_id: g for g in documents.geometric or []}
    return EntryView(
        name=annotations.name,
        levels=levels,
        frames=frames,
        time_units=units,
        channel_ids=channel_ids,
        channel_labels=tuple(
            by_channel[c].label if c in by_channel else None for c in channel_ids
        ),
        channel_colors=tuple(
            tuple(float(v) for v in by_channel[c].color) if c in by_channel else None  # type: ignore[misc]
            for c in channel_ids
        ),
        channel_ranges=ranges,
        lattices=tuple(lattices),
        mesh_sets=_mesh_sets(documents),
        geometric_ids=geometric_ids,
        geometric_segments={g: _segments(documents, "primitive", g) for g in geometric_ids},
        geometric_primitives={
            g: items[g].dump()["primitives"] for g in geometric_ids if g in items
        },
        geometric_primitive_ids={
            g: tuple(sorted(items[g].primitive_frames())) for g in geometric_ids if g in items
        },
    )
