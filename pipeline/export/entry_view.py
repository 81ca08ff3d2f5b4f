"""What an export needs to know about an entry, read from its metadata.json / annotations.json.

The one place where the export touches the entry's JSON documents (as dicts): when the typed
entry documents of ``pipeline/db`` arrive, only this module changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import InputFormatError

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
    lattice_id: str
    levels: tuple[Box, ...]  # stored levels, ascending
    frames: tuple[int, ...]
    time_units: str
    segments: tuple[SegmentInfo, ...]


@dataclass(frozen=True, slots=True)
class MeshSetView:
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


def _boxes(sampling: dict[str, Any]) -> tuple[Box, ...]:
    levels = [lv["level"] for lv in sampling["spatial_downsampling_levels"] if lv["available"]]
    out = []
    for level in sorted(levels):
        b = sampling["boxes"][str(level)]
        out.append(
            Box(
                level=int(level),
                origin=tuple(float(v) for v in b["origin"]),  # type: ignore[arg-type]
                voxel_size=tuple(float(v) for v in b["voxel_size"]),  # type: ignore[arg-type]
                grid=tuple(int(v) for v in b["grid_dimensions"]),  # type: ignore[arg-type]
            )
        )
    return tuple(out)


def _frames(time_info: dict[str, Any]) -> tuple[tuple[int, ...], str]:
    return tuple(range(int(time_info["start"]), int(time_info["end"]) + 1)), str(
        time_info.get("units") or "millisecond"
    )


def _segments(
    annotations: dict[str, Any], kind: str, segmentation_id: str
) -> tuple[SegmentInfo, ...]:
    """Segments of one segmentation: colours from segment annotations, names, references and
    details from descriptions; ordered by segment id."""
    colors: dict[int, tuple[float, float, float, float]] = {}
    for item in annotations.get("segment_annotations") or []:
        if item.get("segment_kind") == kind and item.get("segmentation_id") == segmentation_id:
            colors[int(item["segment_id"])] = tuple(float(v) for v in item["color"])  # type: ignore[assignment]
    described: dict[int, dict[str, Any]] = {}
    for item in (annotations.get("descriptions") or {}).values():
        target = item.get("target_id") or {}
        if item.get("target_kind") == kind and target.get("segmentation_id") == segmentation_id:
            described[int(target["segment_id"])] = item
    out = []
    for segment in sorted(set(colors) | set(described)):
        d = described.get(segment, {})
        details = d.get("details") or {}
        out.append(
            SegmentInfo(
                segment_id=segment,
                name=d.get("name"),
                color=colors.get(segment),
                references=tuple(d.get("external_references") or ()),
                details=details.get("text") if isinstance(details, dict) else None,
            )
        )
    return tuple(out)


def _mesh_sets(metadata: dict[str, Any], annotations: dict[str, Any]) -> tuple[MeshSetView, ...]:
    meshes = metadata.get("segmentation_meshes") or {}
    out = []
    for set_id in meshes.get("segmentation_ids") or []:
        info = meshes["segmentation_metadata"][set_id]
        frames: dict[int, dict[int, dict[int, tuple[int, ...]]]] = {}
        for t, frame in info.get("mesh_timeframes", {}).items():
            frames[int(t)] = {
                int(seg): {
                    int(lvl): tuple(int(m) for m in detail["mesh_ids"])
                    for lvl, detail in seg_info["detail_lvls"].items()
                }
                for seg, seg_info in frame["segment_ids"].items()
            }
        out.append(MeshSetView(set_id, frames, _segments(annotations, "mesh", set_id)))
    return tuple(out)


def entry_view(metadata: dict[str, Any], annotations: dict[str, Any], where: str) -> EntryView:
    """The export's view of an entry's documents; a document lacking what the export needs is
    an :class:`InputFormatError` naming ``where`` (the entry folder)."""
    try:
        return _entry_view(metadata, annotations)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFormatError(
            f"entry metadata is incomplete or damaged ({type(exc).__name__}: {exc})", where
        ) from exc


def _entry_view(metadata: dict[str, Any], annotations: dict[str, Any]) -> EntryView:
    volumes = metadata.get("volumes") or {}
    sampling = volumes.get("volume_sampling_info") or {}
    levels = _boxes(sampling) if sampling else ()
    frames, units = _frames(volumes["time_info"]) if levels else ((), "millisecond")
    channel_ids = tuple(str(c) for c in volumes.get("channel_ids") or ())
    by_channel = {
        str(a["channel_id"]): a for a in annotations.get("volume_channels_annotations") or []
    }
    ranges: dict[str, tuple[float, float]] = {}
    if levels:
        stats = (sampling.get("descriptive_statistics") or {}).get(str(levels[0].level), {})
        first = stats.get(str(frames[0]), {}) if frames else {}
        for c in channel_ids:
            if c in first:
                ranges[c] = (float(first[c]["min"]), float(first[c]["max"]))
    lattices_doc = metadata.get("segmentation_lattices") or {}
    lattices = []
    for lattice_id in lattices_doc.get("segmentation_ids") or []:
        lattice_frames, lattice_units = _frames(lattices_doc["time_info"][lattice_id])
        lattices.append(
            LatticeView(
                lattice_id=lattice_id,
                levels=_boxes(lattices_doc["segmentation_sampling_info"][lattice_id]),
                frames=lattice_frames,
                time_units=lattice_units,
                segments=_segments(annotations, "lattice", lattice_id),
            )
        )
    geometric = metadata.get("geometric_segmentation") or {}
    geometric_ids = tuple(str(g) for g in geometric.get("segmentation_ids") or ())
    return EntryView(
        name=annotations.get("name"),
        levels=levels,
        frames=frames,
        time_units=units,
        channel_ids=channel_ids,
        channel_labels=tuple(by_channel.get(c, {}).get("label") for c in channel_ids),
        channel_colors=tuple(
            tuple(float(v) for v in by_channel[c]["color"]) if c in by_channel else None  # type: ignore[misc]
            for c in channel_ids
        ),
        channel_ranges=ranges,
        lattices=tuple(lattices),
        mesh_sets=_mesh_sets(metadata, annotations),
        geometric_ids=geometric_ids,
        geometric_segments={g: _segments(annotations, "primitive", g) for g in geometric_ids},
    )
