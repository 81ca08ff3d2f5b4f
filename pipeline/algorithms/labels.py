"""Label pyramid (DESIGN 7.2): category grids and set tables, chunk-parallel.

Level 2r voxel i holds the union of the segment sets of the level-r voxels 2i-1, 2i, 2i+1 along
each axis (clipped at the edges). :func:`label_step_block` does that for one block in numpy:
voxels whose window holds a single category keep it; the others get block-local combination
indices. The orchestrator merges the combinations of all blocks into the global
:class:`SetTable` and maps them to final category ids.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from pipeline.algorithms.pyramid import axis_slice
from pipeline.algorithms.set_table import (
    SetTable,
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
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
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
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``func`` (minimum or maximum) over taps 2i-1, 2i, 2i+1 along ``axis`` (clipped at the
    array's edges), with strided slices written straight into the result: the outputs with
    both neighbours in two calls, the (at most two) edge outputs one by one. The result is
    ``out``, a fresh array, or with ``slot`` this thread's reused buffer of that number."""
    m = o1 - o0
    c = 2 * o0 - lo  # local index of the first output's centre
    first = 1 if 2 * o0 - 1 < 0 else 0  # outputs from here have a left neighbour
    last = m if 2 * (o1 - 1) + 1 <= n - 1 else m - 1  # outputs below have a right neighbour
    shape = list(v.shape)
    shape[axis] = m
    if out is None:
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
    slot: int | None = None,
) -> np.ndarray:
    """The second smallest distinct value over taps 2i-1, 2i, 2i+1 along ``axis``, or the
    smallest if there is none (of dtype ``kind``, whose largest value no category may have),
    from each tap's smallest value ``lo_v`` and second smallest ``second`` (the same meaning;
    None: ``lo_v`` itself) and the windows' minima ``mn`` (from :func:`_window_extrema`): the
    smallest of the taps' values above ``mn``. The pair (smallest, second smallest) of a union
    follows from those of its parts, so the three axes give it for the whole window.

    Each candidate is taken as ``value - (mn + 1)`` in ``kind``'s wrapping arithmetic: a
    value equal to ``mn`` (not a candidate) wraps to the largest value, the others keep
    their order; ``mn + 1`` is added back at the end (the largest value wraps back to
    ``mn``: none). Strided slices as in :func:`_window_extrema`; with ``slot``, the result is
    this thread's buffer ``slot`` and ``_SECOND_SLOT`` + 2 to + 4 its scratch."""
    m = o1 - o0
    c = 2 * o0 - lo

    def buffer(number: int) -> np.ndarray:
        if slot is None:
            return np.empty(mn.shape, kind)
        return thread_buffer(number, mn.shape, kind)

    out = buffer(slot or 0)
    above, scratch, step = (buffer(_SECOND_SLOT + i) for i in (2, 3, 4))
    np.add(mn, kind.type(1), out=step)

    def candidates(taps: tuple[slice, ...], keep: tuple[slice, ...], into: np.ndarray) -> None:
        np.subtract(lo_v[taps], step[keep], out=into, dtype=kind)
        if second is not None:
            np.subtract(second[taps], step[keep], out=scratch[keep], dtype=kind)
            np.minimum(into, scratch[keep], out=into)

    candidates(axis_slice(axis, slice(c, c + 2 * m - 1, 2)), axis_slice(axis, slice(0, m)), out)
    first = 1 if 2 * o0 - 1 < 0 else 0  # outputs from here have a left neighbour
    last = m if 2 * (o1 - 1) + 1 <= n - 1 else m - 1  # outputs below have a right neighbour
    for d, a, b in ((-1, first, m), (1, 0, last)):
        if a < b:
            keep = axis_slice(axis, slice(a, b))
            taps = axis_slice(axis, slice(c + d + 2 * a, c + d + 2 * b - 1, 2))
            candidates(taps, keep, above[keep])
            np.minimum(out[keep], above[keep], out=out[keep])
    np.add(out, step, out=out)
    return out


@dataclass(frozen=True, slots=True)
class StepResult:
    """One block of level 2r before the global merge."""

    single: np.ndarray  # category where the window holds one category
    mixed: np.ndarray  # bool: the window holds several categories
    # the distinct combinations, as parts of rows of one width each ((k, width) uint32: sorted
    # categories), narrowest first, each in the order of tuples
    combos: tuple[np.ndarray, ...]
    # combination index of each mixed voxel (in np.nonzero(mixed) order): its row's place in
    # the parts one after the other
    index: np.ndarray

    @property
    def rows(self) -> int:
        """The number of combinations."""
        return sum(part.shape[0] for part in self.combos)


# thread_buffer slots of present_values: its table and index runs (6: a label pass's reads)
_PRESENT_SLOT, _PRESENT_INDEX_SLOT = 7, 38
# thread_buffer slots of the step (8-10: a label pass's categories and scratch values)
_LENGTHS_SLOT, _WORDS_SLOT, _CODE_SLOT, _EXTREMA_SLOT, _TWO_SLOT = 11, 12, 13, 14, 15
_PAIRS_SLOT = 16  # and 17
_SECOND_SLOT = 18  # to 22
_SORT_SLOT = 23  # to 26
_WHERE_SLOT = 27
_GATHER_SLOT = 28  # to 32: a batch of gathered windows (indices, samples, columns)
_START_SLOT = 33  # each gathered window's second smallest category, or its minimum
_TRANSPOSED_SLOT = 35  # and 36: the codes in the order of the block's transpose
# the windows' pair keys (needed only before the codes are transposed: one buffer to fault)
_PAIR_KEY_SLOT = _TRANSPOSED_SLOT
_TRANSPOSE_ROWS = 4
_DIRECT_PAIRS = 1 << 23  # pair tables counted over the whole block up to this size
_PAIR_COUNTING = 64  # ... and up to this many entries per pair window
_SLAB_BYTES = 1 << 20  # a slab of the block's windows: about this many bytes of its slowest axis
_BATCH = 1 << 14  # mixed windows gathered at once (their 27 samples stay in the caches)


def distinct_pairs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pairs ``(lo[i], hi[i])`` of unsigned categories, in the order of tuples,
    as (k, 2) uint32 rows, and each pair's row. Counted (no sort) when the categories are few:
    a pair is the number ``lo * top + hi`` (``top``: above every category), or where the
    categories are sparse ``rank(lo) * r + rank(hi)`` among the ``r`` categories present."""
    top = int(max(lo.max(), hi.max())) + 1 if lo.size else 0
    limit = min(64 * lo.size, 1 << 23)  # counting beats sorting
    values = None
    if lo.size and top <= 1 << 20 and top * top > limit:
        seen = np.zeros(top, bool)
        seen[lo] = True
        seen[hi] = True
        values = np.flatnonzero(seen)
    if lo.size and (top * top <= limit or (values is not None and values.size**2 <= limit)):
        if values is None:
            r = top
            key = lo.astype(np.int64)
            key *= r
            key += hi
        else:
            r = values.size
            rank = np.cumsum(seen, dtype=np.int64) - 1
            key = rank[lo]
            key *= r
            key += rank[hi]
        # (reused buffers: the table of rows is read only where a pair was seen)
        found = thread_buffer(_PAIRS_SLOT, (r * r,), np.dtype(bool))
        found[...] = False
        found[key] = True
        present = np.flatnonzero(found)
        row = thread_buffer(_PAIRS_SLOT + 1, (r * r,), np.dtype(np.int32))  # (r * r <= 2**23)
        row[present] = np.arange(present.size, dtype=np.int32)
        first, second = np.divmod(present, r)
        pairs = np.empty((present.size, 2), np.uint32)
        if values is None:
            pairs[:, 0], pairs[:, 1] = first, second
        else:
            pairs[:, 0], pairs[:, 1] = values[first], values[second]
        return pairs, row[key]
    keys = (lo.astype(np.uint64) << np.uint64(32)) | hi.astype(np.uint64)
    first, inverse = unique_1d(keys)
    pairs = np.empty((first.size, 2), np.uint32)
    pairs[:, 0], pairs[:, 1] = lo[first], hi[first]
    return pairs, inverse


@dataclass(frozen=True, slots=True)
class _Taps:
    """Where the samples of a block's windows are (flat indices into the C-ordered block)."""

    tables: list[np.ndarray]  # per axis, (outputs, 3): the taps' offsets, clipped to the array
    offsets: np.ndarray  # the 3**ndim taps' offsets from the centre, away from the edges
    row_base: np.ndarray  # per row of outputs (all axes but the last): its centres' offset
    row_edge: np.ndarray  # ... whether its windows meet the array's edge
    column_base: np.ndarray  # per output along the last axis: its centre's offset
    column_edge: np.ndarray  # ... whether its window meets the array's edge


def _tap_tables(
    view: np.ndarray,
    lo: tuple[int, ...],
    full_shape: tuple[int, ...],
    out_start: tuple[int, ...],
    out_stop: tuple[int, ...],
) -> _Taps:
    """The taps 2i-1, 2i, 2i+1 of each output along each axis, clipped to the array's edges (a
    clipped tap repeats the centre), as flat offsets (in samples) into ``view``."""
    tables = []
    offsets = np.zeros(1, np.int64)
    for a in range(view.ndim):
        taps = _window_taps(lo[a], full_shape[a], out_start[a], out_stop[a], view.shape[a])
        stride = view.strides[a] // view.itemsize
        tables.append(np.stack(taps, axis=1).astype(np.int64) * stride)
        offsets = (offsets[:, None] + stride * np.arange(-1, 2)[None, :]).reshape(-1)
    edges = [(t[:, 0] == t[:, 1]) | (t[:, 2] == t[:, 1]) for t in tables]
    row_base, row_edge = np.zeros(1, np.int64), np.zeros(1, bool)
    for table, edge in zip(tables[:-1], edges[:-1], strict=True):
        row_base = (row_base[:, None] + table[None, :, 1]).reshape(-1)
        row_edge = (row_edge[:, None] | edge[None, :]).reshape(-1)
    return _Taps(tables, offsets, row_base, row_edge, tables[-1][:, 1].copy(), edges[-1])


def _window_index(
    taps: _Taps, out_shape: tuple[int, ...], where: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """The flat indices (3**ndim, len(where)), in ``out``, of the samples of the windows of
    the outputs at flat (C order) positions ``where``, tap by tap: the centre plus
    ``offsets``; windows at the array's edges (few) get their taps from the per-axis tables
    (clipped)."""
    row, column = np.divmod(where, out_shape[-1])
    base = taps.row_base[row]
    base += taps.column_base[column]
    np.add(base[None, :], taps.offsets[:, None], out=out)
    edge = taps.row_edge[row]
    edge |= taps.column_edge[column]
    if edge.any():
        at = np.flatnonzero(edge)
        coords = np.unravel_index(where[at], out_shape)
        clipped = np.zeros((at.size, 1), np.int64)
        for table, c in zip(taps.tables, coords, strict=True):
            clipped = (clipped[:, :, None] + table[c][:, None, :]).reshape(at.size, -1)
        out[:, at] = clipped.T
    return out


def _packing(top: int) -> tuple[int, int]:
    """(bits, columns per 64-bit word) of row values up to ``top`` shifted up by one (the
    sentinel wraps to 0, below every category: rows then sort as tuples)."""
    bits = max(int(top + 1).bit_length(), 1)
    return bits, 64 // bits


def _window_words(
    view: np.ndarray,
    taps: _Taps,
    out_shape: tuple[int, ...],
    where: np.ndarray,
    start: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    kind: np.dtype,
    top: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct categories of the full 3x3x3 window of each output at flat (C order)
    position ``where``: (words, lengths). ``words`` (k, len(where)) uint64, most significant
    first (k: as many as the widest row needs), hold each window's distinct categories
    ascending and are their sort keys: the categories + 1, packed big-endian (0 past a row's
    end: rows sort as tuples; the rows themselves come back from them, :func:`_unpack_rows`);
    ``lengths`` (uint8) each row's number of categories.
    ``low`` and ``high`` are the windows' minima and maxima (by output position), ``start``
    each window's second smallest category where known, its minimum otherwise.

    Windows are taken in batches whose temporaries stay in the caches, their samples gathered
    tap by tap (a row per tap, a column per window); the categories then come one column at
    a time, smallest first, each the smallest sample above the one before (``kind``'s
    wrapping subtraction of that one + 1, a minimum down the taps, the same added back),
    until the window's maximum: two vectorised operations per category over the batch,
    instead of sorting every window's samples. Once half of the batch's windows are complete
    the others are taken apart. ``words`` and ``lengths`` are this thread's reused buffers."""
    flat = view.reshape(-1)
    if flat.dtype != kind:
        flat = flat.astype(kind)
    size = 3**view.ndim
    bits, per_word = _packing(top)
    count = where.size
    words = thread_buffer(_WORDS_SLOT, (-(-size // per_word), count), np.dtype(np.uint64))
    lengths = thread_buffer(_LENGTHS_SLOT, (count,), np.dtype(np.uint8))
    width = 1
    batch = max(min(int(_BATCH), count), 1)
    one = kind.type(1)
    low_flat, high_flat = low.reshape(-1), high.reshape(-1)
    # (the columns of a batch: a window's categories + 1, 0 past its last)
    columns = thread_buffer(_GATHER_SLOT + 3, (size + 1, batch), kind)
    dirty = size + 1
    part = thread_buffer(_GATHER_SLOT + 4, (batch,), np.dtype(np.uint64))
    for s in range(0, count, batch):
        e = min(s + batch, count)
        n = e - s
        at = where[s:e]
        index = thread_buffer(_GATHER_SLOT, (size, n), np.dtype(np.int64))
        index = _window_index(taps, out_shape, at, index)
        samples = thread_buffer(_GATHER_SLOT + 1, (size, n), kind)
        np.take(flat, index, out=samples, mode="wrap")
        cols = columns.reshape(-1)[: (size + 1) * n].reshape(size + 1, n)
        if n != batch:  # (the last, shorter batch lays the buffer out anew: all of it zeroed)
            dirty = size + 1
        cols[:dirty] = 0  # (the columns past ``dirty`` are still 0 from the batch before)
        first = low_flat[at].astype(kind)
        np.add(first, one, out=cols[0])
        last = high_flat[at].astype(kind)
        t = start[s:e].astype(kind)
        if np.array_equal(t, first):  # (no second categories known: all from the minimum)
            col = 1
        elif bool(np.all(t != first)):
            np.add(t, one, out=cols[1])
            col = 2
        else:  # (a batch across slabs of both kinds)
            t = first.copy()
            col = 1
        act = None  # the batch's windows still in the arrays (None: all)
        m = n
        taken, above = samples, thread_buffer(_GATHER_SLOT + 2, (size, n), kind)
        alive = t != last
        while bool(alive.any()):
            t1 = t + one
            scratch = above.reshape(-1)[: size * m].reshape(size, m)
            np.subtract(taken, t1, out=scratch)
            nxt = np.minimum.reduce(scratch, axis=0)
            nxt += t1  # (complete windows: their minimum, below ``t``)
            value = nxt + one
            value *= alive
            if act is None:
                cols[col] = value
            else:
                cols[col, act] = value
            np.maximum(t, nxt, out=t)
            col += 1
            np.not_equal(t, last, out=alive)
            k = int(np.count_nonzero(alive))
            if 0 < k <= m // 2:  # (the complete windows taken out)
                keep = np.flatnonzero(alive)
                taken = np.take(taken, keep, axis=1)
                t, last, alive = t[keep], last[keep], alive[keep]
                act = keep if act is None else act[keep]
                m = k
        width = max(width, col)
        dirty = col
        lengths[s:e] = np.count_nonzero(cols[:col], axis=0)
        for w in range(-(-col // per_word)):  # word w holds columns w * per_word ... big-endian
            word = words[w, s:e]
            word[...] = 0
            for j in range(min(per_word, col - w * per_word)):
                bit = part[:n]
                np.copyto(bit, cols[w * per_word + j])
                bit <<= np.uint64(bits * (per_word - 1 - j))
                word |= bit
        if -(-col // per_word) < words.shape[0]:
            words[-(-col // per_word) :, s:e] = 0
    return words[: -(-width // per_word)], lengths


def _unpack_rows(
    words: np.ndarray, at: np.ndarray, width: int, bits: int, out: np.ndarray
) -> None:
    """The rows of windows ``at`` (their categories ascending, then the uint32 sentinel) from
    their sort words (:func:`_window_words`) into ``out`` (uint32, at least ``width``
    columns): each column is its ``bits`` of a word, less 1 (0, past a row's end, wraps to
    the sentinel)."""
    per_word = 64 // bits
    mask = np.uint64((1 << bits) - 1)
    for w in range(-(-width // per_word)):
        word = words[w].take(at)
        for j in range(min(per_word, width - w * per_word)):
            column = np.right_shift(word, np.uint64(bits * (per_word - 1 - j)))
            column &= mask
            np.subtract(column, np.uint64(1), out=out[:, w * per_word + j], casting="unsafe")
    out[:, width:] = _SENTINEL


def _sort_words(words: np.ndarray, bits: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique_1d` of rows given by their sort words (k, n), most significant first:
    the first row of each distinct row in key order and every row's group.

    One sort by the leading word: where its top bits hold at least four columns of ``bits``
    bits besides the row numbers, a plain sort of those bits with the row number below them
    (a sort is faster than an argsort); then only the runs of one key whose rows differ in the
    other words (runs of equal rows need no more sorting) are sorted by those words. The
    groups are this thread's reused buffer."""
    n = words.shape[1]
    lead = words[0]
    index_bits = max(int(n - 1).bit_length(), 1)
    drop = max(int(lead.max()).bit_length() + index_bits - 64, 0) if n else 0
    # (n-sized temporaries in this thread's reused buffers: fresh ones fault every page)
    ordered = thread_buffer(_SORT_SLOT, (n,), np.dtype(np.uint64))
    order = thread_buffer(_SORT_SLOT + 1, (n,), np.dtype(np.int64))
    if drop == 0 or int(lead.max()).bit_length() - drop >= _KEY_COLUMNS * bits:
        key = np.right_shift(lead, np.uint64(drop), out=ordered)
        key <<= np.uint64(index_bits)
        key |= np.arange(n, dtype=np.uint64)
        key.sort()
        np.bitwise_and(key, np.uint64((1 << index_bits) - 1), out=order.view(np.uint64))
        key >>= np.uint64(index_bits)
    else:
        drop = 0
        order = np.argsort(lead)
        np.take(lead, order, out=ordered)
    others = words if drop else words[1:]  # the words a run of one key may differ in
    new = np.ones(n, bool)
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    tied = np.flatnonzero(~new)  # sorted rows with the key of the row before
    for level in range(len(others)):
        # the runs whose rows differ in the words from ``level`` on, sorted by that word
        this, before = order[tied], order[tied - 1]
        differ = np.zeros(tied.size, bool)
        for w in others[level:]:
            differ |= w[this] != w[before]
        if not differ.any():
            break
        run = np.cumsum(new, out=thread_buffer(_SORT_SLOT + 2, (n,), np.dtype(np.int64)))
        run -= 1
        mixed_runs = np.zeros(int(run[-1]) + 1, bool)
        mixed_runs[run[tied[differ]]] = True
        at = np.flatnonzero(mixed_runs[run])
        sub = order[at]
        word = others[level]
        perm = np.argsort(word[sub], kind="stable")
        perm = perm[np.argsort(run[at][perm], kind="stable")]
        sub = sub[perm]
        order[at] = sub
        ordered = word[sub]
        new[at[1:]] |= ordered[1:] != ordered[:-1]
        tied = at[1:][~new[at[1:]]]
    count = np.cumsum(new, out=thread_buffer(_SORT_SLOT + 2, (n,), np.dtype(np.int64)))
    count -= 1
    group = thread_buffer(_SORT_SLOT + 3, (n,), np.dtype(np.int64))
    group[order] = count
    return order[new], group


def _block_windows(
    view: np.ndarray,
    lo: tuple[int, ...],
    full_shape: tuple[int, ...],
    out_start: tuple[int, ...],
    out_stop: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """The windows' minima (a fresh array), maxima (a reused buffer), whether they hold several
    categories (fresh), where known whether exactly two (a reused buffer, or None), and the
    flat positions of the other mixed windows (a reused buffer), of a C-ordered block ``view``.

    Slab by slab of the slowest axis's outputs, so the intermediate axes' results stay in the
    caches: the extrema separably along each axis (strided slices); where a slab has many
    mixed windows (more than one per ``_GATHER_COST`` samples), with the same passes the second
    smallest distinct value of each window (the pair smallest / second smallest of a union
    follows from those of its parts), computed in the block's dtype, whose largest value marks
    "none" (in uint32 if the slab holds that value). A mixed window whose second smallest
    value is its maximum holds exactly two categories. Slabs of few mixed windows (large
    regions) skip that pass: their windows are all gathered."""
    ndim = view.ndim
    out_shape = tuple(b - a for a, b in zip(out_start, out_stop, strict=True))
    mn = np.empty(out_shape, view.dtype)
    mx = thread_buffer(_EXTREMA_SLOT, out_shape, view.dtype)
    mixed = np.empty(out_shape, bool)
    two = None
    # the windows to gather: the mixed ones not known to hold two categories
    where = thread_buffer(_WHERE_SLOT, (mn.size,), np.dtype(np.int64))
    start = thread_buffer(_START_SLOT, (mn.size,), np.dtype(np.uint32))
    found = 0
    per_plane = int(np.prod(view.shape[1:], dtype=np.int64)) * view.itemsize
    depth = max(1, _SLAB_BYTES // max(per_plane, 1))
    args = [(lo[a], full_shape[a], out_start[a], out_stop[a]) for a in range(ndim)]
    for z0 in range(out_start[0], out_stop[0], depth):
        z1 = min(z0 + depth, out_stop[0])
        here = slice(z0 - out_start[0], z1 - out_start[0])
        args[0] = (lo[0], full_shape[0], z0, z1)
        lo_s = hi_s = view
        stages = []
        for axis in range(ndim):
            stages.append((lo_s, axis, args[axis]))
            if axis < ndim - 1:
                lo_s, hi_s = _window_extrema(lo_s, hi_s, axis, *args[axis], 2 * axis)
            else:
                _window_reduce(lo_s, np.minimum, axis, *args[axis], out=mn[here])
                _window_reduce(hi_s, np.maximum, axis, *args[axis], out=mx[here])
        np.not_equal(mn[here], mx[here], out=mixed[here])
        if int(np.count_nonzero(mixed[here])) * _GATHER_COST <= mn[here].size << ndim:
            found = _add_positions(where, start, found, mixed[here], z0 - out_start[0], mn[here])
            continue
        if two is None:
            two = thread_buffer(_TWO_SLOT, out_shape, np.dtype(bool))
            two[...] = False
        kind = view.dtype
        if int(mx[here].max()) == np.iinfo(kind).max:
            kind = np.dtype(np.uint32)
        second = None
        minima = [below for below, _, _ in stages[1:]] + [mn[here]]
        for (below, axis, arg), least in zip(stages, minima, strict=True):
            slot = _SECOND_SLOT + axis % 2  # (a stage reads the one before)
            second = _window_second(below, second, least, kind, axis, *arg, slot)
        np.equal(second, mx[here], out=two[here])
        two[here] &= mixed[here]  # (a window of one category has no second value)
        wanted = mixed[here] > two[here]
        found = _add_positions(where, start, found, wanted, z0 - out_start[0], second)
    return mn, mx, mixed, two, where[:found], start[:found]


def _add_positions(
    where: np.ndarray,
    start: np.ndarray,
    found: int,
    wanted: np.ndarray,
    first: int,
    values: np.ndarray,
) -> int:
    """Append the flat (C order) positions of ``wanted`` (a slab of the outputs starting at
    plane ``first``) to ``where[:found]`` and their ``values`` (of the slab) to
    ``start[:found]``; the new count."""
    at = np.flatnonzero(wanted)
    start[found : found + at.size] = values.reshape(-1)[at]
    at += first * (wanted.size // max(wanted.shape[0], 1))
    where[found : found + at.size] = at
    return found + at.size


# samples per mixed window (of a slab of the block) below which gathering and sorting the 27
# samples of every mixed window beats the second-smallest passes (measured on 130x512x512
# uint16 blocks: 2.2x faster at 1/400 mixed, even at ~1/50 where most are two-category faces)
_GATHER_COST = 64
_KEY_COLUMNS = 4  # columns the sort key of the rows must hold besides the row numbers


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
    # everything in memory order (slowest-varying axis first): an F-ordered block is read as
    # its transpose
    flip = block.flags.f_contiguous and not block.flags.c_contiguous
    if not (flip or block.flags.c_contiguous):
        block = np.ascontiguousarray(block)
    view = block.T if flip else block

    def vorder(t: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(t[::-1]) if flip else tuple(t)

    vlo, vfull, v0, v1 = vorder(lo), vorder(full_shape), vorder(out_start), vorder(out_stop)
    lo_v, hi_v, mixed_v, two_v, where, start = _block_windows(view, vlo, vfull, v0, v1)
    single, mixed = (lo_v.T, mixed_v.T) if flip else (lo_v, mixed_v)
    count = int(np.count_nonzero(mixed_v))
    if count == 0:
        return StepResult(single, mixed, (), np.zeros(0, np.int64))
    top = int(hi_v.max())
    kind = view.dtype if top < np.iinfo(view.dtype).max else np.dtype(np.uint32)
    out_shape = lo_v.shape
    pairs = pair_inverse = pair_keys = None
    code = thread_buffer(_CODE_SLOT, out_shape, np.dtype(np.int32 if count < 1 << 31 else np.int64))
    n_two = count - where.size
    if n_two:
        # windows of exactly two categories: (smallest, largest), one packed key each (the
        # others' rows, two categories too in slabs of few mixed windows, are gathered)
        r = top + 1
        if r * r <= min(_PAIR_COUNTING * n_two, _DIRECT_PAIRS) and code.dtype == np.int32:
            # counted over the whole block, without picking the windows out: a pair is
            # lo * r + hi, the others 0 (never a pair's: lo < hi)
            pair_keys = thread_buffer(_PAIR_KEY_SLOT, out_shape, np.dtype(np.intp))
            np.multiply(lo_v, np.intp(r), out=pair_keys)
            pair_keys += hi_v
            pair_keys *= two_v
            found = thread_buffer(_PAIRS_SLOT, (r * r,), np.dtype(bool))
            found[...] = False
            found[pair_keys] = True
            found[0] = False
            present = np.flatnonzero(found)
            pairs = np.empty((present.size, 2), np.uint32)
            pairs[:, 0], pairs[:, 1] = np.divmod(present, r)
        else:
            pairs, pair_inverse = distinct_pairs(lo_v[two_v], hi_v[two_v])
    tables = _tap_tables(view, vlo, vfull, v0, v1)
    n_pairs = 0 if pairs is None else pairs.shape[0]
    n_wide = 0
    if where.size:
        words, lengths = _window_words(
            view, tables, out_shape, where, start, lo_v, hi_v, kind, top
        )
        first, inverse = _sort_words(words, _packing(top)[0])
        n_wide = first.size
    # every combination's place in the order of tuples: the pairs merged in among the gathered
    # rows by their first two categories (a pair goes before the wider rows it starts)
    wide_at = pair_at = None
    if pairs is None:
        code[...] = -1
    else:
        # (compared by their leading sort words: a pair's holds it and then 0s, the sentinel)
        bits, per_word = _packing(top)
        # (uint64 first: numpy 1's value-based casting keeps uint32 + np.uint64(1) uint32)
        lead = pairs[:, 0].astype(np.uint64)
        lead += np.uint64(1)
        lead <<= np.uint64(bits)
        lead |= pairs[:, 1].astype(np.uint64) + np.uint64(1)
        lead <<= np.uint64(bits * (per_word - 2))
        wide_keys = words[0][first] if n_wide else np.zeros(0, np.uint64)
        pair_at = np.arange(n_pairs) + np.searchsorted(wide_keys, lead, side="left")
        wide_at = np.arange(n_wide) + np.searchsorted(lead, wide_keys, side="right")
        if pair_keys is not None:
            # (the table of rows is written only where a pair was seen; others: -1)
            row = thread_buffer(_PAIRS_SLOT + 1, (r * r,), np.dtype(np.int32))
            row[present] = pair_at
            row[0] = -1
            np.take(row, pair_keys, out=code)
        else:
            code[...] = -1
            code[two_v] = pair_at[pair_inverse]
    if where.size:
        code.reshape(-1)[where] = inverse if wide_at is None else wide_at[inverse]
    index = _mixed_codes(code, mixed_v, flip)
    wide_lengths = lengths[first] if n_wide else np.zeros(0, np.uint8)
    combos, place = _combination_parts(
        pairs, pair_at, words if n_wide else None, first if n_wide else None, wide_at,
        wide_lengths, _packing(top)[0],
    )
    return StepResult(single, mixed, combos, place[index])


def _combination_parts(
    pairs: np.ndarray | None,
    pair_at: np.ndarray | None,
    words: np.ndarray | None,
    first: np.ndarray | None,
    wide_at: np.ndarray | None,
    lengths: np.ndarray,
    bits: int,
) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """A block's distinct combinations as parts of one width each, and for each place in the
    order of tuples, the combination's place in the parts one after the other.

    The combinations in the order of tuples are the counted ``pairs`` (at ``pair_at``) and the
    gathered rows (at ``wide_at``; all places if there are no pairs): the rows of the windows
    ``first`` of the sort ``words``, of ``lengths`` categories. A slab of few mixed windows
    gathers its two-category windows too, so a pair counted in another slab can come again:
    such a row directly follows its pair and takes its place. The parts hold the rows of each
    width (narrowest first) in that order, unpadded: the sentinel-padded rows of the widest
    were most of a block's combinations (27 columns for 3 categories on average at level 2 of
    the ``cells`` benchmark)."""
    n_pairs = 0 if pairs is None else pairs.shape[0]
    n_wide = lengths.size
    n = n_pairs + n_wide
    width_of = np.empty(n, np.uint8)
    source = np.empty(n, np.int64)  # the pair's or the gathered row's number
    if pair_at is None:
        pair_at, wide_at = np.zeros(0, np.int64), np.arange(n_wide)
    width_of[pair_at] = 2
    source[pair_at] = np.arange(n_pairs)
    width_of[wide_at] = lengths
    source[wide_at] = np.arange(n_wide)
    is_pair = np.zeros(n, bool)
    is_pair[pair_at] = True
    # gathered rows that repeat the pair before them: dropped, their place is the pair's
    keep = None
    if n_pairs and n_wide:
        after = pair_at + 1
        after = after[after < n]
        candidate = after[(width_of[after] == 2) & ~is_pair[after]]
        if candidate.size:
            got = np.empty((candidate.size, 2), np.uint32)
            _unpack_rows(words, first[source[candidate]], 2, bits, got)
            same = (got == pairs[source[candidate - 1]]).all(axis=1)
            if same.any():
                keep = np.ones(n, bool)
                keep[candidate[same]] = False
    target = None
    if keep is not None:
        target = np.cumsum(keep) - 1  # a kept row's new place; a dropped one's, its pair's
        width_of, source, is_pair = width_of[keep], source[keep], is_pair[keep]
    # each kept row's place in the parts: a stable partition by width
    order = np.argsort(width_of, kind="stable")
    place = np.empty(order.size, np.int64)
    place[order] = np.arange(order.size)
    if target is not None:
        place = place[target]
    widths = width_of[order]
    bounds = np.flatnonzero(np.diff(widths.astype(np.int16), prepend=-1, append=256))
    parts = []
    step = 4 * _BATCH
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        k = int(widths[a])
        rows = order[a:b]
        part = np.empty((b - a, k), np.uint32)
        pair_rows = is_pair[rows]
        if pair_rows.any():  # (width 2: pairs, and gathered rows among them)
            part[pair_rows] = pairs[source[rows[pair_rows]]]
            gathered = np.flatnonzero(~pair_rows)
            if gathered.size:
                got = np.empty((gathered.size, k), np.uint32)
                _unpack_rows(words, first[source[rows[gathered]]], k, bits, got)
                part[gathered] = got
        else:  # gathered rows only, from their sort words in batches
            at = first[source[rows]]
            for c in range(0, b - a, step):
                _unpack_rows(words, at[c : c + step], k, bits, part[c : c + step])
        parts.append(part)
    return tuple(parts), place


def _mixed_codes(code: np.ndarray, mixed: np.ndarray, flip: bool) -> np.ndarray:
    """The codes (-1 where not mixed) of the mixed windows as int64, in C order of ``code``
    or (``flip``) of its transpose: that walk is taken through a transposed copy of ``code``
    made a few rows of its middle axis at a time (a transposed read of the whole array
    misses the caches at every step)."""
    if not flip:
        return code[mixed].astype(np.int64)
    codes = thread_buffer(_TRANSPOSED_SLOT, code.shape[::-1], code.dtype)
    if code.ndim == 3:
        for y in range(0, code.shape[1], _TRANSPOSE_ROWS):
            np.copyto(codes[:, y : y + _TRANSPOSE_ROWS], code[:, y : y + _TRANSPOSE_ROWS].T)
    else:
        np.copyto(codes, code.T)
    keep = np.greater_equal(codes, 0, out=thread_buffer(_TRANSPOSED_SLOT + 1, codes.shape, bool))
    return codes[keep].astype(np.int64)


_PRESENT_RUN = 1 << 17  # values flagged at once by present_values


def present_values(*blocks: np.ndarray) -> np.ndarray:
    """Sorted distinct values of non-negative integer arrays (any strides), but the uint32
    sentinel (the padding of rows of combinations).

    Values below 2**22: flagged in a reused table, a few planes of each array's
    slowest-varying axis at a time, through a reused index buffer (indexing with other
    integers than intp converts the whole index first: a fresh block-sized temporary); larger
    values are sorted."""
    blocks = tuple(b for b in blocks if b.size)
    if not blocks:
        return np.zeros(0, np.uint32)
    top = 0
    for b in blocks:  # (the sentinel masked out only where an array holds it)
        most = int(b.max())
        if most == _SENTINEL:
            most = int(np.max(b, where=b != _SENTINEL, initial=0))
        top = max(top, most)
    if top >= 1 << 22:
        flat = np.concatenate([b.ravel(order="K") for b in blocks])
        return sorted_unique(flat[flat != _SENTINEL]).astype(np.uint32)
    found = thread_buffer(_PRESENT_SLOT, (top + 2,), np.dtype(bool))  # top + 1: the sentinel
    found[...] = False
    for block in blocks:
        if block.ndim == 0:
            block = block.reshape(1)
        # slowest-varying axis first (an F-ordered block as its transpose)
        view = block.T if abs(block.strides[0]) < abs(block.strides[-1]) else block
        planes = max(1, _PRESENT_RUN // max(1, view[0].size))
        for a in range(0, view.shape[0], planes):
            run = view[a : a + planes]
            at = thread_buffer(_PRESENT_INDEX_SLOT, run.shape, np.dtype(np.intp))
            np.minimum(run, np.intp(top + 1), out=at, dtype=np.intp, casting="unsafe")
            found[at] = True
    return np.flatnonzero(found[: top + 1]).astype(np.uint32)


