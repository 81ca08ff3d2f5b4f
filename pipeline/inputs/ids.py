"""What extra data says about the ids and names of what an input holds: one helper each.

Every reader that names a lattice, mesh set or geometric segmentation after its file (or a
label image, a channel ...) renames it through ``segmentation.segmentation_ids_mapping``, and
takes its segments' names from ``segmentation.segment_ids_to_segment_names_mapping`` here.
"""

from __future__ import annotations

import re

from pipeline.model import ExtraData, Segment

__all__ = ["mapped_id", "named_segments", "segment_names"]

_SEGMENT_ID = re.compile(r"-?[0-9]+")


def mapped_id(default: str, extra: ExtraData | None) -> str:
    """``default`` renamed by ``segmentation_ids_mapping`` (itself when not mapped).

    >>> mapped_id("emd_1_msk", ExtraData(segmentation_ids_mapping={"emd_1_msk": "mask"}))
    'mask'
    """
    if extra is None:
        return default
    return extra.segmentation_ids_mapping.get(default, default)


def segment_names(lattice_id: str, extra: ExtraData | None) -> dict[int, str]:
    """Segment id -> name that extra data gives for a lattice (or mesh set); keys that are not
    decimal integers are not segment ids and are left out.

    >>> segment_names("a", ExtraData(segment_names={"a": {"2": "b", "1": "c", "x": "d"}}))
    {1: 'c', 2: 'b'}
    """
    names = (extra.segment_names.get(lattice_id, {}) if extra is not None else {}) or {}
    found = {int(key): name for key, name in names.items() if _SEGMENT_ID.fullmatch(key)}
    return dict(sorted(found.items()))


def named_segments(lattice_id: str, extra: ExtraData | None) -> tuple[Segment, ...]:
    """The segments extra data names for a lattice, by id."""
    return tuple(Segment(id=i, name=name) for i, name in segment_names(lattice_id, extra).items())
