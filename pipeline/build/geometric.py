"""Geometric segmentations in an entry: geometric_segmentation.json, metadata and annotations.

``preprocess`` (add and extend) checks the ids with :func:`check_geometric_ids` before any
work and adds them to the entry's documents with :func:`stage_geometric`; the standalone
``star-to-geometric`` command is :func:`star_to_geometric`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.db.commit import write_json
from pipeline.errors import OptionError
from pipeline.inputs.geometric import geometric_input_document
from pipeline.inputs.star import StarOptions, read_star
from pipeline.model import GeometricSegmentation

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = [
    "check_geometric_ids",
    "stage_geometric",
    "star_to_geometric",
]


def check_geometric_ids(
    segmentations: Iterable[GeometricSegmentation], taken: Iterable[str] | None, entry: str
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
    if taken is not None:
        clash = sorted(set(seen) & set(taken))
        if clash:
            raise OptionError(
                f"geometric segmentation id(s) {', '.join(clash)} already in entry {entry} "
                "(give new ids with segmentation_ids_mapping in extra_data, or remove them "
                "first with remove-segmentation --kind geometric)"
            )


def _placed(seg: GeometricSegmentation, documents: EntryDocuments) -> GeometricSegmentation:
    """Positions measured from the volume's sample 0 or centre moved into its frame."""
    if seg.anchor == "absolute":
        return seg
    volumes = documents.metadata.volumes
    box = None if volumes is None else volumes.volume_sampling_info.boxes.get("1")
    if box is None:
        raise OptionError(
            f"{seg.path}: positions are given relative to the volume, but the entry has no "
            "volume (level 1)"
        )
    offset = [float(o) for o in box.origin]
    if seg.anchor == "volume_centre":
        offset = [
            o + n * v / 2
            for o, n, v in zip(offset, box.grid_dimensions, box.voxel_size, strict=True)
        ]
    return seg.translated((offset[0], offset[1], offset[2]))


def stage_geometric(
    documents: EntryDocuments,
    segmentations: tuple[GeometricSegmentation, ...],
    entry_key: str,
) -> bool:
    """Add segmentations to the entry's documents (geometric_segmentation.json: the entry's
    own items followed by the new ones). Returns whether there were any."""
    from pipeline.db.metadata import add_geometric

    for seg in segmentations:
        add_geometric(documents, entry_key, _placed(seg, documents))
    return bool(segmentations)


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
