"""Intensity pyramid (DESIGN section 7.1): separable binomial [1,4,6,4,1]/16, mirror edges, [::2].

``downsample_block`` is the pure numpy kernel: it turns a level-r block read with a halo of
:data:`HALO` samples (clipped at the array's edges) into the level-2r samples of that block.
"""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["HALO", "accumulator_dtype", "downsample_block", "mirror_index", "output_range"]

HALO = 2  # samples needed on each side of a block

# per-thread scratch arrays reused from block to block: block-sized temporaries lie above the
# memory-map threshold (pipeline.memory), so fresh ones cost a mapping and zeroed pages each.
# Up to a size: every slot of both threads stays resident between blocks, so the float64
# temporaries of large integer blocks (4x the block, and half and a quarter of that) raised
# the peak of a 2 GiB uint16 OME-Zarr from ~730 to ~960 MiB for ~4 % of its time.
_SCRATCH = threading.local()
_SCRATCH_LIMIT = 16 * 2**20  # larger temporaries are fresh arrays, freed after use


def _scratch(slot: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """This thread's scratch array ``slot`` as an uninitialised C-ordered ``shape`` of
    ``dtype`` (valid until the thread asks for the same slot again); a fresh array above
    ``_SCRATCH_LIMIT`` bytes."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > _SCRATCH_LIMIT:
        return np.empty(shape, dtype)
    buf = getattr(_SCRATCH, slot, None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(nbytes, dtype=np.uint8)
        setattr(_SCRATCH, slot, buf)
    return buf[:nbytes].view(dtype).reshape(shape)


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


def axis_slice(axis: int, sl: slice | np.ndarray) -> tuple[slice | np.ndarray, ...]:
    """An index selecting ``sl`` along ``axis`` and everything along the axes before it."""
    return (slice(None),) * axis + (sl,)


def _filter_axis(
    a: np.ndarray,
    axis: int,
    lo: int,
    n: int,
    out_start: int,
    out_stop: int,
    scratch: str | None = None,
) -> np.ndarray:
    """Filter along ``axis`` and keep global samples 2*i, i in [out_start, out_stop).

    ``a`` holds global samples ``[lo, lo + a.shape[axis])`` of an axis of length ``n``. Outputs
    whose five taps lie inside the array are strided slices of ``a`` (no copy of the block); the
    one or two outputs next to a global edge gather their mirrored taps individually. With
    ``scratch``, the result is that scratch array of this thread (see :func:`_scratch`).
    """
    if n == 1:
        return a
    m = out_stop - out_start
    shape = list(a.shape)
    shape[axis] = m
    if scratch is None:
        out = np.empty(shape, dtype=a.dtype)
    else:
        out = _scratch(scratch, tuple(shape), a.dtype)
    # output i has taps at global 2*(out_start + i) - 2 .. + 2
    i0 = max(0, 1 - out_start)  # first output with tap 0 >= 0
    i1 = min(m, (n - 3) // 2 - out_start + 1)  # outputs < i1 have tap 4 <= n - 1
    if i1 > i0:
        first = 2 * (out_start + i0) - 2 - lo  # local index of tap 0 of output i0
        count = i1 - i0

        def tap(k: int) -> np.ndarray:
            return a[axis_slice(axis, slice(first + k, first + k + 2 * count - 1, 2))]

        inner = out[axis_slice(axis, slice(i0, i1))]
        _weigh([tap(k) for k in range(5)], inner, _scratch("six", inner.shape, a.dtype))
    edges = [i for i in range(m) if i < i0 or i >= max(i1, i0)]
    for i in edges:
        g = 2 * (out_start + i)
        taps = mirror_index(np.arange(g - HALO, g + HALO + 1), n) - lo
        planes = [a[axis_slice(axis, slice(t, t + 1))] for t in taps]
        _weigh(planes, out[axis_slice(axis, slice(i, i + 1))])
    return out


def _weigh(taps: list[np.ndarray], out: np.ndarray, six: np.ndarray | None = None) -> None:
    """``out = (taps[0] + 4 taps[1] + 6 taps[2] + 4 taps[3] + taps[4]) / 16``, elementwise in one
    fixed order, so a sample's value never depends on the block it was computed in (``six``:
    an array of ``out``'s shape for ``6 taps[2]``)."""
    np.add(taps[1], taps[3], out=out)
    out *= 4
    out += taps[0]
    out += taps[4]
    out += np.multiply(taps[2], out.dtype.type(6), out=six)
    out *= out.dtype.type(1 / 16)


def output_range(start: int, stop: int) -> tuple[int, int]:
    """Level-2r samples whose centre lies in level-r samples ``[start, stop)``: 2i in range.

    >>> output_range(128, 257)
    (64, 129)
    """
    return (start + 1) // 2, (stop + 1) // 2


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
    The result has the input's dtype (integers rounded to nearest and clipped) and layout.

    >>> downsample_block(np.arange(5.0), (0,), (5,), (0,), (3,)).tolist()
    [0.75, 2.0, 3.25]
    """
    if block.ndim > 1 and block.flags.f_contiguous and not block.flags.c_contiguous:
        # work in memory order: the filter is the same along every axis
        rev = slice(None, None, -1)
        return downsample_block(block.T, lo[rev], full_shape[rev], out_start[rev], out_stop[rev]).T
    acc = accumulator_dtype(block.dtype)
    if block.dtype == acc:
        work = block
    else:
        work = _scratch("acc", block.shape, acc)
        np.copyto(work, block, casting="safe")
    # slowest axis first, on the largest array; the contiguous axis last, on the smallest; the
    # steps before the last axis that filters (the result, a new array) in scratch arrays
    last = max((axis for axis in range(block.ndim) if full_shape[axis] > 1), default=-1)
    for axis in range(block.ndim):
        slot = None if axis == last else f"axis{axis % 2}"
        work = _filter_axis(
            work, axis, lo[axis], full_shape[axis], out_start[axis], out_stop[axis], slot
        )
    if block.dtype.kind in "iu":
        info = np.iinfo(block.dtype)
        work = np.clip(np.rint(work), info.min, info.max)
    return work.astype(block.dtype, copy=False)
