"""OME-NGFF 0.5 metadata of an exported entry (pure: dicts in, JSON-ready dicts out).

Arrays are ``[t][c] z y x`` (t only for entries with several frames, c only for several
channels); the entry's ``[x, y, z]`` vectors are reversed into ``z, y, x``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.export.entry_view import Box, EntryView, SegmentInfo

__all__ = [
    "NGFF_VERSION",
    "Layout",
    "image_attributes",
    "label_attributes",
    "labels_group_attributes",
]

NGFF_VERSION = "0.5"
_SPACE_UNIT = "angstrom"


class Layout:
    """The axes of an exported array: optional time and channel axes, then z, y, x."""

    __slots__ = ("channel", "time")

    def __init__(self, time: bool, channel: bool) -> None:
        self.time = time
        self.channel = channel

    @property
    def names(self) -> tuple[str, ...]:
        """The axis names, e.g. ``("t", "z", "y", "x")`` (also the arrays' dimension names)."""
        return (("t",) if self.time else ()) + (("c",) if self.channel else ()) + ("z", "y", "x")

    def axes(self, time_units: str) -> list[dict[str, Any]]:
        """NGFF ``axes``: space axes in angstrom, the time axis in the entry's time unit."""
        out: list[dict[str, Any]] = []
        if self.time:
            out.append({"name": "t", "type": "time", "unit": time_units})
        if self.channel:
            out.append({"name": "c", "type": "channel"})
        out += [{"name": n, "type": "space", "unit": _SPACE_UNIT} for n in ("z", "y", "x")]
        return out

    def shape(self, frames: int, channels: int, grid: Sequence[int]) -> tuple[int, ...]:
        """The array shape for a level of grid ``[nx, ny, nz]``."""
        lead = ((frames,) if self.time else ()) + ((channels,) if self.channel else ())
        return (*lead, *reversed(tuple(grid)))

    def index(self, frame: int, channel: int) -> tuple[int, ...]:
        """Leading indices of one frame and channel."""
        return ((frame,) if self.time else ()) + ((channel,) if self.channel else ())

    def transforms(self, box: Box, time_start: int) -> list[dict[str, Any]]:
        """NGFF ``scale`` and ``translation`` of one level: its voxel size and origin (the same
        origin at every level, no half-voxel shift: see docs/export.md)."""
        lead = len(self.names) - 3
        scale = [1.0] * lead + [float(v) for v in reversed(box.voxel_size)]
        shift = ([float(time_start)] if self.time else []) + [0.0] * (lead - self.time)
        shift += [float(v) for v in reversed(box.origin)]
        return [
            {"type": "scale", "scale": scale},
            {"type": "translation", "translation": shift},
        ]


def _multiscale(
    name: str, layout: Layout, levels: Sequence[Box], time_units: str, time_start: int, kind: str
) -> dict[str, Any]:
    return {
        "name": name,
        "axes": layout.axes(time_units),
        "datasets": [
            {"path": str(i), "coordinateTransformations": layout.transforms(box, time_start)}
            for i, box in enumerate(levels)
        ],
        "type": kind,
        "metadata": {
            "description": "levels of a Mol* VolSeg entry (cellstar-preprocessor export)",
            "downsampling_ratios": [box.level for box in levels],
        },
    }


def _hex(color: Sequence[float] | None) -> str:
    """``RRGGBB`` of an RGBA colour in 0..1 (white when the entry has none).

    >>> _hex((1.0, 0.5, 0.0, 1.0))
    'FF8000'
    """
    if color is None:
        return "FFFFFF"
    return "".join(f"{round(max(0.0, min(1.0, float(v))) * 255):02X}" for v in color[:3])


def _rgba255(color: Sequence[float]) -> list[int]:
    return [round(max(0.0, min(1.0, float(v))) * 255) for v in color]


def image_attributes(entry: EntryView, layout: Layout) -> dict[str, Any]:
    """The image group's ``attributes`` (``{"ome": {...}}``): multiscales and omero."""
    time_start = entry.frames[0] if entry.frames else 0
    channels = []
    for cid, label, color in zip(
        entry.channel_ids, entry.channel_labels, entry.channel_colors, strict=True
    ):
        lo, hi = entry.channel_ranges.get(cid, (0.0, 1.0))
        channels.append(
            {
                "label": label if label is not None else cid,
                "color": _hex(color),
                "active": True,
                "coefficient": 1.0,
                "family": "linear",
                "inverted": False,
                "window": {"min": lo, "max": hi, "start": lo, "end": hi},
            }
        )
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [
                _multiscale(
                    entry.name or "volume",
                    layout,
                    entry.levels,
                    entry.time_units,
                    time_start,
                    "binomial [1,4,6,4,1]/16, stride 2",
                )
            ],
            "omero": {
                "channels": channels,
                "rdefs": {"model": "color" if len(channels) > 1 else "greyscale"},
            },
        }
    }


def labels_group_attributes(lattice_ids: Sequence[str]) -> dict[str, Any]:
    """The ``labels`` group's attributes: the list of label images."""
    return {"ome": {"version": NGFF_VERSION, "labels": list(lattice_ids)}}


def _properties(segment: SegmentInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"label-value": segment.segment_id}
    if segment.name is not None:
        out["name"] = segment.name
    if segment.color is not None:
        out["color"] = [float(v) for v in segment.color]
    if segment.references:
        out["references"] = [
            {k: ref.get(k) for k in ("resource", "accession", "label", "description", "url")}
            for ref in segment.references
        ]
    if segment.details:
        out["details"] = segment.details
    return out


def label_attributes(
    lattice_id: str,
    layout: Layout,
    levels: Sequence[Box],
    time_units: str,
    time_start: int,
    segments: Sequence[SegmentInfo],
) -> dict[str, Any]:
    """A label image's attributes: multiscales and ``image-label`` (colours and properties of
    the annotated segments; label values are segment ids)."""
    return {
        "ome": {
            "version": NGFF_VERSION,
            "multiscales": [
                _multiscale(
                    lattice_id,
                    layout,
                    levels,
                    time_units,
                    time_start,
                    "smallest non-zero segment id of the category's set",
                )
            ],
            "image-label": {
                "colors": [
                    {"label-value": s.segment_id, "rgba": _rgba255(s.color)}
                    for s in segments
                    if s.color is not None
                ],
                "properties": [_properties(s) for s in segments],
                "source": {"image": "../../"},
            },
        }
    }
