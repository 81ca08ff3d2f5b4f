"""Geometric segmentations in an entry: geometric_segmentation.json, metadata and annotations.

``preprocess`` (add and extend) checks the ids with :func:`check_geometric_ids` before any
work and writes them into the staged entry with :func:`stage_geometric`;
``remove-segmentation --kind geometric`` uses :func:`drop_geometric`; the standalone
``star-to-geometric`` command is :func:`star_to_geometric`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.db.commit import write_json
from pipeline.db.layout import GEOMETRIC_JSON
from pipeline.db.metadata import PALETTE, deterministic_id
from pipeline.errors import InputFormatError, OptionError
from pipeline.inputs.geometric import geometric_input_document
from pipeline.inputs.star import StarOptions, read_star
from pipeline.model import GeometricSegmentation

__all__ = [
    "check_geometric_ids",
    "drop_geometric",
    "read_entry_geometric",
    "stage_geometric",
    "star_to_geometric",
]


def _section(metadata: dict[str, Any]) -> dict[str, Any]:
    section = metadata.get("geometric_segmentation") or {}
    section.setdefault("segmentation_ids", [])
    section.setdefault("time_info", {})
    metadata["geometric_segmentation"] = section
    return section


def check_geometric_ids(
    segmentations: Iterable[GeometricSegmentation], metadata: dict[str, Any] | None, entry: str
) -> None:
    """Ids unique among the run's inputs and, in extend, not already in the entry."""
    seen: dict[str, Path] = {}
    for seg in segmentations:
        if seg.segmentation_id in seen:
            raise OptionError(
                f"geometric segmentation id {seg.segmentation_id!r} given twice: "
                f"{seen[seg.segmentation_id]} and {seg.path} (rename one with "
                "segmentation_ids_mapping in extra_data)"
            )
        seen[seg.segmentation_id] = seg.path
    if metadata is not None:
        taken = set((metadata.get("geometric_segmentation") or {}).get("segmentation_ids", []))
        clash = sorted(set(seen) & taken)
        if clash:
            raise OptionError(
                f"geometric segmentation id(s) {', '.join(clash)} already in entry {entry} "
                "(give new ids with segmentation_ids_mapping in extra_data, or remove them "
                "first with remove-segmentation --kind geometric)"
            )


def read_entry_geometric(folder: Path) -> list[dict[str, Any]]:
    """The entry's geometric_segmentation.json ([] when it has none)."""
    path = Path(folder) / GEOMETRIC_JSON
    if not path.exists():
        return []
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise InputFormatError(
            f"entry is damaged ({type(exc).__name__}); delete it or add it again", path
        ) from exc
    if not isinstance(document, list):
        raise InputFormatError("entry is damaged (not a list); delete it or add it again", path)
    return document


def _placed(seg: GeometricSegmentation, metadata: dict[str, Any]) -> GeometricSegmentation:
    """Positions measured from the volume's sample 0 or centre moved into its frame."""
    if seg.anchor == "absolute":
        return seg
    box = metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
    offset = [float(o) for o in box["origin"]]
    if seg.anchor == "volume_centre":
        offset = [
            o + n * v / 2
            for o, n, v in zip(offset, box["grid_dimensions"], box["voxel_size"], strict=True)
        ]
    return seg.translated((offset[0], offset[1], offset[2]))


def _annotate(
    annotations: dict[str, Any], entry_key: str, seg: GeometricSegmentation, colour_index: int
) -> None:
    """One description and one segment annotation per primitive id (DESIGN 5)."""
    frames: dict[int, list[int]] = {}
    kinds: dict[int, str] = {}
    for t in sorted(seg.frames):
        for p in seg.frames[t]:
            frames.setdefault(p["id"], []).append(t)
            kinds.setdefault(p["id"], p["kind"])
    default = list(PALETTE[colour_index % len(PALETTE)])
    sid = seg.segmentation_id
    for ident in seg.primitive_ids:
        ts = frames[ident]
        time: int | list[int] = ts[0] if len(ts) == 1 else ts
        label = seg.labels.get(ident)
        description_id = deterministic_id(entry_key, "primitive", sid, ident, "d")
        annotations["descriptions"][description_id] = {
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
        color = seg.colors.get(ident)
        annotations["segment_annotations"].append(
            {
                "id": deterministic_id(entry_key, "primitive", sid, ident, "a"),
                "segment_kind": "primitive",
                "segment_id": ident,
                "segmentation_id": sid,
                "color": list(color) if color is not None else default,
                "time": time,
            }
        )


def stage_geometric(
    staged_folder: Path,
    entry_folder: Path | None,
    metadata: dict[str, Any],
    annotations: dict[str, Any],
    segmentations: tuple[GeometricSegmentation, ...],
    entry_key: str,
) -> bool:
    """Add segmentations to metadata and annotations and write geometric_segmentation.json
    (the entry's own, when extending, followed by the new ones) into the staged folder.

    Returns whether the file was written (only when there are new segmentations).
    """
    if not segmentations:
        return False
    document = read_entry_geometric(entry_folder) if entry_folder is not None else []
    section = _section(metadata)
    for seg in segmentations:
        placed = _placed(seg, metadata)
        document.append(placed.to_json())
        section["segmentation_ids"].append(seg.segmentation_id)
        section["time_info"][seg.segmentation_id] = placed.time_info.to_json()
        _annotate(annotations, entry_key, placed, len(section["segmentation_ids"]) - 1)
    write_json(Path(staged_folder) / GEOMETRIC_JSON, document)
    return True


def drop_geometric(
    metadata: dict[str, Any],
    annotations: dict[str, Any],
    document: list[dict[str, Any]],
    ids: list[str],
    entry: str,
) -> list[dict[str, Any]]:
    """Remove geometric segmentations from metadata and annotations (in place); returns the
    remaining items of geometric_segmentation.json."""
    section = _section(metadata)
    unknown = [i for i in ids if i not in section["segmentation_ids"]]
    if unknown:
        raise OptionError(
            f"no geometric segmentation {', '.join(unknown)} in entry {entry} "
            f"(it has: {', '.join(section['segmentation_ids']) or 'none'})"
        )
    gone = set(ids)
    section["segmentation_ids"] = [i for i in section["segmentation_ids"] if i not in gone]
    for i in gone:
        section["time_info"].pop(i, None)
    annotations["segment_annotations"] = [
        a
        for a in annotations["segment_annotations"]
        if not (a.get("segment_kind") == "primitive" and a.get("segmentation_id") in gone)
    ]
    annotations["descriptions"] = {
        k: d
        for k, d in annotations["descriptions"].items()
        if not (
            d.get("target_kind") == "primitive"
            and (d.get("target_id") or {}).get("segmentation_id") in gone
        )
    }
    return [item for item in document if item.get("segmentation_id") not in gone]


def star_to_geometric(star: Path, output: Path, options: StarOptions) -> GeometricSegmentation:
    """Convert a RELION particle STAR file into a ``geometric_segmentation`` input file.

    The output is written to a temporary name beside it and renamed, so it is either the old
    file or the complete new one; it may not be the STAR file itself.
    """
    star, output = Path(star), Path(output)
    if output.exists() and star.exists() and output.resolve() == star.resolve():
        raise OptionError(f"{output}: the output file would overwrite the STAR file")
    segmentation = read_star(star, options)
    if not output.parent.is_dir():
        raise OptionError(f"{output}: the output folder does not exist")
    if output.is_dir():
        raise OptionError(f"{output}: is a folder; give the path of the JSON file to write")
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        write_json(temporary, geometric_input_document(segmentation))
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)
    return segmentation
