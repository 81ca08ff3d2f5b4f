"""metadata.json and annotations.json documents (DESIGN sections 4 and 5)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from pipeline.algorithms.levels import LevelPlan
from pipeline.algorithms.quantize import QuantizationParams
from pipeline.algorithms.statistics import Statistics
from pipeline.model import ExtraData, GeometricSegmentation, Segment, TimeInfo, VolumeSource

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = [
    "PALETTE",
    "add_geometric",
    "add_lattice_annotations",
    "add_lattice_metadata",
    "add_mesh_metadata",
    "apply_entry_metadata",
    "deterministic_id",
    "levels_document",
    "quantization_params",
    "quantization_record",
    "statistics_record",
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


def statistics_record(st: Statistics) -> dict[str, float]:
    """One ``descriptive_statistics`` record of metadata.json (DESIGN 4)."""
    return {"mean": st.mean, "std": st.std, "min": st.min, "max": st.max}


def quantization_record(params: QuantizationParams) -> dict[str, Any]:
    """The quantization attribute of a quantized volume array (DESIGN 7.3)."""
    return {
        "min": params.min,
        "max": params.max,
        "num_steps": params.num_steps,
        "src_type": params.src_type,
        "to_remove_negatives": params.to_remove_negatives,
    }


def quantization_params(record: dict[str, Any]) -> QuantizationParams:
    """The parameters a quantization attribute holds (inverse of :func:`quantization_record`)."""
    return QuantizationParams(
        min=float(record["min"]),
        max=float(record["max"]),
        num_steps=int(record["num_steps"]),
        src_type=str(record["src_type"]),
        to_remove_negatives=float(record["to_remove_negatives"]),
    )


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
        stats.setdefault(str(ratio), {}).setdefault(str(time), {})[channel] = statistics_record(st)
    return {
        "channel_ids": list(volume.channel_ids),
        "time_info": _time_info(volume.time_info),
        "volume_sampling_info": {
            "spatial_downsampling_levels": levels_document(plan),
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


def apply_entry_metadata(documents: EntryDocuments, extra: ExtraData | None) -> None:
    """Copy ``entry_metadata`` of extra data into metadata.json (only when given)."""
    if extra is not None and extra.entry_metadata is not None:
        documents.set_entry_metadata(
            extra.entry_metadata.get("description"), extra.entry_metadata.get("url")
        )


def add_lattice_metadata(
    documents: EntryDocuments,
    lattice_id: str,
    plan: LevelPlan,
    frames: int,
    time_units: str = "millisecond",
) -> None:
    """Append a lattice to ``segmentation_lattices``: it sits on the volume's boxes (DESIGN 7.2)."""
    assert documents.metadata.volumes is not None
    boxes = documents.metadata.volumes.volume_sampling_info.dump()["boxes"]
    sampling = {
        "spatial_downsampling_levels": levels_document(plan),
        "boxes": boxes,
        "time_transformations": [],
        "source_axes_units": {},
        "original_axis_order": [0, 1, 2],
    }
    time_info = _time_info(TimeInfo(start=0, end=frames - 1, units=time_units))
    documents.add_lattice(lattice_id, sampling, time_info)


def add_lattice_annotations(
    documents: EntryDocuments,
    entry_key: str,
    lattice_id: str,
    segments: tuple[Segment, ...],
    present: tuple[int, ...] | None,
    frames: int,
    kind: str = "lattice",
    times: dict[int, tuple[int, ...]] | None = None,
) -> list[int]:
    """One description and one segment annotation per segment of a lattice (DESIGN 5); with
    ``kind="mesh"`` the same for the segments of a mesh set.

    The segments are every label value present in the grid except 0 (background, still a
    category in the set tables) and those the source describes that are present (``present``
    None: every described segment). Returns the described segments that are not present (not
    annotated). Ids are uuid5 of entry, kind, segmentation and segment; colours come from the
    source or the fixed palette.

    ``times`` (segment id -> the frames it occurs in) makes each annotation's ``time`` list
    only those frames (the viewer draws an annotated segment at every frame its ``time``
    names); segments that occur in no frame are then not annotated.
    """
    ref_key = () if kind == "lattice" else (kind,)  # lattice reference ids predate ``kind``
    described = {s.id: s for s in segments}
    if present is None:
        ids, absent = sorted(described), []
    else:
        ids = sorted((set(described) & set(present)) | {v for v in present if v != 0})
        absent = sorted(set(described) - set(present))
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
        documents.add_description({
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
        })
        color = segment.color if segment.color is not None else PALETTE[n % len(PALETTE)]
        documents.add_segment_annotation(
            {
                "id": deterministic_id(entry_key, kind, lattice_id, segment_id, "a"),
                "segment_kind": kind,
                "segment_id": segment_id,
                "segmentation_id": lattice_id,
                "color": list(color),
                "time": time,
            }
        )
    return absent


def add_mesh_metadata(
    documents: EntryDocuments,
    set_id: str,
    fractions: dict[int, float],
    stored: dict[int, dict[int, dict[int, dict[str, tuple[int, int, int]]]]],
    frames: int,
) -> None:
    """Append a mesh set to ``segmentation_meshes`` (DESIGN 4); ``stored``: frame -> segment
    -> detail level -> mesh id -> (vertices, triangles, normals) counts."""
    timeframes = {
        str(t): {
            "segment_ids": {
                str(segment): {
                    "detail_lvls": {
                        str(level): {
                            "mesh_ids": {
                                mesh_id: {
                                    "num_vertices": v,
                                    "num_triangles": f,
                                    "num_normals": n,
                                }
                                for mesh_id, (v, f, n) in meshes.items()
                            }
                        }
                        for level, meshes in levels.items()
                    }
                }
                for segment, levels in segments.items()
            }
        }
        for t, segments in stored.items()
    }
    info = {
        "detail_lvl_to_fraction": {str(lv): f for lv, f in sorted(fractions.items())},
        "mesh_timeframes": timeframes,
    }
    volumes = documents.metadata.volumes
    units = "millisecond" if volumes is None else volumes.time_info.units  # one unit per entry
    documents.add_mesh_set(
        set_id, info, _time_info(TimeInfo(start=0, end=frames - 1, units=units))
    )


def _time_info(time_info: TimeInfo) -> dict[str, Any]:
    """A ``time_info`` object of metadata.json."""
    return {
        "kind": time_info.kind,
        "start": time_info.start,
        "end": time_info.end,
        "units": time_info.units,
    }


def levels_document(plan: LevelPlan) -> list[dict[str, object]]:
    """``spatial_downsampling_levels``: stored levels, and level 1 (``available: false``) when
    the original resolution is removed."""
    return [
        {"level": lv.ratio, "available": lv.stored}
        for lv in plan.levels
        if lv.stored or lv.ratio == 1
    ]


def _geometric_item(seg: GeometricSegmentation) -> dict[str, Any]:
    """The segmentation's item of geometric_segmentation.json."""
    return {
        "segmentation_id": seg.segmentation_id,
        "primitives": {
            str(t): {"shape_primitive_list": [dict(p) for p in seg.frames[t]]}
            for t in sorted(seg.frames)
        },
    }


def add_geometric(
    documents: EntryDocuments, entry_key: str, seg: GeometricSegmentation
) -> None:
    """A placed geometric segmentation: its item of geometric_segmentation.json, its
    metadata, and one description and one segment annotation per primitive id (DESIGN 5)."""
    position = documents.add_geometric(_geometric_item(seg), _time_info(seg.time_info))
    frames: dict[int, list[int]] = {}
    kinds: dict[int, str] = {}
    for t in sorted(seg.frames):
        for p in seg.frames[t]:
            frames.setdefault(p["id"], []).append(t)
            kinds.setdefault(p["id"], p["kind"])
    default = list(PALETTE[position % len(PALETTE)])
    sid = seg.segmentation_id
    for ident in seg.primitive_ids:
        ts = frames[ident]
        time: int | list[int] = ts[0] if len(ts) == 1 else ts
        label = seg.labels.get(ident)
        description_id = deterministic_id(entry_key, "primitive", sid, ident, "d")
        documents.add_description(
            {
                "id": description_id,
                "target_kind": "primitive",
                "target_id": {"segmentation_id": sid, "segment_id": ident},
                "name": label if label is not None else f"{kinds[ident]} {ident}",
                "external_references": [],
                "is_hidden": None,
                "time": time,
                "details": None,
                "metadata": None,
            }
        )
        color = seg.colors.get(ident)
        documents.add_segment_annotation(
            {
                "id": deterministic_id(entry_key, "primitive", sid, ident, "a"),
                "segment_kind": "primitive",
                "segment_id": ident,
                "segmentation_id": sid,
                "color": list(color) if color is not None else default,
                "time": time,
            }
        )
