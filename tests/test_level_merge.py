"""The merge of a level's label combinations between passes (``SetTable.level_ids`` and the
kernels under it) against plain Python / numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ReferenceSetTable, padded_rows
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline.algorithms.set_table as set_table_module
from pipeline.algorithms.set_table import (
    SENTINEL,
    SetTable,
    _bucket_search,
    _gathered,
    _hash_buckets,
    _merge,
    _ranges,
    _row_ends,
    _spans,
    _stable_order,
    _word_positions,
    lexsort_unique_rows,
)


class Reference(ReferenceSetTable):
    """The definition, and a level's ids from it."""

    def level(self, parts: list[list[tuple[int, ...]]]) -> list[list[int]]:
        """A row of one category keeps it; the distinct longer rows take their ids in the
        order of tuples."""
        every = sorted({row for part in parts for row in part if len(row) > 1})
        ids = {row: self.union_id(row) for row in every}
        return [[row[0] if len(row) == 1 else ids[row] for row in part] for part in parts]


@st.composite
def _levels(draw):
    """Labels, a segment mapping (labels may share a segment) and two levels of parts of
    rows of distinct categories (indices into the categories known at that level), each
    part in tuple order as the blocks give them, rows repeated across parts."""
    labels = draw(st.lists(st.integers(0, 60), min_size=2, max_size=20, unique=True))
    shared = draw(st.dictionaries(st.sampled_from(labels), st.integers(0, 9), max_size=4))
    levels = []
    for _ in range(2):
        parts = []
        for _ in range(draw(st.integers(1, 4))):
            picks = st.lists(st.integers(0, 200), min_size=1, max_size=7, unique=True)
            parts.append(draw(st.lists(picks, min_size=1, max_size=25)))
        levels.append((parts, draw(st.integers(0, 2))))
    return labels, shared, levels


def _check(labels, shared, levels) -> None:
    table, ref = SetTable(), Reference(labels, shared)
    table.add_labels(np.array(labels), shared)
    for parts, extra in levels:
        known = sorted(ref.sets)
        rows = [
            sorted({tuple(sorted({known[i % len(known)] for i in r})) for r in part})
            for part in parts
        ]
        expected = ref.level(rows)
        got = table.level_ids([padded_rows(part, extra) for part in rows])
        assert got.tolist() == [i for part in expected for i in part]
        assert got.dtype == np.uint32
    assert dict(table.sets) == ref.sets


@settings(max_examples=80, deadline=None)
@given(_levels())
def test_level_ids_match_the_definition(case):
    _check(*case)


@pytest.mark.parametrize("hashing", ["zero", "few"])
@settings(max_examples=25, deadline=None)
@given(case=_levels())
def test_level_ids_with_colliding_hashes(hashing, case):
    """Hashes that collide (all, or many): the members decide, through the exact path."""
    if hashing == "zero":
        def mix(v):
            return np.zeros(np.shape(v), np.uint64)
    else:
        def mix(v):
            return np.asarray(v).astype(np.uint64) % np.uint64(3)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(set_table_module, "_mix", mix)
        _check(*case)


@settings(max_examples=40, deadline=None)
@given(case=_levels(), rows=st.integers(1, 5), cells=st.integers(1, 12))
def test_level_ids_in_small_batches(case, rows, cells):
    with pytest.MonkeyPatch.context() as m:
        m.setattr(set_table_module, "_ROWS_AT_ONCE", rows)
        m.setattr(set_table_module, "_CELLS_AT_ONCE", cells)
        _check(*case)


@settings(max_examples=40, deadline=None)
@given(case=_levels(), rows=st.integers(1, 5))
def test_level_ids_of_parts_of_one_width(case, rows):
    """Parts as blocks give them (rows of one width each, no sentinel, narrowest first, in
    small batches: whole rows in ascending ranges) take the ids of the definition."""
    labels, shared, levels = case
    table, ref = SetTable(), Reference(labels, shared)
    table.add_labels(np.array(labels), shared)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(set_table_module, "_ROWS_AT_ONCE", rows)
        for parts, _extra in levels:
            known = sorted(ref.sets)
            by_width: list[list[tuple[int, ...]]] = []
            for part in parts:
                distinct = sorted({tuple(sorted({known[i % len(known)] for i in r})) for r in part})
                for k in sorted({len(r) for r in distinct}):
                    by_width.append([r for r in distinct if len(r) == k])
            expected = ref.level(by_width)
            got = table.level_ids([padded_rows(part) for part in by_width])
            assert got.tolist() == [i for part in expected for i in part]
    assert dict(table.sets) == ref.sets


def test_level_ids_with_many_rows_index_categories_and_hashes():
    """Enough rows for the dense category look-up, the hash buckets and uint16 members;
    a second level whose unions are all known sets."""
    rng = np.random.default_rng(7)
    labels = list(range(1, 300))
    table, ref = SetTable(), Reference(labels, {})
    table.add_labels(np.array(labels))
    for _ in range(2):
        known = sorted(ref.sets)
        parts = []
        for _ in range(3):
            part = {
                tuple(sorted(rng.choice(known[-200:], size=rng.integers(1, 6), replace=False)))
                for _ in range(400)
            }
            parts.append(sorted(part))
        expected = ref.level(parts)
        got = table.level_ids([padded_rows(p, 1) for p in parts])
        assert got.tolist() == [i for part in expected for i in part]
    assert dict(table.sets) == ref.sets


def test_an_unknown_category_is_a_key_error():
    table = SetTable()
    table.add_labels(np.arange(1, 50))
    with pytest.raises(KeyError):
        table.level_ids([padded_rows([(1, 2), (3, 99)], 0)] * 10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 6)), max_size=40))
def test_spans_are_the_ranges(pairs):
    starts = np.array([s for s, _ in pairs], np.int64)
    lengths = np.array([n for _, n in pairs], np.int64)
    expected = [s + j for s, n in pairs for j in range(n)]
    got = _spans(starts, lengths)
    assert got.dtype == np.intp and got.tolist() == expected
    assert _spans(starts.astype(np.uint32), lengths.astype(np.uint32)).tolist() == expected
    assert _ranges(starts, lengths).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=300),
    st.lists(st.integers(0, 2**64 - 1), max_size=50),
    st.integers(0, 2**16),
)
def test_bucket_search_is_a_sorted_search(keys, queries, seed):
    rng = np.random.default_rng(seed)
    keys = np.sort(np.array(keys, np.uint64))
    if keys.size:  # repeated keys, and queries equal to keys
        keys = np.sort(np.concatenate([keys, keys[rng.integers(0, keys.size, 5)]]))
    queries = np.concatenate([np.array(queries, np.uint64), keys[::3], keys[::4] + np.uint64(1)])
    if not keys.size:
        keys = np.zeros(0, np.uint64)
        return
    got = _bucket_search(keys, _hash_buckets(keys), queries)
    np.testing.assert_array_equal(got, np.searchsorted(keys, queries))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), max_size=200), st.integers(0, 3))
def test_stable_order_is_a_stable_argsort(values, repeat):
    hashes = np.array(values * (repeat + 1), np.uint64)
    order, ordered = _stable_order(hashes)
    np.testing.assert_array_equal(order, np.argsort(hashes, kind="stable"))
    np.testing.assert_array_equal(ordered, np.sort(hashes))


@pytest.mark.parametrize("seed", range(4))
def test_stable_order_of_many_hashes(seed):
    """Enough hashes for the radix passes; repeated hashes, and hashes that share their
    leading 32 bits (in and out of order below them)."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, 20000, dtype=np.uint64)
    hashes[1::50] = hashes[0]
    lead = hashes[::37] & np.uint64(0xFFFFFFFF00000000)
    hashes[::37] = lead[0] | rng.integers(0, 2**32, lead.size, dtype=np.uint64)
    hashes[5::41] = hashes[5::41] & np.uint64(0xFFFF)  # leading 48 bits zero
    order, ordered = _stable_order(hashes)
    np.testing.assert_array_equal(order, np.argsort(hashes, kind="stable"))
    np.testing.assert_array_equal(ordered, np.sort(hashes))


@pytest.mark.parametrize("seed", range(3))
def test_stable_order_with_many_tied_leading_bits(seed):
    """Indices in 40 low bits leave 24 leading bits: ~0.3 % of 100 k random hashes tie there,
    in and out of order below them (runs of two, three and more; and equal hashes), each run
    put in order by itself."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, 100_000, dtype=np.uint64)
    hashes[7::1001] = hashes[3]  # equal hashes in one run with ties
    hashes[9::997] = (hashes[3] & ~np.uint64(2**40 - 1)) | rng.integers(
        0, 2**40, hashes[9::997].size, dtype=np.uint64
    )
    bits = 40
    keys = set_table_module._index_keys(hashes, bits)
    expected = np.argsort(hashes, kind="stable")
    assert (np.diff((hashes[expected] >> np.uint64(bits)).astype(np.int64)) == 0).sum() > 100
    order, ordered = _stable_order(hashes, keys, bits)
    np.testing.assert_array_equal(order, expected)
    np.testing.assert_array_equal(ordered, hashes[expected])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 50), max_size=30),
    st.lists(st.integers(0, 50), max_size=30),
)
def test_merge_is_np_insert(old, new):
    keys = np.sort(np.array(old, np.uint64))
    index = np.arange(keys.size, dtype=np.int64)
    new_keys = np.array(new, np.uint64)
    new_index = np.arange(keys.size, keys.size + new_keys.size, dtype=np.int64)
    order = np.argsort(new_keys, kind="stable")
    at = np.searchsorted(keys, new_keys[order], side="right")
    expected_keys = np.insert(keys, at, new_keys[order])
    expected_index = np.insert(index, at, new_index[order])
    got_keys, got_index = _merge(keys, index, new_keys, new_index)
    np.testing.assert_array_equal(got_keys, expected_keys)
    np.testing.assert_array_equal(got_index, expected_index)
    assert got_keys.dtype == keys.dtype and got_index.dtype == index.dtype


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=20))
def test_row_ends_count_the_leading_categories(masks):
    rows = np.where(np.array(masks), np.uint32(SENTINEL), np.uint32(3))
    aligned = all(list(m) == sorted(m) for m in masks)  # categories, then sentinels
    got = _row_ends(rows)
    if not aligned:
        assert got is None
    else:
        assert got.tolist() == [m.count(False) for m in masks]


@pytest.mark.parametrize("cells", [1, 5, 64])
def test_wide_rows_pack_in_pieces(monkeypatch, cells):
    """Category ids of more than 16 bits are packed a few rows at a time: tuple order."""
    monkeypatch.setattr(set_table_module, "_CELLS_AT_ONCE", cells)
    rng = np.random.default_rng(cells)
    as_tuples = [
        tuple(sorted(rng.choice(2**31, size=rng.integers(1, 6), replace=False).tolist()))
        for _ in range(60)
    ]
    as_tuples += as_tuples[:10]
    first, inverse = lexsort_unique_rows(padded_rows(as_tuples, 1), sentinel_first=True)
    distinct = sorted(set(as_tuples))
    assert [as_tuples[i] for i in first] == distinct
    assert [distinct[g] for g in inverse.tolist()] == as_tuples


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 9)), max_size=40),
    st.sampled_from([1, 3, 8, 1 << 16]),
    st.booleans(),
)
def test_gathered_is_a_gather_of_the_ranges(pairs, piece, widen):
    """Pieces of 1, 3, 8 members and more (sets longer than a piece, empty sets), into an
    array of the source's type or a wider one."""
    source = (np.arange(300, dtype=np.uint16) * 7 + 3).astype(np.uint16)
    starts = np.array([s for s, _ in pairs], np.int64)
    lengths = np.array([n for _, n in pairs], np.int32)
    expected = [int(source[s + j]) for s, n in pairs for j in range(n)]
    old = set_table_module._GATHER_AT_ONCE
    set_table_module._GATHER_AT_ONCE = piece
    try:
        if widen:
            out = np.full(len(expected) + 2, 9, np.uint32)
            got = _gathered(source, starts, lengths, out[1:-1])
            assert out[0] == 9 and out[-1] == 9
        else:
            got = _gathered(source, starts, lengths)
            assert got.dtype == source.dtype
    finally:
        set_table_module._GATHER_AT_ONCE = old
    assert got.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 6), min_size=3, max_size=3), max_size=60),
    st.booleans(),
)
def test_word_positions_are_the_places_in_tuple_order(rows, tied):
    """Rows packed into one or several words (rows sharing their leading word), repeats
    ordered by their index."""
    data = np.array(rows, np.uint64).reshape(-1, 3)
    words = [data[:, 0] * np.uint64(16) + data[:, 1], data[:, 2]] if tied else [
        (data[:, 0] * np.uint64(16) + data[:, 1]) * np.uint64(16) + data[:, 2]
    ]
    order, places = _word_positions(words)
    expected = sorted(range(len(rows)), key=lambda i: (tuple(rows[i]), i))
    assert order.tolist() == expected
    assert places.dtype == np.int32
    assert [places[i] for i in expected] == list(range(len(rows)))


@pytest.mark.parametrize("seed", range(3))
def test_stable_order_of_index_keys_sorted_in_runs(seed):
    """The keys made and sorted batch by batch (indices from each batch's first), then
    merged: a stable argsort still, with repeated hashes across batches and leading bits
    that tie out of order."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, 5000, dtype=np.uint64)
    hashes[3::97] = hashes[1]  # repeats, in several batches
    hashes[10] = hashes[20] | np.uint64(0x3FF)  # same leading bits, larger first
    hashes[20] &= ~np.uint64(0x3FF)
    bits = 14  # room for more rows than there are
    keys = np.empty(hashes.size, np.uint64)
    for a in range(0, hashes.size, 700):
        part = set_table_module._index_keys(hashes[a : a + 700], bits)
        part.sort()
        keys[a : a + part.size] = part + np.uint64(a)
    order, ordered = _stable_order(hashes, keys, bits)
    np.testing.assert_array_equal(order, np.argsort(hashes, kind="stable"))
    np.testing.assert_array_equal(ordered, np.sort(hashes))
