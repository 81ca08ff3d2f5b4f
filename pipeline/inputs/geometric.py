"""``geometric_segmentation`` inputs: shape primitives in JSON -> :class:`GeometricSegmentation`.

The input format (the seed's sample files)::

    {"segmentation_id": "1",                      # optional: the file stem
     "time_units": null,                          # optional: "millisecond"
     "shape_primitives_input": {
         "0": [{"kind": "sphere",
                "parameters": {"id": 111, "center": [0, 10, 0], "radius": 9,
                               "color": [0.1, 0.5, 0.7, 1.0],      # optional, RGB(A) 0..1
                               "label": "a sphere"}}, ...]}}       # optional

Positions and sizes are in Angstrom; the parameters of each kind are those of DESIGN 6.
The first invalid primitive is reported with its frame and index.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.errors import InputFormatError
from pipeline.inputs.extra_data import load_json
from pipeline.inputs.ids import mapped_id
from pipeline.inputs.limits import checked_int, shortened
from pipeline.model import RGBA, Contents, ExtraData, GeometricSegmentation, normalise_primitive

__all__ = [
    "geometric_input_document",
    "parse_color",
    "read_geometric",
    "read_geometric_segmentation",
]

_TOP_KEYS = {"segmentation_id", "time_units", "shape_primitives_input"}


def parse_color(value: Any) -> RGBA:
    """Three or four numbers in 0..1 (RGB or RGBA) as RGBA; ValueError otherwise.

    >>> parse_color([1, 0.5, 0])
    (1.0, 0.5, 0.0, 1.0)
    """
    if (
        not isinstance(value, list | tuple)
        or len(value) not in (3, 4)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        or not all(math.isfinite(v) and 0 <= v <= 1 for v in value)
    ):
        raise ValueError(f"color must be three or four numbers in 0..1 (RGB(A)), got {value!r}")
    r, g, b, *a = (float(v) for v in value)
    return (r, g, b, a[0] if a else 1.0)


def _segmentation_id(doc: dict[str, Any], path: Path, extra: ExtraData | None) -> str:
    value = doc.get("segmentation_id")
    if value is None:
        value = path.stem
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    elif not isinstance(value, str):
        raise InputFormatError(f"segmentation_id must be a string, got {value!r}", path)
    return mapped_id(value, extra)


def _frame(key: str, path: Path) -> int:
    if not (isinstance(key, str) and key.isdigit()):
        raise InputFormatError(
            f"shape_primitives_input: frame {shortened(key)!r} is not a time index (0, 1, ...)",
            path,
        )
    return checked_int(key, "shape_primitives_input: frame", path)


def _primitive(item: Any, where: str, path: Path) -> tuple[dict[str, Any], RGBA | None, str | None]:
    """One ``{kind, parameters}`` item -> (stored form, colour, label)."""
    kind = item.get("kind") if isinstance(item, dict) else None
    where = f"{where} ({kind if isinstance(kind, str) else '?'})"
    try:
        if not isinstance(item, dict):
            raise ValueError("must be an object {kind, parameters}")
        unknown = sorted(set(item) - {"kind", "parameters"})
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)} (expected: kind, parameters)")
        if not isinstance(kind, str):
            raise ValueError("kind must be a string")
        parameters = item.get("parameters")
        if not isinstance(parameters, dict):
            raise ValueError("parameters must be an object")
        rest = dict(parameters)
        ident = rest.pop("id", None)
        if type(ident) is not int:
            raise ValueError(f"id must be an integer, got {ident!r}")
        color = parse_color(rest.pop("color")) if rest.get("color") is not None else None
        rest.pop("color", None)
        label = rest.pop("label", None)
        if label is not None and not isinstance(label, str):
            raise ValueError(f"label must be a string or null, got {label!r}")
        stored = {"id": ident, "kind": kind, **normalise_primitive(kind, rest)}
    except ValueError as exc:
        raise InputFormatError(f"{where}: {exc}", path) from None
    return stored, color, label


def read_geometric(path: Path, extra: ExtraData | None = None) -> GeometricSegmentation:
    """Read and validate a geometric segmentation input JSON file.

    Its id is ``segmentation_id`` (the file stem when absent), renamed by
    ``segmentation.segmentation_ids_mapping`` of extra data.
    """
    path = Path(path)
    doc = load_json(path)
    if not isinstance(doc, dict):
        raise InputFormatError("the top level must be a JSON object", path)
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise InputFormatError(
            f"unknown key(s) {', '.join(unknown)} (expected: {', '.join(sorted(_TOP_KEYS))})", path
        )
    units = doc.get("time_units")
    if units is not None and not (isinstance(units, str) and units):
        raise InputFormatError(f"time_units must be a string or null, got {units!r}", path)
    source = doc.get("shape_primitives_input")
    if not isinstance(source, dict) or not source:
        raise InputFormatError(
            'shape_primitives_input must be an object of time frames, e.g. {"0": [...]}', path
        )
    frames: dict[int, tuple[dict[str, Any], ...]] = {}
    colors: dict[int, RGBA | None] = {}
    labels: dict[int, str | None] = {}
    for key, items in sorted(source.items(), key=lambda kv: _frame(kv[0], path)):
        t = _frame(key, path)
        if not isinstance(items, list):
            raise InputFormatError(f"frame {key}: must be a list of primitives", path)
        primitives: list[dict[str, Any]] = []
        seen: dict[int, int] = {}
        for n, item in enumerate(items):
            where = f"frame {t}, primitive {n}"
            stored, color, label = _primitive(item, where, path)
            ident = stored["id"]
            if ident in seen:
                raise InputFormatError(
                    f"{where} ({stored['kind']}): id {ident} is already used by primitive "
                    f"{seen[ident]}",
                    path,
                )
            seen[ident] = n
            primitives.append(stored)
            if ident not in colors:  # one annotation per id: the first frame's colour and label
                colors[ident], labels[ident] = color, label
        frames[t] = tuple(primitives)
    return GeometricSegmentation(
        path=path,
        segmentation_id=_segmentation_id(doc, path, extra),
        frames=frames,
        colors=colors,
        labels=labels,
        time_units=units or "millisecond",
    )


def geometric_input_document(segmentation: GeometricSegmentation) -> dict[str, Any]:
    """A segmentation in the input format above (what ``star-to-geometric`` writes)."""
    frames: dict[str, list[dict[str, Any]]] = {}
    for t in sorted(segmentation.frames):
        items = []
        for p in segmentation.frames[t]:
            parameters = {"id": p["id"]}
            color = segmentation.colors.get(p["id"])
            if color is not None:
                parameters["color"] = list(color)
            label = segmentation.labels.get(p["id"])
            if label is not None:
                parameters["label"] = label
            parameters.update((k, v) for k, v in p.items() if k not in ("id", "kind"))
            items.append({"kind": p["kind"], "parameters": parameters})
        frames[str(t)] = items
    return {
        "segmentation_id": segmentation.segmentation_id,
        "time_units": segmentation.time_units,
        "shape_primitives_input": frames,
    }


def read_geometric_segmentation(
    path: Path, scratch: Path | None, extra: ExtraData | None = None
) -> Contents:
    """The ``geometric_segmentation`` reader: one segmentation, parsed by
    :func:`read_geometric` (the JSON is small and read whole; ``scratch`` is not needed)."""
    return Contents(geometric=(read_geometric(path, extra),))
