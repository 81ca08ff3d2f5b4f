"""The category set table of a lattice (DESIGN 7.2), held in numpy arrays.

Every category id names a set of segment ids. Level 1 categories are the label values
(``{segment(v)} -> v``); at coarser levels, a union of categories equal to a known set reuses
that set's id, and a new union gets the next free id. :meth:`SetTable.union_ids` does that for
a whole level at once: the unions are formed, sorted and deduplicated row-wise, found in (or
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
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["SetTable", "encode_set_table", "sorted_unique", "unique_1d", "unique_rows"]

SENTINEL = np.iinfo(np.uint32).max  # padding of category rows; never a category id
_BATCH_MEMBERS = 1 << 22  # members of the unions formed at once
_THREADS = 2  # threads forming unions ahead of the id assignment
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


def _packed_columns(rows: np.ndarray, sentinel_first: bool) -> list[np.ndarray]:
    """Sort keys of the rows of a non-negative integer array, most significant first: the
    columns packed into uint64 words (the same lexicographic order). With ``sentinel_first``,
    uint32 rows count the sentinel below every other value (it wraps to 0 when 1 is added).

    Columns of up to 8 or 16 bits are written big-endian side by side and read back as
    words (one conversion of the whole array); wider ones are shifted in one by one."""
    shifted = rows + np.uint32(1) if sentinel_first else rows  # the sentinel wraps to 0
    top = int(shifted.max()) if rows.size else 0
    bits = max(top.bit_length(), 1)
    n, width = rows.shape
    for size in (1, 2):
        if bits <= 8 * size:
            per_word = 8 // size
            count = -(-width // per_word)
            packed = np.zeros((n, count * per_word), np.dtype(f">u{size}"))
            packed[:, :width] = shifted
            return list(packed.view(">u8").T.astype(np.uint64, order="C"))
    per_word = max(64 // bits, 1)
    out = []
    for c0 in range(0, width, per_word):
        word = np.zeros(n, np.uint64)
        for c in range(c0, min(c0 + per_word, width)):
            word <<= np.uint64(bits)
            word |= shifted[:, c].astype(np.uint64)
        out.append(word)
    return out


def lexsort_unique_rows(
    rows: np.ndarray, sentinel_first: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unique_1d` of the rows of a 2-D array of non-negative integers, rows in
    lexicographic order (with ``sentinel_first``: a uint32 sentinel sorts below 0, so a row
    padded with sentinels comes before the longer rows it starts, as Python tuples do)."""
    words = _packed_columns(rows, sentinel_first)
    if len(words) == 1:
        return unique_1d(words[0])
    # by the leading word (a stable sort: runs of rows already in order merge cheaply), then
    # only the rows sharing a leading word by the others, least significant first
    order = np.argsort(words[0], kind="stable")
    lead = words[0][order]
    same = lead[1:] == lead[:-1]
    if same.any():
        tied = np.zeros(rows.shape[0], bool)
        tied[1:] = same
        tied[:-1] |= same
        at = np.flatnonzero(tied)
        sub = order[at]  # ascending row index within each run of one leading word
        perm = np.arange(at.size)
        for word in words[:0:-1]:
            perm = perm[np.argsort(word[sub[perm]], kind="stable")]
        perm = perm[np.argsort(lead[at][perm], kind="stable")]
        order[at] = sub[perm]
    new = np.zeros(rows.shape[0], bool)
    new[:1] = True
    for word in words:
        ordered = word[order]
        new[1:] |= ordered[1:] != ordered[:-1]
    inverse = np.empty(rows.shape[0], np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


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


def _row_sums(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sums of consecutive runs of ``values`` of the given lengths (int64, or uint64 for
    uint64 values: sums modulo 2**64)."""
    total = np.zeros(values.size + 1, np.uint64 if values.dtype == np.uint64 else np.int64)
    np.cumsum(values, out=total[1:])
    ends = np.cumsum(counts)
    return total[ends] - total[ends - counts]


def _compact_rows(mat: np.ndarray) -> np.ndarray:
    """Rows sorted with their repeats replaced by the sentinel, trimmed to the widest row."""
    mat.sort(axis=1)
    if mat.shape[1] > 1:
        repeated = np.zeros(mat.shape, bool)
        np.equal(mat[:, 1:], mat[:, :-1], out=repeated[:, 1:])
        mat[repeated] = SENTINEL
        mat.sort(axis=1)
    width = int((mat != SENTINEL).sum(axis=1).max()) if mat.shape[0] else 1
    return mat[:, : max(width, 1)]


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
    old ones and keep their order among themselves (``order`` sorts them, if known)."""
    if order is None:
        order = np.argsort(new_keys, kind="stable")
    at = np.searchsorted(keys, new_keys[order], side="right")
    return np.insert(keys, at, new_keys[order]), np.insert(index, at, new_index[order])


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

    def _members(self, positions: np.ndarray, width: int) -> np.ndarray:
        """Member ranks of the given sets as sentinel-padded rows of ``width``."""
        lens = self._lens[positions]
        rows = np.full((positions.size, width), SENTINEL, np.uint32)
        flat = self._flat[_ranges(self._starts[positions], lens)]
        shift = np.arange(positions.size, dtype=np.int64) * width - (np.cumsum(lens) - lens)
        rows.reshape(-1)[np.arange(flat.size, dtype=np.int64) + np.repeat(shift, lens)] = flat
        return rows

    def _row_hash(self, rows: np.ndarray) -> np.ndarray:
        """Set hash of sentinel-padded rows of member ranks: the sum of a hash of each
        member's segment id, and a hash of the length."""
        valid = rows != SENTINEL
        counts = valid.sum(axis=1)
        member_hashes = self._segment_hash[rows[valid]]
        return _row_sums(member_hashes, counts) + _length_hash(counts)

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
        start0 = self._flat.size
        self._flat = np.concatenate([self._flat, rows[valid]])
        self._starts = np.concatenate([self._starts, start0 + np.cumsum(lens) - lens])
        self._lens = np.concatenate([self._lens, lens])
        self._hash = np.concatenate(
            [self._hash, self._row_hash(rows) if hashes is None else hashes]
        )
        first = self._cats.size
        self._cats = np.concatenate([self._cats, cats.astype(np.uint32)])
        new = np.arange(first, self._cats.size)
        if self._dense is not None:
            top = int(self._cats[new].max()) + 1
            if top > 4 * self._cats.size + (1 << 20):
                self._dense = None  # sparse ids (large label values): sorted look-ups only
            else:
                if top > self._dense.size:
                    grown = np.full(max(top, 2 * self._dense.size), -1, np.int64)
                    grown[: self._dense.size] = self._dense
                    self._dense = grown
                self._dense[self._cats[new]] = new
        # merge the new sets into the sorted lookups (after equal keys: creation order)
        self._cat_keys, self._by_cat = _merge(self._cat_keys, self._by_cat, self._cats[new], new)
        self._hash_keys, self._by_hash = _merge(
            self._hash_keys, self._by_hash, self._hash[new], new, hash_order
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
        order (exactly as calling :meth:`union_id` row after row).

        Rows go in batches of about ``_BATCH_MEMBERS`` members (batch after batch is still
        row after row), so memory stays bounded whatever the number of rows."""
        if rows.shape[0] == 0:
            return _EMPTY_U32
        return np.concatenate(list(self._per_batch(rows, self._assign)))

    def _batches(self, rows: np.ndarray) -> list[np.ndarray]:
        """``rows`` cut into runs whose unions have about ``_BATCH_MEMBERS`` members."""
        valid = rows != SENTINEL
        lens = self._lens[self._positions(rows[valid])]
        members = np.cumsum(_row_sums(lens, valid.sum(axis=1)))
        cuts = np.searchsorted(
            members, np.arange(_BATCH_MEMBERS, int(members[-1]), _BATCH_MEMBERS)
        )
        bounds = [0, *sorted(set(cuts.tolist()) - {0}), rows.shape[0]]
        return [rows[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    def _per_batch(
        self, rows: np.ndarray, step: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
    ) -> Iterator[np.ndarray]:
        """``step(batch, unions, hashes)`` of every batch of ``rows``, in order. The unions
        of the next batches are formed in threads (they only read the sets of known
        categories) while ``step`` runs on this one; at most two batches ahead."""
        batches = self._batches(rows)
        if len(batches) == 1:
            yield step(batches[0], *self._unions(batches[0]))
            return
        with ThreadPoolExecutor(_THREADS) as pool:
            pending = deque(pool.submit(self._unions, b) for b in batches[:_THREADS])
            for i, batch in enumerate(batches):
                mat, hashes = pending.popleft().result()
                if i + _THREADS < len(batches):
                    pending.append(pool.submit(self._unions, batches[i + _THREADS]))
                yield step(batch, mat, hashes)

    def _unions(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The union of each row's sets (sentinel-padded sorted member ranks) and its hash."""
        k = rows.shape[0]
        valid = rows != SENTINEL
        pos = self._positions(rows[valid])
        lens = self._lens[pos]
        if lens.size and int(lens.max()) == 1:  # sets of one member (labels): in place
            mat = np.full(rows.shape, SENTINEL, np.uint32)
            mat[valid] = self._flat[self._starts[pos]]
        else:  # members of row i's sets at i * width + 0, 1, ...
            flat = self._flat[_ranges(self._starts[pos], lens)]
            per_row = _row_sums(lens, valid.sum(axis=1))
            width = int(per_row.max())
            mat = np.full((k, width), SENTINEL, np.uint32)
            shift = np.arange(k, dtype=np.int64) * width - (np.cumsum(per_row) - per_row)
            at = np.arange(flat.size, dtype=np.int64) + np.repeat(shift, per_row)
            mat.reshape(-1)[at] = flat
        ascending = (mat[:, 1:] > mat[:, :-1]) | (mat[:, 1:] == SENTINEL)
        if not ascending.all():
            mat = _compact_rows(mat)  # (rows of single members of ascending segments are set)
        return mat, self._row_hash(mat)

    def _assign(self, rows: np.ndarray, mat: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Ids of the unions ``mat`` (with their ``hashes``) of ``rows``: known sets keep theirs,
        new ones are added with the next ids in row order."""
        k, width = mat.shape

        # one stable sort of the hashes: look-ups in sorted order, equal sets side by side
        # with their first row first
        order = np.argsort(hashes, kind="stable")
        ordered = hashes[order]
        by_hash = self._hash_keys
        loc = np.searchsorted(by_hash, ordered)
        loc_c = np.minimum(loc, max(by_hash.size - 1, 0))
        found = (loc < by_hash.size) & (by_hash[loc_c] == ordered) if by_hash.size else loc < 0
        ids = np.zeros(k, np.uint32)
        if found.any():  # sets already in the table
            rows_found = order[found]
            known = self._by_hash[loc_c[found]]
            if (self._lens[known] > width).any() or not np.array_equal(
                self._members(known, width), mat[rows_found]
            ):
                return self._union_ids_exact(rows)  # a hash collision: the exact path
            ids[rows_found] = self._cats[known]
        fresh = order[~found]
        if fresh.size:
            fresh_hashes = ordered[~found]
            new = np.ones(fresh.size, bool)
            np.not_equal(fresh_hashes[1:], fresh_hashes[:-1], out=new[1:])
            group = np.cumsum(new) - 1
            first = fresh[new]  # the first row of each new set, in hash order
            if first.size < fresh.size and not np.array_equal(mat[fresh], mat[first[group]]):
                return self._union_ids_exact(rows)
            if self._next + first.size > SENTINEL:
                return self._union_ids_exact(rows)  # ids wrap: the lowest free ones, slowly
            # new ids in the order of each set's first row
            by_row = np.argsort(first)
            rank = np.empty(first.size, np.int64)
            rank[by_row] = np.arange(first.size)
            ids[fresh] = self._next + rank[group]
            creators = first[by_row]
            self._append(ids[creators], mat[creators], hashes[creators], rank)
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
