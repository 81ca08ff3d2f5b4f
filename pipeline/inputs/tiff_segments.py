"""Bounded region reads of TIFF planes, strip by strip or tile by tile (issue 12).

A region of a plane touches some of its segments (strips or tiles, as listed by the page's
``StripOffsets``/``TileOffsets``). Each is read with one positioned read of the file and
decoded with the page's own decoder (``TiffPage.decode``: decompression, predictor, bit
unpacking); uncompressed segments are not decoded at all: only the rows of the region are
read, and runs of rows that lie back to back in the file (consecutive strips) are read at once.
Nothing is memory-mapped; resident memory is the region and one segment at a time.

:func:`segment_layout` says whether a page can be read this way (one sample plane per segment
row layout tifffile describes as ``(separate samples, depth 1, length, width, samples)``);
readers fall back to tifffile's zarr store for anything else (JPEG tables, chroma subsampling,
volumetric tiles).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PlaneSegments", "SegmentLayout", "read_plane_region", "segment_layout"]

_JPEG = {6, 7, 34892, 33007}


@dataclass(frozen=True, slots=True)
class SegmentLayout:
    """How the segments of every page of a series (all shaped like its key frame) tile a plane."""

    length: int  # rows of the plane (Y)
    width: int  # columns (X)
    samples: int  # samples per pixel
    separate: bool  # PlanarConfiguration 2: one set of segments per sample
    tiled: bool
    seg_length: int  # rows per strip, or tile length
    seg_width: int  # the plane width for strips, or tile width
    file_dtype: np.dtype  # of the stored samples (with the file's byte order)
    raw: bool  # stored uncompressed as whole bytes: rows are read, not decoded
    nodata: Any  # value of empty (zero-length) segments
    decode: Any  # the key frame's TiffPage.decode

    @property
    def across(self) -> int:
        return math.ceil(self.width / self.seg_width)

    @property
    def down(self) -> int:
        return math.ceil(self.length / self.seg_length)

    @property
    def per_sample(self) -> int:
        return self.across * self.down


def segment_layout(keyframe: Any, byteorder: str) -> SegmentLayout | None:
    """The segment layout of ``keyframe`` (a tifffile TiffPage), or None when its segments
    need more than this module does (the caller then reads through tifffile's zarr store)."""
    try:
        separate_n, depth, length, width, contig = keyframe.shaped
        dtype = keyframe.dtype
    except (AttributeError, ValueError):
        return None
    if dtype is None or depth != 1 or keyframe.is_subsampled:
        return None
    if keyframe.compression in _JPEG or keyframe.jpegtables is not None:
        return None
    if 0 in (length, width):
        return None
    separate = keyframe.planarconfig == 2 and separate_n > 1
    samples = separate_n if separate else contig
    if keyframe.is_tiled:
        if keyframe.tiledepth != 1:
            return None
        seg_length, seg_width = keyframe.tilelength, keyframe.tilewidth
    else:
        seg_length, seg_width = min(keyframe.rowsperstrip or length, length), width
    if seg_length < 1 or seg_width < 1:
        return None
    file_dtype = np.dtype(dtype).newbyteorder(byteorder)
    raw = (
        keyframe.compression == 1
        and keyframe.predictor == 1
        and keyframe.fillorder == 1
        and keyframe.bitspersample == file_dtype.itemsize * 8
    )
    return SegmentLayout(
        length=length,
        width=width,
        samples=samples,
        separate=separate,
        tiled=bool(keyframe.is_tiled),
        seg_length=seg_length,
        seg_width=seg_width,
        file_dtype=file_dtype,
        raw=raw,
        nodata=keyframe.nodata,
        decode=keyframe.decode,
    )


@dataclass(frozen=True, slots=True)
class PlaneSegments:
    """Where the segments of one plane (page) are in the file."""

    offsets: tuple[int, ...]
    bytecounts: tuple[int, ...]


def _pread(fd: int, buffer: memoryview, position: int) -> None:
    done = 0
    while done < len(buffer):
        n = os.preadv(fd, [buffer[done:]], position + done)
        if n <= 0:
            raise OSError("unexpected end of file")
        done += n


def read_plane_region(
    fd: int,
    layout: SegmentLayout,
    plane: PlaneSegments,
    sample: int,
    rows: tuple[int, int],
    cols: tuple[int, int],
    out: np.ndarray,
) -> None:
    """Fill ``out`` (rows x cols of ``layout.file_dtype``) with ``[rows, cols]`` of sample
    ``sample`` of the plane whose segments are ``plane``."""
    y0, y1 = rows
    x0, x1 = cols
    sl, sw = layout.seg_length, layout.seg_width
    base = sample * layout.per_sample if layout.separate else 0
    contig = 1 if layout.separate else layout.samples
    s = 0 if layout.separate else sample
    runs: list[tuple[int, int, int, int]] = []  # (file position, first row, rows, segment)
    for ty in range(y0 // sl, (y1 - 1) // sl + 1):
        seg_y0 = ty * sl
        r0, r1 = max(y0, seg_y0), min(y1, seg_y0 + sl, layout.length)
        for tx in range(x0 // sw, (x1 - 1) // sw + 1):
            index = base + ty * layout.across + tx
            seg_x0 = tx * sw
            c0, c1 = max(x0, seg_x0), min(x1, seg_x0 + sw)
            target = out[r0 - y0 : r1 - y0, c0 - x0 : c1 - x0]
            offset, count = plane.offsets[index], plane.bytecounts[index]
            seg_rows = sl if layout.tiled else min(sl, layout.length - seg_y0)
            row_bytes = sw * contig * layout.file_dtype.itemsize
            if count == 0 or offset == 0:
                target[...] = layout.nodata
            elif layout.raw and count >= seg_rows * row_bytes:
                position = offset + (r0 - seg_y0) * row_bytes
                if not layout.tiled and sw == layout.width and contig == 1 and (x0, x1) == (
                    0,
                    layout.width,
                ):
                    runs.append((position, r0, r1 - r0, index))
                    continue
                data = np.empty((r1 - r0, sw, contig), layout.file_dtype)
                _pread(fd, memoryview(data.reshape(-1).view(np.uint8)), position)
                target[...] = data[:, c0 - seg_x0 : c1 - seg_x0, s]
            else:
                encoded = os.pread(fd, count, offset)
                if len(encoded) != count:
                    raise OSError("unexpected end of file")
                decoded, _, _ = layout.decode(encoded, index)
                if decoded is None:
                    target[...] = layout.nodata
                    continue
                decoded = decoded.reshape(decoded.shape[-3:])  # (length, width, samples)
                got = decoded[r0 - seg_y0 : r1 - seg_y0, c0 - seg_x0 : c1 - seg_x0, s]
                target[: got.shape[0], : got.shape[1]] = got
                if got.shape != target.shape:  # a short last segment: the rest is empty
                    target[got.shape[0] :, :] = layout.nodata
                    target[:, got.shape[1] :] = layout.nodata
    _read_runs(fd, runs, out, y0)


def _read_runs(fd: int, runs: list[tuple[int, int, int, int]], out: np.ndarray, y0: int) -> None:
    """Whole rows of uncompressed strips straight into ``out`` (C-contiguous), with one read
    per run of strips that lie back to back in the file."""
    if not runs:
        return
    row_bytes = out.shape[1] * out.itemsize
    flat = memoryview(out.reshape(-1).view(np.uint8))
    i = 0
    while i < len(runs):
        position, first, count, _ = runs[i]
        j = i + 1
        while j < len(runs) and runs[j][0] == position + count * row_bytes:
            count += runs[j][2]
            j += 1
        start = (first - y0) * row_bytes
        _pread(fd, flat[start : start + count * row_bytes], position)
        i = j
