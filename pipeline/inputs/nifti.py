"""NIfTI-1 and NIfTI-2 images (``nii_volume``, ``nii_segmentation``): header rules, lazy data.

Voxels are read through nibabel's :class:`~nibabel.arrayproxy.ArrayProxy` region by region
(never the whole image, never memory-mapped). A compressed image (``.nii.gz``) is first
decompressed, streaming, into the scratch folder, because slicing a gzip stream decompresses it
from the start for every region; without scratch (dry run, ``inspect``) only its header is read.

Geometry (docs/inputs.md): the affine (sform, else qform, else pixdim alone) gives the voxel
size, the origin and the orientation. Array axes i, j, k are reordered and flipped, lazily, to
the nearest world axes x, y, z (RAS+, as ``nibabel.as_closest_canonical`` does), so that index
order follows the world axes; the rotation of an oblique affine is dropped. Lengths are
converted to Angstrom with the spatial unit of ``xyzt_units`` (unknown is read as millimetre).
"""

from __future__ import annotations

import io
import math
import os
import struct
import zlib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.nifti1 import Nifti1Header
from nibabel.nifti2 import Nifti2Header
from nibabel.orientations import io_orientation
from nibabel.spatialimages import HeaderDataError, HeaderTypeError
from nibabel.wrapstruct import WrapStructError

from pipeline.arrays import LazyArray, ShapeOnlyArray, TransposedArray
from pipeline.errors import InputFormatError, UnsupportedInputError
from pipeline.inputs.compressed import detect_compression, open_input, open_stream
from pipeline.inputs.ids import named_segments
from pipeline.inputs.mask import mask_lattice_id
from pipeline.inputs.units import angstrom_per, length_name, time_name
from pipeline.inputs.voxels import override_voxel_size, scaled_decimal
from pipeline.model import Contents, ExtraData, LabelSource, Vec3, VolumeSource
from pipeline.notices import warn

__all__ = [
    "NiftiFrame",
    "NiftiLayout",
    "nifti_frames",
    "read_nifti_layout",
    "read_nifti_segmentation",
    "read_nifti_volume",
]

# xyzt_units' temporal codes that are not times (pipeline.inputs.units holds the times)
_OTHER_T_UNITS = {"hz": "hertz", "ppm": "ppm", "rads": "radian/second"}
_DEFAULT_TIME_UNITS = "millisecond"  # the model's default, for unknown time units
_HEADER_CLASSES = {348: Nifti1Header, 540: Nifti2Header}
_SINGLE_FILE_MAGIC = (b"n+1", b"n+2")
_PAIR_MAGIC = (b"ni1", b"ni2")


@dataclass(frozen=True, slots=True)
class NiftiLayout:
    """What the header says: where the voxels are and how they map to ``[x, y, z]``."""

    source: Path  # the user's file
    data_path: Path | None  # where voxels are read from (a decompressed copy for .gz/.bz2)
    spec: tuple[Any, ...]  # ArrayProxy spec: shape, file dtype, offset, slope, inter
    spatial_shape: tuple[int, int, int]  # along array axes i, j, k
    frames: int  # length of the 4th (time) axis, 1 for a 3-D image
    dtype: np.dtype  # of the values read: native byte order, float when scaled
    axis_order: tuple[int, int, int]  # world axis (0 x, 1 y, 2 z) of array axes i, j, k
    flips: tuple[bool, bool, bool]  # array axes running against their world axis
    voxel_size: Vec3  # Angstrom, [x, y, z]
    origin: Vec3  # Angstrom, world position of output sample [0, 0, 0]
    spatial_unit: str  # xyzt_units' spatial code as nibabel names it ("mm", "unknown", ...)
    time_unit: str

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        return tuple(self.spatial_shape[a] for a in self.permutation)  # type: ignore[return-value]

    @property
    def permutation(self) -> tuple[int, int, int]:
        """The array axis of x, y and z."""
        return tuple(self.axis_order.index(w) for w in range(3))  # type: ignore[return-value]

    @property
    def memory_order(self) -> str:
        """'F' when x is array axis i (the fastest in the file), else 'C'."""
        return "F" if self.permutation[0] == 0 else "C"

    @property
    def time_units(self) -> str:
        return _t_name(self.time_unit) or _DEFAULT_TIME_UNITS

    @property
    def source_axes_units(self) -> dict[str, str]:
        unit = length_name(self.spatial_unit) or self.spatial_unit  # "unknown" as such
        units = {"x": unit, "y": unit, "z": unit}
        if self.frames > 1:
            units["t"] = _t_name(self.time_unit) or "unknown"
        return units


def _t_name(unit: str) -> str | None:
    """The name of xyzt_units' temporal unit (None: unknown)."""
    return time_name(unit) or _OTHER_T_UNITS.get(unit)


class NiftiFrame:
    """One time frame of a NIfTI image as a lazy array over array axes ``[i, j, k]`` with the
    flipped axes reversed, in the layout's dtype.

    Each region read opens the file anew through a fresh nibabel ``ArrayProxy`` (no shared file
    handle or lock between threads), whose ``fileslice`` reads only the byte runs of that
    region (gaps under 256 bytes are read through).
    """

    def __init__(
        self,
        path: Path,
        spec: tuple[Any, ...],
        time: int,
        flips: tuple[bool, bool, bool],
        dtype: np.dtype,
    ) -> None:
        self.path = str(path)
        self.spec = spec
        self.time = time
        self.flips = flips
        self.dtype = np.dtype(dtype)
        file_shape = tuple(int(n) for n in spec[0])
        self.shape = tuple(file_shape[:3]) + (1,) * (3 - min(len(file_shape), 3))
        self.ndim = 3
        stat = os.stat(self.path)
        self._token = (self.path, stat.st_size, stat.st_mtime_ns)

    def __dask_tokenize__(self) -> Any:
        return ("nifti-frame", *self._token, repr(self.spec), self.time, self.flips, self.dtype.str)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        bounds = []
        for k, n, flip in zip(key, self.shape, self.flips, strict=True):
            if not isinstance(k, slice):
                raise TypeError(f"only slices are supported, got {k!r}")
            start, stop, step = k.indices(n)
            if step != 1:
                raise ValueError("only contiguous regions are supported")
            stop = max(start, stop)
            bounds.append((n - stop, n - start) if flip else (start, stop))
        region = tuple(b - a for a, b in bounds)
        if 0 in region:
            return np.empty(region, self.dtype)
        file_shape = self.spec[0]
        slicer: list[slice | int] = [slice(a, b) for a, b in bounds[: len(file_shape)]]
        if len(file_shape) > 3:  # the time axis, then axes of length 1
            slicer += [self.time] + [0] * (len(file_shape) - 4)
        proxy = ArrayProxy(self.path, self.spec, mmap=False, keep_file_open=False)
        data = np.asarray(proxy[tuple(slicer)]).reshape(region)
        flipped = tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)
        return data[flipped].astype(self.dtype, copy=False)


def _declared_size(head: bytes) -> int | None:
    """The whole file's size as a NIfTI header declares it (offset + voxels), None when the
    header cannot be read from ``head`` (the reader then says what is wrong with it)."""
    if len(head) < 4:
        return None
    sizes = struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]
    klass = next((_HEADER_CLASSES[n] for n in sizes if n in _HEADER_CLASSES), None)
    if klass is None or len(head) < klass.template_dtype.itemsize:
        return None
    try:
        header = klass.from_fileobj(io.BytesIO(head[: klass.template_dtype.itemsize]))
        count = math.prod(int(n) for n in header.get_data_shape())
        return int(header.get_data_offset()) + count * header.get_data_dtype().itemsize
    except Exception:  # any damage: the reader reports it from the copied header
        return None


def _read_header(path: Path, source: Path, compression: str | None) -> Nifti1Header:
    """The NIfTI-1 or -2 header of ``path`` (``source`` is the file to name in errors)."""
    try:
        with open_stream(path, compression) as f:
            head = f.read(4)
            if len(head) < 4:
                raise InputFormatError(f"truncated: {len(head)} bytes, no NIfTI header", source)
            sizes = struct.unpack("<i", head)[0], struct.unpack(">i", head)[0]
            klass = next((_HEADER_CLASSES[n] for n in sizes if n in _HEADER_CLASSES), None)
            if klass is None:
                raise InputFormatError(
                    f"not a NIfTI file (header size field {sizes[0]}, expected 348 or 540)",
                    source,
                )
            size = klass.template_dtype.itemsize
            rest = f.read(size - 4)
            if len(rest) < size - 4:
                raise InputFormatError(
                    f"truncated: {len(rest) + 4} bytes, shorter than the {size}-byte NIfTI header",
                    source,
                )
            f.seek(0)
            header = klass.from_fileobj(f)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFormatError(f"cannot read the NIfTI header: {exc}", source) from exc
    except (HeaderDataError, HeaderTypeError, WrapStructError, ValueError, struct.error) as exc:
        raise InputFormatError(f"invalid NIfTI header: {exc}", source) from exc
    magic = bytes(header["magic"]).rstrip(b"\x00")
    if magic in _PAIR_MAGIC:
        raise UnsupportedInputError(
            f"a NIfTI header/image pair (magic {magic.decode()!r}, data in a separate .img) is "
            "not supported; give a single-file .nii or .nii.gz",
            source,
        )
    if magic not in _SINGLE_FILE_MAGIC:
        raise InputFormatError(f"not a NIfTI file (magic {magic!r})", source)
    return header


def _shape(header: Nifti1Header, path: Path) -> tuple[tuple[int, ...], tuple[int, int, int], int]:
    """The file's shape, the spatial shape (i, j, k) and the number of time frames."""
    intent = int(header["intent_code"])
    if 3000 <= intent < 3100:  # NIFTI_INTENT_CONNECTIVITY_* : a CIFTI-2 file
        raise UnsupportedInputError(
            f"a CIFTI-2 file (intent code {intent}: grayordinate data, not a voxel image); "
            "not supported",
            path,
        )
    shape = tuple(int(n) for n in header.get_data_shape())
    if not shape or min(shape) <= 0:
        raise InputFormatError(f"invalid image dimensions {shape} in the header", path)
    if len(shape) > 4 and math.prod(shape[4:]) > 1:
        raise UnsupportedInputError(
            f"{len(shape)}-D NIfTI image {'x'.join(map(str, shape))}: axes beyond the 4th "
            "(time) are not supported (vector or channel data)",
            path,
        )
    spatial = tuple(shape[:3]) + (1,) * (3 - min(len(shape), 3))
    frames = shape[3] if len(shape) > 3 else 1
    return shape, spatial, frames  # type: ignore[return-value]


def _dtypes(header: Nifti1Header, path: Path) -> tuple[np.dtype, float, float, np.dtype]:
    """File dtype, scale slope and intercept, and the dtype of the values read."""
    file_dtype = header.get_data_dtype()
    if file_dtype.kind not in "iuf" or file_dtype.itemsize > 8 or file_dtype.fields:
        code = int(header["datatype"])
        raise UnsupportedInputError(
            f"NIfTI datatype {code} ({file_dtype}) is not supported (integer or float voxels)",
            path,
        )
    slope, inter = header.get_slope_inter()
    slope = 1.0 if slope is None else float(slope)
    inter = 0.0 if inter is None else float(inter)
    native = file_dtype.newbyteorder("=")
    scaled = slope != 1.0 or inter != 0.0
    dtype = np.promote_types(native, np.float32) if scaled else native
    return file_dtype, slope, inter, dtype


def _affine(header: Nifti1Header) -> np.ndarray:
    """sform, else qform, else NIfTI's method 1 (pixdim scaling, origin 0)."""
    if int(header["sform_code"]) > 0:
        return np.asarray(header.get_sform(), dtype=np.float64)
    if int(header["qform_code"]) > 0:
        return np.asarray(header.get_qform(), dtype=np.float64)
    zooms = [float(z) for z in header["pixdim"][1:4]]
    return np.diag([*(abs(z) for z in zooms), 1.0])


def _float64_decimal(value: float) -> float:
    """A value computed from float64 header fields (NIfTI-2) without the noise of the
    arithmetic (15 significant digits)."""
    return float(f"{float(value):.15g}")


def _float32_decimal(value: float) -> float:
    """A value computed from float32 header fields as the decimal its writer meant."""
    return float(str(np.float32(value)))


def _geometry(
    header: Nifti1Header, spatial: tuple[int, int, int], path: Path
) -> tuple[tuple[int, int, int], tuple[bool, bool, bool], Vec3, Vec3, str, str]:
    """Axis order, flips, voxel size and origin (Angstrom) and the units from the header."""
    spatial_unit, time_unit = header.get_xyzt_units()
    # "unknown" is read as millimetre (NIfTI's convention, what nibabel, FSL and ITK assume)
    factor = angstrom_per("mm" if spatial_unit == "unknown" else spatial_unit)
    if factor is None:  # nibabel names only meter, mm, micron and unknown
        raise InputFormatError(f"unknown spatial unit {spatial_unit!r} in xyzt_units", path)
    affine = _affine(header)
    linear = affine[:3, :3]
    lengths = np.sqrt((linear**2).sum(axis=0))
    if not np.all(np.isfinite(affine)) or not np.all(lengths > 0):
        raise InputFormatError(
            f"degenerate affine (voxel axes of length {lengths.tolist()}): no voxel size", path
        )
    ornt = io_orientation(affine)
    if np.isnan(ornt).any():
        raise InputFormatError("the affine does not map the voxel axes to x, y and z", path)
    axis_order = tuple(int(w) for w in ornt[:, 0])
    flips = tuple(bool(d < 0) for d in ornt[:, 1])
    # the world position of the sample that becomes [0, 0, 0] after the flips
    corner = np.array([n - 1 if f else 0 for n, f in zip(spatial, flips, strict=True)], float)
    world = linear @ corner + affine[:3, 3]
    _warn_oblique(linear / lengths, path)
    voxel = [0.0, 0.0, 0.0]
    origin = [0.0, 0.0, 0.0]
    # as the header meant them (float32 fields in NIfTI-1, float64 in NIfTI-2), in Angstrom
    meant = _float64_decimal if isinstance(header, Nifti2Header) else _float32_decimal
    for a, w in enumerate(axis_order):
        voxel[w] = scaled_decimal(meant(lengths[a]), factor)
        origin[w] = scaled_decimal(meant(world[w]), factor) + 0.0  # no -0.0
    return axis_order, flips, tuple(voxel), tuple(origin), spatial_unit, time_unit  # type: ignore[return-value]


def _warn_oblique(directions: np.ndarray, path: Path) -> None:
    """A warning for affines whose voxel axes are not the world axes: sheared (axes not at
    right angles) or oblique (rotated); the stored grid is axis-aligned, so other voxels than
    sample [0, 0, 0] end up off their place."""
    cosines = np.abs(directions.T @ directions)[np.triu_indices(3, 1)]
    if np.max(cosines) > 1e-4:
        angle = 90.0 - math.degrees(math.acos(min(1.0, float(np.max(cosines)))))
        warn(
            f"sheared affine: voxel axes are {angle:.2f} degrees off right angles; the grid "
            "is stored axis-aligned (shear dropped), so voxels are placed approximately",
            path,
        )
        return
    largest = float(np.min(np.max(np.abs(directions), axis=0)))
    if largest < 1 - 1e-6:
        angle = math.degrees(math.acos(min(1.0, largest)))
        warn(
            f"oblique affine: voxel axes are rotated up to {angle:.2f} degrees from the world "
            "axes; the rotation is dropped (the grid is stored axis-aligned from the position "
            "of sample [0, 0, 0])",
            path,
        )


def read_nifti_layout(path: Path, scratch: Path | None) -> NiftiLayout:
    """Read and check a NIfTI header; decompress .gz/.bz2 into ``scratch`` first.

    With ``scratch=None`` a compressed image is not decompressed: only its header is read and its
    voxels cannot be accessed. Raises :class:`InputFormatError` for anything that makes the data
    unreadable.

    >>> read_nifti_layout(Path("missing.nii"), None)
    Traceback (most recent call last):
    ...
    pipeline.errors.InputNotFoundError: missing.nii: no such file
    """
    opened = open_input(path, scratch, _declared_size)
    path, compression, data_path = opened.path, opened.compression, opened.data_path
    if data_path is None:
        header = _read_header(path, path, compression)
    else:
        if not compression and path.name.endswith((".gz", ".bz2")):
            raise InputFormatError("named like a compressed file but not compressed", path)
        header = _read_header(data_path, path, None)
    shape, spatial, frames = _shape(header, path)
    file_dtype, slope, inter, dtype = _dtypes(header, path)
    offset = int(header.get_data_offset())
    if data_path is not None:
        needed = math.prod(shape) * file_dtype.itemsize
        available = data_path.stat().st_size - offset
        if available < needed:
            raise InputFormatError(
                f"truncated: the header announces {'x'.join(map(str, shape))} {file_dtype} "
                f"voxels ({needed} bytes from offset {offset}) but the file has "
                f"{max(available, 0)}",
                path,
            )
    axis_order, flips, voxel, origin, spatial_unit, time_unit = _geometry(header, spatial, path)
    return NiftiLayout(
        source=path,
        data_path=data_path,
        spec=(shape, file_dtype, offset, slope, inter),
        spatial_shape=spatial,
        frames=frames,
        dtype=dtype,
        axis_order=axis_order,
        flips=flips,
        voxel_size=voxel,
        origin=origin,
        spatial_unit=spatial_unit,
        time_unit=time_unit,
    )


def nifti_frames(layout: NiftiLayout) -> tuple[LazyArray, ...]:
    """Every time frame as a lazy ``[x, y, z]`` array (shape only without decompressed data)."""
    if layout.data_path is None:
        reason = f"{layout.source}: data not decompressed"
        return tuple(
            ShapeOnlyArray(layout.shape_xyz, layout.dtype, reason) for _ in range(layout.frames)
        )
    frames: list[LazyArray] = []
    for t in range(layout.frames):
        frame = NiftiFrame(layout.data_path, layout.spec, t, layout.flips, layout.dtype)
        perm = layout.permutation
        frames.append(frame if perm == (0, 1, 2) else TransposedArray(frame, perm))
    return tuple(frames)


def _overridden(
    layout: NiftiLayout, voxel: Vec3 | None, extra: ExtraData | None = None, key: str = ""
) -> tuple[Vec3, Vec3]:
    """Voxel size and origin, with the voxel size of extra data (the origin keeps its place in
    voxels: it is scaled like the voxel size). Overriding a size the header states in a known
    unit prints a warning when the two differ."""
    if voxel is None:
        return layout.voxel_size, layout.origin
    if layout.spatial_unit != "unknown":
        where = extra.path if extra is not None else None
        override_voxel_size(layout.voxel_size, voxel, layout.source, where, key)
    origin = tuple(  # on decimals: -10 voxels of 1.5 A stay -15.0, without binary noise
        float(Decimal(repr(o)) / Decimal(repr(v)) * Decimal(repr(float(w))))
        for o, v, w in zip(layout.origin, layout.voxel_size, voxel, strict=True)
    )
    return tuple(float(v) for v in voxel), origin  # type: ignore[return-value]


def read_nifti_volume(path: Path, scratch: Path | None, extra: ExtraData | None = None) -> Contents:
    """Open a NIfTI image lazily as a one-channel :class:`VolumeSource`, one frame per time
    point; extra data's ``volume.voxel_size`` (Angstrom, [x, y, z]) overrides the header's."""
    layout = read_nifti_layout(path, scratch)
    voxel, origin = _overridden(
        layout,
        extra.volume_voxel_size if extra is not None else None,
        extra,
        "volume.voxel_size",
    )
    volume = VolumeSource(
        path=Path(path),
        frames=tuple((frame,) for frame in nifti_frames(layout)),
        channel_ids=("0",),
        voxel_size=voxel,
        origin=origin,
        original_axis_order=layout.axis_order,
        time_units=layout.time_units,
        source_axes_units=layout.source_axes_units,
        memory_order=layout.memory_order,
    )
    return Contents(volume=volume)


def read_nifti_segmentation(
    path: Path, scratch: Path | None, extra: ExtraData | None = None
) -> Contents:
    """Open a NIfTI label image lazily as one lattice (like a mask: its id is the file stem
    without .nii/.nii.gz, or its ``segmentation_ids_mapping`` entry; names from extra data).

    Its values are checked as they are read (integers, or floats holding integers).
    """
    layout = read_nifti_layout(path, scratch)
    override = None
    if extra is not None:
        override = extra.segmentation_voxel_size or extra.volume_voxel_size
    key = "segmentation.voxel_size"
    if extra is not None and extra.segmentation_voxel_size is None:
        key = "volume.voxel_size"
    voxel, origin = _overridden(layout, override, extra, key)
    lattice_id = mask_lattice_id(path, extra)
    lattice = LabelSource(
        path=Path(path),
        lattice_id=lattice_id,
        frames=nifti_frames(layout),
        segments=named_segments(lattice_id, extra),
        voxel_size=voxel,
        origin=origin,
        memory_order=layout.memory_order,
        time_units=layout.time_units,
        placed_by_origin=True,
    )
    return Contents(lattices=(lattice,))


def nifti_facts(path: Path, extra: ExtraData | None = None) -> dict[str, Any]:
    """What the header says, as stored (for ``inspect``); headers only."""
    layout = read_nifti_layout(path, None)
    header = _read_header(Path(path), Path(path), detect_compression(Path(path)))
    return {
        "format": "NIfTI-2" if isinstance(header, Nifti2Header) else "NIfTI-1",
        "dim": [int(n) for n in header["dim"][1 : int(header["dim"][0]) + 1]],
        "pixdim": [float(v) for v in header["pixdim"][1 : int(header["dim"][0]) + 1]],
        "xyzt_units": [layout.spatial_unit, layout.time_unit],
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
        "file_dtype": np.dtype(header.get_data_dtype()).str,
        "world_axis_of_i_j_k": ["xyz"[a] for a in layout.axis_order],
        "flipped_i_j_k": list(layout.flips),
    }
