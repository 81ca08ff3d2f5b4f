"""The category set table of a lattice (DESIGN 7.2), held in numpy arrays.

Every category id names a set of segment ids. Level 1 categories are the label values
(``{segment(v)} -> v``); at coarser levels, a union of categories equal to a known set reuses
that set's id, and a new union gets the next free id. :meth:`SetTable.level_ids` does that for
a whole level at once (new ids in the tuple order of the rows; :meth:`SetTable.union_ids` in row
order): the unions are formed, sorted and deduplicated row-wise batch by batch, found in (or
added to) the table through a 64-bit hash of each set that is always checked against the sets'
members, so a hash collision can never merge two sets (the rare collision, and running out of
ids, take the exact scalar path instead).

Sets are stored as one flat array of member ranks (into the sorted segment ids) with a start
and a length per set, in creation order: memory stays a few bytes per member whatever the
number of sets.
"""

from __future__ import annotations

import functools
import itertools
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

__all__ = ["SetTable", "encode_set_table", "sorted_unique", "unique_1d", "unique_rows"]

SENTINEL = np.iinfo(np.uint32).max  # padding of category rows; never a category id
_ROWS_AT_ONCE = 1 << 14  # rows of categories whose unions a level's merge forms at once
_CELLS_AT_ONCE = 1 << 19  # cells of one such batch's union matrix (a few MB, in cache)
_MERGE_THREADS = 2  # threads forming and looking up a level's unions, batch after batch
# a batch's ids (row indices, ids) and its new unions (rows, members, counts, hashes, words,
# the hashes' index keys sorted)
_BatchIds = tuple[
    list[tuple[np.ndarray, np.ndarray]],
    tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray], np.ndarray | None]
    | None,
]
T = TypeVar("T")
R = TypeVar("R")
_EMPTY_U32 = np.zeros(0, np.uint32)
_EMPTY_I64 = np.zeros(0, np.int64)


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: a well-spread 64-bit hash of each value (wrapping arithmetic)."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a 1-D array by sorting (numpy 2.4's hash-based unique is
    many times slower on millions of scattered 64-bit values); small non-negative integers
    by counting them."""
    flat = values.reshape(-1)
    if flat.size > 4096 and flat.dtype.kind in "ui":
        top = int(flat.max())
        if top < 2 * flat.size + (1 << 16) and int(flat.min()) >= 0:
            counts = np.bincount(flat.astype(np.intp, copy=False), minlength=top + 1)
            return np.flatnonzero(counts).astype(flat.dtype)
    out = np.sort(flat)
    if out.size > 1:
        keep = np.ones(out.size, bool)
        np.not_equal(out[1:], out[:-1], out=keep[1:])
        out = out[keep]
    return out


def unique_1d(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True, return_inverse=True)[1:]`` of a 1-D array: the
    first index of each distinct key (keys ascending) and every key's group."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    new = np.ones(keys.size, bool)
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    inverse = np.empty(keys.size, np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


def _packed_columns(
    rows: np.ndarray, sentinel_first: bool, top: int | None = None, width: int | None = None
) -> list[np.ndarray]:
    """Sort keys of the rows of a non-negative integer array, most significant first: the
    columns packed into uint64 words (the same lexicographic order). With ``sentinel_first``,
    uint32 rows count the sentinel below every other value (it wraps to 0 when 1 is added),
    and ``top`` (at least the largest value, plus one) and ``width`` (columns, the missing
    ones sentinels) give keys that compare with other rows packed alike.

    Columns of up to 8 or 16 bits are written big-endian side by side and read back as
    words (one conversion of the whole array); wider ones are shifted into the words of a
    few MB of rows at a time, one shift per column of a word for all the words at once."""
    n, given = rows.shape
    width = max(given, width or 0)
    if top is None and not rows.size:
        top = 0
    elif top is None and sentinel_first:
        top = int(rows.max())
        if top == SENTINEL:  # the sentinel wraps to 0: the largest other value counts
            top = int(np.max(rows, where=rows != SENTINEL, initial=0))
        top += 1
    elif top is None:
        top = int(rows.max())
    bits = max(top.bit_length(), 1)
    for size in (1, 2):
        if bits <= 8 * size:
            per_word = 8 // size
            count = -(-width // per_word)
            packed = np.zeros((n, count * per_word), np.dtype(f">u{size}"))
            packed[:, :given] = rows
            if sentinel_first:
                packed[:, :given] += np.uint8(1)  # the sentinel wraps to 0 in the narrow type
            return list(packed.view(">u8").T.astype(np.uint64, order="C"))
    per_word = max(64 // bits, 1)
    count = -(-width // per_word)
    out = [np.empty(n, np.uint64) for _ in range(count)]
    step = max(1, _CELLS_AT_ONCE // max(width, 1))
    for a in range(0, n, step):
        b = min(a + step, n)
        part = np.zeros((b - a, count * per_word), np.uint64)
        part[:, :given] = rows[a:b]
        if sentinel_first:
            part[:, :given] += np.uint64(1)
            part[part == 1 << 32] = 0
        part = part.reshape(b - a, count, per_word)
        word = part[:, :, 0].copy()
        for c in range(1, per_word):
            word <<= np.uint64(bits)
            word |= part[:, :, c]
        for w in range(count):
            out[w][a:b] = word[:, w]
    return out


def lexsort_unique_rows(
    rows: np.ndarray, sentinel_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique_1d` of the rows of a 2-D array of non-negative integers, rows in
    lexicographic order (with ``sentinel_first``: a uint32 sentinel sorts below 0, so a row
    padded with sentinels comes before the longer rows it starts, as Python tuples do)."""
    return _unique_words(_packed_columns(rows, sentinel_first))


def _word_order(words: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stable lexicographic order of rows given as their packed sort keys, the leading
    words in that order and where each equals the one before."""
    n = words[0].size
    # by the leading word (a stable sort: runs of rows already in order merge cheaply), then
    # only the rows sharing a leading word by the others, least significant first
    order = np.argsort(words[0], kind="stable")
    lead = words[0][order]
    same = lead[1:] == lead[:-1]
    if len(words) > 1 and same.any():
        tied = np.zeros(n, bool)
        tied[1:] = same
        tied[:-1] |= same
        at = np.flatnonzero(tied)
        sub = order[at]  # ascending row index within each run of one leading word
        perm = np.arange(at.size)
        for word in words[:0:-1]:
            perm = perm[np.argsort(word[sub[perm]], kind="stable")]
        perm = perm[np.argsort(lead[at][perm], kind="stable")]
        order[at] = sub[perm]  # (the leading words stay in order: lead is still theirs)
    return order, lead, same


def _word_positions(words: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The stable lexicographic order of rows given as their packed sort keys (rows in
    tuple order, equal rows by their index) and each row's place in it (int32 where it
    fits)."""
    order = _word_order(words)[0]
    n = order.size
    positions = np.empty(n, np.int32 if n < 1 << 31 else np.int64)
    positions[order] = np.arange(n, dtype=positions.dtype)
    return order, positions


def _unique_words(
    words: list[np.ndarray], firsts: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lexsort_unique_rows` of rows given as their packed sort keys (the first row of
    each distinct one left empty unless ``firsts``)."""
    if len(words) == 1:
        return unique_1d(words[0])
    n = words[0].size
    order, _lead, same = _word_order(words)
    new = np.ones(n, bool)
    np.logical_not(same, out=new[1:])
    pairs = np.flatnonzero(same)  # only rows sharing a leading word may be repeats
    if pairs.size:
        before, after = order[pairs], order[pairs + 1]
        for word in words[1:]:
            new[pairs + 1] |= word[after] != word[before]
    group = np.cumsum(new)
    group -= 1
    inverse = np.empty(n, np.int64)
    inverse[order] = group
    return (order[new] if firsts else _EMPTY_I64), inverse


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of a 2-D uint32 array (first index of each, and every row's group),
    in no particular order: rows of up to two columns packed into one key, wider ones through
    a 64-bit row hash that is checked (a collision takes the exact lexsort)."""
    words = _packed_columns(rows, sentinel_first=True)
    if len(words) == 1:
        return unique_1d(words[0])
    h = np.zeros(rows.shape[0], np.uint64)
    for word in words:
        h = _mix(h ^ word)
    first, inverse = unique_1d(h)
    if not np.array_equal(rows[first[inverse]], rows):
        return lexsort_unique_rows(rows)
    return first, inverse


def _length_hash(lengths: np.ndarray) -> np.ndarray:
    return _mix(lengths.astype(np.uint64) ^ np.uint64(0x5A5A5A5A5A5A5A5A))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(start, start + length)`` of every pair."""
    total = int(lengths.sum())
    if total == 0:
        return _EMPTY_I64
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total, dtype=np.int64)


def _spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """:func:`_ranges` in numpy's index type (indices of another type are converted to it
    whenever they index, at a cost of a copy)."""
    lengths = lengths.astype(np.intp, copy=False)
    heads = np.cumsum(lengths)
    heads -= lengths
    base = starts.astype(np.intp)
    base -= heads
    out = np.repeat(base, lengths)
    out += np.arange(out.size)
    return out


_GATHER_AT_ONCE = 1 << 16  # members gathered at once by _gathered (indices: 512 KB)


def _gathered(
    source: np.ndarray, starts: np.ndarray, lengths: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``source[_spans(starts, lengths)]`` (into ``out`` if given), ``_GATHER_AT_ONCE``
    members at a time through one index buffer and one gather buffer written again for
    every piece (millions of sets: the indices of all their members at once would be the
    largest array of the merge, and fresh buffers per piece cost their pages each time)."""
    lengths = lengths.astype(np.intp, copy=False)
    ends = np.cumsum(lengths)
    total = int(ends[-1]) if ends.size else 0
    if out is None:
        out = np.empty(total, source.dtype)
    if not total:
        return out
    if int(lengths.min()) == 0:  # (empty sets: no run of ones to start at their heads)
        keep = lengths > 0
        starts, lengths = starts[keep], lengths[keep]
        ends = np.cumsum(lengths)
    starts = starts.astype(np.intp, copy=False)
    size = min(total, _GATHER_AT_ONCE)
    index = np.empty(size, np.intp)
    same = out.dtype == source.dtype
    values = None if same else np.empty(size, source.dtype)
    a, begin = 0, 0
    while a < lengths.size:
        b = max(int(np.searchsorted(ends, begin + size, side="right")), a + 1)
        end = int(ends[b - 1])
        n = end - begin
        if n > index.size:  # a set longer than a piece: buffers of its size
            index = np.empty(n, np.intp)
            values = None if same else np.empty(n, source.dtype)
        idx = index[:n]
        idx.fill(1)  # each member one past the one before, but at each set's head
        idx[0] = starts[a]
        if b - a > 1:
            jump = starts[a + 1 : b] - starts[a : b - 1]
            jump -= lengths[a : b - 1] - 1
            idx[ends[a : b - 1] - begin] = jump
        np.cumsum(idx, out=idx)
        if same:
            np.take(source, idx, out=out[begin:end])
        else:
            np.take(source, idx, out=values[:n])
            out[begin:end] = values[:n]
        a, begin = b, end
    return out


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """Sentinel-padded rows one after the other, padded to the widest."""
    shape = (sum(p.shape[0] for p in parts), max(p.shape[1] for p in parts))
    rows = np.full(shape, SENTINEL, np.uint32)
    done = 0
    for p in parts:
        rows[done : done + p.shape[0], : p.shape[1]] = p
        done += p.shape[0]
    return rows


def _row_ends(rows: np.ndarray) -> np.ndarray | None:
    """The number of categories of each sentinel-padded row (uint8 for up to 255 columns),
    or None if some row has a category after a sentinel."""
    n, width = rows.shape
    ends = np.empty(n, np.uint8 if width < 256 else np.int64)
    step = max(1, _CELLS_AT_ONCE // width)
    for a in range(0, n, step):
        valid = rows[a : a + step] != SENTINEL
        if np.any(valid[:, 1:] > valid[:, :-1]):  # a category after a sentinel
            return None
        count = np.argmin(valid, axis=1)  # the first sentinel (0 if there is none)
        count[valid[:, -1]] = width
        ends[a : a + step] = count
    return ends


def _hash_buckets(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Where each run of sorted 64-bit ``keys`` sharing their leading bits starts (about
    one key per run): with :func:`_bucket_search`, a sorted search of well-spread hashes in
    one or two look-ups instead of a binary search's ~20 cache misses."""
    bits = max(int(keys.size).bit_length() - 1, 1)
    shift = 64 - bits
    bounds = np.zeros((1 << bits) + 1, np.int32 if keys.size < 1 << 31 else np.int64)
    counts = np.bincount((keys >> np.uint64(shift)).astype(np.intp), minlength=1 << bits)
    np.cumsum(counts, out=bounds[1:])
    return bounds, shift


def _bucket_search(
    keys: np.ndarray, buckets: tuple[np.ndarray, int], queries: np.ndarray
) -> np.ndarray:
    """``np.searchsorted(keys, queries)`` through :func:`_hash_buckets`: each query starts
    at its run and steps past the smaller keys of the run."""
    bounds, shift = buckets
    top = (queries >> np.uint64(shift)).astype(np.intp)
    at = bounds.take(top).astype(np.int64)
    end = bounds.take(top + 1)
    active = np.flatnonzero(at < end)
    for _ in range(16):
        if not active.size:
            return at
        smaller = keys.take(at[active]) < queries[active]
        active = active[smaller]
        at[active] += 1
        active = active[at[active] < end[active]]
    if active.size:  # long runs (hashes that are not well spread): a binary search
        at[active] = np.searchsorted(keys, queries[active])
    return at


def _row_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of ``values`` of the given lengths (int64, or uint64 for
    uint64 values: sums modulo 2**64)."""
    total = np.zeros(values.size + 1, np.uint64 if values.dtype == np.uint64 else np.int64)
    np.cumsum(values, out=total[1:])
    ends = np.cumsum(counts)
    return total[ends] - total[ends - counts]


def _sorted_search(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``np.searchsorted(keys, queries)``, many times faster for millions of scattered
    queries: they are looked up in sorted order (each search starts where the last ended)."""
    if queries.size < 1024:
        return np.searchsorted(keys, queries)
    order = np.argsort(queries)
    out = np.empty(queries.size, np.int64)
    out[order] = np.searchsorted(keys, queries[order])
    return out


def _merge(
    keys: np.ndarray,
    index: np.ndarray,
    new_keys: np.ndarray,
    new_index: np.ndarray,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``keys`` (with their ``index``) and new ones merged; new keys go after equal
    old ones and keep their order among themselves (``order`` sorts them, if known). Each
    key of the smaller side finds its place by one sorted search; the other side's keys
    fill the other places, in order."""
    if order is None and not bool(np.all(new_keys[1:] >= new_keys[:-1])):
        order = np.argsort(new_keys, kind="stable")
    added = new_keys if order is None else new_keys[order]
    added_index = new_index if order is None else new_index[order]
    if not keys.size or not added.size or added[0] >= keys[-1]:  # all after the old ones
        return (
            np.concatenate([keys, added.astype(keys.dtype, copy=False)]),
            np.concatenate([index, added_index.astype(index.dtype, copy=False)]),
        )
    merged_keys = np.empty(keys.size + added.size, keys.dtype)
    merged_index = np.empty(merged_keys.size, index.dtype)
    if added.size <= keys.size:  # each new key's place; the old ones fill the others
        at = np.searchsorted(keys, added, side="right")
        at += np.arange(added.size, dtype=at.dtype)
        place, rest = (added, added_index), (keys, index)
    else:  # each old key's place (before equal new ones); the new ones fill the others
        at = np.searchsorted(added, keys, side="left")
        at += np.arange(keys.size, dtype=at.dtype)
        place, rest = (keys, index), (added, added_index)
    others = np.ones(merged_keys.size, bool)
    others[at] = False
    merged_keys[at] = place[0]
    merged_keys[others] = rest[0]
    merged_index[at] = place[1]
    merged_index[others] = rest[1]
    return merged_keys, merged_index


_INDEX_BITS = 40  # at most this many low bits of a hash hold its index (_index_keys)


def _index_keys(hashes: np.ndarray, bits: int, first: int = 0) -> np.ndarray:
    """Each hash's leading ``64 - bits`` bits with its index (from ``first``) in the low
    ``bits``: sorted, their low bits are a stable order of the hashes (unless the leading
    bits of two hashes tie out of order)."""
    low = np.uint64((1 << bits) - 1)
    keys = hashes & ~low
    keys |= np.arange(first, first + hashes.size, dtype=np.uint64)
    return keys


def _stable_order(
    hashes: np.ndarray, keys: np.ndarray | None = None, bits: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``np.argsort(hashes, kind="stable")`` of 64-bit hashes and the sorted hashes: one sort
    of the hashes' leading bits with each index in the low bits (a sort moves half the bytes
    of an argsort), checked; the runs of hashes whose leading bits tie out of order are put
    in order by themselves (:func:`_ties_in_order`). ``keys``: those keys made already
    (:func:`_index_keys` with ``bits``; sorted in place), in runs sorted already (the sort
    merges them)."""
    n = hashes.size
    if keys is None:
        bits = max(n - 1, 1).bit_length()
        if bits > _INDEX_BITS:
            order = np.argsort(hashes, kind="stable")
            return order, hashes[order]
        keys = _index_keys(hashes, bits)
        keys.sort()
    else:
        keys.sort(kind="stable")  # (a merge of the sorted runs)
    low = np.uint64((1 << bits) - 1)
    keys &= low
    order = keys.astype(np.intp)
    del keys
    ordered = hashes[order]
    if n > 1:
        _ties_in_order(order, ordered, low)
    return order, ordered


def _ties_in_order(order: np.ndarray, ordered: np.ndarray, low: np.uint64) -> None:
    """Put in order, in place, the runs of ``ordered`` (hashes sorted by their bits above
    ``low``, ties by index, with their indices ``order``) that descend below those bits: each
    such run sorted by hash then index. Among n random hashes, about n**2 / 2**(65 - bits)
    pairs tie (~100 among 15 M new sets, where indices take 24 bits): one stable argsort of
    all hashes for them cost a quarter of that merge."""
    down = np.flatnonzero(ordered[1:] < ordered[:-1])
    if not down.size:
        return
    # each such run: the hashes with the leading bits of a descent (sorted by those bits:
    # the run lies between the first hash at or above them and the last at or below)
    lead = np.unique(ordered[down] & ~low)
    start = np.searchsorted(ordered, lead, side="left")
    stop = np.searchsorted(ordered, lead | low, side="right")
    at = _spans(start, stop - start)
    run = np.repeat(np.arange(lead.size), stop - start)
    index, hashes = order[at], ordered[at]
    local = np.lexsort((index, hashes, run))
    order[at] = index[local]
    ordered[at] = hashes[local]


_Places = int | np.ndarray  # where a part's rows go: its offset, or each row's place


def _coalesced(parts: list[np.ndarray], limit: int) -> list[tuple[np.ndarray, _Places]]:
    """The parts with where their rows go in the level's order: parts of fewer than ``limit``
    rows of one width joined (in their order), the others as they are. A block gives its
    combinations as parts of one width each: where blocks are many, most parts are small and
    would make batches of a few rows."""
    offsets = np.cumsum([0, *(p.shape[0] for p in parts)]).tolist()
    out: list[tuple[np.ndarray, _Places]] = []
    small: dict[int, list[tuple[np.ndarray, int]]] = {}
    for part, offset in zip(parts, offsets, strict=False):
        if part.shape[0] >= limit:
            out.append((part, offset))
        else:
            small.setdefault(part.shape[1], []).append((part, offset))
    for group in small.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        joined = np.concatenate([part for part, _ in group])
        places = np.concatenate([np.arange(o, o + p.shape[0]) for p, o in group])
        out.append((joined, places))
    return out


class _NewSets:
    """The rows whose unions the table does not hold, batch after batch: their indices,
    unions (members one after the other, counts, hashes) and sort keys, in buffers of the
    level's size (written once, never concatenated; pages not written cost nothing)."""

    def __init__(self, total: int, words: int, tuple_order: bool) -> None:
        self.size = 0
        self._total, self._words = total, words if tuple_order else 0
        self.members: list[np.ndarray] = []
        # the hashes' index keys (_index_keys), sorted batch by batch, if indices fit
        self.bits = max(total - 1, 1).bit_length()
        self.keys: np.ndarray | None = None

    def add(
        self,
        rows: np.ndarray,
        members: np.ndarray,
        counts: np.ndarray,
        hashes: np.ndarray,
        words: list[np.ndarray],
        keys: np.ndarray | None = None,
    ) -> None:
        """A batch's new rows; ``keys``: the sorted :func:`_index_keys` of its hashes (with
        ``bits``, indices from 0), or None."""
        if not self.size:
            small = np.int32 if self._total < 1 << 31 else np.int64
            self.rows = np.empty(self._total, small)
            self.counts = np.empty(self._total, small)
            self.hashes = np.empty(self._total, np.uint64)
            self.words = [np.empty(self._total, np.uint64) for _ in range(self._words)]
            if keys is not None:
                self.keys = np.empty(self._total, np.uint64)
        a, b = self.size, self.size + rows.size
        if self.keys is not None and keys is not None:  # (indices from a: no carry)
            np.add(keys, np.uint64(a), out=self.keys[a:b])
        else:
            self.keys = None
        self.rows[a:b] = rows
        self.counts[a:b] = counts
        self.hashes[a:b] = hashes
        for buffer, word in zip(self.words, words, strict=True):
            buffer[a:b] = word
        self.members.append(members)
        self.size = b


def _in_order(
    work: Callable[[T], R], items: Iterator[T], threads: int, ahead: int = 4
) -> Iterator[R]:
    """``map(work, items)`` on ``threads`` threads, results in the items' order, at most
    ``ahead`` items in flight (one thread: this one)."""
    if threads <= 1:
        yield from map(work, items)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                if len(pending) >= ahead:
                    yield pending.popleft().result()
                pending.append(pool.submit(work, item))
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class _SlowPathError(Exception):
    """A hash collision, or ids running out: the exact path must decide."""


class _SetsView(Mapping[int, tuple[int, ...]]):
    """Read-only ``{category id: segment ids}`` view of a table (tests, slow path)."""

    def __init__(self, table: SetTable) -> None:
        self._table = table

    def __getitem__(self, category: int) -> tuple[int, ...]:
        t = self._table
        pos = t._positions(np.array([category], np.uint32), strict=False)[0]
        if pos < 0:
            raise KeyError(category)
        ranks = t._flat[t._starts[pos] : t._starts[pos] + t._lens[pos]]
        return tuple(int(s) for s in t._segments[ranks])

    def __iter__(self) -> Iterator[int]:
        return iter(self._table._cats.tolist())

    def __len__(self) -> int:
        return int(self._table._cats.size)


class SetTable:
    """Category id <-> set of segment ids, shared by every level and frame of one lattice.

    Level 1 categories are the label values ({segment of v} -> v); a union equal to a known set
    reuses its id (the first id that set got); a new union gets the next free id, in the order
    the unions are given.
    """

    def __init__(self) -> None:
        self._segments = _EMPTY_I64  # sorted distinct segment ids; members are ranks into it
        self._segment_hash = np.zeros(0, np.uint64)  # _mix of every segment id
        self._cats = _EMPTY_U32  # category id of every set, in creation order
        self._starts = _EMPTY_I64  # first member of every set in _flat
        self._lens = _EMPTY_I64
        self._flat = _EMPTY_U32  # member ranks, set after set, each set sorted
        self._hash = np.zeros(0, np.uint64)
        self._by_cat = _EMPTY_I64  # set indices in category order
        self._cat_keys = _EMPTY_U32  # their categories
        self._by_hash = _EMPTY_I64  # set indices in hash order (creation order within a hash)
        self._hash_keys = np.zeros(0, np.uint64)  # their hashes
        # set index by category id (-1: none) while the ids are dense enough, else None
        self._dense: np.ndarray | None = np.zeros(0, np.int64)
        self._next = 0

    @property
    def sets(self) -> Mapping[int, tuple[int, ...]]:
        return _SetsView(self)

    @property
    def top(self) -> int:
        """An upper bound of every category id in the table (-1 while it is empty)."""
        return self._next - 1 if self._next < SENTINEL else int(SENTINEL) - 1

    # --- lookups ---------------------------------------------------------------------------

    def _positions(self, categories: np.ndarray, strict: bool = True) -> np.ndarray:
        """Set index of each category (-1 for unknown ones unless ``strict``)."""
        if self._dense is not None and self._dense.size:  # dense ids: a direct look-up
            if not categories.size or int(categories.max()) < self._dense.size:
                pos = self._dense.take(categories)
                if strict and pos.size and int(pos.min()) < 0:
                    raise KeyError(int(categories[pos < 0][0]))
                return pos
            inside = categories < self._dense.size
            pos = np.where(inside, self._dense[np.where(inside, categories, 0)], -1)
            if strict and (pos < 0).any():
                raise KeyError(int(categories[pos < 0][0]))
            return pos
        ordered = self._cat_keys
        loc = _sorted_search(ordered, categories)
        loc_c = np.minimum(loc, max(ordered.size - 1, 0))
        known = (loc < ordered.size) & (ordered[loc_c] == categories) if ordered.size else loc < 0
        if strict and not known.all():
            raise KeyError(int(categories[~known][0]))
        return np.where(known, self._by_cat[loc_c] if ordered.size else -1, -1)

    # --- changes ---------------------------------------------------------------------------

    def _append(
        self,
        cats: np.ndarray,
        rows: np.ndarray,
        hashes: np.ndarray | None = None,
        hash_order: np.ndarray | None = None,
    ) -> None:
        """Add sets (sentinel-padded rows of member ranks) under ``cats`` (their hashes and
        the order that sorts them stably, when known)."""
        if not cats.size:
            return
        valid = rows != SENTINEL
        lens = valid.sum(axis=1).astype(np.int64)
        self._append_sets(cats, rows[valid], lens, hashes, hash_order)

    def _append_sets(
        self,
        cats: np.ndarray,
        members: np.ndarray,
        lens: np.ndarray,
        hashes: np.ndarray | None = None,
        hash_order: np.ndarray | None = None,
        whole: bool = False,
        by_hash: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """:meth:`_append` of sets given as their members one after the other and their
        lengths (``whole``: ``members`` is the new ``_flat``, the old one then the new
        members; ``by_hash``: the new sets' hashes sorted, with each one's set number from
        0, stable)."""
        if not cats.size:
            return
        lens = lens.astype(np.int64, copy=False)
        start0 = self._flat.size
        if whole:
            self._flat = members
            members = members[start0:]
        else:
            self._flat = np.concatenate([self._flat, members.astype(np.uint32, copy=False)])
        self._starts = np.concatenate([self._starts, start0 + np.cumsum(lens) - lens])
        self._lens = np.concatenate([self._lens, lens])
        if hashes is None:
            hashes = _row_sums(self._segment_hash[members], lens) + _length_hash(lens)
        self._hash = np.concatenate([self._hash, hashes])
        first = self._cats.size
        self._cats = np.concatenate([self._cats, cats.astype(np.uint32, copy=False)])
        added = self._cats[first:]
        new = np.arange(first, self._cats.size)
        if self._dense is not None:
            top = int(added.max()) + 1
            if top > 4 * self._cats.size + (1 << 20):
                self._dense = None  # sparse ids (large label values): sorted look-ups only
            else:
                if top > self._dense.size:
                    grown = np.full(max(top, 2 * self._dense.size), -1, np.int64)
                    grown[: self._dense.size] = self._dense
                    self._dense = grown
                self._dense[added] = new
        # merge the new sets into the sorted lookups (after equal keys: creation order)
        self._cat_keys, self._by_cat = _merge(self._cat_keys, self._by_cat, added, new)
        if by_hash is not None:  # the new hashes in order, and their sets' numbers
            self._hash_keys, self._by_hash = _merge(
                self._hash_keys, self._by_hash, by_hash[0], first + by_hash[1]
            )
        else:
            self._hash_keys, self._by_hash = _merge(
                self._hash_keys, self._by_hash, self._hash[first:], new, hash_order
            )
        self._next = max(self._next, int(cats.max()) + 1) if self._next < SENTINEL else self._next

    def add_labels(self, values: np.ndarray, segment_of: dict[int, int] | None = None) -> None:
        """Level-1 categories: label value v is the set {segment of v} (v itself by default)."""
        values = np.asarray(values).astype(np.uint32)
        values = values[np.sort(unique_1d(values)[0])]
        values = values[self._positions(values, strict=False) < 0]
        if not values.size:
            return
        if segment_of:
            segs = np.array([segment_of.get(v, v) for v in values.tolist()], np.int64)
        else:
            segs = values.astype(np.int64)
        merged = sorted_unique(np.concatenate([self._segments, segs]))
        if merged.size != self._segments.size:  # new segments: re-rank the stored members
            self._flat = np.searchsorted(merged, self._segments[self._flat]).astype(np.uint32)
            self._segments = merged
            self._segment_hash = _mix(merged)
        ranks = np.searchsorted(merged, segs).astype(np.uint32)
        self._append(values, ranks[:, None])

    def union_id(self, categories: tuple[int, ...]) -> int:
        """The id of the union of the sets of ``categories`` (a new id if the set is new)."""
        row = np.array([list(categories)], np.uint32)
        return int(self.union_ids(row)[0])

    def union_ids(self, rows: np.ndarray) -> np.ndarray:
        """Ids of the unions of sentinel-padded rows of categories, new sets numbered in row
        order (exactly as calling :meth:`union_id` row after row)."""
        if rows.shape[0] == 0:
            return _EMPTY_U32
        return self._ids([rows], tuple_order=False)

    def level_ids(self, parts: list[np.ndarray]) -> np.ndarray:
        """The category at the next level of every row of ``parts`` (sentinel-padded rows of
        categories; the ids of all parts one after the other): a row of one category keeps
        it, the other rows get the id of the union of their categories' sets, new sets
        numbered in the order of the first row (as a tuple, over all parts) that forms them.
        That is :meth:`union_ids` of the distinct rows of several categories in tuple order,
        without sorting the rows of known sets (at coarse levels most unions are sets the
        table holds)."""
        return self._ids(parts, tuple_order=True)

    def _ids(self, parts: list[np.ndarray], tuple_order: bool) -> np.ndarray:
        """:meth:`union_ids` (``tuple_order`` false, one part) or :meth:`level_ids`.

        Rows go in batches of ``_ROWS_AT_ONCE`` (fewer where their unions are wide): the
        unions are formed (:meth:`_batch_unions`) and looked up by hash, every hit checked
        member by member; the unions not found wait until every batch has been looked up,
        then get their ids at once (:meth:`_add_new`). A hash collision or ids running
        past 2**32 - 2 (:class:`_SlowPathError`) take the exact one-union-at-a-time path
        instead: the table is changed only at the end, so that path starts from the same
        table."""
        sizes = [p.shape[0] for p in parts]
        total = sum(sizes)
        if not total:
            return _EMPTY_U32.copy()
        if len(parts) > 1 and total <= _ROWS_AT_ONCE:  # few rows: one batch
            return self._ids([_joined(parts)], tuple_order)
        out = np.zeros(total, np.uint32)
        keys = self._hash_keys
        many = 8 * total > keys.size
        # many look-ups: index the categories and the hashes, members as uint16 if they fit
        locate = self._locator() if many else self._locator_sorted()
        flat = self._flat
        if many and self._segments.size < np.iinfo(np.uint16).max:
            flat = flat.astype(np.uint16)
        if many:
            buckets = _hash_buckets(keys)

            def search(hashes: np.ndarray) -> np.ndarray:
                return _bucket_search(keys, buckets, hashes)
        else:

            def search(hashes: np.ndarray) -> np.ndarray:
                return _sorted_search(keys, hashes)
        # new sets are numbered in the tuple order of their rows: the sort keys of the rows
        # of new sets are packed as they are found, alike for every part
        top = int(self._cats.max()) + 1 if self._cats.size else 1
        width = max(p.shape[1] for p in parts)
        new = _NewSets(total, len(_packed_columns(parts[0][:0], True, top, width)), tuple_order)

        def batches() -> Iterator[tuple[np.ndarray, _Places, np.ndarray, np.ndarray | None]]:
            """(part, where its rows go, its rows of the batch (an ascending range, or rows
            of about as many categories), their numbers of categories or None), batch after
            batch (the rows are gathered by the batch's thread)."""
            for part, offset in _coalesced(parts, _ROWS_AT_ONCE):
                n, width = part.shape
                many = width > 2 and n > _ROWS_AT_ONCE
                if many and not (part == SENTINEL).any():  # (rows of one width: a block's
                    for a in range(0, n, _ROWS_AT_ONCE):  # parts) all of their columns
                        at = np.arange(a, min(a + _ROWS_AT_ONCE, n))
                        yield part, offset, at, np.full(at.size, width, np.intp)
                    continue
                ends = _row_ends(part) if many else None
                by_end = None if ends is None else np.argsort(ends, kind="stable")
                for a in range(0, n, _ROWS_AT_ONCE):
                    if by_end is None:
                        yield part, offset, np.arange(a, min(a + _ROWS_AT_ONCE, n)), None
                    else:  # rows of about as many categories together, only those columns
                        at = by_end[a : a + _ROWS_AT_ONCE]
                        yield part, offset, at, ends[at]

        def one_batch(
            batch: tuple[np.ndarray, _Places, np.ndarray, np.ndarray | None],
        ) -> _BatchIds:
            """A batch's ids where known (its single categories, its known sets), and the
            unions it forms that the table does not hold (reads the table only)."""
            part, offset, at, ncat = batch
            a, b = int(at[0]), int(at[-1]) + 1
            if ncat is None or (b - a == at.size and int(ncat[0]) == part.shape[1]):
                rows = part[a:b]  # (an ascending range of whole rows)
            else:
                rows = part[at, : max(int(ncat[-1]), 1)]
            at = at + offset if isinstance(offset, int) else offset[at]
            done = []
            if tuple_order:  # a row of one category keeps it
                single = rows[:, 1] == SENTINEL if rows.shape[1] > 1 else None
                if single is None or single.all():
                    return [(at, rows[:, 0])], None
                if single.any():
                    done.append((at[single], rows[single, 0]))
                    keep = ~single
                    rows, at = rows[keep], at[keep]
                    ncat = None if ncat is None else ncat[keep]
            if ncat is not None:
                ncat = ncat.astype(np.intp)
            members, counts, hashes = self._batch_unions(rows, locate, flat, ncat)
            found, known = self._known(members, counts, hashes, search, flat)
            done.append((at[found], known))
            if found.all():
                return done, None
            if found.any():
                members = members[np.repeat(~found, counts)]
                counts, hashes, at = counts[~found], hashes[~found], at[~found]
                rows = rows[~found]
            words = _packed_columns(rows, True, top, width) if tuple_order else []
            keys = None
            if new.bits <= _INDEX_BITS:  # sorted here, merged at the end
                keys = _index_keys(hashes, new.bits)
                keys.sort()
            return done, (at, members, counts, hashes, words, keys)

        try:
            # batches in two threads (numpy lets go of the GIL), taken in batch order
            for done, fresh in _in_order(one_batch, batches(), _MERGE_THREADS):
                for at, ids in done:
                    out[at] = ids
                if fresh is not None:
                    new.add(*fresh)
            if new.size:
                self._add_new(out, new)
        except _SlowPathError:
            return self._ids_exact(parts, tuple_order)
        return out

    def _locator(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The look-up (first member in ``_flat``, length) of the sets of categories, for
        the sets known now: one gather per category while the ids are dense."""
        dense = self._dense
        if dense is None or not dense.size or self._flat.size >= 1 << 40:
            return self._locator_sorted()
        known = dense >= 0
        pos = np.where(known, dense, 0)
        lens = self._lens.take(pos)
        shift = int(lens.max(initial=1)).bit_length()
        if self._flat.size << shift < SENTINEL:  # (start, length) in one uint32
            dtype = np.dtype(np.uint32)
        elif self._flat.size << shift < 1 << 62:
            dtype = np.dtype(np.int64)
        else:
            return self._locator_sorted()
        unknown = np.iinfo(dtype).max
        info = self._starts.take(pos).astype(dtype)
        info <<= dtype.type(shift)
        info |= lens.astype(dtype)
        info[~known] = unknown
        mask = dtype.type((1 << shift) - 1)

        def by_category(cats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            try:
                got = info.take(cats)
            except IndexError:
                got = None
            if got is None or (got.size and got.max() == unknown):
                self._positions(cats)  # raises KeyError for the unknown category
                raise KeyError("unknown category")
            return got >> dtype.type(shift), got & mask

        return by_category

    def _locator_sorted(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The look-up of :meth:`_locator` through the sets' positions."""

        def by_position(cats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            pos = self._positions(cats)
            return self._starts[pos], self._lens[pos]

        return by_position

    def _batch_unions(
        self,
        rows: np.ndarray,
        locate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        flat: np.ndarray,
        ncat: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The union of each row's sets: its members (ranks, ascending) row after row, the
        number of members of each row and the set hashes (the sum of a hash of each member's
        segment id, and a hash of the length). ``flat``: ``_flat``, or a narrower copy (the
        members come in its type); ``ncat``: the number of categories of each row, if known.

        Rows whose members are distinct and in order already (sets of one member: labels)
        are their unions; others go through :meth:`_matrix_unions`, in pieces of at most
        ``_CELLS_AT_ONCE`` cells."""
        k = rows.shape[0]
        valid = rows != SENTINEL
        if ncat is None:
            ncat = np.count_nonzero(valid, axis=1)
        starts, lens = locate(rows[valid])
        per_row = _row_sums(lens, ncat)
        width = int(per_row.max()) if k else 0
        if not width:
            return flat[:0], per_row, _length_hash(per_row)
        if int(lens.max()) == 1:  # sets of one member (labels)
            single = flat.take(starts)
            ascending = single[1:] > single[:-1]
            last = np.cumsum(per_row)[:-1] - 1  # each row's last member (any order across)
            ascending[last[(last >= 0) & (last < ascending.size)]] = True
            if ascending.all():  # each row's members in order already (level 1)
                return self._hashed(single, per_row)
        step = max(1, _CELLS_AT_ONCE // width)
        if step >= k:
            return self._matrix_unions(flat, starts, lens, per_row)
        first_cat = np.zeros(k + 1, np.intp)
        np.cumsum(ncat, out=first_cat[1:])
        pieces = []
        for a in range(0, k, step):
            b = min(a + step, k)
            c, d = first_cat[a], first_cat[b]
            pieces.append(self._matrix_unions(flat, starts[c:d], lens[c:d], per_row[a:b]))
        members, counts, hashes = zip(*pieces, strict=True)
        return np.concatenate(members), np.concatenate(counts), np.concatenate(hashes)

    def _matrix_unions(
        self, flat: np.ndarray, starts: np.ndarray, lens: np.ndarray, per_row: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_batch_unions` of rows given as their sets' (start, length) in ``flat``,
        set after set, and the number of members of each row: the members of row i are
        scattered to i * width + 0, 1, ... of a matrix padded with ``flat``'s largest value,
        sorted row-wise, and the first of every run of equal ranks kept."""
        k = per_row.size
        width = int(per_row.max())
        if not width:  # (rows of no category)
            return self._hashed(flat[:0], per_row)
        pad = np.iinfo(flat.dtype).max
        mat = np.full((k, width), pad, flat.dtype)
        at = _spans(np.arange(0, k * width, width), per_row)
        mat.reshape(-1)[at] = flat.take(_spans(starts, lens))
        if width > 1:
            mat.sort(axis=1)
        cells = mat.reshape(-1)
        keep = cells != pad
        if width > 1:
            repeat = cells[1:] == cells[:-1]
            repeat[width - 1 :: width] = False  # the first cell of a row is never a repeat
            keep[1:] &= ~repeat
        return self._hashed(cells[keep], np.count_nonzero(keep.reshape(k, width), axis=1))

    def _hashed(
        self, members: np.ndarray, counts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sets (members one after the other, counts) with their hashes."""
        hashes = _row_sums(self._segment_hash.take(members), counts) + _length_hash(counts)
        return members, counts, hashes

    def _known(
        self,
        members: np.ndarray,
        counts: np.ndarray,
        hashes: np.ndarray,
        search: Callable[[np.ndarray], np.ndarray],
        flat: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which unions (as :meth:`_batch_unions` gives them) the table holds, and their
        ids. A set with the same hash is compared member by member: a different one is a
        collision (:class:`_SlowPathError`)."""
        keys = self._hash_keys
        if not keys.size:
            return np.zeros(counts.size, bool), _EMPTY_U32
        loc = search(hashes)
        np.minimum(loc, keys.size - 1, out=loc)
        found = keys.take(loc) == hashes
        if not found.any():
            return found, _EMPTY_U32
        sets = self._by_hash.take(loc[found])
        n = counts[found]
        if not np.array_equal(self._lens.take(sets), n):
            raise _SlowPathError
        theirs = flat.take(_spans(self._starts.take(sets), n))
        mine = members if n.size == counts.size else members[np.repeat(found, counts)]
        if not np.array_equal(theirs, mine):
            raise _SlowPathError
        return found, self._cats.take(sets)

    def _add_new(self, out: np.ndarray, pending: _NewSets) -> None:
        """Ids of the unions no set of the table equals: rows holding the same set (equal
        hashes, checked member by member) share an id; the sets get the next ids in the
        order of their first row (by the rows' sort keys: tuple order over all parts, or
        row order) and are added to the table. The rows' places in tuple order are found
        in another thread while this one groups the rows by hash."""
        m = pending.size
        counts, hashes, rows = pending.counts[:m], pending.hashes[:m], pending.rows[:m]
        small = np.int32 if m < 1 << 31 else np.int64
        with ThreadPoolExecutor(1) as pool:
            placed = (
                pool.submit(_word_positions, [w[:m] for w in pending.words])
                if pending.words
                else None
            )
            members = np.concatenate(pending.members)
            pending.members = []
            if pending.keys is not None:
                order, ordered = _stable_order(hashes, pending.keys[:m], pending.bits)
                pending.keys = None
            else:
                order, ordered = _stable_order(hashes)
            new = np.ones(m, bool)
            np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
            heads = np.flatnonzero(new)
            group_hashes = ordered[heads]  # each group's hash, ascending
            del ordered
            first = order[heads]  # a row of each group, groups in hash order
            offsets = np.cumsum(counts)
            offsets -= counts
            several = heads.size < m  # groups of several rows
            group = None
            if several:  # every row of a group holds its first row's set
                group = np.cumsum(new, dtype=small)  # the group of the row order[j]
                group -= 1
                other = ~new
                a, b = order[other], first[group[other]]
                if not np.array_equal(counts[a], counts[b]) or not np.array_equal(
                    _gathered(members, offsets[a], counts[a]),
                    _gathered(members, offsets[b], counts[a]),
                ):
                    raise _SlowPathError
            del new
            if self._next + heads.size > SENTINEL:
                raise _SlowPathError  # ids wrap: the lowest free ones, slowly
            # each row's place in the order of first rows (tuple order, or row order)
            in_order, position = (None, rows) if placed is None else placed.result()
            # (what is left to do needs neither the sort keys nor, once placed, the rows)
            pending.words, placed = [], None
        # groups in the order of their first rows (distinct places: a scatter, not a sort)
        ranked = position[order]
        del position
        group_rank = np.minimum.reduceat(ranked, heads) if several else ranked
        sets = heads.size
        del ranked, heads
        slot = np.full(int(group_rank.max()) + 1, -1, small)
        slot[group_rank] = np.arange(sets, dtype=small)
        del group_rank
        taken = np.flatnonzero(slot >= 0)  # the first rows' places, in order
        by_first = slot[taken]
        del slot
        number = np.empty(sets, small)
        number[by_first] = np.arange(sets, dtype=small)  # each group's id - self._next
        ids = (number if group is None else number[group]).astype(np.uint32)
        ids += np.uint32(self._next)
        out[rows[order]] = ids
        del ids, group, order, rows
        pending.rows = _EMPTY_I64
        # a row of each new set, sets in id order (a first row in tuple order: ascending
        # places, read in order; in row order, through the groups)
        creators = first[by_first] if in_order is None else in_order[taken]
        del by_first, taken, in_order, first
        lens = counts[creators]
        flat = np.empty(self._flat.size + int(lens.sum()), np.uint32)  # the table's new one
        flat[: self._flat.size] = self._flat
        # the members are gathered in another thread while the table's indexes grow (with
        # the hashes given, _append_sets reads only the new flat's size)
        with ThreadPoolExecutor(1) as pool:
            gathering = pool.submit(
                _gathered, members, offsets[creators], lens, flat[self._flat.size :]
            )
            try:
                self._append_sets(
                    np.arange(self._next, self._next + sets, dtype=np.uint32),
                    flat,
                    lens,
                    hashes[creators],
                    whole=True,
                    by_hash=(group_hashes, number),
                )
            finally:
                gathering.result()

    def _ids_exact(self, parts: list[np.ndarray], tuple_order: bool) -> np.ndarray:
        """:meth:`_ids` by the scalar definition (:meth:`_union_ids_exact`)."""
        if not tuple_order:
            return self._union_ids_exact(parts[0])
        rows = _joined(parts)
        ids = rows[:, 0].copy()
        several = (
            rows[:, 1] != SENTINEL if rows.shape[1] > 1 else np.zeros(rows.shape[0], bool)
        )
        if several.any():
            first, inverse = lexsort_unique_rows(rows[several], sentinel_first=True)
            ids[several] = self._union_ids_exact(rows[several][first])[inverse]
        return ids

    def _union_ids_exact(self, rows: np.ndarray) -> np.ndarray:
        """The scalar definition, row after row (hash collisions, ids near the top)."""
        sets = {int(c): self.sets[int(c)] for c in self._cats.tolist()}
        known: dict[tuple[int, ...], int] = {}
        for c in self._cats.tolist():
            known.setdefault(sets[c], c)
        out = np.zeros(rows.shape[0], np.uint32)
        for i, row in enumerate(rows.tolist()):
            members = tuple(sorted(set().union(*(sets[c] for c in row if c != SENTINEL))))
            found = known.get(members)
            if found is None:
                found = self._free_id(sets)
                sets[found] = members
                known[members] = found
                ranks = np.searchsorted(self._segments, np.array(members, np.int64))
                padded = np.full((1, len(members)), SENTINEL, np.uint32)
                padded[0] = ranks
                self._append(np.array([found], np.uint32), padded)
            out[i] = found
        return out

    def _free_id(self, sets: dict[int, tuple[int, ...]]) -> int:
        if self._next < SENTINEL:
            return self._next
        # ids up to the top are taken by labels: the lowest free one (rare, slow path)
        used = sorted(sets)
        candidate = next((i for i, u in enumerate(used) if i != u), len(used))
        if candidate >= SENTINEL:
            raise OverflowError("more than 2**32 - 1 label categories")
        return candidate

    # --- output ----------------------------------------------------------------------------

    def table(self, present: np.ndarray) -> dict[str, list[int]]:
        """The ``set_table`` document of a level: every present category with its segments."""
        return {str(c): list(self.sets[c]) for c in sorted(np.asarray(present).tolist())}

    def encoded_table(self, present: np.ndarray, threads: int = 1) -> bytes:
        """:meth:`table` as zarr 2's ``json2`` codec encodes it in a shape-(1,) object array
        (``threads``: see :func:`encode_set_table`)."""
        return self.table_encoder(present, threads)()

    def table_encoder(self, present: np.ndarray, threads: int = 1) -> Callable[[], bytes]:
        """:meth:`encoded_table` in two steps: the table is read now, the function returned
        encodes what was read. It may run in another thread while sets are added (they
        replace the table's arrays and never change the sets already read); reading the
        table there instead could pair a category with another set."""
        present = np.asarray(present)
        if present.dtype != np.uint32 or not (present[1:] > present[:-1]).all():
            present = sorted_unique(present.astype(np.uint32))
        pos = self._positions(present)
        return functools.partial(
            encode_set_table,
            present,
            self._lens[pos],
            self._flat,
            self._segments,
            starts=self._starts[pos],
            threads=threads,
        )

def _digits(values: np.ndarray) -> np.ndarray:
    """Number of decimal digits of non-negative integers (uint8)."""
    n = np.ones(values.shape, np.uint8)
    power = 10
    while power <= (int(values.max()) if values.size else 0):
        n += values >= power
        power *= 10
    return n


def _tokens(values: np.ndarray, before: bytes, after: bytes, width: int) -> np.ndarray:
    """Per value, the bytes ``before`` + its decimal digits + ``after``, left-aligned in a row
    of ``width`` (zero-padded) uint8 columns."""
    nd = _digits(values)
    out = np.zeros((values.size, width), np.uint8)
    flat = out.reshape(-1)
    row = np.arange(values.size, dtype=np.int64) * width
    for i, byte in enumerate(before):
        out[:, i] = byte
    end = row + len(before) + nd  # just past each value's last digit
    for i, byte in enumerate(after):
        flat[end + i] = byte
    pos, rest = end - 1, values.astype(np.int64)
    while pos.size:  # the digits, last first; numbers still having digits shrink each step
        rest, digit = np.divmod(rest, 10)
        flat[pos] = 48 + digit
        more = rest > 0
        pos, rest = pos[more] - 1, rest[more]
    return out


_MEMBERS_AT_ONCE = 1 << 17  # members of the sets written at once: ~1 MB of text
_THREADED_MEMBERS = 1 << 20  # fewer members than this: one thread whatever ``threads`` says


def _string_order(keys: np.ndarray, ndig: np.ndarray) -> np.ndarray:
    """The order of distinct non-negative integers (below 10**17) as decimal strings:
    "10" < "9", and "1" < "10" (a prefix first)."""
    if not keys.size:
        return np.zeros(0, np.int64)
    width = int(ndig.max())
    scale = 10 ** np.arange(width, -1, -1, dtype=np.int64)  # 10 ** (width - digits)
    scaled = keys.astype(np.int64) * scale[ndig]  # digits aligned to the left
    if bool((keys[1:] > keys[:-1]).all()):  # ascending: a prefix (1 of 10) comes first
        return np.argsort(scaled, kind="stable")  # (runs of ascending values: fast)
    return np.argsort(scaled * 32 + ndig, kind="stable")  # then the shorter string first


@functools.cache
def _four_digits() -> np.ndarray:
    """The ASCII text of 0000 ... 9999, four bytes per number read as one uint32."""
    n = np.arange(10000)
    chars = np.stack([n // 1000, n // 100 % 10, n // 10 % 10, n % 10], axis=1) + 48
    return np.ascontiguousarray(chars.astype(np.uint8)).view(np.uint32).reshape(-1)


_KEY_END = np.frombuffer(b'":[ ', np.uint32)[0]  # the bytes after a key's digits (3 used)


def _key_tokens(keys: np.ndarray, ndig: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of uint8 holding each key's digits (zero-padded) followed by ``":[``, ending at
    column ``end`` (exclusive): a key of ``d`` digits is ``rows[i, end - d - 3 : end]``, its
    token that with a ``"`` before. The digits are written four at a time from a table of
    0000 ... 9999; the columns before the token hold at least one more (the quote's place)."""
    groups = (int(ndig.max()) + 4) // 4  # 4 * groups columns: the digits and the quote
    words = np.empty((keys.size, groups + 1), np.uint32)
    rest = keys.astype(np.uint32 if int(keys.max()) < 1 << 32 else np.uint64)
    base = rest.dtype.type(10000)
    table = _four_digits()
    for g in range(groups - 1, -1, -1):
        high = rest // base
        words[:, g] = table[rest - high * base]
        rest = high
    words[:, groups] = _KEY_END
    return words.view(np.uint8), 4 * groups + 3


def _at_every_byte(buf: np.ndarray, width: int, offset: int = 0, step: int = 1) -> np.ndarray:
    """Items of ``width`` bytes starting at bytes ``offset``, ``offset + step``, ... of ``buf``
    (overlapping when ``step < width``): ``view[offsets] = tokens`` writes the tokens one after
    the other, in order."""
    count = (buf.size - offset - width) // step + 1
    return np.ndarray((count,), np.dtype(f"V{width}"), buffer=buf, offset=offset, strides=(step,))


def _write_keys(
    buf: np.ndarray, keys: np.ndarray, ndig: np.ndarray, at: np.ndarray, spare: int
) -> None:
    """Write each key's token ``"<digits>":[`` at its offset in ``buf``, exactly (nothing
    around it): a token of ``n`` bytes, ``w < n <= 2w`` (``w`` = 4, 8 or 16), is the ``w``
    bytes at its start and the ``w`` bytes at its end (the same bytes where they overlap).
    The end is the same columns of every key's row; the start, those of its digit count.

    Where most keys take one ``w`` and a few another, the few are written separately and
    the windows of the many written for all keys, the few's to ``spare`` (an offset of
    ``buf`` with 40 bytes after it that may be overwritten)."""
    rows, end = _key_tokens(keys, ndig)
    lens = ndig.astype(np.intp) + 4
    lo, hi = int(ndig.min()), int(ndig.max())

    def window(rows: np.ndarray, start: int, width: int) -> np.ndarray:  # columns start...
        item = np.dtype(f"V{width}")
        step = rows.shape[1]
        view = np.ndarray((rows.shape[0],), item, buffer=rows, offset=start, strides=(step,))
        return view.copy()  # (contiguous; never the rows themselves)

    for width in (4, 8, 16):
        digits = range(max(lo, width - 3), min(hi, 2 * width - 4) + 1)
        if not digits:
            continue
        where, n, ds, sub = at, lens, ndig, rows
        if len(digits) <= hi - lo:  # keys of other widths too
            mine = (lens > width) & (lens <= 2 * width)
            count = int(np.count_nonzero(mine))
            if not count:
                continue
            if 4 * count < keys.size:  # a few: their rows only
                sel = np.flatnonzero(mine)
                where, n, ds, sub = at[sel], lens[sel], ndig[sel], rows[sel]
            else:  # most: all rows, the others' windows written to spare
                where = np.where(mine, at, spare)
        heads = window(sub, end - digits[0] - 4, width)
        for d in digits[1:]:
            np.copyto(heads, window(sub, end - d - 4, width), where=ds == d)
        heads.view(np.uint8).reshape(sub.shape[0], width)[:, 0] = 34  # the opening quote
        target = _at_every_byte(buf, width)
        target[where] = heads
        target[where + (n - width)] = window(sub, end - width, width)


_IN_ORDER = True  # trust numpy's in-order assignment (checked after every batch); tests: False


def _write_exact(
    buf: np.ndarray, at: np.ndarray, tokens: np.ndarray, vocab: np.ndarray, vocab_lens: np.ndarray
) -> None:
    """Write ``vocab[tokens]`` at the offsets ``at``, each token exactly as long as it is
    (one assignment per token length: nothing overlaps, whatever the order of the writes)."""
    lens = vocab_lens[tokens]
    vocab = np.ascontiguousarray(vocab)
    for length in np.unique(lens).tolist():
        sel = np.flatnonzero(lens == length)
        exact = np.ndarray(
            (vocab.size,), np.dtype(f"V{length}"), buffer=vocab, strides=(vocab.itemsize,)
        )
        _at_every_byte(buf, length)[at[sel]] = exact[tokens[sel]]


def _write_sets(
    buf: np.ndarray,
    keys: np.ndarray,
    ndig: np.ndarray,
    starts: np.ndarray,
    lens: np.ndarray,
    members: np.ndarray,
    vocab: np.ndarray,
    vocab_lens: np.ndarray,
) -> int:
    """Write the text of consecutive sets (``"<key>":[<member>,...,<member>],`` each; none
    empty) at the start of ``buf``; returns its length. Set ``i``'s members are
    ``members[starts[i] : starts[i] + lens[i]]``, indices into ``vocab``'s first half
    (tokens ``<value>,``; the second half holds the ``<value>],`` ending a set), each token
    zero-padded to the vocabulary's item size; ``buf`` must hold that much past the text,
    and at least 40 bytes.

    Every token goes straight to its offset in the text, from the cumulative sums of the
    tokens' lengths (each set's last member counting the next key's length too): first the
    members in order, each write's padding landing where the next member or key goes, then
    the keys, exactly."""
    ends = np.cumsum(lens)
    index = np.ones(int(ends[-1]), np.intp)  # members[index]: the sets' members in order
    index[0] = starts[0]
    index[ends[:-1]] = starts[1:] - (starts[:-1] + lens[:-1] - 1)
    np.cumsum(index, out=index)
    tokens = members[index].astype(np.intp, copy=False)
    tokens[ends - 1] += vocab.size // 2  # a set's last member ends it: "<value>],"
    token_lens = vocab_lens[tokens]
    key_lens = ndig.astype(np.intp) + 4
    token_lens[ends[:-1] - 1] += key_lens[1:]  # the next key's text follows
    at = np.cumsum(token_lens)
    size = int(at[-1] + key_lens[0])
    at -= token_lens
    at += key_lens[0]
    _at_every_byte(buf, vocab.itemsize)[at] = vocab[tokens]
    # numpy does not promise to assign in index order: had a token's zero padding landed on
    # a later token, that token's first byte (a token's padding always covers the first
    # byte of any token it reaches) would be 0. Then the tokens are written exactly.
    if not _IN_ORDER or not buf[at].all():
        _write_exact(buf, at, tokens, vocab, vocab_lens)
    _write_keys(buf, keys, ndig, at[ends - lens] - key_lens, size + 16)
    return size


def _sets_text(
    batches: list[tuple[int, int]],
    size: int,
    order: np.ndarray,
    keys: np.ndarray,
    ndig: np.ndarray,
    starts: np.ndarray,
    lens: np.ndarray,
    members: np.ndarray,
    vocab: np.ndarray,
    vocab_lens: np.ndarray,
) -> np.ndarray:
    """The text of the sets ``order[first:stop]`` of every batch ``(first, stop)``, written
    one batch after the other into one array of at most ``size`` bytes (each batch's
    padding past its end lands where the next one starts). A batch of sets larger than
    most is cut where its members pass multiples of ``_MEMBERS_AT_ONCE``."""
    out = np.empty(size, np.uint8)
    n = 0
    for a, b in batches:
        sets = order[a:b]
        counts = lens[sets]
        pieces = [(0, b - a)]
        total = int(counts.sum())
        if total > 2 * _MEMBERS_AT_ONCE:
            cum = np.cumsum(counts)
            cuts = np.searchsorted(cum, np.arange(_MEMBERS_AT_ONCE, total, _MEMBERS_AT_ONCE))
            pieces = list(itertools.pairwise([0, *sorted(set(cuts.tolist()) - {0}), b - a]))
        for c, d in pieces:
            piece = sets[c:d]
            n += _write_sets(
                out[n:],
                keys[piece],
                ndig[piece],
                starts[piece],
                counts[c:d],
                members,
                vocab,
                vocab_lens,
            )
    return out[:n]


def encode_set_table(
    keys: np.ndarray,
    lens: np.ndarray,
    members: np.ndarray,
    values: np.ndarray | None = None,
    *,
    starts: np.ndarray | None = None,
    threads: int = 1,
) -> bytes:
    """``json2``-encoded ``[{"<key>": [members...], ...}, "|O", [1]]`` (keys in string order,
    compact separators), byte for byte what numcodecs' JSON codec writes, built with numpy.
    With ``values``, ``members`` are indices into it (few distinct values, many members).
    Key ``i``'s members are ``members[starts[i] : starts[i] + lens[i]]`` (by default, the
    sets one after the other).

    The sets are written in batches of about ``_MEMBERS_AT_ONCE`` members (see
    :func:`_write_sets`). With ``threads=2``, a table of at least ``_THREADED_MEMBERS``
    members is written in two halves (cut between two sets in key order) by two threads,
    and the texts joined."""
    if starts is None:
        starts = np.cumsum(lens) - lens
    if values is None:
        values, members = np.unique(members[_ranges(starts, lens)], return_inverse=True)
        members = members.reshape(-1)
        starts = np.cumsum(lens) - lens
    if (
        (keys.size and (int(keys.min()) < 0 or int(keys.max()) >= 10**17))
        or (values.size and int(values.min()) < 0)
        or (lens.size and lens.min() == 0)
    ):  # (the lattices' sets are never empty)
        from numcodecs import JSON

        doc = {
            str(k): values[members[s : s + n]].tolist()
            for k, s, n in zip(keys.tolist(), starts.tolist(), lens.tolist(), strict=True)
        }
        value = np.empty(1, dtype=object)
        value[0] = doc
        return JSON().encode(value)
    head, tail = b"[{", b'},"|O",[1]]'
    if not keys.size:
        return head + tail
    ndig = _digits(keys)
    order = _string_order(keys, ndig)  # json's sort_keys: string order
    vd = _digits(values)
    width = -(-(int(vd.max(initial=1)) + 2) // 8) * 8  # tokens padded to whole words
    vocab = np.concatenate(
        [_tokens(values, b"", b",", width), _tokens(values, b"", b"],", width)]
    ).view(f"V{width}").reshape(-1)
    vocab_lens = np.concatenate([vd + 1, vd + 2]).astype(np.intp)
    total = int(lens.sum())
    per = max(1, _MEMBERS_AT_ONCE * keys.size // (total + keys.size))
    bounds = [*range(0, keys.size, per), keys.size]
    batches = list(itertools.pairwise(bounds))
    size = total * (int(vd.max()) + 2) + keys.size * (int(ndig.max()) + 4) + width + 40
    args = (order, keys, ndig, starts, lens, members, vocab, vocab_lens)
    if threads > 1 and len(batches) > 1 and total >= _THREADED_MEMBERS:
        half = len(batches) // 2
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(_sets_text, batches[:half], size, *args)
            texts = [_sets_text(batches[half:], size, *args)]
            texts.insert(0, first.result())
    else:
        texts = [_sets_text(batches, size, *args)]
    texts[-1] = texts[-1][:-1]  # the last set's trailing comma
    return b"".join([head, *texts, tail])
