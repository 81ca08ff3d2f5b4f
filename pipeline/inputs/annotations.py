"""``custom_annotations``: an annotations.json-format document (DESIGN 5) merged into the entry.

Accepted keys: ``name``, ``details``, ``descriptions`` (object by id), ``segment_annotations``
and ``volume_channels_annotations`` (lists); ``entry_id`` is ignored (the entry's own wins).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.inputs.extra_data import load_json
from pipeline.json_errors import validated

__all__ = ["check_annotations_document", "read_custom_annotations"]


def read_custom_annotations(path: Path) -> dict[str, Any]:
    """Read and check an annotations document; returns it (without ``entry_id``)."""
    path = Path(path)
    return check_annotations_document(load_json(path), path)


def check_annotations_document(doc: Any, path: Path) -> dict[str, Any]:
    """Check an annotations document (DESIGN 5) with
    :class:`pipeline.inputs.json_models.AnnotationsDocument`; returns its parts as written
    (items keep their own keys; without ``entry_id``)."""
    from pipeline.inputs.json_models import AnnotationsDocument

    validated(AnnotationsDocument, doc, path)
    return {
        "name": doc.get("name"),
        "details": doc.get("details"),
        "descriptions": doc.get("descriptions") or {},
        "segment_annotations": doc.get("segment_annotations") or [],
        "volume_channels_annotations": doc.get("volume_channels_annotations") or [],
    }
