"""``ometiff_image`` and ``ometiff_segmentation`` inputs: OME-TIFF read with tifffile.

The OME-XML of the first image (``Image``/``Pixels``) gives the dimension order, the sizes, the
physical sizes with their units, the channel names and the time increment. Pixels are read
lazily, strip by strip or tile by tile (``tiff_segments``: positioned reads of the segments a
region touches, decoded by tifffile; uncompressed rows are read without decoding), or, for
layouts that need more (JPEG tables, chroma subsampling), through tifffile's zarr store.
Frame ``t`` and channel ``c`` become one lazy ``[x, y, z]`` array; x varies fastest in a TIFF
page, so blocks are laid out in 'F' order.

``missing_dimensions`` (extra data ``<volume|segmentation>.dataset_specific_data.ometiff``)
names dimensions the OME-XML declares but the planes of the file do not have: they are read as
size 1 and the planes are laid out by the dimension order without them. A dimension of size 1
needs no entry.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from pipeline.arrays import region_bounds
from pipeline.db.names import validate_name
from pipeline.errors import InputFormatError, InputNotFoundError, OptionError
from pipeline.inputs.ids import named_segments
from pipeline.inputs.kinds import InputKind
from pipeline.inputs.tiff_segments import (
    PlaneSegments,
    SegmentLayout,
    read_plane_region,
    segment_layout,
)
from pipeline.inputs.units import LENGTH_SYMBOLS, angstrom_per, time_name
from pipeline.inputs.voxels import override_voxel_size, scaled_decimal
from pipeline.model import Contents, ExtraData, LabelSource, Vec3, VolumeSource
from pipeline.notices import warn

__all__ = [
    "OmeTiffLayout",
    "missing_dimensions",
    "read_ometiff_image",
    "read_ometiff_layout",
    "read_ometiff_segmentation",
]

# tifffile reports damaged structures through logging; without a handler Python's last-resort
# handler would print them next to our one-line error. Records are collected while a header is
# parsed (see _collect_log) and reach the application's handlers as usual.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

# the voxel size (Angstrom) of an OME-TIFF that gives no PhysicalSize and no extra data
DEFAULT_VOXEL_SIZE = 1.0
_DIMENSION_ORDERS = {"XYZCT", "XYZTC", "XYCTZ", "XYCZT", "XYTCZ", "XYTZC"}


@dataclass(frozen=True, slots=True)
class OmeTiffLayout:
    """What the OME-XML and the TIFF structure say about the pixels of the first image."""

    path: Path
    dimension_order: str  # OME DimensionOrder, fastest first ("XYCZT")
    sizes: dict[str, int]  # X, Y, Z, C, T as read (missing dimensions set to 1)
    declared: dict[str, int]  # X, Y, Z, C, T as the OME-XML declares them
    physical: dict[str, tuple[float | None, str]]  # X/Y/Z -> (size or None, unit symbol)
    channel_names: tuple[str | None, ...]  # per channel index (C x samples)
    time_increment: float | None
    time_unit: str | None  # OME symbol; None when the OME-XML gives no time increment
    dtype: np.dtype
    missing: tuple[str, ...]
    pixels: _TiffPixels

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        return (self.sizes["X"], self.sizes["Y"], self.sizes["Z"])

    @property
    def channels(self) -> int:
        return self.pixels.channels

    @property
    def frames(self) -> int:
        return self.sizes["T"]

    def voxel_size(self) -> Vec3 | None:
        """PhysicalSizeX/Y/Z in Angstrom; None when X or Y is not given. A missing Z of a
        single plane takes X's size (it has no extent). Unknown units are an input error."""
        values = []
        for axis in "XYZ":
            value, unit = self.physical[axis]
            if value is None and axis == "Z" and self.sizes["Z"] == 1:
                value, unit = self.physical["X"]
            if value is None:
                return None
            values.append(LayoutAxis(self.path, value, unit).angstrom(axis))
        return (values[0], values[1], values[2])

    def voxel_size_or_default(self) -> Vec3:
        """The voxel size in Angstrom, with a warning for every axis the OME-XML gives no
        PhysicalSize for: it takes the in-plane size the file gives (X, else Y), else
        :data:`DEFAULT_VOXEL_SIZE` (1 A per pixel)."""
        known = self.voxel_size()
        if known is not None:
            return known
        sizes: dict[str, float] = {}
        for axis in "XYZ":
            value, unit = self.physical[axis]
            if value is not None:
                single = LayoutAxis(self.path, value, unit)
                sizes[axis] = single.angstrom(axis)
        plane = sizes.get("X", sizes.get("Y"))
        missing = [a for a in "XYZ" if a not in sizes and not (a == "Z" and self.sizes["Z"] == 1)]
        fill = plane if plane is not None else DEFAULT_VOXEL_SIZE
        how = (
            f"taken as {fill:.6g} A, the in-plane size"
            if plane is not None
            else f"taken as {DEFAULT_VOXEL_SIZE:g} A per pixel"
        )
        warn(
            f"the OME-XML gives no PhysicalSize{'/'.join(missing)}: {how} (give the voxel "
            "size in Angstrom as voxel_size in extra data)",
            self.path,
        )
        return (sizes.get("X", fill), sizes.get("Y", fill), sizes.get("Z", fill))

    def source_axes_units(self) -> dict[str, str]:
        """The unit of each axis as the file states it; ``unknown`` for an axis without a
        PhysicalSize (its size is assumed, see :meth:`voxel_size_or_default`)."""
        units = {}
        for axis in "XYZ":
            value, unit = self.physical[axis]
            units[axis.lower()] = unit if value is not None else "unknown"
        if self.frames > 1 and self.time_unit is not None:
            units["t"] = self.time_unit
        return units


@dataclass(frozen=True, slots=True)
class LayoutAxis:
    """One PhysicalSize with its unit."""

    path: Path
    value: float
    unit: str

    def angstrom(self, axis: str) -> float:
        factor = angstrom_per(self.unit)  # OME symbols are case-sensitive
        if factor is None:
            raise InputFormatError(
                f"PhysicalSize{axis}Unit {self.unit!r} cannot be converted to Angstrom "
                f"(known: {', '.join(sorted(LENGTH_SYMBOLS))}); give the voxel size in "
                "extra data",
                self.path,
            )
        if not (math.isfinite(self.value) and self.value > 0):
            raise InputFormatError(f"PhysicalSize{axis} {self.value} is not positive", self.path)
        return scaled_decimal(self.value, factor)


class _TiffPixels:
    """The pixel data of one OME-TIFF: its planes' segments (or tifffile's zarr store).

    Opened once per process, on first use (pickling keeps only what reopens it). ``axes`` are
    tifffile's letters of the array (T, C, Z, Y, X, S for samples, ...).
    """

    def __init__(self, path: str, custom: tuple[int, tuple[int, ...], str] | None) -> None:
        self.path = path
        # None: tifffile's OME series; else (first page, leading shape, leading axes) of a
        # series laid out here because of missing dimensions
        self.custom = custom
        stat = os.stat(path)
        self.token = (path, stat.st_size, stat.st_mtime_ns, custom)
        self._lock = threading.Lock()
        self._opened = False
        self._array: Any = None  # the zarr store's array, when segments are not read here
        self.segments: SegmentLayout | None = None
        self.planes: list[PlaneSegments] = []
        self.fd = -1
        self.axes = ""
        self.shape: tuple[int, ...] = ()
        self.dtype = np.dtype("u1")
        self.channels = 1

    def __reduce__(self) -> Any:
        return (_TiffPixels, (self.path, self.custom))

    def adopt(self, tif: tifffile.TiffFile) -> None:
        """Use an already opened file (the reader's) instead of opening it again."""
        with self._lock:
            self._open(tif)

    def _open(self, tif: tifffile.TiffFile) -> None:
        series = _series(tif, self.custom)
        self.axes = series.get_axes(False)
        self.shape = tuple(series.get_shape(False))
        self.dtype = np.dtype(series.dtype)
        sizes = dict(zip(self.axes, self.shape, strict=True))
        self.channels = sizes.get("C", 1) * sizes.get("S", 1)
        layout = _uniform_segments(series, tif.byteorder, self.axes)
        if layout is not None:
            self.planes = [
                PlaneSegments(tuple(page.dataoffsets), tuple(page.databytecounts))
                for page in series.pages
            ]
            self.fd = os.open(self.path, os.O_RDONLY)
            weakref.finalize(self, os.close, self.fd)
            tif.close()
            self.segments = layout
        else:
            import zarr

            store = series.aszarr(level=0, squeeze=False)
            self._array = zarr.open_array(store, mode="r")
            weakref.finalize(self, tif.close)
        self._opened = True

    def ensure_open(self) -> None:
        with self._lock:
            if not self._opened:
                self._open(tifffile.TiffFile(self.path))

    def array(self) -> Any:
        self.ensure_open()
        return self._array

    def index(self, t: int, c: int, bounds: list[tuple[int, int]]) -> tuple[Any, ...]:
        """The zarr selection of frame ``t``, channel ``c`` and x/y/z ``bounds``."""
        samples = dict(zip(self.axes, self.shape, strict=True)).get("S", 1)
        fixed = {"T": t, "C": c // samples, "S": c % samples}
        ranges = {"X": bounds[0], "Y": bounds[1], "Z": bounds[2]}
        return tuple(slice(*ranges[a]) if a in ranges else fixed.get(a, 0) for a in self.axes)

    def read_segments(self, t: int, c: int, bounds: list[tuple[int, int]]) -> np.ndarray:
        """Frame ``t``, channel ``c``, x/y/z ``bounds`` as a ``[x, y, z]`` array (a view of a
        z, y, x array) read segment by segment."""
        layout = self.segments
        assert layout is not None
        (x0, x1), (y0, y1), (z0, z1) = bounds
        sizes = dict(zip(self.axes, self.shape, strict=True))
        samples = sizes.get("S", 1)
        fixed = {"T": t, "C": c // samples}
        leading = self.axes[: self.axes.index("Y")]
        strides = [math.prod(self.shape[i + 1 : len(leading)]) for i in range(len(leading))]
        base = sum(fixed.get(a, 0) * n for a, n in zip(leading, strides, strict=True))
        z_stride = strides[leading.index("Z")] if "Z" in leading else 0
        out = np.empty((z1 - z0, y1 - y0, x1 - x0), layout.file_dtype)
        if out.size:
            for k, z in enumerate(range(z0, z1)):
                plane = self.planes[base + z * z_stride]
                read_plane_region(
                    self.fd, layout, plane, c % samples, (y0, y1), (x0, x1), out[k]
                )
        return out.transpose(2, 1, 0)


# False: every OME-TIFF is read through tifffile's zarr store (benchmarks compare the two)
SEGMENT_READS = True


def _uniform_segments(series: Any, byteorder: str, axes: str) -> SegmentLayout | None:
    """The segment layout shared by every page of ``series``, or None (read through zarr)."""
    if not SEGMENT_READS or not axes.endswith("YXS") or any(a not in "TCZ" for a in axes[:-3]):
        return None
    keyframe = series.keyframe
    layout = segment_layout(keyframe, byteorder)
    if layout is None:
        return None
    shape = (keyframe.shaped, keyframe.compression, keyframe.dtype, keyframe.is_tiled)
    for page in series.pages:
        if page is None:
            return None
        frame = page.keyframe
        if frame is not keyframe and (
            frame.shaped,
            frame.compression,
            frame.dtype,
            frame.is_tiled,
        ) != shape:
            return None
    return layout


def _series(tif: tifffile.TiffFile, custom: tuple[int, tuple[int, ...], str] | None) -> Any:
    if custom is None:
        return tif.series[0]
    first, shape, axes = custom
    keyframe = tif.pages[first]
    count = math.prod(shape)
    pages = [tif.pages[first + i] for i in range(count)]
    return tifffile.TiffPageSeries(
        pages,
        shape=(*shape, *keyframe.shape),
        dtype=keyframe.dtype,
        axes=axes + keyframe.axes,
        parent=tif,
        kind="ome",
    )


class OmeTiffArray:
    """Frame ``t``, channel ``c`` of an OME-TIFF as a lazy ``[x, y, z]`` array."""

    def __init__(
        self, pixels: _TiffPixels, t: int, c: int, shape: tuple[int, int, int], dtype: np.dtype
    ) -> None:
        self.pixels = pixels
        self.t = t
        self.c = c
        self.shape = shape
        self.dtype = np.dtype(dtype).newbyteorder("=")
        self.ndim = 3

    def __dask_tokenize__(self) -> Any:
        return ("ometiff", *self.pixels.token, self.t, self.c)

    def __getitem__(self, key: Any) -> np.ndarray:
        bounds = region_bounds(key, self.shape)
        self.pixels.ensure_open()
        if self.pixels.segments is not None:
            try:
                data = self.pixels.read_segments(self.t, self.c, bounds)
            except (ValueError, OSError, NotImplementedError, tifffile.TiffFileError) as exc:
                raise InputFormatError(
                    f"cannot read the pixels of frame {self.t}, channel {self.c}: {exc}",
                    self.pixels.path,
                ) from exc
            return data.astype(self.dtype, copy=False)
        array = self.pixels.array()
        selection = self.pixels.index(self.t, self.c, bounds)
        try:
            data = np.asarray(array[selection])
        except Exception as exc:  # a damaged strip or tile: the library's error, one line
            raise InputFormatError(
                f"cannot read the pixels of frame {self.t}, channel {self.c}: {exc}",
                self.pixels.path,
            ) from exc
        kept = [a for a, s in zip(self.pixels.axes, selection, strict=True) if isinstance(s, slice)]
        for axis in "XYZ":  # a spatial dimension the pixels lack (missing_dimensions): length 1
            if axis not in kept:
                data = np.expand_dims(data, -1)
                kept.append(axis)
        data = np.transpose(data, [kept.index(a) for a in "XYZ"])
        return data.astype(self.dtype, copy=False)


@contextlib.contextmanager
def _collect_log() -> Iterator[list[logging.LogRecord]]:
    """tifffile's log records while the block runs (not passed on)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tifffile")
    handler = _Keep(logging.DEBUG)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((e for e in element if _local(e.tag) == name), None)


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element if _local(e.tag) == name]


def _number(pixels: ET.Element, name: str, path: Path, kind: type = float) -> Any:
    text = pixels.get(name)
    if text is None:
        return None
    try:
        return kind(text)
    except ValueError:
        raise InputFormatError(f"OME-XML: {name}={text!r} is not a number", path) from None


def _pixels_element(xml: str, path: Path) -> ET.Element:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise InputFormatError(f"invalid OME-XML: {exc}", path) from None
    image = _child(root, "Image")
    pixels = _child(image, "Pixels") if image is not None else None
    if pixels is None:
        binary_only = _child(root, "BinaryOnly")
        if binary_only is not None:  # a multi-file set: the metadata is in a companion file
            companion = binary_only.get("MetadataFile") or "(not named)"
            raise InputFormatError(
                f"a BinaryOnly OME-TIFF: its metadata is in the companion file {companion!r}; "
                "give the OME-TIFF that holds the full OME-XML",
                path,
            )
        raise InputFormatError("OME-XML has no Image/Pixels element", path)
    images = _children(root, "Image")
    if len(images) > 1:
        names = ", ".join(repr(i.get("Name") or i.get("ID")) for i in images[1:4])
        more = ", ..." if len(images) > 4 else ""
        warn(
            f"{len(images)} images in the OME-XML: only the first "
            f"({image.get('Name') or image.get('ID')!r}) is read; {len(images) - 1} ignored "
            f"({names}{more})",
            path,
        )
    return pixels


def _own_uuid(xml: str) -> str | None:
    """The ``UUID`` attribute of the OME root (``urn:uuid:...``), None without one."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    value = root.get("UUID")
    return value.strip() if value else None


def missing_dimensions(extra: ExtraData | None, section: str) -> tuple[str, ...]:
    """``<section>.dataset_specific_data.ometiff.missing_dimensions`` validated: letters among
    T, C, Z (upper or lower case)."""
    if extra is None:
        return ()
    if section == "volume":
        specific = extra.volume_dataset_specific
    else:
        specific = extra.segmentation_dataset_specific
    ometiff = specific.get("ometiff", {})
    where = f"{section}.dataset_specific_data.ometiff"
    if not isinstance(ometiff, dict):
        raise InputFormatError(f"{where} must be a JSON object", extra.path)
    value = ometiff.get("missing_dimensions", [])
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v.upper() in ("T", "C", "Z") for v in value
    ):
        raise InputFormatError(
            f"{where}.missing_dimensions must be a list of dimension letters among T, C, Z "
            f"(X and Y cannot be missing), got {value!r}",
            extra.path,
        )
    return tuple(dict.fromkeys(v.upper() for v in value))


def _check_data_in_file(series: Any, path: Path) -> None:
    """Every strip or tile of the series lies inside the file (a truncated file is an error)."""
    size = os.path.getsize(path)
    for n, page in enumerate(series.pages):
        if page is None:
            raise InputFormatError(f"truncated or damaged: plane {n} of the image is missing", path)
        ends = [o + b for o, b in zip(page.dataoffsets, page.databytecounts, strict=True) if b]
        if ends and max(ends) > size:
            raise InputFormatError(
                f"truncated: the pixel data of plane {n} ends at byte {max(ends)} but the "
                f"file has {size}",
                path,
            )


def read_ometiff_layout(path: Path, missing: tuple[str, ...] = ()) -> OmeTiffLayout:
    """Open an OME-TIFF (read-only), parse its OME-XML and check its planes against it."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file", path)
    if not path.is_file():
        raise InputNotFoundError("not a file", path)
    with _collect_log() as log:
        try:
            tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, ValueError, OSError, EOFError) as exc:
            raise InputFormatError(f"not a readable TIFF file ({exc})", path) from None
        try:
            layout = _layout(tif, path, missing, log)
        except BaseException:
            tif.close()
            raise
    return layout


def _damage(log: list[logging.LogRecord]) -> str | None:
    errors = [r.getMessage() for r in log if r.levelno >= logging.ERROR]
    return errors[0] if errors else None


def _layout(
    tif: tifffile.TiffFile, path: Path, missing: tuple[str, ...], log: list[logging.LogRecord]
) -> OmeTiffLayout:
    try:
        npages = len(tif.pages)
        xml = tif.ome_metadata
    except (tifffile.TiffFileError, ValueError, OSError, EOFError, IndexError) as exc:
        raise InputFormatError(f"damaged TIFF structure: {exc}", path) from None
    damage = _damage(log)
    if damage is not None:
        raise InputFormatError(f"truncated or damaged TIFF: {damage}", path)
    if xml is None:
        raise InputFormatError(
            "not an OME-TIFF: the first image description holds no OME-XML (plain TIFF is not "
            "accepted as ometiff input)",
            path,
        )
    pixels = _pixels_element(xml, path)
    declared = {}
    for axis in "XYZCT":
        value = _number(pixels, f"Size{axis}", path, int)
        if value is None or value < 1:
            raise InputFormatError(f"OME-XML: Size{axis} is missing or not positive", path)
        declared[axis] = value
    order = pixels.get("DimensionOrder", "")
    if order not in _DIMENSION_ORDERS:
        raise InputFormatError(f"OME-XML: unknown DimensionOrder {order!r}", path)
    sizes = {a: (1 if a in missing else n) for a, n in declared.items()}
    channel_elements = _children(pixels, "Channel")
    samples = 1
    if channel_elements:
        samples = _number(channel_elements[0], "SamplesPerPixel", path, int) or 1
    if sizes["C"] % samples:
        raise InputFormatError(
            f"OME-XML: SizeC={sizes['C']} is not a multiple of SamplesPerPixel={samples}", path
        )
    planes = sizes["Z"] * sizes["C"] // samples * sizes["T"]
    own = _own_uuid(xml)
    for block in _children(pixels, "TiffData"):
        uuid = _child(block, "UUID")
        name = uuid.get("FileName") if uuid is not None else None
        # a renamed file still names itself by its UUID: planes with the file's own UUID
        # are in this file whatever FileName says
        same = uuid is not None and own is not None and (uuid.text or "").strip() == own
        if name and Path(name).name != path.name and not same:
            raise InputFormatError(f"multi-file OME-TIFF (planes in {name}) is not supported", path)
    tiff_data = _child(pixels, "TiffData")
    first = (_number(tiff_data, "IFD", path, int) or 0) if tiff_data is not None else 0
    if first + planes > npages:
        hint = (
            "; name dimensions the planes do not have in "
            "dataset_specific_data.ometiff.missing_dimensions of extra data"
            if not missing
            else ""
        )
        raise InputFormatError(
            f"the OME-XML declares {planes} planes (Z={sizes['Z']}, C={sizes['C']}, "
            f"T={sizes['T']}{', missing: ' + ''.join(missing) if missing else ''}) from page "
            f"{first}, but the file has {npages} pages: truncated, or a multi-file "
            f"OME-TIFF{hint}",
            path,
        )
    custom = None
    if any(declared[a] > 1 for a in missing):
        # C-order of the planes: the dimension order reversed, without X, Y and missing ones
        lead = "".join(a for a in reversed(order[2:]) if a not in missing)
        per_plane = {"Z": sizes["Z"], "C": sizes["C"] // samples, "T": sizes["T"]}
        custom = (first, tuple(per_plane[a] for a in lead), lead)
    handle = _TiffPixels(str(path), custom)
    try:
        _check_data_in_file(_series(tif, custom), path)
        handle.adopt(tif)  # closes ``tif`` unless its zarr store reads the pixels
    except InputFormatError:
        raise
    except Exception as exc:  # tifffile refusing the layout
        raise InputFormatError(f"cannot lay out the OME-TIFF planes: {exc}", path) from None
    damage = _damage(log)
    if damage is not None:
        raise InputFormatError(f"truncated or damaged TIFF: {damage}", path)
    got = dict(zip(handle.axes, handle.shape, strict=True))
    extra_axes = [f"{a}={n}" for a, n in got.items() if a not in "TCZYXS" and n > 1]
    if extra_axes:
        raise InputFormatError(f"unsupported dimension(s) {', '.join(extra_axes)}", path)
    if got.get("S", 1) > 1 and got.get("C", 1) > 1:
        raise InputFormatError(
            f"{got['C']} channels of {got['S']} samples each are not supported", path
        )
    got["C"] = handle.channels
    for axis in "XYZCT":
        if got.get(axis, 1) != sizes[axis]:
            raise InputFormatError(
                f"the pixel data has {axis}={got.get(axis, 1)} but the OME-XML says "
                f"Size{axis}={sizes[axis]}",
                path,
            )
    dtype = np.dtype(handle.dtype).newbyteorder("=")
    if dtype.kind not in "iuf":
        raise InputFormatError(f"pixel type {dtype} is not supported (integers or floats)", path)
    names = [e.get("Name") for e in channel_elements]
    channels = handle.channels
    labels = tuple(names) if len(names) == channels else (None,) * channels
    physical = {
        axis: (_number(pixels, f"PhysicalSize{axis}", path), pixels.get(f"PhysicalSize{axis}Unit"))
        for axis in "XYZ"
    }
    return OmeTiffLayout(
        path=path,
        dimension_order=order,
        sizes=sizes,
        declared=declared,
        physical={a: (v, u or "\u00b5m") for a, (v, u) in physical.items()},
        channel_names=labels,
        time_increment=_number(pixels, "TimeIncrement", path),
        time_unit=pixels.get("TimeIncrementUnit")
        or ("s" if pixels.get("TimeIncrement") is not None else None),
        dtype=dtype,
        missing=missing,
        pixels=handle,
    )


def _arrays(layout: OmeTiffLayout) -> list[list[OmeTiffArray]]:
    return [
        [
            OmeTiffArray(layout.pixels, t, c, layout.shape_xyz, layout.dtype)
            for c in range(layout.channels)
        ]
        for t in range(layout.frames)
    ]


def _mapped(
    mapping: dict[str, str], keys: list[str], default: str, what: str, extra: ExtraData | None
) -> str:
    """The first of ``keys`` found in ``mapping`` (a valid name), else ``default``."""
    for key in keys:
        if key in mapping:
            try:
                return validate_name(mapping[key], what)
            except OptionError as exc:
                raise InputFormatError(exc.message, extra.path if extra else None) from None
    return default


def _stem(path: Path) -> str:
    """The file name without its registered OME-TIFF ending (else without its last suffix)."""
    name = path.name
    for suffix in InputKind.OMETIFF_IMAGE.info.suffixes:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return path.stem


def _time_units(layout: Any) -> str:
    """The frames' time unit (``millisecond``, the metadata default, when the file says none)."""
    if layout.time_unit is None:
        return "millisecond"
    return time_name(layout.time_unit) or layout.time_unit


def _voxel(
    layout: OmeTiffLayout, given: Vec3 | None, extra: ExtraData | None, section: str
) -> Vec3:
    """Extra data's voxel size (with a warning when the file declares another), else the
    file's, else its documented default (with a warning)."""
    if given is not None:
        try:
            declared = layout.voxel_size()
        except InputFormatError:  # a unit that is not a length (``pixel``): nothing declared
            declared = None
        where = extra.path if extra is not None else None
        override_voxel_size(declared, given, layout.path, where, f"{section}.voxel_size")
        return given
    return layout.voxel_size_or_default()


def read_ometiff_image(
    path: Path, scratch: Path | None, extra: ExtraData | None = None
) -> Contents:
    """An OME-TIFF as a volume: ``frames[t][c]`` lazy ``[x, y, z]`` arrays.

    Channel ids: ``volume.channel_ids_mapping`` keyed by the channel index (``"0"``) or its
    OME name, else the index; labels are the OME channel names. Voxel size: extra data's
    ``volume.voxel_size`` (Angstrom), else the OME physical sizes converted to Angstrom.
    """
    layout = read_ometiff_layout(path, missing_dimensions(extra, "volume"))
    mapping = extra.channel_ids_mapping if extra is not None else {}
    ids = tuple(
        _mapped(mapping, [str(c), name or str(c)], str(c), "channel id", extra)
        for c, name in enumerate(layout.channel_names)
    )
    if len(set(ids)) != len(ids):
        raise InputFormatError(
            f"channel ids {list(ids)} are not unique (volume.channel_ids_mapping)",
            extra.path if extra else path,
        )
    voxel = _voxel(layout, extra.volume_voxel_size if extra is not None else None, extra, "volume")
    volume = VolumeSource(
        path=Path(path),
        frames=tuple(tuple(frame) for frame in _arrays(layout)),
        channel_ids=ids,
        voxel_size=voxel,
        origin=(0.0, 0.0, 0.0),
        time_units=_time_units(layout),
        channel_labels=layout.channel_names,
        source_axes_units=layout.source_axes_units(),
        memory_order="F",
    )
    return Contents(volume=volume)


def read_ometiff_segmentation(
    path: Path, scratch: Path | None, extra: ExtraData | None = None
) -> Contents:
    """Every channel of an OME-TIFF as one lattice (its frames from T); label values are the
    segment ids.

    Lattice id: ``segmentation.segmentation_ids_mapping`` keyed by the default id, the
    channel index (``"0"``) or its OME name; the default id is the file name without
    ``.ome.tif`` for one channel, ``<that>_<index>`` for several.
    """
    layout = read_ometiff_layout(path, missing_dimensions(extra, "segmentation"))
    mapping = extra.segmentation_ids_mapping if extra is not None else {}
    stem = _stem(Path(path))
    voxel = extra.segmentation_voxel_size if extra is not None else None
    if voxel is not None or layout.voxel_size() is not None:
        voxel = _voxel(layout, voxel, extra, "segmentation")
    arrays = _arrays(layout)
    lattices = []
    for c, name in enumerate(layout.channel_names):
        default = stem if layout.channels == 1 else f"{stem}_{c}"
        keys = [default, str(c)] + ([name] if name else [])
        lattice_id = _mapped(mapping, keys, default, "lattice id", extra)
        segments = named_segments(lattice_id, extra)
        lattices.append(
            LabelSource(
                path=Path(path),
                lattice_id=lattice_id,
                frames=tuple(frame[c] for frame in arrays),
                segments=segments,
                voxel_size=voxel,
                origin=(0.0, 0.0, 0.0) if voxel is not None else None,
                memory_order="F",
                time_units=_time_units(layout),
            )
        )
    return Contents(lattices=tuple(lattices))


def ometiff_facts(path: Path, extra: ExtraData | None = None) -> dict[str, Any]:
    """What the OME-XML and the TIFF structure say, as stored (for ``inspect``; the general form
    of the seed's check_ometiff_dimensions.py); no pixel is read."""
    missing = missing_dimensions(extra, "volume")
    layout = read_ometiff_layout(path, missing)
    with _collect_log(), tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        pages, axes, shape = len(tif.pages), series.axes, list(series.shape)
    return {
        "format": "OME-TIFF",
        "dimension_order": layout.dimension_order,
        "declared_sizes": dict(layout.declared),
        "missing_dimensions": list(layout.missing),
        "pages": pages,
        "tiff_series_axes": axes,
        "tiff_series_shape": shape,
        "pixel_type": layout.dtype.str,
        "physical_sizes": {a: list(v) for a, v in layout.physical.items()},
        "channel_names": list(layout.channel_names),
    }
