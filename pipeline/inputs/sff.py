"""``sff`` inputs: EMDB-SFF 0.8 HDF5 (.hff) lattice segmentations, read with h5py.

Every lattice of ``lattice_list`` becomes a lattice (id = the lattice's id, or its
``segmentation_ids_mapping`` entry); segments come from ``segment_list`` with their
``three_d_volume`` value, name, description, colour and external references. Lattice data
(base64 of zlib- or un-compressed bytes, (cols, rows, sections) in Fortran order) is decoded,
streaming, into a raw scratch file and read from there region by region.
"""

from __future__ import annotations

import base64
import binascii
import uuid
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pipeline.arrays import LazyArray, RawArrayFile, ShapeOnlyArray, TransposedArray
from pipeline.errors import InputFormatError, InputNotFoundError, UnsupportedInputError
from pipeline.model import ExternalReference, ExtraData, LabelSource, Segment

__all__ = ["read_sff"]

_MODES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32"}
_STEP = 8 * 2**20


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    value = str(value).strip()
    return value or None


def _get(group: h5py.Group, name: str) -> Any:
    return group[name][()] if name in group else None


def _colour(value: Any) -> tuple[float, float, float, float] | None:
    if value is None:
        return None
    rgba = np.asarray(value).ravel()
    if rgba.size not in (3, 4):
        return None
    scale = 255.0 if rgba.dtype.kind in "iu" or rgba.max() > 1.0 else 1.0
    values = [float(v) / scale for v in rgba] + ([1.0] if rgba.size == 3 else [])
    return tuple(min(max(v, 0.0), 1.0) for v in values)  # type: ignore[return-value]


def _references(annotation: h5py.Group | None) -> tuple[ExternalReference, ...]:
    if annotation is None or "external_references" not in annotation:
        return ()
    group = annotation["external_references"]
    refs = []
    for key in sorted(group, key=lambda k: int(k) if k.isdigit() else k):
        ref = group[key]
        refs.append(
            ExternalReference(
                resource=_text(_get(ref, "resource")),
                accession=_text(_get(ref, "accession")),
                label=_text(_get(ref, "label")),
                description=_text(_get(ref, "description")),
                url=_text(_get(ref, "url")),
            )
        )
    return tuple(refs)


def _segments(f: h5py.File, path: Path) -> dict[int, list[Segment]]:
    """Segments by lattice id (``three_d_volume/lattice_id``)."""
    by_lattice: dict[int, list[Segment]] = {}
    for key in f.get("segment_list", {}):
        group = f["segment_list"][key]
        volume = group.get("three_d_volume")
        if volume is None:
            continue
        annotation = group.get("biological_annotation")
        try:
            segment_id = int(_get(group, "id") if "id" in group else key)
            value = _get(volume, "value")
            lattice = int(_get(volume, "lattice_id"))
        except (TypeError, ValueError) as exc:
            raise InputFormatError(f"segment {key}: invalid id, value or lattice_id", path) from exc
        by_lattice.setdefault(lattice, []).append(
            Segment(
                id=segment_id,
                value=int(value) if value is not None else segment_id,
                name=_text(_get(annotation, "name")) if annotation is not None else None,
                description=(
                    _text(_get(annotation, "description")) if annotation is not None else None
                ),
                color=_colour(_get(group, "colour")),
                external_references=_references(annotation),
            )
        )
    return {k: sorted(v, key=lambda s: s.id) for k, v in by_lattice.items()}


def _decode_lattice(data: bytes, target: Path, nbytes: int, path: Path) -> None:
    """base64 -> (zlib-compressed or raw) bytes -> ``target``, in bounded steps."""
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError) as exc:
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


def _lattice(group: h5py.Group, path: Path, scratch: Path | None) -> tuple[int, LazyArray]:
    try:
        lattice_id = int(_get(group, "id"))
        mode = _text(_get(group, "mode"))
        endianness = _text(_get(group, "endianness")) or "little"
        size = group["size"]
        shape = tuple(int(size[k][()]) for k in ("sections", "rows", "cols"))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputFormatError(f"lattice {group.name}: missing id, mode or size", path) from exc
    if mode not in _MODES:
        raise InputFormatError(f"lattice {lattice_id}: unsupported mode {mode!r}", path)
    dtype = np.dtype(mode).newbyteorder("<" if endianness == "little" else ">")
    xyz_shape = shape[::-1]
    if scratch is None:
        return lattice_id, ShapeOnlyArray(
            xyz_shape, dtype.newbyteorder("="), f"{path}: not decoded"
        )
    scratch.mkdir(parents=True, exist_ok=True)
    target = scratch / f"{uuid.uuid4().hex}-sff-lattice-{lattice_id}.raw"
    if "data" not in group:
        raise InputFormatError(f"lattice {lattice_id}: no data", path)
    _decode_lattice(group["data"][()], target, int(np.prod(shape)) * dtype.itemsize, path)
    # bytes are (cols, rows, sections) in Fortran order: C-order (sections, rows, cols)
    return lattice_id, TransposedArray(RawArrayFile(target, shape, dtype), (2, 1, 0))


def read_sff(path: Path, scratch: Path | None, extra: ExtraData | None = None) -> list[LabelSource]:
    """Every lattice of an EMDB-SFF HDF5 file as a :class:`LabelSource`."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError("no such file", path)
    with open(path, "rb") as head:
        xml = head.read(5) == b"<?xml"
    if path.suffix.lower() == ".sff" or xml:
        raise UnsupportedInputError("not supported yet: EMDB-SFF XML (.sff); use the .hff", path)
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
        if "lattice_list" not in f or not len(f["lattice_list"]):
            raise InputFormatError(
                "no lattice segmentation in this SFF (only lattice segmentations are read)", path
            )
        segments = _segments(f, path)
        name, details = _text(_get(f, "name")), _text(_get(f, "details"))
        sources = []
        for key in sorted(f["lattice_list"], key=lambda k: int(k) if k.isdigit() else k):
            lattice_id, data = _lattice(f["lattice_list"][key], path, scratch)
            lid = str(lattice_id)
            if extra is not None:
                lid = extra.segmentation_ids_mapping.get(lid, lid)
            sources.append(
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
    return sources
