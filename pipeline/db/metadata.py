"""metadata.json and annotations.json documents (DESIGN sections 4 and 5)."""

from __future__ import annotations

import uuid
from typing import Any

from pipeline.algorithms.levels import LevelPlan
from pipeline.algorithms.statistics import Statistics
from pipeline.model import ExtraData, Segment, TimeInfo, VolumeSource

__all__ = [
    "PALETTE",
    "add_lattice_annotations",
    "add_lattice_metadata",
    "add_mesh_metadata",
    "apply_entry_metadata",
    "deterministic_id",
    "empty_annotations",
    "empty_metadata",
    "merge_annotations",
    "volume_boxes",
    "volume_channel_annotations",
    "volume_metadata",
]

# A fixed palette (RGBA 0..1) so the same inputs always get the same colours.
PALETTE: tuple[tuple[float, float, float, float], ...] = (
    (0.902, 0.624, 0.0, 1.0),
    (0.337, 0.706, 0.914, 1.0),
    (0.0, 0.620, 0.451, 1.0),
    (0.941, 0.894, 0.259, 1.0),
    (0.0, 0.447, 0.698, 1.0),
    (0.835, 0.369, 0.0, 1.0),
    (0.800, 0.475, 0.655, 1.0),
    (0.6, 0.6, 0.6, 1.0),
)

_NAMESPACE = uuid.UUID("6f1c3d4e-8a52-4c2b-9a57-2d0c6d1b7e11")


def deterministic_id(*parts: object) -> str:
    """A uuid5 of the parts: the same entry, segmentation and segment give the same id."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(str(p) for p in parts)))


def _entry_id(source_db_name: str, source_db_id: str) -> dict[str, str]:
    return {"source_db_name": source_db_name, "source_db_id": source_db_id}


def empty_metadata(source_db_name: str, source_db_id: str) -> dict[str, Any]:
    """metadata.json of an entry with nothing in it yet."""
    return {
        "entry_id": _entry_id(source_db_name, source_db_id),
        "volumes": None,
        "segmentation_lattices": {
            "segmentation_ids": [],
            "segmentation_sampling_info": {},
            "time_info": {},
        },
        "segmentation_meshes": {
            "segmentation_ids": [],
            "segmentation_metadata": {},
            "time_info": {},
        },
        "geometric_segmentation": {"segmentation_ids": [], "time_info": {}},
    }


def empty_annotations(source_db_name: str, source_db_id: str) -> dict[str, Any]:
    """annotations.json of an entry with nothing in it yet."""
    return {
        "name": None,
        "details": None,
        "entry_id": _entry_id(source_db_name, source_db_id),
        "volume_channels_annotations": [],
        "descriptions": {},
        "segment_annotations": [],
    }


def volume_boxes(volume: VolumeSource, plan: LevelPlan) -> dict[str, Any]:
    """``boxes`` per level: sample [0,0,0] keeps its origin, the spacing scales with the ratio."""
    return {
        str(lv.ratio): {
            "origin": list(volume.origin),
            "voxel_size": [v * lv.ratio for v in volume.voxel_size],
            "grid_dimensions": list(lv.shape),
        }
        for lv in plan.levels
        if lv.stored or lv.ratio == 1
    }


def volume_metadata(
    volume: VolumeSource,
    plan: LevelPlan,
    statistics: dict[tuple[int, int, str], Statistics],
) -> dict[str, Any]:
    """The ``volumes`` object of metadata.json; ``statistics`` keyed by (ratio, time, channel)."""
    boxes = volume_boxes(volume, plan)
    stats: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for (ratio, time, channel), st in sorted(statistics.items()):
        if str(ratio) not in boxes:  # computed on the way, not stored
            continue
        stats.setdefault(str(ratio), {}).setdefault(str(time), {})[channel] = st.to_json()
    return {
        "channel_ids": list(volume.channel_ids),
        "time_info": volume.time_info.to_json(),
        "volume_sampling_info": {
            "spatial_downsampling_levels": plan.spatial_downsampling_levels(),
            "boxes": boxes,
            "descriptive_statistics": stats,
            "time_transformations": [],
            "source_axes_units": dict(volume.source_axes_units),
            "original_axis_order": list(volume.original_axis_order),
        },
    }


def volume_channel_annotations(volume: VolumeSource) -> list[dict[str, Any]]:
    """One annotation per channel: the source's colour, else the palette's (white for a single
    channel), and label."""
    labels = volume.channel_labels or (None,) * len(volume.channel_ids)
    colors = volume.channel_colors or (None,) * len(volume.channel_ids)
    out = []
    for i, (channel, label) in enumerate(zip(volume.channel_ids, labels, strict=True)):
        color = (1.0, 1.0, 1.0, 1.0) if len(volume.channel_ids) == 1 else PALETTE[i % len(PALETTE)]
        color = colors[i] or color
        out.append({"channel_id": channel, "color": list(color), "label": label})
    return out


def apply_entry_metadata(metadata: dict[str, Any], extra: ExtraData | None) -> None:
    """Copy ``entry_metadata`` of extra data into metadata.json (only when given)."""
    if extra is not None and extra.entry_metadata is not None:
        metadata["entry_metadata"] = {
            "description": extra.entry_metadata.get("description"),
            "url": extra.entry_metadata.get("url"),
        }


def add_lattice_metadata(
    metadata: dict[str, Any],
    lattice_id: str,
    plan: LevelPlan,
    boxes: dict[str, Any],
    frames: int,
    time_units: str = "millisecond",
) -> None:
    """Append a lattice to ``segmentation_lattices``: it sits on the volume's boxes (DESIGN 7.2)."""
    section = metadata["segmentation_lattices"]
    if lattice_id in section["segmentation_ids"]:
        raise ValueError(f"lattice {lattice_id} already in the entry")
    section["segmentation_ids"].append(lattice_id)
    section["segmentation_sampling_info"][lattice_id] = {
        "spatial_downsampling_levels": plan.spatial_downsampling_levels(),
        "boxes": boxes,
        "time_transformations": [],
        "source_axes_units": {},
        "original_axis_order": [0, 1, 2],
    }
    section["time_info"][lattice_id] = TimeInfo(start=0, end=frames - 1, units=time_units).to_json()


def add_lattice_annotations(
    annotations: dict[str, Any],
    entry_key: str,
    lattice_id: str,
    segments: tuple[Segment, ...],
    present: tuple[int, ...],
    frames: int,
    kind: str = "lattice",
    times: dict[int, tuple[int, ...]] | None = None,
) -> None:
    """One description and one segment annotation per segment of a lattice (DESIGN 5); with
    ``kind="mesh"`` the same for the segments of a mesh set.

    The segments are those the source describes plus every label value present in the grid
    except 0 (background, still a category in the set tables). Ids are uuid5 of entry, kind,
    segmentation and segment; colours come from the source or the fixed palette.

    ``times`` (segment id -> the frames it occurs in) makes each annotation's ``time`` list
    only those frames (the viewer draws an annotated segment at every frame its ``time``
    names); segments that occur in no frame are then not annotated.
    """
    ref_key = () if kind == "lattice" else (kind,)  # lattice reference ids predate ``kind``
    described = {s.id: s for s in segments}
    ids = sorted(set(described) | {v for v in present if v != 0})
    every: int | list[int] = 0 if frames == 1 else list(range(frames))
    for n, segment_id in enumerate(ids):
        time = every
        if times is not None:
            occurs = sorted(times.get(segment_id, ()))
            if not occurs:
                continue
            time = 0 if frames == 1 else occurs
        segment = described.get(segment_id, Segment(id=segment_id))
        description_id = deterministic_id(entry_key, kind, lattice_id, segment_id, "d")
        annotations["descriptions"][description_id] = {
            "id": description_id,
            "target_kind": kind,
            "target_id": {"segmentation_id": lattice_id, "segment_id": segment_id},
            "name": segment.name if segment.name is not None else f"segment {segment_id}",
            "external_references": [
                {
                    "id": deterministic_id(entry_key, *ref_key, lattice_id, segment_id, "ref", k),
                    "resource": ref.resource,
                    "accession": ref.accession,
                    "label": ref.label,
                    "description": ref.description,
                    "url": ref.url,
                }
                for k, ref in enumerate(segment.external_references)
            ],
            "is_hidden": None,
            "time": time,
            "details": (
                {"format": "text", "text": segment.description} if segment.description else None
            ),
            "metadata": None,
        }
        color = segment.color if segment.color is not None else PALETTE[n % len(PALETTE)]
        annotations["segment_annotations"].append(
            {
                "id": deterministic_id(entry_key, kind, lattice_id, segment_id, "a"),
                "segment_kind": kind,
                "segment_id": segment_id,
                "segmentation_id": lattice_id,
                "color": list(color),
                "time": time,
            }
        )


def add_mesh_metadata(
    metadata: dict[str, Any],
    set_id: str,
    fractions: dict[int, float],
    timeframes: dict[str, Any],
    frames: int,
) -> None:
    """Append a mesh set to ``segmentation_meshes`` (DESIGN 4)."""
    section = metadata["segmentation_meshes"]
    if set_id in section["segmentation_ids"]:
        raise ValueError(f"mesh set {set_id} already in the entry")
    section["segmentation_ids"].append(set_id)
    section["segmentation_metadata"][set_id] = {
        "detail_lvl_to_fraction": {str(lv): f for lv, f in sorted(fractions.items())},
        "mesh_timeframes": timeframes,
    }
    section["time_info"][set_id] = TimeInfo(start=0, end=frames - 1).to_json()


def merge_annotations(annotations: dict[str, Any], custom: dict[str, Any]) -> None:
    """Merge a custom annotations document: name/details when given, descriptions by id,
    segment annotations by id and channel annotations by channel id (replaced or added)."""
    for key in ("name", "details"):
        if custom.get(key) is not None:
            annotations[key] = custom[key]
    annotations["descriptions"].update(custom["descriptions"])
    for key, ident in (
        ("segment_annotations", "id"),
        ("volume_channels_annotations", "channel_id"),
    ):
        items = annotations[key]
        where = {item[ident]: n for n, item in enumerate(items)}
        for item in custom[key]:
            if item[ident] in where:
                items[where[item[ident]]] = item
            else:
                where[item[ident]] = len(items)
                items.append(item)
