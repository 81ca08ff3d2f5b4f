"""Triangle mesh files (STL, OBJ, PLY, OFF, glTF/GLB) read with trimesh into a mesh set.

Segmentation tools (IMOD, Amira, ChimeraX, Blender, 3D Slicer) export surfaces in these formats;
each file becomes one mesh set (id = file stem, or its ``segmentation_ids_mapping`` entry)
whose segments are the file's objects (OBJ ``o`` groups, glTF nodes; one for STL/PLY/OFF), with
their node transforms applied. Coordinates are taken as Angstrom (these formats carry no
unit; ChimeraX and IMOD export scene coordinates in Angstrom).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import InputFormatError
from pipeline.inputs.ids import mapped_id
from pipeline.inputs.kinds import MESH_SUFFIXES  # the kind's registered suffixes
from pipeline.model import ExtraData, MeshArrays, MeshSetSource, MeshSource, Segment

__all__ = ["MESH_SUFFIXES", "read_mesh_file"]

def _arrays(mesh: object) -> MeshArrays:
    vertices = np.asarray(mesh.vertices, dtype=np.float32)  # type: ignore[attr-defined]
    triangles = np.asarray(mesh.faces, dtype=np.int32)  # type: ignore[attr-defined]
    return MeshArrays(np.ascontiguousarray(vertices), np.ascontiguousarray(triangles))


def read_mesh_file(path: Path, extra: ExtraData | None = None) -> MeshSetSource:
    """One mesh set from a mesh file: a segment per object, in the file's order."""
    import trimesh

    path = Path(path)
    try:
        scene = trimesh.load(str(path), force="scene", split_object=True, group_material=False)
        meshes = scene.dump()
    except Exception as exc:  # trimesh raises many kinds of errors for damaged files
        raise InputFormatError(f"cannot read the mesh file: {exc}", path) from None
    order = {name: i for i, name in enumerate(scene.geometry)}
    named = sorted(
        (
            (order.get(m.metadata.get("name"), len(order)), str(m.metadata.get("name") or ""), m)
            for m in meshes
            if len(m.faces)
        ),
        key=lambda item: item[0],
    )
    if not named:
        raise InputFormatError("no triangles in the mesh file", path)
    set_id = mapped_id(path.stem, extra)
    segments, frame = [], {}
    for index, (_, name, mesh) in enumerate(named, start=1):
        arrays = _arrays(mesh)
        if not np.isfinite(arrays.vertices).all():
            raise InputFormatError(f"object {name or index}: vertices are not finite", path)
        label = name if name and name != path.name else None
        segments.append(Segment(id=index, name=label))
        frame[index] = (MeshSource(id=0, load=lambda arrays=arrays: arrays),)
    return MeshSetSource(path=path, set_id=set_id, frames=(frame,), segments=tuple(segments))
