"""The category set-table pyramid (DESIGN 7.2): the invariant at every level, on random labels."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.ndimage import maximum_filter

from pipeline.algorithms.labels import SetTable, label_step_block, present_values
from pipeline.algorithms.levels import plan_levels
from pipeline.build.lattices import write_lattice
from pipeline.db.sinks import ZipSink
from pipeline.db.writer import DataWriter
from pipeline.engine.passes import threaded_engine
from pipeline.errors import InputFormatError
from pipeline.model import LabelSource
from pipeline.options import Compressor, LevelOptions


class NumpyArray:
    """A numpy array behind the lazy-array interface (read region by region)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.ndim = data.ndim

    def __getitem__(self, key):
        return self.data[key].copy()


def _membership(grid: np.ndarray, table: dict[int, list[int]], segment: int) -> np.ndarray:
    contains = np.array([segment in table[c] for c in sorted(table)])
    lookup = np.zeros(max(table) + 1, bool)
    lookup[sorted(table)] = contains
    return lookup[grid]


def _run(labels: np.ndarray, tmp_path, block: int = 8, chunk: int = 4):
    """Write all levels of a lattice with small blocks; return {level: (grid, table)}."""
    source = LabelSource(path=tmp_path / "labels", lattice_id="L", frames=(NumpyArray(labels),))
    plan = plan_levels(labels.shape, 4, LevelOptions(min_size_mb=1e-9))
    sink = ZipSink(tmp_path / "data.zip")
    writer = DataWriter(sink, Compressor.LZ4)
    (tmp_path / "scratch").mkdir(exist_ok=True)
    result = write_lattice(
        writer,
        source,
        plan,
        tmp_path / "scratch",
        chunk,
        threaded_engine(2, block),
    )
    writer.finish()
    sink.close()
    import json
    import zipfile

    import zarr
    from zarr.storage import ZipStore

    root = zarr.open_group(store=ZipStore(tmp_path / "data.zip", mode="r"), mode="r", zarr_format=2)
    levels = {}
    with zipfile.ZipFile(tmp_path / "data.zip") as zf:
        for lv in plan.levels:
            grid = root[f"lattice_segmentation_data/L/{lv.ratio}/0/grid"][:]
            table = json.loads(zf.read(f"lattice_segmentation_data/L/{lv.ratio}/0/set_table/0"))[0]
            levels[lv.ratio] = (grid, {int(k): v for k, v in table.items()})
    return result, levels


def _check_invariant(labels: np.ndarray, levels: dict) -> None:
    ratios = sorted(levels)
    segments = np.unique(labels).tolist()
    grid1, table1 = levels[1]
    np.testing.assert_array_equal(grid1, labels.astype(np.uint32))
    assert table1 == {v: [v] for v in segments}
    for r, r2 in itertools.pairwise(ratios):
        grid, table = levels[r]
        grid2, table2 = levels[r2]
        assert grid2.shape == tuple((n + 1) // 2 for n in grid.shape)
        assert grid2.dtype == np.uint32
        assert set(np.unique(grid2).tolist()) == set(table2)  # the table covers every value
        for s in segments:
            before = _membership(grid, table, s)
            dilated = maximum_filter(before, size=3, mode="nearest")[::2, ::2, ::2]
            np.testing.assert_array_equal(_membership(grid2, table2, s), dilated)


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    shape=st.tuples(*[st.integers(1, 23)] * 3),
    n_labels=st.integers(1, 300),
    dtype=st.sampled_from([np.int8, np.uint16, np.uint32]),
    seed=st.integers(0, 2**16),
    smooth=st.booleans(),
)
def test_set_table_invariant_on_random_labels(
    tmp_path_factory, shape, n_labels, dtype, seed, smooth
):
    rng = np.random.default_rng(seed)
    top = min(n_labels, np.iinfo(dtype).max)
    if smooth:  # blobs: large homogeneous regions and some boundaries
        coarse = rng.integers(0, top + 1, size=tuple(-(-n // 4) for n in shape))
        labels = np.kron(coarse, np.ones((4, 4, 4)))[: shape[0], : shape[1], : shape[2]]
    else:
        labels = rng.integers(0, top + 1, size=shape)
    labels = labels.astype(dtype)
    labels[..., -1] = top  # labels in the last plane
    result, levels = _run(labels, tmp_path_factory.mktemp("lat"))
    _check_invariant(labels, levels)
    assert result.segment_ids == tuple(np.unique(labels).tolist())


def test_a_level_with_the_categories_of_the_last_reuses_its_table(tmp_path, monkeypatch):
    # two half spaces: every coarser level holds 0, 1 and their union, as level 2 does
    labels = np.zeros((32, 16, 16), np.uint16)
    labels[16:] = 1
    encoded = []
    original = SetTable.table_encoder

    def counting(self, present, threads=1):
        encoded.append(np.asarray(present).tolist())
        return original(self, present, threads)

    monkeypatch.setattr(SetTable, "table_encoder", counting)
    _, levels = _run(labels, tmp_path)
    assert sorted(levels)[:4] == [1, 2, 4, 8]
    _check_invariant(labels, levels)
    union = next(c for c, members in levels[2][1].items() if members == [0, 1])
    for ratio in (2, 4, 8):
        assert levels[ratio][1] == {0: [0], 1: [1], union: [0, 1]}
    # levels 4 and 8 got level 2's bytes again; each coarser level was encoded once
    assert encoded[:2] == [[0, 1], [0, 1, union]]
    assert len(encoded) == len(levels) - 2


def test_odd_sizes_and_last_plane_are_covered(tmp_path):
    labels = np.zeros((17, 9, 33), np.uint16)
    labels[16, 8, 32] = 7  # the very last voxel
    labels[0, 0, 0] = 3
    _, levels = _run(labels, tmp_path)
    _check_invariant(labels, levels)
    for ratio, (grid, table) in levels.items():
        # the last voxel's segment survives at every level, in the last sample
        assert 7 in table[int(grid[-1, -1, -1])], ratio
        assert 3 in table[int(grid[0, 0, 0])], ratio


def test_unions_reuse_known_sets():
    table = SetTable()
    table.add_labels(np.array([0, 1, 2]))
    a = table.union_id((0, 1))
    assert table.union_id((1, 0)) == a
    b = table.union_id((a, 2))
    assert table.sets[b] == (0, 1, 2)
    assert table.union_id((0, 1, 2)) == b
    assert table.union_id((1,)) == 1


def test_block_step_marks_only_mixed_windows():
    grid = np.zeros((6, 6, 6), np.uint32)
    grid[5, 5, 5] = 9
    step = label_step_block(grid, (0, 0, 0), grid.shape, (0, 0, 0), (3, 3, 3))
    assert step.mixed.sum() == 1 and step.mixed[2, 2, 2]
    assert step.combos.tolist() == [[0, 9]]
    assert present_values(np.array([[5, 0], [5, 2**30]], np.uint32)).tolist() == [0, 5, 2**30]


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 3),  # layout: C, F, a strided slice, a 1-D array
    st.sampled_from([4, 255, 300, 65535, 2**22 - 1, 2**22, 2**32 - 2]),
    st.sampled_from([np.uint8, np.uint16, np.uint32, np.int64]),
    st.integers(0, 2**31 - 1),
)
def test_present_values_any_layout(layout, top, dtype, seed):
    """The distinct values of a block of any dtype and strides, flagged a few planes at a time
    (or sorted above 2**22), equal numpy's unique."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(1, 40, 3))
    top = min(top, int(np.iinfo(dtype).max))  # (a uint8 block's largest value: 255)
    block = rng.integers(0, top + 1, shape, dtype=np.uint64).astype(dtype)
    block.flat[0] = top
    if layout == 1:
        block = np.asfortranarray(block)
    elif layout == 2:
        block = np.asfortranarray(block)[::2, 1:, ::-1]
    elif layout == 3:
        block = block.ravel()
    assert np.array_equal(present_values(block), np.unique(block))
    assert present_values(block).dtype == np.uint32
    # with rows of combinations (sentinel-padded): the values of both, without the sentinel
    rows = rng.integers(0, top + 1, (int(rng.integers(0, 30)), 5), dtype=np.uint64)
    rows = rows.astype(np.uint32)
    rows[:, int(rng.integers(1, 5)) :] = 2**32 - 1
    expected = np.union1d(np.unique(block), rows[rows != 2**32 - 1])
    assert np.array_equal(present_values(block, rows), expected)
    assert np.array_equal(present_values(rows[:0], block[:0]), np.zeros(0))


def test_lattice_id_validation():
    with pytest.raises(InputFormatError, match="lattice id"):
        LabelSource(path=None, lattice_id="a/b", frames=(NumpyArray(np.zeros((2, 2, 2), int)),))


def _run_frames(frames, tmp_path, segments=()):
    source = LabelSource(
        path=tmp_path / "labels",
        lattice_id="L",
        frames=tuple(NumpyArray(f) for f in frames),
        segments=segments,
    )
    plan = plan_levels(frames[0].shape, 4, LevelOptions(min_size_mb=1e-9))
    sink = ZipSink(tmp_path / "data.zip")
    writer = DataWriter(sink, Compressor.LZ4)
    (tmp_path / "scratch").mkdir(exist_ok=True)
    write_lattice(
        writer,
        source,
        plan,
        tmp_path / "scratch",
        4,
        threaded_engine(2, 8),
    )
    writer.finish()
    sink.close()
    import json
    import zipfile

    with zipfile.ZipFile(tmp_path / "data.zip") as zf:
        return {
            (lv.ratio, t): json.loads(
                zf.read(f"lattice_segmentation_data/L/{lv.ratio}/{t}/set_table/0")
            )[0]
            for lv in plan.levels
            for t in range(len(frames))
        }


def test_every_frame_keeps_its_label_ids(tmp_path):
    a = np.zeros((6, 6, 6), np.uint16)
    a[3:, 3:, 3:] = 1
    b = np.zeros((6, 6, 6), np.uint16)
    b[:2, :2, :2] = 2
    tables = _run_frames([a, b], tmp_path)
    assert tables[(1, 0)] == {"0": [0], "1": [1]}
    assert tables[(1, 1)] == {"0": [0], "2": [2]}
    unions = {tuple(v) for (ratio, _), t in tables.items() if ratio > 1 for v in t.values()}
    assert (0, 1) in unions and (0, 2) in unions


def test_segment_ids_that_differ_from_label_values(tmp_path):
    from pipeline.model import Segment

    labels = np.zeros((6, 6, 6), np.uint16)
    labels[3:] = 1
    labels[:, :2] = 2
    tables = _run_frames(
        [labels], tmp_path, segments=(Segment(id=5, value=1), Segment(id=1, value=2))
    )
    assert tables[(1, 0)] == {"0": [0], "1": [5], "2": [1]}
    members = {m for t in tables.values() for v in t.values() for m in v}
    assert members == {0, 1, 5}


def test_label_values_near_the_top_of_uint32(tmp_path):
    labels = np.zeros((5, 5, 5), np.uint32)
    labels[2:, 2:, 2:] = 2**32 - 2
    tables = _run_frames([labels], tmp_path)
    assert tables[(1, 0)] == {"0": [0], str(2**32 - 2): [2**32 - 2]}
    assert [0, 2**32 - 2] in tables[(2, 0)].values()


def test_window_batches_do_not_change_the_step(monkeypatch):
    """Mixed windows are gathered in batches: any batch size gives the same step."""
    import pipeline.algorithms.labels as labels_module

    rng = np.random.default_rng(4)
    block = rng.integers(0, 6, size=(17, 12, 9)).astype(np.uint16)
    args = (block, (0, 0, 0), block.shape, (0, 0, 0), tuple((n + 1) // 2 for n in block.shape))
    whole = label_step_block(*args)
    monkeypatch.setattr(labels_module, "_BATCH", 7)
    batched = label_step_block(*args)
    np.testing.assert_array_equal(batched.single, whole.single)
    np.testing.assert_array_equal(batched.mixed, whole.mixed)
    np.testing.assert_array_equal(batched.combos, whole.combos)
    np.testing.assert_array_equal(batched.index, whole.index)
    assert whole.combos.shape[0] > 7  # several batches were needed
