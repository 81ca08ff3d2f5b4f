"""The vectorized pieces of the label pyramid against plain Python / numpy references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import ReferenceSetTable, padded_rows, step_combinations
from hypothesis import given, settings
from hypothesis import strategies as st
from numcodecs import JSON

import pipeline.algorithms.labels as labels_module
import pipeline.algorithms.set_table as set_table_module
from pipeline.algorithms.labels import distinct_pairs, label_step_block
from pipeline.algorithms.set_table import (
    SENTINEL,
    SetTable,
    encode_set_table,
    lexsort_unique_rows,
    sorted_unique,
    unique_rows,
)

ReferenceTable = ReferenceSetTable  # (the code before vectorization)


@st.composite
def _levels(draw):
    """Labels, a segment mapping (several labels may share a segment) and three levels of
    random combinations of the categories known so far."""
    labels = draw(st.lists(st.integers(0, 60), min_size=2, max_size=25, unique=True))
    shared = draw(st.dictionaries(st.sampled_from(labels), st.integers(0, 9), max_size=5))
    levels = []
    known = len(labels)
    for _ in range(3):
        n = draw(st.integers(1, 30))
        combos = []
        for _ in range(n):
            picks = draw(st.lists(st.integers(0, known - 1), min_size=2, max_size=6, unique=True))
            combos.append(tuple(picks))
        levels.append(combos)
        known += n  # an upper bound: indices past the real categories wrap below
    return labels, shared, levels


def _check_against_reference(labels, shared, levels) -> SetTable:
    table, ref = SetTable(), ReferenceTable()
    table.add_labels(np.array(labels), shared)
    ref.add_labels(labels, shared)
    for combos in levels:
        categories = sorted(ref.sets)
        rows = [tuple(sorted({categories[i % len(categories)] for i in c})) for c in combos]
        expected = [ref.union_id(r) for r in rows]
        got = table.union_ids(padded_rows(rows)).tolist()
        assert got == expected
    assert dict(table.sets) == ref.sets
    present = np.array(sorted(ref.sets), np.uint32)
    value = np.empty(1, dtype=object)
    value[0] = {str(c): list(ref.sets[c]) for c in sorted(ref.sets)}
    assert table.encoded_table(present) == JSON().encode(value)
    return table


@settings(max_examples=60, deadline=None)
@given(_levels())
def test_union_ids_match_one_union_at_a_time(case):
    _check_against_reference(*case)


@pytest.mark.parametrize("seed", range(5))
def test_every_set_hashing_alike_gives_the_same_ids(monkeypatch, seed):
    """With a hash that maps every set to one value, every lookup collides: the exact path
    must still give the ids of the definition."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(set_table_module, "_mix", lambda v: np.zeros(np.shape(v), np.uint64))
    monkeypatch.setattr(
        set_table_module, "_length_hash", lambda v: np.zeros(np.shape(v), np.uint64)
    )
    labels = rng.choice(40, size=12, replace=False).tolist()
    levels = [
        [tuple(rng.choice(12 + 10 * k, size=rng.integers(2, 5), replace=False)) for _ in range(10)]
        for k in range(3)
    ]
    _check_against_reference(labels, {labels[0]: labels[1]}, levels)


@pytest.mark.parametrize("batch", [1, 2, 7])
def test_batches_of_unions_give_the_same_ids(monkeypatch, batch):
    """Unions are formed in batches of rows, cut where their union matrix is too large: any
    batch size gives the definition's ids."""
    monkeypatch.setattr(set_table_module, "_ROWS_AT_ONCE", batch)
    monkeypatch.setattr(set_table_module, "_CELLS_AT_ONCE", 2 * batch)
    rng = np.random.default_rng(batch)
    labels = rng.choice(30, size=10, replace=False).tolist()
    levels = [
        [tuple(rng.choice(10 + 15 * k, size=rng.integers(2, 5), replace=False)) for _ in range(15)]
        for k in range(3)
    ]
    _check_against_reference(labels, {labels[0]: labels[1]}, levels)


def test_ids_at_the_top_of_uint32_take_the_lowest_free_ones():
    top = int(SENTINEL) - 1
    table = SetTable()
    table.add_labels(np.array([1, 3, top]))  # the next id would be 2**32 - 1: none is left above
    got = table.union_ids(padded_rows([(1, 3), (1, top), (3, top), (1, 3)])).tolist()
    assert got == [0, 2, 4, 0]
    assert table.sets[2] == (1, top)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**12), st.lists(st.integers(0, 10**15), max_size=5)),
        max_size=20,
        unique_by=lambda kv: kv[0],
    )
)
def test_set_table_encoding_is_the_json_codec(items):
    keys = np.array([k for k, _ in items], np.int64)
    lens = np.array([len(m) for _, m in items], np.int64)
    members = np.array([x for _, m in items for x in m], np.int64)
    value = np.empty(1, dtype=object)
    value[0] = {str(k): m for k, m in items}
    assert encode_set_table(keys, lens, members) == JSON().encode(value)
    # members given as indices into a table of values (the set table's segment ranks)
    values, ranks = np.unique(members, return_inverse=True)
    assert encode_set_table(keys, lens, ranks.reshape(-1), values) == JSON().encode(value)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 40), st.integers(0, 2**32 - 1), st.integers(0, 2**16))
def test_unique_rows_match_numpy(width, n, top, seed):
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, min(top, 5) + 1, size=(n, width)).astype(np.uint32)
    rows[rng.random((n, width)) < 0.2] = top  # some large values
    expected, inverse = np.unique(rows, axis=0, return_inverse=True)
    first, got_inverse = lexsort_unique_rows(rows)
    np.testing.assert_array_equal(rows[first], expected)
    np.testing.assert_array_equal(got_inverse, inverse.reshape(-1))
    first, got_inverse = unique_rows(rows)
    assert len(first) == len(expected)
    np.testing.assert_array_equal(rows[first[got_inverse]], rows)


def _reference_step(grid: np.ndarray, out0, out1):
    """Per output voxel, the sorted distinct categories of its clipped 3x3x3 window."""
    n = grid.shape
    result = {}
    for i in itertools.product(*(range(a, b) for a, b in zip(out0, out1, strict=True))):
        window = tuple(
            slice(max(2 * c - 1, 0), min(2 * c + 2, size)) for c, size in zip(i, n, strict=True)
        )
        result[i] = tuple(np.unique(grid[window]).tolist())
    return result


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 11)] * 3),
    top=st.sampled_from([1, 3, 40, 2**16 - 1]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.uint32]),
    fortran=st.booleans(),
    cut=st.tuples(*[st.floats(0, 1)] * 3),
    seed=st.integers(0, 2**16),
    few=st.booleans(),
)
def test_block_step_matches_the_windows(shape, top, dtype, fortran, cut, seed, few):
    """Both ways of finding the mixed windows' categories: the second smallest value of every
    window first (``few`` False: many mixed windows), or all 27 samples of each (``few``)."""
    rng = np.random.default_rng(seed)
    top = min(top, np.iinfo(dtype).max)
    grid = rng.integers(0, top + 1, size=shape).astype(dtype)
    grid[rng.random(shape) < 0.5] = 0
    # a sub-range of outputs, read with the halo it needs, in either memory order
    m = [(s + 1) // 2 for s in shape]
    out0 = tuple(int(c * (k - 1)) for c, k in zip(cut, m, strict=True))
    out1 = tuple(k for k in m)
    lo = tuple(max(2 * a - 1, 0) for a in out0)
    hi = tuple(min(2 * (b - 1) + 2, s) for b, s in zip(out1, shape, strict=True))
    block = grid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    block = np.asfortranarray(block) if fortran else np.ascontiguousarray(block)
    saved = labels_module._GATHER_COST
    labels_module._GATHER_COST = 0 if few else 1 << 62
    try:
        step = label_step_block(block, lo, shape, out0, out1)
    finally:
        labels_module._GATHER_COST = saved
    expected = _reference_step(grid, out0, out1)
    combos = step_combinations(step)  # (each once, parts in the order of tuples)
    mixed_at = list(zip(*np.nonzero(step.mixed), strict=True))
    assert len(mixed_at) == len(step.index)
    for pos, k in zip(mixed_at, step.index.tolist(), strict=True):
        key = tuple(p + a for p, a in zip(pos, out0, strict=True))
        assert combos[k] == expected[key]
    for key, members in expected.items():
        local = tuple(p - a for p, a in zip(key, out0, strict=True))
        assert step.mixed[local] == (len(members) > 1)
        if len(members) == 1:
            assert step.single[local] == members[0]
    assert set(combos) == {m for m in expected.values() if len(m) > 1}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2**32 - 2), min_size=1, max_size=5), min_size=1))
def test_padded_rows_sort_as_tuples(rows_list):
    """Category rows padded with the sentinel sort as Python tuples: (1, 2) < (1, 2, 3)."""
    rows = padded_rows([tuple(r) for r in rows_list])
    first, inverse = lexsort_unique_rows(rows, sentinel_first=True)
    as_tuples = [tuple(c for c in r if c != SENTINEL) for r in rows.tolist()]
    distinct = sorted(set(as_tuples))
    assert [as_tuples[i] for i in first] == distinct
    assert [distinct[g] for g in inverse.tolist()] == as_tuples


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 20000),
    st.sampled_from([1, 50, 2**16, 2**31, 2**40]),
    st.sampled_from([np.uint16, np.uint32, np.int64, np.uint64]),
    st.integers(0, 2**16),
)
def test_sorted_unique_matches_numpy(n, top, dtype, seed):
    """Counting (small values) or sorting (large ones): np.unique's values and dtype."""
    rng = np.random.default_rng(seed)
    top = min(top, np.iinfo(dtype).max)
    values = rng.integers(0, top, size=n, endpoint=True).astype(dtype)
    got = sorted_unique(values)
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, np.unique(values))


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 3000),
    st.sampled_from([2, 40, 3000, 2**20, 2**32 - 2]),
    st.sampled_from([np.uint8, np.uint16, np.uint32]),
    st.integers(0, 2**16),
)
def test_distinct_pairs_match_numpy(n, top, dtype, seed):
    """Counted (few categories) or sorted: np.unique's pairs, in tuple order, and each row."""
    rng = np.random.default_rng(seed)
    top = min(top, np.iinfo(dtype).max)
    lo = rng.integers(0, top, size=n, endpoint=True).astype(dtype)
    hi = rng.integers(0, top, size=n, endpoint=True).astype(dtype)
    pairs, inverse = distinct_pairs(lo, hi)
    stacked = np.stack([lo, hi], axis=1).astype(np.uint32)
    expected, rows = np.unique(stacked, axis=0, return_inverse=True)
    assert pairs.dtype == np.uint32
    np.testing.assert_array_equal(pairs, expected.reshape(-1, 2))
    np.testing.assert_array_equal(inverse, rows.reshape(-1))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 400),
    st.sampled_from([2**12, 2**20 - 1]),
    st.integers(1, 30),
    st.integers(0, 2**16),
)
def test_distinct_pairs_of_few_large_categories(n, top, r, seed):
    """Few categories spread up to ``top``: counted by their ranks, as np.unique gives them."""
    rng = np.random.default_rng(seed)
    values = rng.choice(top, size=r, replace=False).astype(np.uint32)
    lo, hi = values[rng.integers(0, r, n)], values[rng.integers(0, r, n)]
    pairs, inverse = distinct_pairs(lo, hi)
    expected, rows = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
    np.testing.assert_array_equal(pairs, expected.reshape(-1, 2))
    np.testing.assert_array_equal(inverse, rows.reshape(-1))


def _random_grid(rng, shape, dtype, top):
    """Labels 0..top (some of them ``top`` itself) in regions and noise."""
    grid = rng.integers(0, min(top, 5) + 1, size=shape).astype(dtype)
    grid[rng.random(shape) < 0.3] = 0
    grid[rng.random(shape) < 0.1] = top
    return grid


@settings(max_examples=50, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 9)] * 3),
    dtype=st.sampled_from([np.uint8, np.uint16, np.uint32]),
    near_top=st.sampled_from([0, 1, 2]),
    batch=st.integers(1, 9),
    share=st.floats(0.05, 1),
    seed=st.integers(0, 2**16),
)
def test_window_rows_and_their_tuple_order(shape, dtype, near_top, batch, share, seed):
    """The gathered rows of any windows (in batches of any size, starting from the windows'
    minima or second smallest categories): each window's np.unique, padded with the sentinel;
    their sort words order them as tuples."""
    rng = np.random.default_rng(seed)
    # (a uint32 category is at most 2**32 - 2: the largest value is the sentinel)
    largest = int(np.iinfo(dtype).max) - (dtype == np.uint32)
    top = 40 if near_top == 0 else largest - (near_top - 1)
    grid = _random_grid(rng, shape, dtype, top)
    out1 = tuple((n + 1) // 2 for n in shape)
    expected = _reference_step(grid, (0, 0, 0), out1)
    where = np.flatnonzero(rng.random(int(np.prod(out1))) < share)
    if where.size == 0:
        where = np.array([0])
    kind = np.dtype(dtype) if grid.max() < np.iinfo(dtype).max else np.dtype(np.uint32)
    taps = labels_module._tap_tables(grid, (0, 0, 0), shape, (0, 0, 0), out1)
    # the windows' extrema, and as the categories to start from either their minima or (where
    # the window has one) their second smallest categories
    low = np.zeros(out1, dtype)
    high = np.zeros(out1, dtype)
    second = np.zeros(out1, np.uint32)
    for pos in itertools.product(*(range(k) for k in out1)):
        members = expected[pos]
        low[pos], high[pos] = members[0], members[-1]
        second[pos] = members[1] if len(members) > 1 else members[0]
    either = rng.random(where.size) < 0.5
    start = np.where(either, second.reshape(-1)[where], low.reshape(-1)[where])
    if rng.random() < 0.5:  # one kind of start in each batch
        start = (second if rng.random() < 0.5 else low).reshape(-1)[where].astype(np.uint32)
    saved = labels_module._BATCH
    labels_module._BATCH = batch
    try:
        words, lengths = labels_module._window_words(
            grid, taps, out1, where, start.astype(np.uint32), low, high, kind, int(grid.max())
        )
        words, lengths = words.copy(), lengths.copy()
    finally:
        labels_module._BATCH = saved
    width = int(lengths.max())
    per_word = labels_module._packing(int(grid.max()))[1]
    assert words.shape[0] == -(-width // per_word)  # as many words as the widest row needs
    # the rows come back from their sort words, padded with the uint32 sentinel (extra
    # columns too)
    rows = np.zeros((where.size, width + 2), np.uint32)
    bits = labels_module._packing(int(grid.max()))[0]
    labels_module._unpack_rows(words, np.arange(where.size), width, bits, rows)
    sentinel = np.iinfo(np.uint32).max
    assert (rows[:, width:] == sentinel).all()
    want = [expected[tuple(int(c) for c in np.unravel_index(p, out1))] for p in where]
    assert width == max(len(t) for t in want)
    assert lengths.tolist() == [len(t) for t in want]
    for row, members in zip(rows[:, :width].tolist(), want, strict=True):
        assert tuple(v for v in row if v != sentinel) == members
        assert row[len(members) :] == [sentinel] * (width - len(members))
    distinct = sorted(set(want))
    # by an argsort of the leading words, or a sort of their top columns and the row numbers
    for bits in (64, labels_module._packing(int(grid.max()))[0]):
        first, group = labels_module._sort_words(words, bits)
        assert [want[i] for i in first.tolist()] == distinct
        assert [distinct[g] for g in group.tolist()] == want


@settings(max_examples=50, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 11)] * 3),
    dtype=st.sampled_from([np.uint8, np.uint16]),
    top=st.sampled_from([3, 200, None]),
    fortran=st.booleans(),
    slab=st.sampled_from([1, 64, 1 << 20]),
    cost=st.sampled_from([0, 2, 8, 1 << 62]),
    batch=st.sampled_from([1, 5, 1 << 13]),
    seed=st.integers(0, 2**16),
    direct=st.booleans(),
)
def test_block_step_in_slabs_and_batches(
    shape, dtype, top, fortran, slab, cost, batch, seed, direct
):
    """Slabs of the block that take the second-smallest passes or not (``cost``), windows
    gathered in batches of any size, and pairs counted over the whole block or picked out
    (``direct``) give each window's np.unique, combinations in tuple order."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max if top is None else top
    grid = _random_grid(rng, shape, dtype, top)
    if rng.random() < 0.5:  # large regions too
        grid[: shape[0] // 2] = 1
    block = np.asfortranarray(grid) if fortran else grid
    out1 = tuple((n + 1) // 2 for n in shape)
    saved = labels_module._SLAB_BYTES, labels_module._GATHER_COST, labels_module._BATCH
    saved_pairs = labels_module._PAIR_COUNTING
    labels_module._SLAB_BYTES, labels_module._GATHER_COST, labels_module._BATCH = (
        slab,
        cost,
        batch,
    )
    labels_module._PAIR_COUNTING = 1 << 40 if direct else 0
    try:
        step = label_step_block(block, (0, 0, 0), shape, (0, 0, 0), out1)
    finally:
        labels_module._SLAB_BYTES, labels_module._GATHER_COST, labels_module._BATCH = saved
        labels_module._PAIR_COUNTING = saved_pairs
    expected = _reference_step(grid, (0, 0, 0), out1)
    combos = step_combinations(step)
    assert step.index.dtype == np.int64
    assert step.single.dtype == grid.dtype
    mixed_at = list(zip(*np.nonzero(step.mixed), strict=True))
    assert len(mixed_at) == len(step.index)
    for pos, k in zip(mixed_at, step.index.tolist(), strict=True):
        assert combos[k] == expected[tuple(int(p) for p in pos)]
    for key, members in expected.items():
        assert step.mixed[key] == (len(members) > 1)
        if len(members) == 1:
            assert step.single[key] == members[0]
    assert set(combos) == {m for m in expected.values() if len(m) > 1}


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([3, 11, 21]),
    st.integers(1, 9),
    st.integers(1, 5000),
    st.integers(0, 2**16),
)
def test_sort_words_order_rows_as_tuples(bits, width, n, seed):
    """Rows packed into sort words (values + 1, ``64 // bits`` columns per word, 0 past a
    row's end), many sharing their first columns: distinct in the order of tuples, whether
    the leading word is argsorted or its top bits sorted with the row numbers (the bits left
    out then still order the rows)."""
    rng = np.random.default_rng(seed)
    per_word = 64 // bits
    top = (1 << bits) - 2
    lengths = rng.integers(1, width + 1, n)
    rows = [
        tuple(sorted(rng.choice([1, 2, top - 1, top], size=k).tolist()))
        if rng.random() < 0.5
        else tuple(sorted(rng.integers(0, top + 1, size=k).tolist()))
        for k in lengths
    ]
    nwords = -(-width // per_word)
    words = np.zeros((nwords, n), np.uint64)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            k, c = divmod(j, per_word)
            words[k, i] |= np.uint64(v + 1) << np.uint64(bits * (per_word - 1 - c))
    distinct = sorted(set(rows))
    for b in (64, bits):
        first, group = labels_module._sort_words(words, b)
        assert [rows[i] for i in first.tolist()] == distinct
        assert [distinct[g] for g in group.tolist()] == rows


def test_block_step_last_short_batch_starts_clean():
    """The last, shorter batch of gathered windows lays the column buffer out anew: a window
    complete before a wider one of its batch must not show the batch before's columns
    (a 5-category window beside 3-category ones in a batch of 3 after one of 5)."""
    grid = np.array(
        [[[0, 3, 0, 1, 0, 0, 0], [0, 1, 0, 0, 5, 3, 3], [5, 4, 200, 3, 3, 5, 1]]], np.uint8
    )
    out1 = (1, 2, 4)
    saved = labels_module._SLAB_BYTES, labels_module._GATHER_COST, labels_module._BATCH
    labels_module._SLAB_BYTES, labels_module._GATHER_COST, labels_module._BATCH = 1, 0, 5
    try:
        step = label_step_block(grid, (0, 0, 0), grid.shape, (0, 0, 0), out1)
    finally:
        labels_module._SLAB_BYTES, labels_module._GATHER_COST, labels_module._BATCH = saved
    expected = _reference_step(grid, (0, 0, 0), out1)
    combos = step_combinations(step)
    mixed_at = list(zip(*np.nonzero(step.mixed), strict=True))
    for pos, k in zip(mixed_at, step.index.tolist(), strict=True):
        assert combos[k] == expected[tuple(int(p) for p in pos)]
    assert set(combos) == {m for m in expected.values() if len(m) > 1}
