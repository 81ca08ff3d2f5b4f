"""MRC / CCP4 maps (``map`` and ``mask`` inputs): header rules of DESIGN section 8, lazy data.

The data block is never memory-mapped: a region is filled by positioned reads (``os.preadv``)
of exactly its bytes, so resident memory is bounded by the regions in flight, not by the file.
gzip/bzip2 files are first decompressed, streaming, into a scratch folder.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
from mrcfile.dtypes import HEADER_DTYPE

from pipeline.arrays import LazyArray, RawArrayFile, ShapeOnlyArray, TransposedArray
from pipeline.errors import InputFormatError
from pipeline.inputs.compressed import open_input, open_stream
from pipeline.inputs.source import (
    RemoteRawArray,
    Url,
    as_input_path,
    copy_budget,
    is_url,
    local_copy_folder,
    object_size,
    ranged_copy,
    read_ranges,
    renamed_errors,
    spool,
    storage_options,
    supports_ranges,
)
from pipeline.inputs.source import (
    open_input as open_url,
)
from pipeline.inputs.voxels import override_voxel_size, scaled_decimal
from pipeline.model import Contents, ExtraData, Vec3, VolumeSource

__all__ = [
    "MrcLayout",
    "memory_order",
    "mrc_array",
    "mrc_data",
    "mrc_facts",
    "read_map",
    "read_mrc_layout",
]

_HEADER_BYTES = 1024
_MODES = {0: "i1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
_IMOD_STAMP = 1146047817


@dataclass(frozen=True, slots=True)
class MrcLayout:
    """What the header says: where the data is and how it maps to ``[x, y, z]``."""

    source: Path  # the user's file
    data_path: Path | None  # where the data is read from (a decompressed copy for .gz/.bz2)
    data_offset: int
    file_shape: tuple[int, int, int]  # (sections, rows, columns) as stored
    file_dtype: np.dtype  # with the file's byte order
    axis_order: tuple[int, int, int]  # (mapc, mapr, maps) - 1: the x/y/z axis of c, r, s
    voxel_size: tuple[float, float, float]  # [x, y, z], may contain 0
    origin_start: tuple[int, int, int]  # N*START in [x, y, z]
    header_origin: tuple[float, float, float]  # ORIGIN field [x, y, z]
    mode: int

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        # file axes are (s, r, c) -> physical axes (maps, mapr, mapc)
        phys = (self.axis_order[2], self.axis_order[1], self.axis_order[0])
        return tuple(self.file_shape[phys.index(a)] for a in range(3))  # type: ignore[return-value]

    def origin(self, voxel_size: Vec3) -> Vec3:
        """Position (Angstrom) of sample [0, 0, 0]: N*START x voxel, or ORIGIN if starts are 0."""
        if not any(self.origin_start) and any(self.header_origin):
            return self.header_origin
        return tuple(  # type: ignore[return-value]
            scaled_decimal(s, v) for s, v in zip(self.origin_start, voxel_size, strict=True)
        )


def _parse_header(raw: bytes, path: Path) -> tuple[np.ndarray, str]:
    """The header record with the byte order that makes it sane ('<' or '>')."""
    machst = raw[212:214]
    if machst[:1] in (b"\x44", b"\x41"):
        orders = ["<", ">"]
    elif machst[:1] == b"\x11":
        orders = [">", "<"]
    else:
        orders = ["<", ">"]
    for order in orders:
        header = np.frombuffer(raw, dtype=HEADER_DTYPE.newbyteorder(order), count=1)[0]
        sizes = [int(header[k]) for k in ("nx", "ny", "nz")]
        axes = sorted(int(header[k]) for k in ("mapc", "mapr", "maps"))
        if (
            int(header["mode"]) in _MODES
            and all(0 < n < 2**24 for n in sizes)
            and axes in ([1, 2, 3], [0, 0, 0])
        ):
            return header, order
    header = np.frombuffer(raw, dtype=HEADER_DTYPE.newbyteorder(orders[0]), count=1)[0]
    mode = int(header["mode"])
    if mode in (3, 4, 101):
        raise InputFormatError(f"unsupported MRC mode {mode} (supported: 0, 1, 2, 6, 12)", path)
    raise InputFormatError(
        f"not an MRC/CCP4 map (mode {mode} and size {int(header['nx'])} make no sense "
        "in either byte order)",
        path,
    )


def _mode0_dtype(raw: bytes, header: np.ndarray, order: str) -> str:
    """int8 unless an IMOD stamp says unsigned or the header range only fits uint8."""
    stamp = int(np.frombuffer(raw, dtype=f"{order}i4", count=1, offset=152)[0])
    flags = int(np.frombuffer(raw, dtype=f"{order}i4", count=1, offset=156)[0])
    if stamp == _IMOD_STAMP:
        return "i1" if flags & 1 else "u1"
    if float(header["dmax"]) > 127:
        return "u1"
    return "i1"


def _exact(value: np.floating) -> float:
    """A float32 header field as the decimal its writer meant (364.8, not 364.79998779...)."""
    return float(str(np.float32(value)))


def _quotient(cell: float, samples: int) -> float:
    """``cell / samples`` computed on the decimal of ``cell``."""
    return float(Decimal(repr(cell)) / Decimal(samples))


def _stream_head(path: Path, kind: str) -> tuple[bytes, int | None]:
    """The first header bytes of a compressed map (its data size is unknown: None)."""
    try:
        with open_stream(path, kind) as f:
            return f.read(_HEADER_BYTES), None
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise InputFormatError(f"cannot decompress {kind} data: {exc}", path) from exc


def _declared_size(raw: bytes, path: Path) -> int | None:
    """The whole file's size as its header declares it (header, extended header, data); None
    when there is no complete header (an unreadable one is refused, naming the file)."""
    if len(raw) < _HEADER_BYTES:
        return None
    header, _ = _parse_header(raw[:_HEADER_BYTES], path)
    mode = int(header["mode"])
    itemsize = 1 if mode == 0 else np.dtype(_MODES[mode]).itemsize
    count = int(header["nx"]) * int(header["ny"]) * int(header["nz"])
    return _HEADER_BYTES + max(int(header["nsymbt"]), 0) + max(count, 0) * itemsize


def read_mrc_layout(path: Path, scratch: Path | None) -> MrcLayout:
    """Read and check an MRC/CCP4 header; decompress .gz/.bz2 into ``scratch`` first.

    With ``scratch=None`` a compressed map is not decompressed: only its header is read (for a
    dry run) and its data cannot be accessed. Raises :class:`InputFormatError` for anything that
    makes the data unreadable.
    """
    if is_url(path):
        return _remote_layout(Url(path), scratch)
    opened = open_input(path, scratch, lambda head: _declared_size(head, path))
    path, compression, data_path = opened.path, opened.compression, opened.data_path
    if data_path is None:
        assert compression is not None
        raw, size = _stream_head(path, compression)
    else:
        size = data_path.stat().st_size
        with open(data_path, "rb") as f:
            raw = f.read(_HEADER_BYTES)
    return _layout(raw, size, path, data_path)


def _layout(raw: bytes, size: int | None, path: Path, data_path: Path | None) -> MrcLayout:
    """The layout from the header bytes ``raw`` of a file of ``size`` bytes (None: unknown)."""
    if len(raw) < _HEADER_BYTES:
        raise InputFormatError(
            f"truncated: {len(raw)} bytes, shorter than the 1024-byte MRC header", path
        )
    header, order = _parse_header(raw, path)
    nc, nr, ns = (int(header[k]) for k in ("nx", "ny", "nz"))
    if min(nc, nr, ns) <= 0:
        raise InputFormatError(f"invalid grid size {nc}x{nr}x{ns} in the header", path)
    mode = int(header["mode"])
    type_code = _mode0_dtype(raw, header, order) if mode == 0 else _MODES[mode]
    dtype = np.dtype(type_code).newbyteorder(order)
    mapping = tuple(int(header[k]) for k in ("mapc", "mapr", "maps"))
    if mapping == (0, 0, 0):
        mapping = (1, 2, 3)
    if sorted(mapping) != [1, 2, 3]:
        raise InputFormatError(f"MAPC/MAPR/MAPS {mapping} is not a permutation of 1, 2, 3", path)
    axis_order = tuple(m - 1 for m in mapping)
    nsymbt = int(header["nsymbt"])
    if nsymbt < 0:
        raise InputFormatError(f"negative extended header size NSYMBT {nsymbt}", path)
    offset = _HEADER_BYTES + nsymbt
    needed = nc * nr * ns * dtype.itemsize
    if size is not None and size - offset < needed:
        raise InputFormatError(
            f"truncated: the header announces {nc}x{nr}x{ns} mode-{mode} data "
            f"({needed} bytes after the header) but the file has {max(size - offset, 0)}",
            path,
        )
    # counts along x, y, z (file axis c, r, s maps to physical axis mapc-1, ...)
    n_xyz = [0, 0, 0]
    start_xyz = [0, 0, 0]
    for n, start, axis in zip(
        (nc, nr, ns),
        (int(header["nxstart"]), int(header["nystart"]), int(header["nzstart"])),
        axis_order,
        strict=True,
    ):
        n_xyz[axis] = n
        start_xyz[axis] = start
    sampling = [int(header[k]) for k in ("mx", "my", "mz")]
    cella = [_exact(v) for v in header["cella"]]
    voxel = tuple(  # a decimal quotient: 19.6 / 7 is 2.8, not 2.8000000000000003
        _quotient(c, m if m > 0 else n) if np.isfinite(c) else 0.0
        for c, m, n in zip(cella, sampling, n_xyz, strict=True)
    )
    origin_field = tuple(_exact(v) if np.isfinite(v) else 0.0 for v in header["origin"])
    return MrcLayout(
        source=path,
        data_path=data_path,
        data_offset=offset,
        file_shape=(ns, nr, nc),
        file_dtype=dtype,
        axis_order=axis_order,  # type: ignore[arg-type]
        voxel_size=voxel,  # type: ignore[arg-type]
        origin_start=tuple(start_xyz),  # type: ignore[arg-type]
        header_origin=origin_field,  # type: ignore[arg-type]
        mode=mode,
    )


def _remote_layout(url: Url, scratch: Path | None) -> MrcLayout:
    """The layout of a map at a URL: its data read from a copy in ``scratch`` made by large
    ranged requests (when runs copy objects, see ``copying_objects``, and the folder can hold
    it), else in place by ranged requests block by block, or, when compressed or its server
    answers no ranged requests, from a streamed copy in ``scratch`` (headers only, from the
    stream, when there is no scratch)."""
    options = storage_options()
    if supports_ranges(url, options):
        size = object_size(url, options)
        raw = read_ranges(url, [(0, min(_HEADER_BYTES, size))], options)[0]
        kind = "gzip" if raw[:2] == b"\x1f\x8b" else "bzip2" if raw[:3] == b"BZh" else None
        if kind is None:
            budget = copy_budget()
            local = None
            if scratch is not None and budget is not None:
                local = ranged_copy(url, local_copy_folder(scratch), size, budget, options)
            if local is None:
                return _layout(raw, size, url, url)  # type: ignore[arg-type]
            with renamed_errors(local, url):
                layout = read_mrc_layout(local, scratch)
            return replace(layout, source=url)  # type: ignore[arg-type]
        if scratch is None:
            with open_url(url, options) as f, open_stream(f, kind) as g:  # type: ignore[arg-type]
                raw = g.read(_HEADER_BYTES)
            return _layout(raw, None, url, None)  # type: ignore[arg-type]
    local = spool(url, local_copy_folder(scratch), options)
    with renamed_errors(local, url):
        layout = read_mrc_layout(local, scratch)
    return replace(layout, source=url)  # type: ignore[arg-type]


def _xyz_permutation(layout: MrcLayout) -> tuple[int, int, int]:
    # file axes (s, r, c) are physical axes (maps, mapr, mapc); pick the file axis of x, y, z
    phys = (layout.axis_order[2], layout.axis_order[1], layout.axis_order[0])
    return tuple(phys.index(a) for a in range(3))  # type: ignore[return-value]


def memory_order(layout: MrcLayout) -> str:
    """'F' when x varies fastest in the file (MAPC=1, MAPR=2, MAPS=3), else 'C'."""
    return "F" if _xyz_permutation(layout) == (2, 1, 0) else "C"


def mrc_array(layout: MrcLayout) -> TransposedArray:
    """The data as a lazy ``[x, y, z]`` array (native byte order) read by positioned reads."""
    if layout.data_path is None:
        raise ValueError(f"{layout.source}: compressed map opened without scratch space")
    if is_url(layout.data_path):
        options = storage_options()
        raw: RawArrayFile = RemoteRawArray(
            layout.data_path,
            layout.file_shape,
            layout.file_dtype,
            layout.data_offset,
            options,
            object_size(layout.data_path, options),
        )
        return TransposedArray(raw, _xyz_permutation(layout))
    raw = RawArrayFile(layout.data_path, layout.file_shape, layout.file_dtype, layout.data_offset)
    return TransposedArray(raw, _xyz_permutation(layout))


def mrc_data(layout: MrcLayout) -> LazyArray:
    """The data as a lazy array, or its shape only for a compressed map opened without scratch."""
    if layout.data_path is None:
        dtype = layout.file_dtype.newbyteorder("=")
        return ShapeOnlyArray(layout.shape_xyz, dtype, f"{layout.source}: data not decompressed")
    return mrc_array(layout)


def _voxel_cause(voxel: Vec3) -> str:
    """What makes a header voxel size unusable, per axis."""
    causes = []
    for axis, v in zip("XYZ", voxel, strict=True):
        if v < 0:
            causes.append(f"CELLA {axis} is negative")
        elif not v > 0:
            causes.append(f"CELLA {axis} or M{axis} is 0 or not a number")
    return ", ".join(causes)


def read_map(path: Path, scratch: Path | None, extra: ExtraData | None = None) -> Contents:
    """Open an MRC/CCP4 map lazily as a one-channel, one-frame :class:`VolumeSource`.

    Extra data's ``volume.voxel_size`` overrides the header, with a warning when the header
    declares another one; the file is never modified. ``scratch`` is where a compressed map is
    decompressed; without it only the header of a compressed map is read (its data then cannot
    be accessed).
    """
    layout = read_mrc_layout(path, scratch)
    declared = layout.voxel_size if all(v > 0 for v in layout.voxel_size) else None
    given = extra.volume_voxel_size if extra is not None else None
    where = extra.path if extra is not None else None
    voxel = override_voxel_size(declared, given, path, where) or layout.voxel_size
    if not all(v > 0 for v in voxel):
        raise InputFormatError(
            f"voxel size {tuple(round(v, 6) for v in voxel)} A from the header is not positive "
            f"({_voxel_cause(voxel)}); give volume.voxel_size in an extra_data file",
            path,
        )
    volume = VolumeSource(
        path=as_input_path(path),
        frames=((mrc_data(layout),),),
        channel_ids=("0",),
        voxel_size=tuple(float(v) for v in voxel),  # type: ignore[arg-type]
        origin=layout.origin(voxel),
        original_axis_order=layout.axis_order,
        memory_order=memory_order(layout),
    )
    return Contents(volume=volume)


def mrc_facts(path: Path, extra: ExtraData | None = None) -> dict[str, Any]:
    """What the header says, as stored (for ``inspect``); headers only."""
    layout = read_mrc_layout(path, None)
    return {
        "format": "MRC/CCP4",
        "mode": layout.mode,
        "file_dtype": layout.file_dtype.str,
        "stored_shape_s_r_c": list(layout.file_shape),
        "mapc_mapr_maps": [a + 1 for a in layout.axis_order],
        "nstart_xyz": list(layout.origin_start),
        "header_origin_xyz": list(layout.header_origin),
        "compressed": layout.data_path is None,
    }
