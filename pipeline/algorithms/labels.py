"""Label pyramid (DESIGN 7.2): category grids and set tables, chunk-parallel.

Level 2r voxel i holds the union of the segment sets of the level-r voxels 2i-1, 2i, 2i+1 along
each axis (clipped at the edges). :func:`label_step_block` does that for one block in numpy:
voxels whose window holds a single category keep it; the others get block-local combination
indices. The orchestrator merges the combinations of all blocks into the global
:class:`SetTable` and maps them to final category ids.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from pipeline.algorithms.pyramid import axis_slice
from pipeline.algorithms.set_table import (
    SetTable,
    lexsort_unique_rows,
    sorted_unique,
    unique_1d,
)

__all__ = [
    "LABEL_HALO",
    "SetTable",
    "StepResult",
    "distinct_pairs",
    "label_step_block",
    "present_values",
    "thread_buffer",
    "thread_buffer_like",
]

LABEL_HALO = 1  # samples needed on each side of a block
_SENTINEL = np.iinfo(np.uint32).max


def _window_taps(lo: int, n: int, out_start: int, out_stop: int, length: int) -> list[np.ndarray]:
    """Local indices of taps 2i-1, 2i, 2i+1 (clipped to the array) for outputs [start, stop)."""
    g = 2 * np.arange(out_start, out_stop)
    taps = [np.clip(g + d, 0, n - 1) - lo for d in (-1, 0, 1)]
    for t in taps:
        if t.size and (t.min() < 0 or t.max() >= length):
            raise ValueError("block does not cover the window of its outputs")
    return taps


_WORK = threading.local()


def thread_buffer(slot: int, shape: list[int] | tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An array of this thread's buffer ``slot``, reused block after block (valid until the
    thread asks for the slot again; slots 0-5 are the window extrema's). Fresh block-sized
    arrays are memory maps (see :mod:`pipeline.memory`) whose every page faults when first
    written, which costs several times the window passes themselves; a threaded runner's
    threads (and their buffers) end with their pass."""
    buffers = getattr(_WORK, "buffers", None)
    if buffers is None:
        buffers = _WORK.buffers = {}
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buffer = buffers.get(slot)
    if buffer is None or buffer.size < nbytes:
        buffer = buffers[slot] = np.empty(nbytes, np.uint8)
    return buffer[:nbytes].view(dtype).reshape(shape)


def thread_buffer_like(slot: int, like: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """:func:`thread_buffer` of the shape and memory order (C or F) of ``like``."""
    flip = like.flags.f_contiguous and not like.flags.c_contiguous
    if flip:
        return thread_buffer(slot, like.shape[::-1], dtype).T
    return thread_buffer(slot, like.shape, dtype)


def _window_reduce(
    v: np.ndarray,
    func: np.ufunc,
    axis: int,
    lo: int,
    n: int,
    o0: int,
    o1: int,
    slot: int | None = None,
) -> np.ndarray:
    """``func`` (minimum or maximum) over taps 2i-1, 2i, 2i+1 along ``axis`` (clipped at the
    array's edges), with strided slices written straight into the result: the outputs with
    both neighbours in two calls, the (at most two) edge outputs one by one. The result is a
    fresh array, or with ``slot`` this thread's reused buffer of that number."""
    m = o1 - o0
    c = 2 * o0 - lo  # local index of the first output's centre
    first = 1 if 2 * o0 - 1 < 0 else 0  # outputs from here have a left neighbour
    last = m if 2 * (o1 - 1) + 1 <= n - 1 else m - 1  # outputs below have a right neighbour
    shape = list(v.shape)
    shape[axis] = m
    out = np.empty(shape, v.dtype) if slot is None else thread_buffer(slot, shape, v.dtype)

    def taps(d: int, a: int, b: int) -> np.ndarray:  # tap d of outputs [a, b)
        return v[axis_slice(axis, slice(c + d + 2 * a, c + d + 2 * b - 1, 2))]

    if first < last:
        inner = out[axis_slice(axis, slice(first, last))]
        func(taps(-1, first, last), taps(0, first, last), out=inner)
        func(inner, taps(1, first, last), out=inner)
    for i in sorted({*range(first), *range(max(last, first), m)}):
        edge = out[axis_slice(axis, slice(i, i + 1))]
        edge[...] = taps(0, i, i + 1)
        if i >= first:
            func(edge, taps(-1, i, i + 1), out=edge)
        if i < last:
            func(edge, taps(1, i, i + 1), out=edge)
    return out


def _window_extrema(
    lo_v: np.ndarray,
    hi_v: np.ndarray,
    axis: int,
    lo: int,
    n: int,
    o0: int,
    o1: int,
    slot: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max over taps 2i-1, 2i, 2i+1 along ``axis`` (clipped at the array's edges);
    with ``slot``, in this thread's reused buffers ``slot`` and ``slot + 1``."""
    args = (axis, lo, n, o0, o1)
    hi_slot = None if slot is None else slot + 1
    return (
        _window_reduce(lo_v, np.minimum, *args, slot),
        _window_reduce(hi_v, np.maximum, *args, hi_slot),
    )


def _window_second(
    lo_v: np.ndarray,
    second: np.ndarray | None,
    mn: np.ndarray,
    kind: np.dtype,
    axis: int,
    lo: int,
    n: int,
    o0: int,
    o1: int,
) -> np.ndarray:
    """The second smallest distinct value (of dtype ``kind``, its largest value if none; no
    category may have that value) over taps 2i-1, 2i, 2i+1 along ``axis``, from each tap's
    smallest value ``lo_v`` and second smallest ``second`` (None: none yet) and the windows'
    minima ``mn`` (from :func:`_window_extrema`): the smallest of the taps' values above
    ``mn``. The pair
    (smallest, second smallest) of a union follows from those of its parts, so the three axes
    give it for the whole window. Strided slices as in :func:`_window_extrema`."""
    m = o1 - o0
    c = 2 * o0 - lo
    sentinel = np.array(np.iinfo(kind).max, kind)

    def above(taps: tuple[slice, ...], keep: tuple[slice, ...]) -> np.ndarray:
        part = lo_v[taps]
        out = np.where(part > mn[keep], part, sentinel)
        if second is not None:
            np.minimum(out, second[taps], out=out)
        return out

    everything = axis_slice(axis, slice(0, m))
    out = above(axis_slice(axis, slice(c, c + 2 * m - 1, 2)), everything)
    first = 1 if 2 * o0 - 1 < 0 else 0
    if first < m:
        keep = axis_slice(axis, slice(first, m))
        left = axis_slice(axis, slice(c - 1 + 2 * first, c - 1 + 2 * m - 1, 2))
        np.minimum(out[keep], above(left, keep), out=out[keep])
    last = m if 2 * (o1 - 1) + 1 <= n - 1 else m - 1
    if last > 0:
        keep = axis_slice(axis, slice(0, last))
        right = axis_slice(axis, slice(c + 1, c + 1 + 2 * last - 1, 2))
        np.minimum(out[keep], above(right, keep), out=out[keep])
    return out


@dataclass(frozen=True, slots=True)
class StepResult:
    """One block of level 2r before the global merge."""

    single: np.ndarray  # category where the window holds one category
    mixed: np.ndarray  # bool: the window holds several categories
    # (k, width) uint32: distinct sorted categories per combination, padded with the sentinel;
    # the combinations in the order of tuples
    combos: np.ndarray
    index: np.ndarray  # combination index of each mixed voxel (in np.nonzero(mixed) order)


_PRESENT_SLOT = 7  # thread_buffer slot of present_values (6: a label pass's reads)
_BATCH = 1 << 16  # mixed voxels whose windows are gathered at once (27 x 64 Ki samples)


def _distinct_rows(values: np.ndarray) -> np.ndarray:
    """Per row: the distinct values, ascending, as uint32 padded with the sentinel to the
    widest row (one row sort; the first of each run of equal values moved to the left)."""
    values.sort(axis=1)
    keep = np.ones(values.shape, bool)
    np.not_equal(values[:, 1:], values[:, :-1], out=keep[:, 1:])
    counts = keep.sum(axis=1)
    width = int(counts.max())
    out = np.full((values.shape[0], width), _SENTINEL, np.uint32)
    kept = values[keep]
    shift = np.arange(values.shape[0], dtype=np.int64) * width - (np.cumsum(counts) - counts)
    out.reshape(-1)[np.arange(kept.size, dtype=np.int64) + np.repeat(shift, counts)] = kept
    return out


def distinct_pairs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs ``(lo[i], hi[i])`` of unsigned categories, in the order of tuples,
    as (k, 2) uint32 rows, and each pair's row. Counted (no sort) when the categories are few:
    a pair is the number ``rank(lo) * r + rank(hi)`` among the ``r`` categories present."""
    top = int(max(lo.max(), hi.max())) + 1 if lo.size else 0
    if lo.size and top <= 1 << 20:
        seen = np.zeros(top, bool)
        seen[lo] = True
        seen[hi] = True
        values = np.flatnonzero(seen)
        r = values.size
        if r * r <= min(16 * lo.size, 1 << 23):  # counting beats sorting
            rank = np.cumsum(seen) - 1
            key = rank[lo] * r + rank[hi]
            counts = np.bincount(key, minlength=r * r)
            present = np.flatnonzero(counts)
            row = np.cumsum(counts > 0) - 1
            pairs = np.empty((present.size, 2), np.uint32)
            pairs[:, 0], pairs[:, 1] = values[present // r], values[present % r]
            return pairs, row[key]
    keys = (lo.astype(np.uint64) << np.uint64(32)) | hi.astype(np.uint64)
    first, inverse = unique_1d(keys)
    pairs = np.empty((first.size, 2), np.uint32)
    pairs[:, 0], pairs[:, 1] = lo[first], hi[first]
    return pairs, inverse


def _window_sets(
    flat: np.ndarray,
    strides: list[int],
    lo: tuple[int, ...],
    full_shape: tuple[int, ...],
    out_start: tuple[int, ...],
    where: tuple[np.ndarray, ...],
) -> np.ndarray:
    """Per output voxel of ``where`` (indices from ``out_start``): the sorted distinct
    categories of its window, padded with the sentinel to the widest row of this batch.
    ``flat`` is the block (starting at ``lo``) in memory order, ``strides`` its strides in
    samples; taps past the array's edges are clipped to it (no padded copy of the block)."""
    # the centre's flat index plus the taps' offsets; windows at the array's edges (few) get
    # their taps clipped
    base = np.zeros(where[0].size, np.int64)
    edge = np.zeros(where[0].size, bool)
    for w, st, first, n, o in zip(where, strides, lo, full_shape, out_start, strict=True):
        centre = 2 * (w.astype(np.int64) + o)
        base += (centre - first) * st
        edge |= (centre == 0) | (centre + 1 > n - 1)
    offsets = np.array([np.dot(d, strides) for d in np.ndindex(*(3,) * len(strides))])
    index = base[:, None] + (offsets - sum(strides))[None, :]
    if edge.any():
        at = np.flatnonzero(edge)
        clipped = None
        for w, st, first, n, o in zip(where, strides, lo, full_shape, out_start, strict=True):
            centre = 2 * (w[at].astype(np.int64) + o)
            taps = (np.clip(centre[:, None] + np.arange(-1, 2), 0, n - 1) - first) * st
            clipped = taps if clipped is None else (clipped[:, :, None] + taps[:, None, :])
            clipped = clipped.reshape(at.size, -1)
        index[at] = clipped
    return _distinct_rows(flat[index])


# block samples per mixed window below which gathering and sorting the 27 samples of every
# mixed window beats the second-smallest passes over the whole block (measured on 130x512x512
# uint16 blocks: 2.2x faster at 1/400 mixed, even at ~1/50 where most are two-category faces)
_GATHER_COST = 64


def _gathered_rows(
    block: np.ndarray,
    lo: tuple[int, ...],
    full_shape: tuple[int, ...],
    out_start: tuple[int, ...],
    where: tuple[np.ndarray, ...],
) -> np.ndarray:
    """The distinct categories of the full 3x3x3 window of each output voxel of ``where``,
    gathered in batches so the 27 columns never exist for the whole block at once."""
    if not (block.flags.c_contiguous or block.flags.f_contiguous):
        block = np.ascontiguousarray(block)
    flat = block.reshape(-1, order="C" if block.flags.c_contiguous else "F")
    strides = [st // block.itemsize for st in block.strides]
    parts = [
        _window_sets(
            flat, strides, lo, full_shape, out_start, tuple(w[s : s + _BATCH] for w in where)
        )
        for s in range(0, where[0].size, _BATCH)
    ]
    width = max(part.shape[1] for part in parts)
    return np.concatenate(
        [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=_SENTINEL) for p in parts]
    )


def _few_mixed(
    block: np.ndarray,
    lo: tuple[int, ...],
    full_shape: tuple[int, ...],
    out_start: tuple[int, ...],
    out_stop: tuple[int, ...],
    single: np.ndarray,
    mixed: np.ndarray,
) -> StepResult:
    """The step of a block with few mixed windows: every mixed window's distinct categories
    from its samples, the combinations distinct and in the order of tuples."""
    rows = _gathered_rows(block, lo, full_shape, out_start, np.nonzero(mixed))
    first, inverse = lexsort_unique_rows(rows, sentinel_first=True)
    return StepResult(single, mixed, rows[first], inverse.astype(np.int64, copy=False))


def label_step_block(
    block: np.ndarray,
    lo: tuple[int, ...],
    full_shape: tuple[int, ...],
    out_start: tuple[int, ...],
    out_stop: tuple[int, ...],
) -> StepResult:
    """Level-2r windows ``[out_start, out_stop)`` of a level-r block of unsigned categories
    (up to 32 bits) starting at ``lo``; ``single`` keeps the block's dtype.

    The block must cover samples ``2*out_start - 1 .. 2*(out_stop - 1) + 1`` (clipped).
    """
    for a in range(block.ndim):  # the block covers the windows (clipped at the array's edges)
        _window_taps(lo[a], full_shape[a], out_start[a], out_stop[a], block.shape[a])
    # min/max along each axis, in memory order (slowest-varying axis first), keeping the
    # minima of each stage for the second smallest value below
    flip = block.flags.f_contiguous and not block.flags.c_contiguous
    lo_v = hi_v = block.T if flip else block
    stages = []
    for vaxis in range(block.ndim):
        axis = block.ndim - 1 - vaxis if flip else vaxis
        args = (lo[axis], full_shape[axis], out_start[axis], out_stop[axis])
        stages.append((lo_v, vaxis, args))
        # the intermediate axes' results and the last maxima in reused buffers (the last
        # minima are returned: the voxels of one category)
        if vaxis < block.ndim - 1:
            lo_v, hi_v = _window_extrema(lo_v, hi_v, vaxis, *args, 2 * vaxis)
        else:
            hi_v = _window_reduce(hi_v, np.maximum, vaxis, *args, 2 * vaxis + 1)
            lo_v = _window_reduce(lo_v, np.minimum, vaxis, *args)
    if flip:
        lo_v, hi_v = lo_v.T, hi_v.T
    mixed = lo_v != hi_v
    if not mixed.any():
        empty = np.zeros((0, 1), np.uint32)
        return StepResult(lo_v, mixed, empty, np.zeros(0, np.int64))
    if int(np.count_nonzero(mixed)) * _GATHER_COST <= block.size:
        # few mixed windows (large regions): the samples of all of them, no second pass
        # over the block (the rows of two categories sort with the others)
        return _few_mixed(block, lo, full_shape, out_start, out_stop, lo_v, mixed)
    # the second smallest distinct value, which tells windows of two categories (in the
    # block's dtype, whose largest value marks "none", if the block lacks that value)
    kind = block.dtype
    if block.size and int(block.max()) == np.iinfo(kind).max:
        kind = np.dtype(np.uint32)
    second = None
    minima = [below for below, _, _ in stages[1:]] + [lo_v.T if flip else lo_v]
    for (below, vaxis, args), mn in zip(stages, minima, strict=True):
        second = _window_second(below, second, mn, kind, vaxis, *args)
    if flip:
        second = second.T
    # windows of exactly two categories: (smallest, largest), one packed key each
    mixed_hi = hi_v[mixed]
    two = second[mixed] == mixed_hi
    pairs, pair_inverse = distinct_pairs(lo_v[mixed][two], mixed_hi[two])
    if two.all():  # (pairs in key order: the order of tuples)
        return StepResult(lo_v, mixed, pairs, pair_inverse)
    index = np.empty(two.size, np.int64)
    where = np.nonzero(mixed & (second != hi_v))
    rows = _gathered_rows(block, lo, full_shape, out_start, where)
    # the combinations in the order of tuples (the merge of all blocks' combinations then
    # finds runs in order): the wider rows sorted, the pairs merged in by their first two
    # categories (a pair goes before the wider rows it starts)
    first, inverse = lexsort_unique_rows(rows, sentinel_first=True)
    wide = rows[first]
    pair_keys = (pairs[:, 0].astype(np.uint64) << np.uint64(32)) | pairs[:, 1]
    wide_keys = (wide[:, 0].astype(np.uint64) << np.uint64(32)) | wide[:, 1]
    pair_at = np.arange(pair_keys.size) + np.searchsorted(wide_keys, pair_keys, side="left")
    wide_at = np.arange(wide_keys.size) + np.searchsorted(pair_keys, wide_keys, side="right")
    combos = np.full((pair_keys.size + wide_keys.size, max(rows.shape[1], 2)), _SENTINEL, np.uint32)
    combos[pair_at, :2] = pairs
    combos[wide_at, : rows.shape[1]] = wide
    index[two] = pair_at[pair_inverse]
    index[~two] = wide_at[inverse]
    return StepResult(lo_v, mixed, combos, index)


def present_values(block: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a non-negative integer block (bincount when they are small)."""
    if block.size == 0:
        return np.zeros(0, np.uint32)
    top = int(block.max())
    if top < 1 << 22:
        wide = thread_buffer_like(_PRESENT_SLOT, block, np.dtype(np.intp))  # bincount's type
        np.copyto(wide, block, casting="unsafe")
        counts = np.bincount(wide.ravel(order="K"), minlength=top + 1)
        return np.nonzero(counts)[0].astype(np.uint32)
    return sorted_unique(block.ravel(order="K")).astype(np.uint32)


