"""``sff`` inputs: EMDB-SFF 0.8, HDF5 (.hff, read with h5py) or XML (.sff, xml.etree iterparse).

Both forms are read through one small node interface (:class:`SffNode`), so one code path maps
them into the source model:

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
from typing import Any, Protocol

import h5py
import numpy as np

from pipeline.arrays import LazyArray, RawArrayFile, ShapeOnlyArray, TransposedArray
from pipeline.errors import InputFormatError, InputNotFoundError, UnsupportedInputError
from pipeline.model import ExternalReference, ExtraData, LabelSource, MeshSetSource, Segment

__all__ = ["SffContents", "is_sff", "read_sff", "read_sff_contents"]

_MODES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32"}
_STEP = 8 * 2**20


class SffNode(Protocol):
    """A group of an SFF document: an HDF5 group or an XML element."""

    key: str

    def value(self, name: str) -> Any:
        """A field's raw value (dataset value, attribute or child text), None when absent."""
        ...

    def child(self, name: str) -> SffNode | None: ...

    def items(self) -> list[SffNode]:
        """The members of a list (``segment_list``, ``mesh_list``…), in id order."""
        ...


def _order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


class H5Node:
    def __init__(self, group: h5py.Group, key: str = "") -> None:
        self.group, self.key = group, key

    def value(self, name: str) -> Any:
        item = self.group.get(name)
        return item[()] if isinstance(item, h5py.Dataset) else None

    def child(self, name: str) -> H5Node | None:
        item = self.group.get(name)
        return H5Node(item, name) if isinstance(item, h5py.Group) else None

    def items(self) -> list[SffNode]:
        keys = sorted((k for k in self.group if isinstance(self.group[k], h5py.Group)), key=_order)
        return [H5Node(self.group[k], k) for k in keys]


class XmlNode:
    def __init__(self, element: ET.Element) -> None:
        self.element, self.key = element, element.get("id", "")

    def value(self, name: str) -> Any:
        if name in self.element.attrib:
            return self.element.attrib[name]
        child = self.element.find(name)
        if child is None:
            return None
        if len(child):  # a colour: <red/><green/><blue/>[<alpha/>]
            parts = [child.findtext(k) for k in ("red", "green", "blue", "alpha")]
            return [float(p) for p in parts if p is not None and p.strip()]
        return child.text

    def child(self, name: str) -> XmlNode | None:
        child = self.element.find(name)
        return XmlNode(child) if child is not None else None

    def items(self) -> list[SffNode]:
        nodes = [XmlNode(e) for e in self.element]
        return sorted(nodes, key=lambda n: _order(n.key))  # type: ignore[arg-type,return-value]


def text(value: Any) -> str | None:
    """A field as stripped text (None when absent or empty)."""
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    value = str(value).strip()
    return value or None


def number(node: SffNode, name: str, path: Path, kind: type = int) -> Any:
    """A numeric field or None; an unreadable one is an input error."""
    value = text(node.value(name))
    if value is None:
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except ValueError as exc:
        raise InputFormatError(f"{name} {value!r} is not a number", path) from exc


def _colour(value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    try:
        rgba = np.asarray(value, dtype=np.float64 if isinstance(value, list) else None).ravel()
    except (TypeError, ValueError):
        return None
    if rgba.size not in (3, 4) or rgba.dtype.kind not in "iuf":
        return None
    scale = 255.0 if rgba.dtype.kind in "iu" or rgba.max() > 1.0 else 1.0
    values = [float(v) / scale for v in rgba] + ([1.0] if rgba.size == 3 else [])
    return tuple(min(max(v, 0.0), 1.0) for v in values)  # type: ignore[return-value]


def _references(annotation: SffNode | None) -> tuple[ExternalReference, ...]:
    group = annotation.child("external_references") if annotation is not None else None
    if group is None:
        return ()
    return tuple(
        ExternalReference(
            resource=text(ref.value("resource")),
            accession=text(ref.value("accession")),
            label=text(ref.value("label")),
            description=text(ref.value("description")),
            url=text(ref.value("url")),
        )
        for ref in group.items()
    )


def segment_of(node: SffNode, path: Path, value: int | None = None) -> Segment:
    """The description of one ``segment_list`` member."""
    segment_id = number(node, "id", path)
    if segment_id is None:
        try:
            segment_id = int(node.key)
        except ValueError as exc:
            raise InputFormatError(f"segment {node.key!r}: no integer id", path) from exc
    annotation = node.child("biological_annotation")
    return Segment(
        id=segment_id,
        value=value if value is not None else segment_id,
        name=text(annotation.value("name")) if annotation is not None else None,
        description=text(annotation.value("description")) if annotation is not None else None,
        color=_colour(node.value("colour")),
        external_references=_references(annotation),
    )


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
    """base64 -> (zlib-compressed or raw) bytes -> ``target``, in bounded steps."""
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
                    piece = inflater.decompress(raw[start : start + _STEP])
                    out.write(piece)
                    written += len(piece)
                tail = inflater.flush()
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
    data = node.value("data")
    if data is None:
        raise InputFormatError(f"lattice {header.id}: no data", path)
    scratch.mkdir(parents=True, exist_ok=True)
    target = scratch / f"{uuid.uuid4().hex}-sff-lattice-{header.id}.raw"
    nbytes = int(np.prod(header.shape)) * header.dtype.itemsize
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


@dataclass(frozen=True, slots=True)
class SffContents:
    """What an SFF holds: its lattices and (at most one) mesh set."""

    lattices: tuple[LabelSource, ...] = ()
    meshes: tuple[MeshSetSource, ...] = ()


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


def _check_version(root: SffNode, path: Path, xml: bool) -> None:
    version = text(root.value("version")) or ""
    legacy = version.startswith(("0.5", "0.6", "0.7"))
    if xml and (legacy or root.child("segmentList") is not None):
        raise UnsupportedInputError(
            f"EMDB-SFF v{version or '0.7'} XML layout is not supported; convert it to 0.8 with "
            "sfftk",
            path,
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
    meshes: Any,
) -> SffContents:
    from pipeline.inputs.sff_meshes import mesh_set

    _check_shapes(root, path)
    name, details = text(root.value("name")), text(root.value("details"))
    mapping = extra.segmentation_ids_mapping if extra is not None else {}
    segments = _segments(root, path)
    lattices = []
    lattice_list = root.child("lattice_list")
    for node in lattice_list.items() if lattice_list is not None else []:
        lattice_id, data = _lattice(node, path, scratch, decoded.get(node.key))
        lid = mapping.get(str(lattice_id), str(lattice_id))
        lattices.append(
            LabelSource(
                path=path,
                lattice_id=lid,
                frames=(data,),
                segments=tuple(segments.get(lattice_id, ())),
                memory_order="F",
                name=name,
                details=details,
            )
        )
    set_id = mapping.get(path.stem, path.stem)
    found = mesh_set(root, path, set_id, meshes, name, details)
    if not lattices and found is None:
        raise InputFormatError(
            "no lattice or mesh segmentation in this SFF (segments without geometry)", path
        )
    return SffContents(tuple(lattices), (found,) if found is not None else ())


def _read_hdf5(path: Path, scratch: Path | None, extra: ExtraData | None) -> SffContents:
    from pipeline.inputs.sff_meshes import hdf5_meshes

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
        return _contents(root, path, scratch, extra, {}, hdf5_meshes(path, scratch))


def _iterparse(path: Path) -> Iterator[tuple[str, ET.Element]]:
    try:
        yield from ET.iterparse(path, events=("start", "end"))
    except ET.ParseError as exc:
        raise InputFormatError(f"not a valid EMDB-SFF XML file: {exc}", path) from exc


def _read_xml(path: Path, scratch: Path | None, extra: ExtraData | None) -> SffContents:
    """One streaming pass: every lattice and mesh is decoded into scratch files as soon as its
    element ends and its base64 text is dropped, so the kept tree is small."""
    from pipeline.inputs.sff_meshes import XmlMeshes

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
            stack.append(element.tag)
            continue
        stack.pop()
        parent = stack[-1] if stack else None
        if element.tag == "lattice" and parent == "lattice_list":
            node = XmlNode(element)
            if scratch is not None:
                decoded[node.key] = _decode_lattice_node(node, path, scratch)
            for data in element.iter("data"):
                data.text = None
        elif element.tag == "mesh" and parent == "mesh_list":
            meshes.take(XmlNode(element))
    assert root is not None
    xml_root = XmlNode(root)
    _check_version(xml_root, path, xml=True)
    return _contents(xml_root, path, scratch, extra, decoded, meshes)


def read_sff_contents(
    path: Path, scratch: Path | None, extra: ExtraData | None = None
) -> SffContents:
    """The lattices and meshes of an EMDB-SFF file (.hff HDF5 or .sff XML)."""
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


def read_sff(path: Path, scratch: Path | None, extra: ExtraData | None = None) -> list[LabelSource]:
    """Every lattice of an EMDB-SFF file as a :class:`LabelSource`."""
    return list(read_sff_contents(path, scratch, extra).lattices)
