"""The meshes of an EMDB-SFF file (``segment_list/<i>/mesh_list/<j>``) as one mesh set.

Each of ``vertices``, ``normals`` (optional) and ``triangles`` is a base64 sequence with a
``mode`` (default float32, triangles uint32), an ``endianness`` (default little) and a count
(``num_vertices``…, possibly absent). The bytes may be zlib-compressed: a ``compression``
field says so, or, without one, a zlib stream is recognised when the raw length does not fit.

Vertex coordinates are in the SFF's image space: the mesh's ``transform_id`` transform (or,
without one, the first transform of ``transform_list``) maps them to Angstrom. sfftk writes the
placeholder ``[[1,0,0,1],[0,1,0,1],[0,0,1,1]]`` when it knows no transform; it is read as the
identity. Normals go through the inverse transpose of the transform and are made unit length.

Arrays are decoded when a mesh is loaded (HDF5: from the file; XML: from a scratch ``.npz``
written while the document is parsed), one mesh at a time.
"""

from __future__ import annotations

import base64
import binascii
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np

from pipeline.errors import InputFormatError
from pipeline.inputs.sff_nodes import H5Node, SffNode, XmlNode, number, segment_of, text
from pipeline.model import MeshArrays, MeshSetSource, MeshSource, Segment

__all__ = ["Hdf5Meshes", "MeshLoaders", "XmlMeshes", "mesh_set", "sff_transforms"]

_MODES = {
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
}
_PARTS = ("vertices", "normals", "triangles")
# what sfftk writes when it knows no image-to-physical transform
_SFFTK_PLACEHOLDER = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=np.float64)

RawMesh = tuple[np.ndarray, np.ndarray, np.ndarray | None]


class MeshLoaders(Protocol):
    """How a mesh node's arrays are read later (from the HDF5 file, or from scratch)."""

    def loader(self, node: SffNode, where: str) -> Callable[[], RawMesh]: ...


def decode_sequence(node: SffNode, kind: str, path: Path, where: str) -> np.ndarray:
    """One encoded sequence as an (n, 3) array of the file's dtype."""
    mode = text(node.value("mode")) or ("uint32" if kind == "triangles" else "float32")
    endianness = text(node.value("endianness")) or "little"
    if mode not in _MODES or endianness not in ("little", "big"):
        raise InputFormatError(f"{where}: {kind} mode {mode!r} / {endianness!r} unsupported", path)
    dtype = np.dtype(mode).newbyteorder("<" if endianness == "little" else ">")
    count = number(node, f"num_{kind}", path)
    # base64 of the declared rows (with zlib's worst case), or 1 GiB when no count is given
    limit = 2**30 if count is None else (count * 3 * dtype.itemsize * 101 // 100 + 1024) * 4 // 3
    data = node.value("data", limit + 4096)
    if data is None:
        raise InputFormatError(f"{where}: {kind} without data", path)
    compression = (text(node.value("compression")) or "").lower() or None
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InputFormatError(f"{where}: {kind} data is not base64: {exc}", path) from exc
    row = 3 * dtype.itemsize
    need = None if count is None else count * row
    if compression in ("zlib", "deflate"):
        try:
            raw = zlib.decompress(raw)
        except zlib.error as exc:
            raise InputFormatError(f"{where}: corrupt zlib {kind} data: {exc}", path) from exc
    elif compression not in (None, "none", "raw"):
        raise InputFormatError(f"{where}: {kind} compression {compression!r} unsupported", path)
    elif compression is None and len(raw) != need and raw[:1] == b"\x78":
        try:  # a zlib stream (header 0x78) that nothing announced
            inflated = zlib.decompress(raw)
            if need is None or len(inflated) == need:
                raw = inflated
        except zlib.error:
            pass
    if len(raw) % row or (need is not None and len(raw) != need):
        expected = f"{count} x 3 {mode}" if count is not None else f"a multiple of 3 {mode}"
        raise InputFormatError(
            f"{where}: {kind} data holds {len(raw)} bytes, not {expected} values", path
        )
    return np.frombuffer(raw, dtype=dtype).reshape(-1, 3)


def _decode_mesh(node: SffNode, path: Path, where: str) -> RawMesh:
    parts: dict[str, np.ndarray | None] = {}
    for kind in _PARTS:
        child = node.child(kind)
        if child is None and kind != "normals":
            raise InputFormatError(f"{where}: no {kind}", path)
        parts[kind] = decode_sequence(child, kind, path, where) if child is not None else None
    return parts["vertices"], parts["triangles"], parts["normals"]  # type: ignore[return-value]


def sff_transforms(root: SffNode, path: Path) -> dict[int, np.ndarray]:
    """``transform_list`` as 3x4 matrices by id, in id order."""
    out: dict[int, np.ndarray] = {}
    transform_list = root.child("transform_list")
    for node in transform_list.items() if transform_list is not None else []:
        ident = number(node, "id", path)
        ident = ident if ident is not None else int(node.key) if node.key.isdigit() else len(out)
        try:
            values = [float(v) for v in (text(node.value("data")) or "").split()]
        except ValueError as exc:
            raise InputFormatError(f"transform {ident}: data is not numbers", path) from exc
        if len(values) != 12 or not np.all(np.isfinite(values)):
            raise InputFormatError(
                f"transform {ident}: expected 12 finite numbers (3x4), got {len(values)}", path
            )
        matrix = np.array(values, dtype=np.float64).reshape(3, 4)
        out[ident] = (
            np.hstack([np.eye(3), np.zeros((3, 1))])
            if np.array_equal(matrix, _SFFTK_PLACEHOLDER)
            else matrix
        )
    return out


def _finish(raw: RawMesh, transform: np.ndarray | None, path: Path, where: str) -> MeshArrays:
    """File arrays -> model arrays: vertices in Angstrom, int32 triangles checked, unit normals."""
    vertices, triangles, normals = raw
    v = vertices.astype(np.float64)
    if transform is not None:
        v = v @ transform[:, :3].T + transform[:, 3]
    if not np.all(np.isfinite(v)):
        raise InputFormatError(f"{where}: vertices are not finite", path)
    if triangles.dtype.kind not in "iu" and not np.all(np.mod(triangles, 1) == 0):
        raise InputFormatError(f"{where}: triangle indices are not integers", path)
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(v)):
        raise InputFormatError(
            f"{where}: triangle indices {int(triangles.min())}..{int(triangles.max())} out of "
            f"range for {len(v)} vertices",
            path,
        )
    if len(v) > np.iinfo(np.int32).max:
        raise InputFormatError(f"{where}: too many vertices for int32 indices", path)
    n = None
    if normals is not None:
        if normals.shape != vertices.shape:
            raise InputFormatError(
                f"{where}: {len(normals)} normals for {len(vertices)} vertices", path
            )
        n = normals.astype(np.float64)
        if transform is not None and abs(np.linalg.det(transform[:, :3])) > 0:
            n = n @ np.linalg.inv(transform[:, :3])  # rows times the inverse transpose
        length = np.linalg.norm(n, axis=1, keepdims=True)
        n = np.divide(n, length, out=np.zeros_like(n), where=length > 0)
        n = n.astype(np.float32)
    return MeshArrays(v.astype(np.float32), triangles.astype(np.int32), n)


class Hdf5Meshes:
    """Loaders that read a mesh group from the (read-only) HDF5 file when called."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def loader(self, node: SffNode, where: str) -> Callable[[], RawMesh]:
        path, name = self.path, node.group.name  # type: ignore[attr-defined]

        def load() -> RawMesh:
            with h5py.File(path, "r") as f:
                return _decode_mesh(H5Node(f[name]), path, where)

        return load


class XmlMeshes:
    """Meshes of an XML document, decoded into scratch ``.npz`` files while it is parsed."""

    def __init__(self, path: Path, scratch: Path | None) -> None:
        self.path, self.scratch = path, scratch
        self._files: dict[int, Path] = {}

    def take(self, node: XmlNode) -> None:
        """A ``<mesh>`` element has ended: decode it (not in a dry run) and drop its text."""
        if self.scratch is not None:
            where = f"mesh {node.key or '?'}"
            vertices, triangles, normals = _decode_mesh(node, self.path, where)
            self.scratch.mkdir(parents=True, exist_ok=True)
            target = self.scratch / f"{uuid.uuid4().hex}-sff-mesh.npz"
            arrays = {"vertices": vertices, "triangles": triangles}
            if normals is not None:
                arrays["normals"] = normals
            np.savez(target, **arrays)
            self._files[id(node.element)] = target
        for part in node.element:
            if part.tag in _PARTS:  # data as an attribute (0.8.0.dev1) or as a <data> child
                part.attrib.pop("data", None)
                for data in part.iter("data"):
                    data.text = None

    def loader(self, node: SffNode, where: str) -> Callable[[], RawMesh]:
        target = self._files.get(id(node.element))  # type: ignore[attr-defined]
        path = self.path

        def load() -> RawMesh:
            if target is None:
                raise InputFormatError(f"{where}: not decoded (dry run)", path)
            with np.load(target) as z:
                return z["vertices"], z["triangles"], z.get("normals", None)

        return load


def _mesh_source(
    loader: Callable[[], RawMesh],
    mesh_id: int,
    transform: np.ndarray | None,
    path: Path,
    where: str,
) -> MeshSource:
    return MeshSource(mesh_id, lambda: _finish(loader(), transform, path, where))


def mesh_set(
    root: SffNode,
    path: Path,
    set_id: str,
    meshes: MeshLoaders,
    name: str | None,
    details: str | None,
) -> MeshSetSource | None:
    """The file's meshes as one mesh set (one time frame), None when it has none."""
    transforms = sff_transforms(root, path)
    default = next(iter(transforms.values()), None)
    by_segment: dict[int, tuple[MeshSource, ...]] = {}
    segments: list[Segment] = []
    segment_list = root.child("segment_list")
    for node in segment_list.items() if segment_list is not None else []:
        mesh_list = node.child("mesh_list")
        items = mesh_list.items() if mesh_list is not None else []
        if not items:
            continue
        segment = segment_of(node, path)
        if segment.id in by_segment:
            raise InputFormatError(f"segment id {segment.id} given twice", path)
        sources = []
        for item in items:
            mesh_id = number(item, "id", path)
            if mesh_id is None:
                mesh_id = int(item.key) if item.key.isdigit() else len(sources)
            where = f"segment {segment.id} mesh {mesh_id}"
            if any(s.id == mesh_id for s in sources):
                raise InputFormatError(f"{where}: mesh id given twice", path)
            transform_id = number(item, "transform_id", path)
            if transform_id is not None and transform_id not in transforms:
                raise InputFormatError(f"{where}: no transform {transform_id}", path)
            transform = transforms[transform_id] if transform_id is not None else default
            loader = meshes.loader(item, where)
            sources.append(_mesh_source(loader, mesh_id, transform, path, where))
        by_segment[segment.id] = tuple(sources)
        segments.append(segment)
    if not by_segment:
        return None
    return MeshSetSource(
        path=path,
        set_id=set_id,
        frames=(by_segment,),
        segments=tuple(segments),
        name=name,
        details=details,
    )
