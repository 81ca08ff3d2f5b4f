"""The set table encoder (numpy straight to the bytes of zarr 2's json2 codec) against
numcodecs' JSON codec and plain Python: keys of every length, members as values or as
indices, sets anywhere in a flat array, batches and the two-thread split."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numcodecs import JSON

import pipeline.algorithms.set_table as set_table_module
from pipeline.algorithms.set_table import SetTable, _string_order, encode_set_table


def _json(doc: dict[str, list[int]]) -> bytes:
    value = np.empty(1, dtype=object)
    value[0] = doc
    return JSON().encode(value)


def _number(digits: int) -> st.SearchStrategy[int]:
    """Integers of exactly ``digits`` decimal digits (0 counts as one)."""
    return st.integers(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)


_keys = st.integers(1, 17).flatmap(_number)  # every key length the numpy path takes
_values = st.integers(1, 19).flatmap(lambda d: _number(d).filter(lambda v: v < 2**63))


@st.composite
def _tables(draw, max_sets: int = 30):
    """Distinct keys with non-empty member lists, stored in a shuffled flat array with
    unused entries between the sets (as a SetTable stores them)."""
    keys = draw(st.lists(_keys, min_size=1, max_size=max_sets, unique=True))
    members = [draw(st.lists(_values, min_size=1, max_size=9)) for _ in keys]
    order = draw(st.permutations(range(len(keys))))
    flat: list[int] = []
    starts = [0] * len(keys)
    for i in order:
        flat.extend(draw(st.lists(_values, max_size=2)))  # entries of no listed set
        starts[i] = len(flat)
        flat.extend(members[i])
    return keys, members, starts, flat


def _arrays(keys, members, starts, flat):
    return (
        np.array(keys, np.int64),
        np.array([len(m) for m in members], np.int64),
        np.array(flat, np.int64),
        np.array(starts, np.int64),
    )


@settings(max_examples=150, deadline=None)
@given(_tables(), st.sampled_from([1, 2, 3, 1 << 17]), st.sampled_from([1, 2]))
def test_encoding_is_the_json_codec(table, at_once, threads):
    keys, members = table[:2]
    expected = _json({str(k): m for k, m in zip(keys, members, strict=True)})
    k, lens, values_flat, s = _arrays(*table)
    with pytest.MonkeyPatch.context() as mp:
        # tiny batches, and the two-thread split from the smallest tables on
        mp.setattr(set_table_module, "_MEMBERS_AT_ONCE", at_once)
        mp.setattr(set_table_module, "_THREADED_MEMBERS", 1)
        assert encode_set_table(k, lens, values_flat, starts=s, threads=threads) == expected
        # members as indices into a table of distinct values (the SetTable's way)
        values, ranks = np.unique(values_flat, return_inverse=True)
        got = encode_set_table(
            k, lens, ranks.reshape(-1).astype(np.uint32), values, starts=s, threads=threads
        )
        assert got == expected


def test_empty_sets_negative_and_huge_numbers_take_the_codec_itself():
    for doc in (
        {"5": [], "12": [3]},
        {"3": [-1, 2]},
        {str(10**17): [1], "4": [2]},
    ):
        keys = np.array([int(k) for k in doc], np.int64)
        lens = np.array([len(m) for m in doc.values()], np.int64)
        members = np.array([x for m in doc.values() for x in m], np.int64)
        assert encode_set_table(keys, lens, members) == _json(doc)
    assert encode_set_table(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)) == (
        _json({})
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(_keys, max_size=60, unique=True), st.booleans())
def test_string_order_is_the_order_of_the_decimal_strings(keys, ascending):
    if ascending:
        keys = sorted(keys)
    values = np.array(keys, np.int64)
    ndig = np.array([len(str(k)) for k in keys], np.uint8)
    got = [keys[i] for i in _string_order(values, ndig).tolist()]
    assert got == sorted(keys, key=str)


@pytest.mark.parametrize("seed", range(3))
def test_large_tables_in_many_batches_and_two_threads(monkeypatch, seed):
    """Tens of thousands of sets (ids of 1 to 7 digits, a few large sets among small ones)
    cut into many batches and pieces, in one and in two threads: the codec's bytes."""
    rng = np.random.default_rng(seed)
    n = 30_000
    keys = rng.choice(2_000_000, size=n, replace=False)
    keys[:20] = np.arange(20)  # short ids too
    lens = rng.integers(1, 9, size=n)
    lens[rng.choice(n, size=5, replace=False)] = 3000  # large sets: cut into pieces
    segments = np.sort(rng.choice(10**6, size=3000, replace=False))
    ranks = rng.integers(0, segments.size, size=int(lens.sum())).astype(np.uint32)
    starts = np.cumsum(lens) - lens
    doc = {
        str(k): segments[ranks[s : s + m]].tolist()
        for k, s, m in zip(keys.tolist(), starts.tolist(), lens.tolist(), strict=True)
    }
    expected = _json(doc)
    monkeypatch.setattr(set_table_module, "_MEMBERS_AT_ONCE", 1000)
    monkeypatch.setattr(set_table_module, "_THREADED_MEMBERS", 1000)
    for threads in (1, 2):
        assert encode_set_table(keys, lens, ranks, segments, threads=threads) == expected


def test_set_table_encodes_the_same_in_two_threads(monkeypatch):
    """``SetTable.encoded_table`` with threads=2 (unsorted, repeated ids given) gives the
    codec's bytes of the table's sets."""
    monkeypatch.setattr(set_table_module, "_MEMBERS_AT_ONCE", 64)
    monkeypatch.setattr(set_table_module, "_THREADED_MEMBERS", 64)
    rng = np.random.default_rng(7)
    table = SetTable()
    labels = rng.choice(5000, size=300, replace=False)
    table.add_labels(labels)
    rows = np.sort(rng.choice(labels, size=(2000, 3)), axis=1).astype(np.uint32)
    ids = table.union_ids(rows)
    present = np.concatenate([ids, labels[:100], ids[:50]])[::-1].copy()
    expected = _json({str(c): list(table.sets[c]) for c in sorted(set(present.tolist()))})
    for threads in (1, 2):
        assert table.encoded_table(present, threads=threads) == expected
        assert table.encoded_table(np.unique(present).astype(np.uint32), threads) == expected


@pytest.mark.parametrize(
    "digits",
    [
        (14, 1, 1, 1, 1, 1),  # one long key among short ones: written on its own
        (1, 14, 14, 14, 14, 14),  # one short key among long ones
        (1, 5, 13, 5, 1, 13, 5, 5, 5, 5, 5, 5, 5, 5),  # three widths, the middle one most
        (1, 17, 4, 5, 12, 13, 16, 8, 9, 2, 3),  # every width boundary
    ],
)
def test_keys_of_mixed_lengths(digits):
    keys = [int("9" * d) - i if d > 1 else i for i, d in enumerate(digits)]
    keys = list(dict.fromkeys(keys))
    members = [[i, 10**i] for i in range(len(keys))]
    expected = _json({str(k): m for k, m in zip(keys, members, strict=True)})
    lens = np.full(len(keys), 2, np.int64)
    flat = np.array([x for m in members for x in m], np.int64)
    assert encode_set_table(np.array(keys, np.int64), lens, flat) == expected


def test_table_encoder_reads_the_table_when_made():
    """The table is read by ``table_encoder`` itself, not by the function it returns (which
    runs in a thread while the next level's unions add sets): that function works on what
    was read even once every array of the table is gone."""
    table = SetTable()
    top = 2**32 - 2  # sparse ids: categories are looked up by sorted search
    table.add_labels(np.array([0, top]))
    encode = table.table_encoder(np.array([top, 0]), threads=2)
    expected = _json({"0": [0], str(top): [top]})
    table.union_ids(np.array([[0, top]], np.uint32))  # a new set, its arrays replaced
    for name in list(vars(table)):
        setattr(table, name, None)
    assert encode() == expected


@settings(max_examples=60, deadline=None)
@given(_tables())
def test_tokens_written_exactly_give_the_same_bytes(table):
    """The order-free way of writing the members (taken when numpy's assignment was not in
    index order) gives the codec's bytes too."""
    keys, members = table[:2]
    expected = _json({str(k): m for k, m in zip(keys, members, strict=True)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(set_table_module, "_IN_ORDER", False)
        assert encode_set_table(*_arrays(*table)[:3], starts=_arrays(*table)[3]) == expected


def test_tokens_clobbered_by_a_reordered_assignment_are_rewritten(monkeypatch):
    """An assignment that lands its writes last to first (what numpy does not rule out)
    leaves zero padding over later tokens: caught, and the text is still the codec's."""
    keys = np.arange(40, dtype=np.int64) * 7
    lens = np.full(40, 3, np.int64)
    flat = np.arange(120, dtype=np.int64) * 13
    expected = _json({str(k): flat[3 * i : 3 * i + 3].tolist() for i, k in enumerate(keys)})
    original = set_table_module._at_every_byte
    reordered = []

    class Backwards:
        def __init__(self, view):
            self.view = view

        def __setitem__(self, index, values):
            reordered.append(len(index))
            for i in range(len(index) - 1, -1, -1):  # last to first
                self.view[index[i]] = values[i]

    def at_every_byte(buf, width, offset=0, step=1):
        view = original(buf, width, offset, step)
        return Backwards(view) if width == 8 and not reordered else view

    monkeypatch.setattr(set_table_module, "_at_every_byte", at_every_byte)
    assert encode_set_table(keys, lens, flat) == expected
    assert reordered  # the member tokens went through the reordered assignment
