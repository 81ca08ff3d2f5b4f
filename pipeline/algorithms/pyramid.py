"""Intensity pyramid (DESIGN section 7.1): separable binomial [1,4,6,4,1]/16, mirror edges, [::2].

``downsample_block`` is the pure numpy kernel; ``downsample`` wraps it over a dask array whose
blocks start at even indices, with a halo of 2 samples taken from the neighbouring blocks.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

__all__ = ["accumulator_dtype", "downsample", "downsample_block", "mirror_index"]

_HALO = 2
_WEIGHTS = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16


def mirror_index(index: np.ndarray, n: int) -> np.ndarray:
    """Reflect indices about the edge samples (``d c b | a b c d | c b a``) into ``[0, n)``.

    >>> mirror_index(np.array([-2, -1, 0, 3, 4, 5]), 4).tolist()
    [2, 1, 0, 3, 2, 1]
    """
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    k = np.mod(index, period)
    return np.where(k < n, k, period - k)


def accumulator_dtype(dtype: np.dtype) -> np.dtype:
    """float32 for float16/float32 input, float64 for float64 and every integer type."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _axis_slice(axis: int, sl: slice | np.ndarray) -> tuple[slice | np.ndarray, ...]:
    return (slice(None),) * axis + (sl,)


def _filter_axis(
    a: np.ndarray, axis: int, lo: int, n: int, out_start: int, out_stop: int
) -> np.ndarray:
    """Filter along ``axis`` and keep global samples 2*i, i in [out_start, out_stop).

    ``a`` holds global samples ``[lo, lo + a.shape[axis])`` of an axis of length ``n``. Outputs
    whose five taps lie inside the array are strided slices of ``a`` (no copy of the block); the
    one or two outputs next to a global edge gather their mirrored taps individually.
    """
    if n == 1:
        return a
    m = out_stop - out_start
    shape = list(a.shape)
    shape[axis] = m
    out = np.empty(shape, dtype=a.dtype)
    # output i has taps at global 2*(out_start + i) - 2 .. + 2
    i0 = max(0, 1 - out_start)  # first output with tap 0 >= 0
    i1 = min(m, (n - 3) // 2 - out_start + 1)  # outputs < i1 have tap 4 <= n - 1
    if i1 > i0:
        first = 2 * (out_start + i0) - 2 - lo  # local index of tap 0 of output i0
        count = i1 - i0

        def tap(k: int) -> np.ndarray:
            return a[_axis_slice(axis, slice(first + k, first + k + 2 * count - 1, 2))]

        o = out[_axis_slice(axis, slice(i0, i1))]
        np.add(tap(1), tap(3), out=o)
        o *= 4
        o += tap(0)
        o += tap(4)
        o += tap(2) * a.dtype.type(6)
        o *= a.dtype.type(1 / 16)
    edges = [i for i in range(m) if i < i0 or i >= max(i1, i0)]
    for i in edges:
        g = 2 * (out_start + i)
        taps = mirror_index(np.arange(g - _HALO, g + _HALO + 1), n) - lo
        planes = np.take(a, taps, axis=axis)
        weighted = np.tensordot(_WEIGHTS.astype(a.dtype), planes, axes=([0], [axis]))
        out[_axis_slice(axis, slice(i, i + 1))] = np.expand_dims(weighted, axis)
    return out


def downsample_block(
    block: np.ndarray,
    lo: tuple[int, ...],
    full_shape: tuple[int, ...],
    out_start: tuple[int, ...],
    out_stop: tuple[int, ...],
) -> np.ndarray:
    """Level-2r samples ``[out_start, out_stop)`` from a level-r block.

    ``block`` holds level-r samples starting at global index ``lo`` (per axis) and must cover
    ``2*out_start - 2 .. 2*(out_stop - 1) + 2`` after mirroring at the array edges.
    The result has the input's dtype (integers rounded to nearest and clipped).
    """
    acc = accumulator_dtype(block.dtype)
    work = block.astype(acc, copy=False)
    # the fastest-varying (last) axis is done last, on the smallest array
    for axis in range(block.ndim):
        work = _filter_axis(work, axis, lo[axis], full_shape[axis], out_start[axis], out_stop[axis])
    if block.dtype.kind in "iu":
        info = np.iinfo(block.dtype)
        work = np.clip(np.rint(work), info.min, info.max)
    return work.astype(block.dtype, copy=False)


def _out_chunks(chunks: tuple[int, ...], n: int) -> tuple[int, ...]:
    if n == 1:
        return chunks
    return tuple((c + 1) // 2 for c in chunks)


def downsample(arr: da.Array) -> da.Array:
    """One level down: a lazy dask array of ``ceil(n / 2)`` samples per axis (1 stays 1).

    Every chunk of ``arr`` but the last along each axis must have an even length.
    """
    for axis_chunks in arr.chunks:
        if any(c % 2 for c in axis_chunks[:-1]):
            raise ValueError(f"chunks must be even except the last: {arr.chunks}")
    shape = arr.shape
    depth = {axis: (_HALO if n > 1 else 0) for axis, n in enumerate(shape)}
    starts = [np.cumsum((0, *c[:-1])).tolist() for c in arr.chunks]
    ends = [np.cumsum(c).tolist() for c in arr.chunks]
    padded = da.overlap.overlap(arr, depth=depth, boundary="none", allow_rechunk=False)

    def kernel(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        loc = block_info[None]["chunk-location"]  # type: ignore[index]
        s = [starts[a][i] for a, i in enumerate(loc)]
        e = [ends[a][i] for a, i in enumerate(loc)]
        lo = tuple(max(s[a] - depth[a], 0) for a in range(len(shape)))
        # level-2r sample i sits on level-r sample 2i (an axis of length 1 maps 0 -> 0)
        o0 = tuple(v // 2 for v in s)
        o1 = tuple((v + 1) // 2 for v in e)
        return downsample_block(block, lo, shape, o0, o1)

    out_chunks = tuple(_out_chunks(c, n) for c, n in zip(arr.chunks, shape, strict=True))
    return da.map_blocks(
        kernel,
        padded,
        chunks=out_chunks,
        dtype=arr.dtype,
        meta=np.empty((0,) * arr.ndim, arr.dtype),
        name=f"downsample-{da.core.tokenize(arr)}",
    )
