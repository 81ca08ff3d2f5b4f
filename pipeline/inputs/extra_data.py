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

import json
import math
from pathlib import Path
from typing import Any

from pipeline.errors import InputFormatError, InputNotFoundError
from pipeline.inputs.limits import checked_int, json_int
from pipeline.inputs.star import parse_star_options
from pipeline.model import ExtraData, Vec3

__all__ = ["load_json", "read_extra_data"]

_TOP_KEYS = {"volume", "segmentation", "entry_metadata"}
_VOLUME_KEYS = {"voxel_size", "channel_ids_mapping", "dataset_specific_data"}
_SEGMENTATION_KEYS = {
    "voxel_size",
    "segmentation_ids_mapping",
    "segment_ids_to_segment_names_mapping",
    "custom_segment_ids_mapping",
    "dataset_specific_data",
    "star_files",
}


def load_json(path: Path) -> Any:
    """Parse a JSON input file; a missing file or bad JSON is an input error naming it."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file", path)
    if not path.is_file():
        raise InputNotFoundError("not a file", path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f, parse_int=json_int(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFormatError(f"invalid JSON: {exc}", path) from exc
    except RecursionError:
        raise InputFormatError("invalid JSON: nested too deeply", path) from None


def _object(value: Any, where: str, path: Path, keys: set[str] | None = None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputFormatError(f"{where} must be a JSON object", path)
    if keys is not None:
        unknown = sorted(set(value) - keys)
        if unknown:
            raise InputFormatError(
                f"{where}: unknown key(s) {', '.join(unknown)} "
                f"(expected: {', '.join(sorted(keys))})",
                path,
            )
    return value


def _voxel_size(value: Any, where: str, path: Path) -> Vec3:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) and v > 0 for v in value)
    ):
        raise InputFormatError(f"{where} must be a list of three positive numbers (A)", path)
    return (float(value[0]), float(value[1]), float(value[2]))


def _optional_voxel_size(section: dict[str, Any], where: str, path: Path) -> Vec3 | None:
    if "voxel_size" not in section:
        return None
    return _voxel_size(section["voxel_size"], f"{where}.voxel_size", path)


def _string_map(value: Any, where: str, path: Path) -> dict[str, str]:
    mapping = _object(value, where, path)
    for k, v in mapping.items():
        if not isinstance(v, str) or not v:
            raise InputFormatError(f"{where}[{k!r}] must be a non-empty string", path)
    return dict(mapping)


def read_extra_data(path: Path) -> ExtraData:
    """Read and validate an extra-data file.

    >>> read_extra_data(Path("missing.json"))
    Traceback (most recent call last):
    ...
    pipeline.errors.InputNotFoundError: missing.json: no such file
    """
    path = Path(path)
    top = _object(load_json(path), "the top level", path, _TOP_KEYS)
    volume = _object(top.get("volume", {}), "volume", path, _VOLUME_KEYS)
    seg = _object(top.get("segmentation", {}), "segmentation", path, _SEGMENTATION_KEYS)
    names: dict[str, dict[str, str]] = {}
    for key in ("custom_segment_ids_mapping", "segment_ids_to_segment_names_mapping"):
        for lattice, mapping in _object(seg.get(key, {}), f"segmentation.{key}", path).items():
            where = f"segmentation.{key}[{lattice!r}]"
            named = _string_map(mapping, where, path)
            for segment in named:
                if segment.lstrip("-").isdigit():
                    checked_int(segment, f"{where}: segment id", path)
            names.setdefault(lattice, {}).update(named)
    entry_metadata = top.get("entry_metadata")
    if entry_metadata is not None:
        entry_metadata = _object(entry_metadata, "entry_metadata", path, {"description", "url"})
        for k, v in entry_metadata.items():
            if v is not None and not isinstance(v, str):
                raise InputFormatError(f"entry_metadata.{k} must be a string or null", path)
    return ExtraData(
        path=path,
        volume_voxel_size=_optional_voxel_size(volume, "volume", path),
        channel_ids_mapping=_string_map(
            volume.get("channel_ids_mapping", {}), "volume.channel_ids_mapping", path
        ),
        volume_dataset_specific=_object(
            volume.get("dataset_specific_data", {}), "volume.dataset_specific_data", path
        ),
        segmentation_voxel_size=_optional_voxel_size(seg, "segmentation", path),
        segmentation_ids_mapping=_string_map(
            seg.get("segmentation_ids_mapping", {}), "segmentation.segmentation_ids_mapping", path
        ),
        segment_names=names,
        segmentation_dataset_specific=_object(
            seg.get("dataset_specific_data", {}), "segmentation.dataset_specific_data", path
        ),
        entry_metadata=entry_metadata,
        star_files=_star_files(seg.get("star_files", {}), path),
    )


def _star_files(value: Any, path: Path) -> dict[str, Any]:
    """``segmentation.star_files``: STAR file options by file stem."""
    out = {}
    for stem, options in _object(value, "segmentation.star_files", path).items():
        where = f"segmentation.star_files[{stem!r}]"
        out[stem] = parse_star_options(
            _object(options, where, path),
            lambda key, where=where: f"{where}.{key}" if key else where,
            lambda message: InputFormatError(message, path),
        )
    return out
