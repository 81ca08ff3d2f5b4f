"""Mesh sets and geometric segmentations of an entry, written beside the NGFF image.

NGFF has no place for surfaces or primitives, so they go to plain files inside the output
folder (zarr ignores folders without ``zarr.json``)::

    meshes/index.json                         every mesh set, frame and segment (see docs/export.md)
    meshes/<set id>/<frame>/<segment id>.ply  detail level 1 of the segment, its meshes merged
    geometric/<segmentation id>.json          primitives (Å) with the segments' names and colours

Mesh coordinates are the entry's, in Å, ``x, y, z`` (the image's physical space, whose axes
the image lists in ``z, y, x`` order). One segment's meshes are in memory at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.db.entry import Entry
from pipeline.db.layout import mesh_key
from pipeline.export.entry_view import EntryView, MeshSetView, SegmentInfo

__all__ = ["write_geometric", "write_meshes"]


def _segment_doc(segment: SegmentInfo | None) -> dict[str, Any]:
    if segment is None:
        return {}
    return {
        "name": segment.name,
        "color": list(segment.color) if segment.color is not None else None,
        "references": list(segment.references),
    }


def _merged(entry: Entry, set_id: str, t: int, segment: int, detail: int, mesh_ids: Any) -> Any:
    """(vertices, triangles, normals) of a segment's meshes at one detail level, merged."""
    vertices, triangles, normals = [], [], []
    offset = 0
    for mesh_id in mesh_ids:
        group = mesh_key(set_id, t, segment, detail, mesh_id)
        v = np.asarray(entry.root[f"{group}/vertices"][...], dtype=np.float32)
        f = np.asarray(entry.root[f"{group}/triangles"][...], dtype=np.int64)
        try:
            n = np.asarray(entry.root[f"{group}/normals"][...], dtype=np.float32)
        except KeyError:
            n = np.zeros_like(v)
        vertices.append(v)
        triangles.append(f + offset)
        normals.append(n if n.shape == v.shape else np.zeros_like(v))
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(triangles), np.concatenate(normals)


def _write_set(entry: Entry, mesh_set: MeshSetView, root: Path) -> dict[str, Any]:
    import trimesh

    by_id = {s.segment_id: s for s in mesh_set.segments}
    frames: dict[str, list[dict[str, Any]]] = {}
    for t, segments in sorted(mesh_set.timeframes.items()):
        items = []
        for segment_id, details in sorted(segments.items()):
            if not details:
                continue
            detail = min(details)
            v, f, n = _merged(entry, mesh_set.set_id, t, segment_id, detail, details[detail])
            mesh = trimesh.Trimesh(vertices=v, faces=f, vertex_normals=n, process=False)
            info = by_id.get(segment_id)
            if info is not None and info.color is not None:
                rgba = np.round(np.clip(info.color, 0, 1) * 255).astype(np.uint8)
                mesh.visual.vertex_colors = np.tile(rgba, (len(v), 1))
            relative = f"{mesh_set.set_id}/{t}/{segment_id}.ply"
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(mesh.export(file_type="ply", encoding="binary"))
            items.append(
                {
                    "segment_id": segment_id,
                    "file": relative,
                    "detail_level": detail,
                    "vertices": len(v),
                    "triangles": len(f),
                    **_segment_doc(info),
                }
            )
        frames[str(t)] = items
    return {"segmentation_id": mesh_set.set_id, "frames": frames}


def write_meshes(entry: Entry, view: EntryView, out: Path) -> int:
    """Every mesh set as PLY files plus ``meshes/index.json``; returns the number of files."""
    if not view.mesh_sets:
        return 0
    root = out / "meshes"
    root.mkdir()
    sets = [_write_set(entry, mesh_set, root) for mesh_set in view.mesh_sets]
    index = {
        "format": "ply",
        "units": "angstrom",
        "coordinates": "x, y, z (the entry's physical space)",
        "detail_level": "the finest stored (1: the mesh as given)",
        "mesh_sets": sets,
    }
    (root / "index.json").write_text(json.dumps(index, indent=1))
    return sum(len(items) for s in sets for items in s["frames"].values())


def write_geometric(entry: Entry, view: EntryView, out: Path) -> int:
    """Every geometric segmentation as ``geometric/<id>.json``; returns the number of files."""
    if not view.geometric_ids:
        return 0
    root = out / "geometric"
    root.mkdir()
    count = 0
    for sid in view.geometric_ids:
        segments = {s.segment_id: s for s in view.geometric_segments.get(sid, ())}
        primitives = view.geometric_primitives.get(sid, {})
        ids = view.geometric_primitive_ids.get(sid, ())
        annotated = [{"segment_id": i, **_segment_doc(segments.get(i))} for i in sorted(ids)]
        (root / f"{sid}.json").write_text(
            json.dumps(
                {
                    "segmentation_id": sid,
                    "units": "angstrom",
                    "coordinates": "x, y, z (the entry's physical space)",
                    "primitives": primitives,
                    "segments": annotated,
                },
                indent=1,
            )
        )
        count += 1
    return count
