"""``extra_data`` JSON: validated into :class:`pipeline.model.ExtraData`.

Accepted layout (every key optional)::

    {"volume": {"voxel_size": [x, y, z], "channel_ids_mapping": {"0": "dna"},
                "dataset_specific_data": {...}},
     "segmentation": {"voxel_size": [x, y, z], "segmentation_ids_mapping": {"stem": "id"},
                      "segment_ids_to_segment_names_mapping": {"lattice": {"1": "name"}},
                      "custom_segment_ids_mapping": {...},      # older alias of the above
                      "dataset_specific_data": {...},
                      "star_files": {"<STAR file stem>": {"segmentation_id": str,
                                     "sphere_radius": A, "sphere_color_hex": "FFFF00",
                                     "pixel_size": A, "star_file_coordinate_divisor": n,
                                     "tomo_name": str, "tomogram_size": [nx, ny, nz]}}},
     "entry_metadata": {"description": str, "url": str}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import InputNotFoundError
from pipeline.inputs.limits import json_int
from pipeline.json_errors import parse_json, validated
from pipeline.model import ExtraData, Vec3

__all__ = ["load_json", "read_extra_data"]


def load_json(path: Path) -> Any:
    """Parse a JSON input file; a missing file or bad JSON is an input error naming it."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file", path)
    if not path.is_file():
        raise InputNotFoundError("not a file", path)
    return parse_json(path.read_bytes(), path, parse_int=json_int(path))


def read_extra_data(path: Path) -> ExtraData:
    """Read and validate an extra-data file.

    >>> read_extra_data(Path("missing.json"))
    Traceback (most recent call last):
    ...
    pipeline.errors.InputNotFoundError: missing.json: no such file
    """
    from pipeline.inputs.json_models import ExtraDataDocument

    path = Path(path)
    doc = validated(ExtraDataDocument, load_json(path), path)
    volume, seg = doc.volume, doc.segmentation
    names: dict[str, dict[str, str]] = {}
    for mapping in (seg.custom_segment_ids_mapping, seg.segment_ids_to_segment_names_mapping):
        for lattice, named in mapping.items():
            names.setdefault(lattice, {}).update(named)
    return ExtraData(
        path=path,
        volume_voxel_size=_vec3(volume.voxel_size),
        channel_ids_mapping=dict(volume.channel_ids_mapping),
        volume_dataset_specific=dict(volume.dataset_specific_data),
        segmentation_voxel_size=_vec3(seg.voxel_size),
        segmentation_ids_mapping=dict(seg.segmentation_ids_mapping),
        segment_names=names,
        segmentation_dataset_specific=dict(seg.dataset_specific_data),
        entry_metadata=(
            None
            if doc.entry_metadata is None
            else doc.entry_metadata.model_dump(exclude_unset=True)
        ),
        star_files={stem: options.options() for stem, options in seg.star_files.items()},
    )


def _vec3(value: list[float] | None) -> Vec3 | None:
    return None if value is None else (float(value[0]), float(value[1]), float(value[2]))
