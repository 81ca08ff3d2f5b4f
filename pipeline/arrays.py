"""Lazy array-likes with bounded region reads: what readers hand to the pipeline.

A ``LazyArray`` has ``shape``, ``dtype`` and ``ndim`` and returns exactly the region asked for
(``arr[z0:z1, y0:y1, x0:x1]``) by positioned reads; nothing is memory-mapped, so resident memory
is bounded by the regions in flight.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pipeline.errors import InputFormatError

__all__ = [
    "CastArray",
    "LazyArray",
    "RawArrayFile",
    "ShapeOnlyArray",
    "TransposedArray",
    "contiguous_runs",
    "create_scratch",
    "region_bounds",
    "remove_scratch",
]

Region = tuple[slice, ...]


@runtime_checkable
class LazyArray(Protocol):
    shape: tuple[int, ...]
    dtype: np.dtype
    ndim: int

    def __getitem__(self, key: Region) -> np.ndarray: ...


def region_bounds(key: Region, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """``(start, stop)`` per axis of a region of contiguous slices (missing axes: whole).

    >>> region_bounds((slice(2, 5),), (10, 4))
    [(2, 5), (0, 4)]
    """
    if not isinstance(key, tuple):
        key = (key,)
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for k, n in zip(key, shape, strict=True):
        if not isinstance(k, slice):
            raise TypeError(f"only slices are supported, got {k!r}")
        start, stop, step = k.indices(n)
        if step != 1:
            raise ValueError("only contiguous regions are supported")
        out.append((start, max(start, stop)))
    return out


def contiguous_runs(bounds: list[tuple[int, int]], shape: tuple[int, ...]) -> tuple[int, list[Any]]:
    """Split a C-order region into contiguous runs: returns the first axis k from which the
    region covers whole trailing axes, and the index tuples of the leading axes."""
    k = len(shape) - 1
    while k > 0 and bounds[k] == (0, shape[k]):
        k -= 1
    leading = [range(a, b) for a, b in bounds[:k]]
    return k, leading


class RawArrayFile:
    """A C-order array stored raw at ``offset`` in a file (an MRC data block, a scratch level).

    Reads and writes of a region are positioned (``os.preadv``/``os.pwritev``) runs of the
    region's contiguous rows; the file is opened read-only unless ``writable``.
    """

    def __init__(
        self,
        path: Path,
        shape: tuple[int, ...],
        file_dtype: np.dtype,
        offset: int = 0,
        writable: bool = False,
    ) -> None:
        self._layout(path, shape, file_dtype, offset, writable)
        stat = os.stat(self.path)
        self._token = (self.path, stat.st_size, stat.st_mtime_ns, offset, self.file_dtype.str)

    def _layout(
        self,
        path: Path | str,
        shape: tuple[int, ...],
        file_dtype: np.dtype,
        offset: int,
        writable: bool,
    ) -> None:
        """Where the array lies in its file and how it is stored (every array of this kind)."""
        self.path = str(path)
        self.shape = tuple(int(n) for n in shape)
        self.ndim = len(self.shape)
        self.file_dtype = np.dtype(file_dtype)
        self.dtype = self.file_dtype.newbyteorder("=")
        self.offset = offset
        self.writable = writable

    @classmethod
    def create(cls, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> RawArrayFile:
        """A new (sparse) scratch file holding a native-endian array of ``shape``."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        with open(path, "wb") as f:
            f.truncate(nbytes)
        return cls(path, shape, np.dtype(dtype), writable=True)

    def __dask_tokenize__(self) -> Any:
        return ("raw-array-file", *self._token, self.shape)

    def __getstate__(self) -> dict[str, Any]:
        # pickled for a dask.distributed worker: plain fields, no file handle; unpickling (also
        # on the scheduler, which may not see the file) touches no file
        return {name: getattr(self, name) for name in self._FIELDS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    _FIELDS = ("path", "shape", "ndim", "file_dtype", "dtype", "offset", "writable", "_token")

    def __getitem__(self, key: Region) -> np.ndarray:
        bounds = region_bounds(key, self.shape)
        out = self.read_into(key, np.empty([b - a for a, b in bounds], self.file_dtype))
        if self.file_dtype != self.dtype:
            return out.astype(self.dtype)
        return out

    def read_into(self, key: Region, out: np.ndarray) -> np.ndarray:
        """Region ``key`` read into ``out`` (C-order, the region's shape, the file's dtype)."""
        bounds = region_bounds(key, self.shape)
        if out.shape != tuple(b - a for a, b in bounds) or out.dtype != self.file_dtype:
            raise ValueError(f"{self.path}: read buffer does not match the region")
        if not out.flags.c_contiguous:
            raise ValueError(f"{self.path}: read buffer is not C-contiguous")
        if out.size:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                self._transfer(fd, bounds, out, write=False)
            finally:
                os.close(fd)
        return out

    def write(self, origin: tuple[int, ...], block: np.ndarray) -> None:
        """Store ``block`` at ``origin`` (each region written by one task only)."""
        if not self.writable:
            raise PermissionError(f"{self.path} is opened read-only")
        bounds = [(o, o + n) for o, n in zip(origin, block.shape, strict=True)]
        data = np.ascontiguousarray(block, dtype=self.file_dtype)
        fd = os.open(self.path, os.O_WRONLY)
        try:
            self._transfer(fd, bounds, data, write=True)
        finally:
            os.close(fd)

    def _read_ahead(
        self, fd: int, bounds: list[tuple[int, int]], k: int, strides: list[int]
    ) -> None:
        """Ask the kernel to read, in large sequential requests, the span of every slab (run of
        rows of one outer index) the region touches: its rows are short pieces of the file's
        rows, a pattern the kernel's own readahead does not follow, so each piece would
        otherwise wait for its own small read. Blocks that share those rows come next (see
        ``block_grid``) and find them in the page cache."""
        if not hasattr(os, "posix_fadvise"):
            return
        item = self.file_dtype.itemsize
        last = k - 1  # the innermost leading axis: its rows form one span per outer index
        outer = [range(a, b) for a, b in bounds[:last]]
        for index in itertools.product(*outer):
            first = sum(v * s for v, s in zip(index, strides, strict=False))
            lo = first + bounds[last][0] * strides[last] + bounds[k][0] * strides[k]
            hi = first + (bounds[last][1] - 1) * strides[last] + bounds[k][1] * strides[k]
            os.posix_fadvise(fd, self.offset + lo * item, (hi - lo) * item, os.POSIX_FADV_WILLNEED)

    def _transfer(
        self, fd: int, bounds: list[tuple[int, int]], buf: np.ndarray, write: bool
    ) -> None:
        k, leading = contiguous_runs(bounds, self.shape)
        item = self.file_dtype.itemsize
        strides = [int(np.prod(self.shape[i + 1 :])) for i in range(self.ndim)]
        tail_start = sum(a * s for (a, _), s in zip(bounds[k:], strides[k:], strict=True))
        if not write and len(leading) >= 2:
            self._read_ahead(fd, bounds, k, strides)
        for index in np.ndindex(*(len(r) for r in leading)):
            lead = [r[i] for r, i in zip(leading, index, strict=True)]
            position = self.offset + item * (
                sum(v * s for v, s in zip(lead, strides[:k], strict=True)) + tail_start
            )
            view = memoryview(buf[index].reshape(-1).view(np.uint8))
            done = 0
            while done < len(view):
                if write:
                    n = os.pwritev(fd, [view[done:]], position + done)
                else:
                    n = os.preadv(fd, [view[done:]], position + done)
                if n <= 0:
                    raise InputFormatError("truncated: unexpected end of file", self.path)
                done += n


def local_raw(arr: Any) -> bool:
    """Whether ``arr`` is a local raw file, or a transposed or converted view of one: its
    blocks are filled by positioned reads in the calling thread, with no library allocating
    and decoding in threads of its own behind it."""
    while isinstance(arr, (TransposedArray, CastArray)):
        arr = arr.base
    return type(arr) is RawArrayFile


class TransposedArray:
    """``base`` with its axes permuted (``result[i0, i1, ...] = base[...]``): a view, no copy."""

    def __init__(self, base: Any, perm: tuple[int, ...]) -> None:
        self.base = base
        self.perm = tuple(perm)
        self.shape = tuple(base.shape[p] for p in self.perm)
        self.dtype = base.dtype
        self.ndim = len(self.shape)

    def __dask_tokenize__(self) -> Any:
        from dask.base import tokenize

        return ("transposed", tokenize(self.base), self.perm)

    def _base_key(self, key: Region) -> Region:
        bounds = region_bounds(key, self.shape)
        base = [slice(None)] * self.ndim
        for out_axis, base_axis in enumerate(self.perm):
            base[base_axis] = slice(*bounds[out_axis])
        return tuple(base)

    def __getitem__(self, key: Region) -> np.ndarray:
        return np.transpose(self.base[self._base_key(key)], self.perm)

    def write(self, origin: tuple[int, ...], block: np.ndarray) -> None:
        inverse = tuple(np.argsort(self.perm))
        base_origin = tuple(origin[i] for i in inverse)
        self.base.write(base_origin, np.transpose(block, inverse))


class CastArray:
    """``base`` converted to ``dtype`` region by region; to an integer type, values are rounded
    to nearest and clipped to its range (never wrapped)."""

    def __init__(self, base: Any, dtype: np.dtype) -> None:
        self.base = base
        self.dtype = np.dtype(dtype)
        self.shape = base.shape
        self.ndim = base.ndim

    def __dask_tokenize__(self) -> Any:
        from dask.base import tokenize

        return ("cast", tokenize(self.base), self.dtype.str)

    def __getitem__(self, key: Region) -> np.ndarray:
        data = self.base[key]
        if self.dtype.kind in "iu" and data.dtype != self.dtype:
            info = np.iinfo(self.dtype)
            if data.dtype.kind == "f":
                data = np.rint(data)
            data = np.clip(data, info.min, info.max)
        return data.astype(self.dtype, copy=False)


class ShapeOnlyArray:
    """Shape and dtype of data that is not accessible here (a dry run of a compressed file)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, reason: str) -> None:
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.reason = reason

    def __getitem__(self, key: Region) -> np.ndarray:
        raise RuntimeError(self.reason)


def create_scratch(
    folder: Path, name: str, shape: tuple[int, ...], dtype: np.dtype, order: str
) -> RawArrayFile | TransposedArray:
    """A writable raw file for an intermediate level, laid out like the source's blocks
    ('F': x fastest, stored as C-order z, y, x and viewed transposed)."""
    if order == "F":
        return TransposedArray(RawArrayFile.create(folder / name, shape[::-1], dtype), (2, 1, 0))
    return RawArrayFile.create(folder / name, shape, dtype)


def remove_scratch(arr: Any) -> None:
    """Delete the file behind a scratch array made by :func:`create_scratch`."""
    raw = arr.base if isinstance(arr, TransposedArray) else arr
    if isinstance(raw, RawArrayFile) and raw.writable:
        Path(raw.path).unlink(missing_ok=True)

