"""Review checks of a block step's combinations as parts of one width each (commit ccdf8e3):
``_combination_parts`` against a plain Python merge of the pairs and gathered rows, a block
step whose gathered two-category rows repeat several counted pairs (one of them the last
combination), and ``SetTable.level_ids`` giving the same ids however a level's rows are cut
into parts and in whatever order the blocks come."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ReferenceSetTable, padded_rows, window_sets
from hypothesis import given, settings
from hypothesis import strategies as st

import pipeline.algorithms.labels as labels_module
import pipeline.algorithms.set_table as set_table_module
from pipeline.algorithms.labels import label_step_block
from pipeline.algorithms.set_table import SetTable

SENTINEL = (1 << 32) - 1


def _words(rows: list[tuple[int, ...]], top: int) -> np.ndarray:
    """Sort words of rows as the step packs them (categories + 1, big-endian, 0 past a row's
    end), written column by column in Python."""
    bits = max((top + 1).bit_length(), 1)
    per_word = 64 // bits
    count = -(-max((len(r) for r in rows), default=1) // per_word)
    words = np.zeros((count, len(rows)), np.uint64)
    for i, row in enumerate(rows):
        for w in range(count):
            value = 0
            for j in range(per_word):
                c = w * per_word + j
                value = (value << bits) | (row[c] + 1 if c < len(row) else 0)
            words[w, i] = value
    return words


@st.composite
def _pairs_and_rows(draw):
    """Counted pairs and gathered rows (distinct among themselves; gathered rows of two
    categories may repeat a pair), categories up to ``top``."""
    top = draw(st.sampled_from([5, 255, 256, 65_534, 2**31, 2**32 - 2]))
    values = draw(st.lists(st.integers(0, top), min_size=2, max_size=30, unique=True))
    values.sort()
    row = st.lists(st.sampled_from(values), min_size=2, max_size=min(27, len(values)), unique=True)
    two = st.lists(st.sampled_from(values), min_size=2, max_size=2, unique=True)
    pairs = sorted({tuple(sorted(p)) for p in draw(st.lists(two, max_size=8))})
    gathered = {tuple(sorted(r)) for r in draw(st.lists(row, max_size=12))}
    repeats = draw(st.lists(st.sampled_from(pairs), max_size=len(pairs))) if pairs else []
    gathered |= set(repeats)  # gathered windows of two categories that repeat a pair
    if not pairs and not gathered:
        gathered = {(values[0], values[1])}
    return top, pairs, sorted(gathered)


@settings(max_examples=150, deadline=None)
@given(case=_pairs_and_rows(), counted=st.booleans(), seed=st.integers(0, 2**16))
def test_combination_parts_match_a_python_merge(case, counted, seed):
    top, pairs, gathered = case
    if not counted:  # (no pairs counted: every row gathered)
        gathered, pairs = sorted(set(gathered) | set(pairs)), []
    # the order of tuples, a pair before a gathered row equal to it
    merged = sorted(
        [(p, 0, i) for i, p in enumerate(pairs)] + [(g, 1, j) for j, g in enumerate(gathered)]
    )
    pair_at = np.array([k for k, m in enumerate(merged) if m[1] == 0], np.int64)
    wide_at = np.array([k for k, m in enumerate(merged) if m[1] == 1], np.int64)
    # the gathered rows' words in a shuffled order, ``first`` finding them in tuple order
    rng = np.random.default_rng(seed)
    columns = rng.permutation(len(gathered))
    shuffled = [None] * len(gathered)
    for j, c in enumerate(columns.tolist()):
        shuffled[c] = gathered[j]
    words = _words(shuffled, top) if gathered else None
    first = columns.astype(np.int64) if gathered else None
    lengths = np.array([len(g) for g in gathered], np.uint8)
    bits = max((top + 1).bit_length(), 1)
    pair_array = np.array(pairs, np.uint32).reshape(-1, 2) if pairs else None
    parts, place = labels_module._combination_parts(
        pair_array,
        pair_at if pairs else None,
        words,
        first,
        wide_at if pairs else None,
        lengths,
        bits,
    )
    distinct = sorted({m[0] for m in merged})
    widths = sorted({len(r) for r in distinct})
    assert [p.shape[1] for p in parts] == widths  # one part per width, narrowest first
    expected_rows = [r for w in widths for r in distinct if len(r) == w]
    rows = [tuple(r) for p in parts for r in p.tolist()]
    assert rows == expected_rows  # unpadded, each part in the order of tuples
    assert all(p.dtype == np.uint32 for p in parts)
    assert place.tolist() == [expected_rows.index(m[0]) for m in merged]


@pytest.mark.parametrize("fortran", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_gathered_rows_repeating_several_pairs(monkeypatch, fortran, dtype):
    """Planes of stripes (every window mixed: pairs counted) of three pairs, then uniform planes
    with one voxel of the pair's other category (few mixed windows: gathered): each pair comes
    again from a gathered row, the last one as the last combination of the block."""
    monkeypatch.setattr(labels_module, "_SLAB_BYTES", 1)  # one plane of outputs per slab
    monkeypatch.setattr(labels_module, "_GATHER_COST", 64)
    top = int(np.iinfo(dtype).max) - (1 if dtype == np.uint32 else 0)
    cats = [(0, 7), (3, 9), (11, top)]
    n = 12
    grid = np.zeros((36, n, n), dtype)
    for j, (a, b) in enumerate(cats):
        stripes = np.where(np.indices((4, n, n))[2] % 2 == 0, a, b)
        grid[4 * j : 4 * j + 4] = stripes
        grid[12 + 8 * j : 20 + 8 * j] = a
        grid[12 + 8 * j + 4, 5, 6] = b
    if fortran:  # the same planes as the slowest axis of an F-ordered block
        grid = np.asfortranarray(np.ascontiguousarray(grid.transpose(2, 1, 0)))
    seen = []
    original = labels_module._combination_parts

    def spy(*args):
        parts, place = original(*args)
        seen.append((sum(p.shape[0] for p in parts), place.copy()))
        return parts, place

    monkeypatch.setattr(labels_module, "_combination_parts", spy)
    out1 = tuple((s + 1) // 2 for s in grid.shape)
    step = label_step_block(grid, (0, 0, 0), grid.shape, (0, 0, 0), out1)
    [(kept, place)] = seen
    assert place.size - kept == 3  # every pair came again, and took its pair's place
    assert place[-1] == place[-2]  # the last combination was a repeat
    expected = window_sets(np.asarray(grid))
    rows = [tuple(r) for p in step.combos for r in p.tolist()]
    assert len(rows) == len(set(rows)) == step.rows == kept
    assert set(rows) == {m for m in expected.values() if len(m) > 1}
    assert set(cats) <= set(rows)
    mixed_at = list(zip(*np.nonzero(step.mixed), strict=True))
    assert len(mixed_at) == step.index.size
    for pos, k in zip(mixed_at, step.index.tolist(), strict=True):
        assert rows[k] == expected[tuple(int(p) for p in pos)]


class _Reference(ReferenceSetTable):
    def level(self, rows: list[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
        """The distinct rows of several categories take their ids in the order of tuples."""
        return {row: self.union_id(row) for row in sorted(set(rows))}


@pytest.mark.parametrize("small_batches", [False, True])
@pytest.mark.parametrize("hashing", ["real", "few"])
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_level_ids_whatever_the_parts(small_batches, hashing, seed):
    """A level's rows as the blocks give them (per block, unpadded parts of one width, narrowest
    first), as one padded part per block, and with the blocks in reverse order: the same id for
    every row, the ids of the definition, the same table."""
    rng = np.random.default_rng(seed)
    labels = sorted(set(rng.integers(0, 200, int(rng.integers(3, 60))).tolist()))
    shared = {v: int(rng.integers(0, 8)) for v in labels if rng.random() < 0.2}
    with pytest.MonkeyPatch.context() as m:
        if small_batches:
            m.setattr(set_table_module, "_ROWS_AT_ONCE", 3)
            m.setattr(set_table_module, "_CELLS_AT_ONCE", 7)
        if hashing == "few":
            m.setattr(set_table_module, "_mix", lambda v: np.asarray(v).astype(np.uint64) % 3)
        cuts = ["parts", "padded", "reversed"]
        tables = {cut: SetTable() for cut in cuts}
        for table in tables.values():
            table.add_labels(np.array(labels), shared)
        ref = _Reference(labels, shared)
        for _level in range(2):
            known = sorted(ref.sets)
            blocks = []
            for _ in range(int(rng.integers(1, 6))):
                rows = set()
                for _ in range(int(rng.integers(1, 25))):
                    k = int(rng.integers(2, min(9, len(known)) + 1))
                    rows.add(tuple(sorted(rng.choice(known, k, replace=False).tolist())))
                blocks.append(sorted(rows))
            every = [r for b in blocks for r in b]
            ids = ref.level(every)
            for cut, table in tables.items():
                parts, order = [], []
                if cut == "padded":
                    parts = [padded_rows(b) for b in blocks]
                    order = every
                else:
                    for b in blocks if cut == "parts" else blocks[::-1]:
                        for w in sorted({len(r) for r in b}):
                            mine = [r for r in b if len(r) == w]
                            parts.append(np.array(mine, np.uint32).reshape(len(mine), w))
                            order += mine
                got = table.level_ids(parts)
                assert got.tolist() == [ids[r] for r in order], cut
        for table in tables.values():
            assert dict(table.sets) == ref.sets
