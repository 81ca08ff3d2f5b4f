"""``inspect``: what a reader sees in one input, without reading its voxels.

The general form of the seed's ``check_ometiff_dimensions.py``: every kind goes through the same
reader ``preprocess`` uses (headers only: no scratch folder, compressed files are not
decompressed), and the source model it returns is described: format, shape, dtype, axis order,
voxel size, origin, channels, time points, lattices and their segments, mesh sets, primitives.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import InputNotFoundError, UnsupportedInputError
from pipeline.inputs.extra_data import read_extra_data
from pipeline.inputs.kinds import InputKind, check_input_path, facts_of, guess_kind
from pipeline.inputs.registry import Contents, read_input
from pipeline.inputs.source import as_input_path, fetched, is_url, storage_options
from pipeline.inputs.source import exists as url_exists

__all__ = ["describe", "describe_lines", "guess_kind"]


@contextlib.contextmanager
def _as_is(path: Any) -> Iterator[Any]:
    yield path


def _vec(values: Any) -> list[float] | None:
    return None if values is None else [round(float(v), 6) for v in values]


def describe(
    path: Path, kind: InputKind | None = None, extra_path: Path | None = None
) -> dict[str, Any]:
    """What the reader of ``kind`` (guessed from the name when None) sees in ``path``."""
    path = as_input_path(path)
    if is_url(path):
        found = url_exists(str(path), storage_options())
        if found is None and not str(path).rstrip("/").endswith(".zarr"):
            raise InputNotFoundError("no such object", path)
    elif not path.exists():
        raise InputNotFoundError("no such file or directory", path)
    kind = kind or guess_kind(path)
    if kind.info.reader is None:
        raise UnsupportedInputError(f"inspect reads inputs that hold data, not {kind.value}", path)
    if not is_url(path):
        check_input_path(kind, path)
    extra = read_extra_data(extra_path) if extra_path is not None else None
    contents: Contents = read_input(kind, path, None, extra)
    out: dict[str, Any] = {"path": str(path), "kind": kind.value}
    facts = facts_of(kind)
    if facts is not None:
        with fetched(path) if is_url(path) and not kind.info.in_place else _as_is(path) as f:
            out["file"] = facts(f, extra)
    volume = contents.volume
    if volume is not None:
        out["volume"] = {
            "shape_xyz": list(volume.shape),
            "dtype": str(volume.dtype),
            "time_points": len(volume.frames),
            "time_units": volume.time_units,
            "channel_ids": list(volume.channel_ids),
            "channel_labels": list(volume.channel_labels or ()),
            "voxel_size_angstrom": _vec(volume.voxel_size),
            "origin_angstrom": _vec(volume.origin),
            "original_axis_order": list(volume.original_axis_order),
            "source_axes_units": dict(volume.source_axes_units),
            "memory_order": volume.memory_order,
        }
    out["lattices"] = [
        {
            "id": lattice.lattice_id,
            "shape_xyz": list(lattice.shape),
            "dtype": str(lattice.frames[0].dtype),
            "time_points": len(lattice.frames),
            "voxel_size_angstrom": _vec(lattice.voxel_size),
            "origin_angstrom": _vec(lattice.origin),
            # the format's own index -> Angstrom transform (SFF), checked against the volume
            "transform": (
                None
                if lattice.transform is None
                else {"name": lattice.transform_name, "matrix_3x4": list(lattice.transform)}
            ),
            "segments": [
                {"id": s.id, "name": s.name, "color": None if s.color is None else list(s.color)}
                for s in lattice.segments
            ],
        }
        for lattice in contents.lattices
    ]
    out["meshes"] = [
        {
            "id": m.set_id,
            "time_points": len(m.frames),
            "segments": sorted({seg for frame in m.frames for seg in frame}),
            "meshes": sum(len(meshes) for frame in m.frames for meshes in frame.values()),
            "named": {s.id: s.name for s in m.segments if s.name},
        }
        for m in contents.meshes
    ]
    out["geometric"] = [
        {
            "id": g.segmentation_id,
            "time_points": sorted(g.frames),
            "primitives": dict(Counter(p["kind"] for f in g.frames.values() for p in f)),
        }
        for g in contents.geometric
    ]
    return out


def describe_lines(info: dict[str, Any]) -> list[str]:
    """``describe``'s result as aligned text lines."""

    def xyz(v: list[Any] | None) -> str:
        return "not given" if v is None else " x ".join(f"{x:g}" for x in v)

    lines = [f"{'file':<22}{info['path']}", f"{'kind':<22}{info['kind']}"]
    facts = info.get("file") or {}
    if facts:
        lines.append(f"{'format':<22}{facts['format']}")
        for key, value in facts.items():
            if key != "format":
                shown = value if not isinstance(value, list) else " ".join(map(str, value))
                lines.append(f"{'  ' + key.replace('_', ' '):<22}{shown}")
    v = info.get("volume")
    if v:
        lines += [
            f"{'volume grid (x y z)':<22}{xyz(v['shape_xyz'])}  {v['dtype']}",
            f"{'voxel size (Å)':<22}{xyz(v['voxel_size_angstrom'])}",
            f"{'origin (Å)':<22}{xyz(v['origin_angstrom'])}",
            f"{'axis order':<22}{v['original_axis_order']}  (memory order {v['memory_order']})",
            f"{'time points':<22}{v['time_points']} ({v['time_units']})",
            f"{'channels':<22}{', '.join(v['channel_ids'])}",
        ]
        if any(v["channel_labels"]):
            lines.append(f"{'channel labels':<22}{', '.join(map(str, v['channel_labels']))}")
        if v["source_axes_units"]:
            units = ", ".join(f"{k}: {u}" for k, u in v["source_axes_units"].items())
            lines.append(f"{'source units':<22}{units}")
    for lat in info["lattices"]:
        named = [f"{s['id']}: {s['name']}" for s in lat["segments"] if s["name"]]
        lines += [
            f"{'lattice':<22}{lat['id']}: {xyz(lat['shape_xyz'])} {lat['dtype']}, "
            f"{lat['time_points']} time point(s), voxel size {xyz(lat['voxel_size_angstrom'])}",
            f"{'  segments':<22}{len(lat['segments'])} described"
            + (f" ({', '.join(named[:8])})" if named else ""),
        ]
        if lat.get("transform"):
            rows = lat["transform"]["matrix_3x4"]
            scale = [sum(rows[r][c] ** 2 for r in range(3)) ** 0.5 for c in range(3)]
            lines.append(
                f"{'  transform':<22}{lat['transform']['name']}: voxel size "
                f"{' x '.join(f'{x:.6g}' for x in scale)}, origin "
                f"{' x '.join(f'{row[3]:.6g}' for row in rows)} (Å)"
            )
    for mesh in info["meshes"]:
        lines.append(
            f"{'mesh set':<22}{mesh['id']}: {len(mesh['segments'])} segment(s), "
            f"{mesh['meshes']} mesh(es), {mesh['time_points']} time point(s)"
        )
    for geo in info["geometric"]:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(geo["primitives"].items()))
        lines.append(f"{'geometric':<22}{geo['id']}: {kinds}; time points {geo['time_points']}")
    return lines
