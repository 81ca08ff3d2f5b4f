"""``custom_annotations``: an annotations.json-format document (DESIGN 5) merged into the entry.

Accepted keys: ``name``, ``details``, ``descriptions`` (object by id), ``segment_annotations``
and ``volume_channels_annotations`` (lists); ``entry_id`` is ignored (the entry's own wins).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.errors import InputFormatError
from pipeline.inputs.extra_data import load_json

__all__ = ["check_annotations_document", "read_custom_annotations"]

_KEYS = {
    "name",
    "details",
    "entry_id",
    "descriptions",
    "segment_annotations",
    "volume_channels_annotations",
}
_KINDS = {"lattice", "mesh", "primitive", "entry"}


def _color(value: Any, where: str, path: Path) -> None:
    if not (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) and 0 <= v <= 1 for v in value)
    ):
        raise InputFormatError(f"{where}.color must be four numbers in 0..1 (RGBA)", path)


def _require(item: Any, keys: tuple[str, ...], where: str, path: Path) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise InputFormatError(f"{where} must be a JSON object", path)
    missing = [k for k in keys if k not in item]
    if missing:
        raise InputFormatError(f"{where}: missing {', '.join(missing)}", path)
    return item


def read_custom_annotations(path: Path) -> dict[str, Any]:
    """Read and check an annotations document; returns it (without ``entry_id``)."""
    path = Path(path)
    return check_annotations_document(load_json(path), path)


def check_annotations_document(doc: Any, path: Path) -> dict[str, Any]:
    """Check an annotations document (DESIGN 5); returns its parts (without ``entry_id``)."""
    if not isinstance(doc, dict):
        raise InputFormatError("the top level must be a JSON object", path)
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise InputFormatError(f"unknown key(s) {', '.join(unknown)}", path)
    for key in ("name", "details"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise InputFormatError(f"{key} must be a string or null", path)
    descriptions = {} if doc.get("descriptions") is None else doc["descriptions"]
    if not isinstance(descriptions, dict):
        raise InputFormatError("descriptions must be an object keyed by id", path)
    for key, item in descriptions.items():
        where = f"descriptions[{key!r}]"
        _require(item, ("id", "target_kind"), where, path)
        if item["id"] != key:
            raise InputFormatError(f"{where}: id {item['id']!r} differs from its key", path)
        if item["target_kind"] not in _KINDS:
            raise InputFormatError(f"{where}: unknown target_kind {item['target_kind']!r}", path)
    segments = [] if doc.get("segment_annotations") is None else doc["segment_annotations"]
    if not isinstance(segments, list):
        raise InputFormatError("segment_annotations must be a list", path)
    for n, item in enumerate(segments):
        where = f"segment_annotations[{n}]"
        _require(
            item, ("id", "segment_kind", "segment_id", "segmentation_id", "color"), where, path
        )
        _color(item["color"], where, path)
    channels = doc.get("volume_channels_annotations")
    channels = [] if channels is None else channels
    if not isinstance(channels, list):
        raise InputFormatError("volume_channels_annotations must be a list", path)
    for n, item in enumerate(channels):
        where = f"volume_channels_annotations[{n}]"
        _require(item, ("channel_id", "color"), where, path)
        _color(item["color"], where, path)
    return {
        "name": doc.get("name"),
        "details": doc.get("details"),
        "descriptions": descriptions,
        "segment_annotations": segments,
        "volume_channels_annotations": channels,
    }
