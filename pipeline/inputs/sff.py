"""``sff`` inputs: EMDB-SFF 0.8, HDF5 (.hff, read with h5py) or XML (.sff, xml.etree iterparse).

Both forms are read through one small node interface (:mod:`pipeline.inputs.sff_nodes`), so one
code path maps them into the source model:

- every lattice of ``lattice_list`` becomes a lattice (id = the lattice's id, or its
  ``segmentation_ids_mapping`` entry); its segments come from ``segment_list`` with their
  ``three_d_volume`` value, name, description, colour and external references. Lattice data
  (base64 of zlib- or un-compressed bytes, (cols, rows, sections) in Fortran order) is decoded,
  streaming, into a raw scratch file and read from there region by region.
- the ``mesh_list`` of every segment becomes one mesh set (id = the file stem, or its
  ``segmentation_ids_mapping`` entry), see :mod:`pipeline.inputs.sff_meshes`.

v0.7 layouts and shape primitives are refused with a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.arrays import LazyArray, RawArrayFile, ShapeOnlyArray, TransposedArray
from pipeline.errors import InputFormatError, InputNotFoundError, UnsupportedInputError
from pipeline.inputs.compressed import check_free_space
from pipeline.inputs.ids import mapped_id
from pipeline.inputs.sff_meshes import (
    Hdf5Meshes,
    MeshLoaders,
    XmlMeshes,
    mesh_set,
    sff_transforms,
)
from pipeline.inputs.sff_nodes import H5Node, SffNode, XmlNode, number, segment_of, text
from pipeline.model import Contents, ExtraData, LabelSource, Segment
from pipeline.notices import warn

__all__ = ["is_sff", "read_sff"]

_MODES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32"}
_STEP = 8 * 2**20


def _transform_ids(root: SffNode, path: Path) -> dict[int, int]:
    """The ``three_d_volume/transform_id`` of each lattice (the first segment that gives one)."""
    out: dict[int, int] = {}
    segment_list = root.child("segment_list")
    for node in segment_list.items() if segment_list is not None else []:
        volume = node.child("three_d_volume")
        if volume is None:
            continue
        lattice = number(volume, "lattice_id", path)
        transform = number(volume, "transform_id", path)
        if lattice is not None and transform is not None:
            out.setdefault(lattice, transform)
    return out


def _lattice_transform(
    root: SffNode, node: SffNode, lattice_id: int, path: Path, chosen: int | None
) -> tuple[tuple[tuple[float, float, float, float], ...] | None, str | None]:
    """The lattice's index -> Angstrom transform (3x4 over (col, row, section) = x, y, z, with
    the lattice's ``start`` applied) and how to name it: its segments' ``transform_id``, else
    the file's only transform that is not the identity; None when the file gives none (or
    several, with a warning: its placement cannot be checked)."""
    transforms = sff_transforms(root, path)
    if chosen is not None:
        if chosen not in transforms:
            raise InputFormatError(
                f"lattice {lattice_id}: transform_id {chosen} is not in transform_list", path
            )
        matrix, name = transforms[chosen], f"transform {chosen}"
    else:
        identity = np.hstack([np.eye(3), np.zeros((3, 1))])
        candidates = {k: m for k, m in transforms.items() if not np.allclose(m, identity)}
        if not candidates:
            return None, None
        if len(candidates) > 1:
            warn(
                f"lattice {lattice_id}: {len(candidates)} transforms and no transform_id; its "
                "placement on the volume is not checked",
                path,
            )
            return None, None
        key = next(iter(candidates))
        matrix, name = candidates[key], f"transform {key} (the file's only transform)"
    start = node.child("start")
    offset = np.zeros(3)
    if start is not None:
        offset = np.array(
            [number(start, k, path) or 0 for k in ("cols", "rows", "sections")], dtype=np.float64
        )
    moved = matrix.copy()
    moved[:, 3] = matrix[:, :3] @ offset + matrix[:, 3]
    rows = tuple(tuple(float(v) for v in row) for row in moved)
    return rows, name  # type: ignore[return-value]


def _segments(root: SffNode, path: Path) -> dict[int, list[Segment]]:
    """Segments by lattice id (``three_d_volume/lattice_id``)."""
    by_lattice: dict[int, list[Segment]] = {}
    segment_list = root.child("segment_list")
    for node in segment_list.items() if segment_list is not None else []:
        volume = node.child("three_d_volume")
        if volume is None:
            continue
        try:
            lattice = number(volume, "lattice_id", path)
            value = number(volume, "value", path)
        except InputFormatError as exc:
            raise InputFormatError(f"segment {node.key}: {exc.message}", path) from None
        if lattice is None:
            raise InputFormatError(f"segment {node.key}: three_d_volume without lattice_id", path)
        by_lattice.setdefault(lattice, []).append(segment_of(node, path, value))
    return {k: sorted(v, key=lambda s: s.id) for k, v in by_lattice.items()}


def _decode_lattice(data: Any, target: Path, nbytes: int, path: Path) -> None:
    """base64 -> (zlib-compressed or raw) bytes -> ``target``, in bounded steps, stopping as
    soon as the output exceeds the ``nbytes`` the lattice's size and mode declare."""
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InputFormatError(f"lattice data is not base64: {exc}", path) from exc
    compressed = len(raw) != nbytes  # raw data has exactly the lattice's size
    written = 0
    with open(target, "wb") as out:
        if compressed:
            inflater = zlib.decompressobj()
            try:
                for start in range(0, len(raw), _STEP):
                    pending = raw[start : start + _STEP]
                    while pending:
                        # never more than one step of output, nor past the declared size
                        piece = inflater.decompress(pending, min(_STEP, nbytes - written + 1))
                        pending = inflater.unconsumed_tail
                        out.write(piece)
                        written += len(piece)
                        if written > nbytes:
                            raise InputFormatError(
                                f"lattice data decompresses to more than the {nbytes} bytes its "
                                "size and mode declare",
                                path,
                            )
                        if not piece and pending:  # pragma: no cover - zlib always progresses
                            break
                tail = inflater.flush(nbytes - written + 1)
            except zlib.error as exc:
                raise InputFormatError(f"corrupt zlib lattice data: {exc}", path) from exc
            out.write(tail)
            written += len(tail)
        else:
            out.write(raw)
            written = len(raw)
    if written != nbytes:
        raise InputFormatError(
            f"lattice data holds {written} bytes, its size and mode need {nbytes}", path
        )


def _data_limit(nbytes: int) -> int:
    """Most bytes the base64 text of a lattice of ``nbytes`` may take (zlib's worst-case
    expansion of incompressible data included)."""
    return (nbytes + nbytes // 100 + 1024) * 4 // 3 + 4096


@dataclass(frozen=True, slots=True)
class _LatticeHeader:
    id: int
    shape: tuple[int, int, int]  # (sections, rows, cols)
    dtype: np.dtype


def _lattice_header(node: SffNode, path: Path) -> _LatticeHeader:
    size = node.child("size")
    lattice_id = number(node, "id", path)
    shape: tuple[Any, ...] = (None,)
    if size is not None:
        shape = tuple(number(size, k, path) for k in ("sections", "rows", "cols"))
    if lattice_id is None or None in shape:
        raise InputFormatError(f"lattice {node.key!r}: missing id, mode or size", path)
    mode = text(node.value("mode"))
    if mode not in _MODES:
        raise InputFormatError(f"lattice {lattice_id}: unsupported mode {mode!r}", path)
    endianness = text(node.value("endianness")) or "little"
    dtype = np.dtype(mode).newbyteorder("<" if endianness == "little" else ">")
    return _LatticeHeader(lattice_id, shape, dtype)  # type: ignore[arg-type]


def _decode_lattice_node(node: SffNode, path: Path, scratch: Path) -> Path:
    """Decode a lattice's data into a raw scratch file; returns the file."""
    header = _lattice_header(node, path)
    nbytes = int(np.prod(header.shape, dtype=np.float64)) * header.dtype.itemsize
    data = node.value("data", _data_limit(nbytes))
    if data is None:
        raise InputFormatError(f"lattice {header.id}: no data", path)
    scratch.mkdir(parents=True, exist_ok=True)
    check_free_space(scratch, nbytes, path)
    target = scratch / f"{uuid.uuid4().hex}-sff-lattice-{header.id}.raw"
    _decode_lattice(data, target, nbytes, path)
    return target


def _lattice(
    node: SffNode, path: Path, scratch: Path | None, decoded: Path | None
) -> tuple[int, LazyArray]:
    header = _lattice_header(node, path)
    xyz_shape = header.shape[::-1]
    if scratch is None:
        return header.id, ShapeOnlyArray(
            xyz_shape, header.dtype.newbyteorder("="), f"{path}: not decoded"
        )
    target = decoded if decoded is not None else _decode_lattice_node(node, path, scratch)
    # bytes are (cols, rows, sections) in Fortran order: C-order (sections, rows, cols)
    return header.id, TransposedArray(RawArrayFile(target, header.shape, header.dtype), (2, 1, 0))


def is_sff(path: Path) -> bool:
    """Whether a file is an EMDB-SFF document (HDF5 with a segment list, or XML
    ``<segmentation>``), judged by its content."""
    with open(path, "rb") as head:
        start = head.read(512)
    if start.startswith(b"\x89HDF\r\n\x1a\n"):
        try:
            with h5py.File(path, "r") as f:
                return "segment_list" in f or "segments" in f
        except OSError:
            return False
    return b"<segmentation" in start


def _check_version(version: str | None, path: Path) -> None:
    """Layouts before 0.8 (camelCase XML elements) are refused."""
    if (version or "").startswith(("0.5", "0.6", "0.7")):
        raise UnsupportedInputError(
            f"EMDB-SFF v{version} XML layout is not supported; convert it to 0.8 with sfftk", path
        )


def _check_shapes(root: SffNode, path: Path) -> None:
    segment_list = root.child("segment_list")
    for node in segment_list.items() if segment_list is not None else []:
        shapes = node.child("shape_primitive_list")
        if shapes is not None and shapes.items():
            raise UnsupportedInputError(
                f"not supported: SFF shape primitives (segment {node.key})", path
            )


def _contents(
    root: SffNode,
    path: Path,
    scratch: Path | None,
    extra: ExtraData | None,
    decoded: dict[str, Path],
    meshes: MeshLoaders,
) -> Contents:
    _check_shapes(root, path)
    name, details = text(root.value("name")), text(root.value("details"))
    segments = _segments(root, path)
    transform_ids = _transform_ids(root, path)
    lattices = []
    lattice_list = root.child("lattice_list")
    for node in lattice_list.items() if lattice_list is not None else []:
        lattice_id, data = _lattice(node, path, scratch, decoded.get(node.key))
        lid = mapped_id(str(lattice_id), extra)
        transform, transform_name = _lattice_transform(
            root, node, lattice_id, path, transform_ids.get(lattice_id)
        )
        lattices.append(
            LabelSource(
                path=path,
                lattice_id=lid,
                frames=(data,),
                segments=tuple(segments.get(lattice_id, ())),
                memory_order="F",
                name=name,
                details=details,
                transform=transform,
                transform_name=transform_name,
            )
        )
    set_id = mapped_id(path.stem, extra)
    found = mesh_set(root, path, set_id, meshes, name, details)
    if not lattices and found is None:
        raise InputFormatError(
            "no lattice or mesh segmentation in this SFF (segments without geometry)", path
        )
    return Contents(lattices=tuple(lattices), meshes=(found,) if found is not None else ())


def _read_hdf5(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputFormatError(f"not an HDF5 (EMDB-SFF .hff) file: {exc}", path) from exc
    with f:
        if "lattices" in f or "segments" in f:
            raise UnsupportedInputError(
                "EMDB-SFF v0.7 layout (lattices/segments groups) is not supported; "
                "convert it to 0.8 with sfftk",
                path,
            )
        root = H5Node(f)
        return _contents(root, path, scratch, extra, {}, Hdf5Meshes(path))


def _iterparse(path: Path) -> Iterator[tuple[str, ET.Element]]:
    try:
        yield from ET.iterparse(path, events=("start", "end"))
    except ET.ParseError as exc:
        raise InputFormatError(f"not a valid EMDB-SFF XML file: {exc}", path) from exc


def _read_xml(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    """One streaming pass: every lattice and mesh is decoded into scratch files as soon as its
    element ends and its base64 text is dropped, so the kept tree is small."""
    root: ET.Element | None = None
    decoded: dict[str, Path] = {}
    meshes = XmlMeshes(path, scratch)
    stack: list[str] = []
    for event, element in _iterparse(path):
        if event == "start":
            if root is None:
                root = element
                if element.tag != "segmentation":
                    raise InputFormatError(
                        f"not an EMDB-SFF XML file (root element <{element.tag}>)", path
                    )
            if element.tag in ("segmentList", "transformList") and len(stack) == 1:
                _check_version("0.7", path)
            stack.append(element.tag)
            continue
        stack.pop()
        parent = stack[-1] if stack else None
        if element.tag == "version" and parent == "segmentation":
            _check_version(text(element.text), path)
        elif element.tag == "lattice" and parent == "lattice_list":
            node = XmlNode(element)
            if scratch is not None:
                decoded[node.key] = _decode_lattice_node(node, path, scratch)
            for data in element.iter("data"):
                data.text = None
        elif element.tag == "mesh" and parent == "mesh_list":
            meshes.take(XmlNode(element))
    assert root is not None  # iterparse raises on a document without elements
    return _contents(XmlNode(root), path, scratch, extra, decoded, meshes)


def read_sff(path: Path, scratch: Path | None, extra: ExtraData | None = None) -> Contents:
    """The lattices and (at most one) mesh set of an EMDB-SFF file (.hff HDF5 or .sff XML)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError("no such file", path)
    with open(path, "rb") as head:
        start = head.read(8)
    if start.startswith(b"\x89HDF"):
        return _read_hdf5(path, scratch, extra)
    if start.lstrip().startswith(b"<") or path.suffix.lower() == ".sff":
        return _read_xml(path, scratch, extra)
    return _read_hdf5(path, scratch, extra)  # reports "not an HDF5 file"
