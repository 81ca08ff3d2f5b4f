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
The first problem is reported with its JSON path, e.g.
``$.shape_primitives_input["0"][1].parameters: radius must be >= 0, got -1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.inputs.extra_data import load_json
from pipeline.inputs.ids import mapped_id
from pipeline.json_errors import validated
from pipeline.model import RGBA, Contents, ExtraData, GeometricSegmentation

__all__ = ["geometric_input_document", "read_geometric", "read_geometric_segmentation"]


def read_geometric(path: Path, extra: ExtraData | None = None) -> GeometricSegmentation:
    """Read and validate a geometric segmentation input JSON file
    (:class:`pipeline.inputs.json_models.GeometricInput`).

    Its id is ``segmentation_id`` (the file stem when absent), renamed by
    ``segmentation.segmentation_ids_mapping`` of extra data.
    """
    from pipeline.inputs.json_models import GeometricInput

    path = Path(path)
    doc = validated(GeometricInput, load_json(path), path)
    frames: dict[int, tuple[dict[str, Any], ...]] = {}
    colors: dict[int, RGBA | None] = {}
    labels: dict[int, str | None] = {}
    for key, items in sorted(doc.shape_primitives_input.items(), key=lambda kv: int(kv[0])):
        for item in items:
            ident = item.parameters.id
            if ident not in colors:  # one annotation per id: the first frame's colour and label
                colors[ident], labels[ident] = item.parameters.rgba(), item.parameters.label
        frames[int(key)] = tuple(item.stored() for item in items)
    segmentation_id = path.stem if doc.segmentation_id is None else doc.segmentation_id
    segmentation_id = mapped_id(segmentation_id, extra)
    return GeometricSegmentation(
        path=path,
        segmentation_id=segmentation_id,
        frames=frames,
        colors=colors,
        labels=labels,
        time_units=doc.time_units or "millisecond",
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
