"""The two forms of an EMDB-SFF 0.8 document behind one small interface.

An HDF5 group (``.hff``) and an XML element (``.sff``) both answer :meth:`SffNode.value` (a
field: dataset value, attribute or child text), :meth:`SffNode.child` and
:meth:`SffNode.items` (the members of a list), so the lattice and mesh readers have one code
path for both; plus the field helpers and the segment description they share.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from pipeline.errors import InputFormatError
from pipeline.inputs.limits import checked_int, shortened
from pipeline.model import ExternalReference, Segment

__all__ = [
    "FIELD_LIMIT",
    "H5Node",
    "SffNode",
    "XmlNode",
    "check_declared_size",
    "number",
    "segment_of",
    "text",
]


class SffNode(Protocol):
    """A group of an SFF document: an HDF5 group or an XML element."""

    key: str

    def value(self, name: str, limit: int | None = None) -> Any:
        """A field's raw value (dataset value, attribute or child text), None when absent;
        an HDF5 dataset declaring more than ``limit`` bytes is refused."""
        ...

    def child(self, name: str) -> SffNode | None: ...

    def items(self) -> list[SffNode]:
        """The members of a list (``segment_list``, ``mesh_list``…), in id order."""
        ...


def _order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


# a name, details, mode or other text field of an SFF; lattice and mesh data pass their own
FIELD_LIMIT = 16 * 2**20


def check_declared_size(item: h5py.Dataset, limit: int) -> None:
    """Refuse a dataset whose declared size (elements x element size) exceeds ``limit``."""
    declared = int(np.prod(item.shape, dtype=np.float64)) * item.dtype.itemsize
    if declared > limit:
        raise InputFormatError(
            f"dataset {item.name} declares {declared} bytes, more than the {limit} bytes such "
            "a field may hold",
            item.file.filename,
        )


class H5Node:
    def __init__(self, group: h5py.Group, key: str = "") -> None:
        self.group, self.key = group, key

    def value(self, name: str, limit: int | None = None) -> Any:
        """A dataset's value, refused (naming it) when it declares more than ``limit`` bytes
        (default: :data:`FIELD_LIMIT`; a compressed dataset could expand to any size)."""
        item = self.group.get(name)
        if not isinstance(item, h5py.Dataset):
            return None
        check_declared_size(item, FIELD_LIMIT if limit is None else limit)
        return item[()]

    def child(self, name: str) -> H5Node | None:
        item = self.group.get(name)
        return H5Node(item, name) if isinstance(item, h5py.Group) else None

    def items(self) -> list[SffNode]:
        keys = sorted((k for k in self.group if isinstance(self.group[k], h5py.Group)), key=_order)
        return [H5Node(self.group[k], k) for k in keys]


class XmlNode:
    def __init__(self, element: ET.Element) -> None:
        self.element, self.key = element, element.get("id", "")

    def value(self, name: str, limit: int | None = None) -> Any:  # text already in memory
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


def number(node: SffNode, name: str, path: Path) -> int | None:
    """An integer field (written ``85`` or ``85.``) or None; an unreadable one is an input
    error."""
    value = text(node.value(name))
    if value is None:
        return None
    if value.lstrip("+-").isdigit():
        return checked_int(value, name, path)
    try:
        whole = int(float(value))
    except (ValueError, OverflowError) as exc:
        raise InputFormatError(f"{name} {shortened(value)!r} is not a number", path) from exc
    return checked_int(whole, name, path)


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
