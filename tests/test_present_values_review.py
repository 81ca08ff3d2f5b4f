"""Review checks of the categories a label block reports (issue 12): ``present_values`` of
narrow label dtypes holding their largest value, and the set tables of lattices whose labels
reach the top of their dtype (a block reports its own values or its windows')."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.algorithms.labels import present_values
from pipeline.algorithms.levels import plan_levels
from pipeline.build.lattices import write_lattice
from pipeline.db.sinks import ZipSink
from pipeline.db.writer import DataWriter
from pipeline.engine.passes import Engine
from pipeline.engine.runner import ThreadedRunner
from pipeline.model import LabelSource
from pipeline.options import Compressor, LevelOptions


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([np.uint8, np.uint16, np.uint32]),
    st.integers(0, 3),  # layout: C, F, a strided slice with a reversed axis, 1-D
    st.integers(0, 40),  # how far below the dtype's largest value the values start
    st.integers(0, 2**31 - 1),
)
def test_present_values_of_narrow_dtypes_up_to_their_largest_value(dtype, layout, below, seed):
    """Labels of uint8/uint16 blocks (level 1 keeps them in their dtype) may hold 255/65535:
    present_values is numpy's unique of them (only uint32's largest value is the sentinel)."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max - (1 if dtype == np.uint32 else 0)
    shape = tuple(int(n) for n in rng.integers(1, 12, 3))
    block = rng.integers(max(top - below, 0), top + 1, shape, dtype=np.uint64).astype(dtype)
    block.reshape(-1)[0] = top  # the largest category always present
    if layout == 1:
        block = np.asfortranarray(block)
    elif layout == 2:
        block = np.asfortranarray(block)[::2, :, ::-1]
    elif layout == 3:
        block = block.ravel()
    got = present_values(block)
    assert got.dtype == np.uint32
    assert got.tolist() == np.unique(block).tolist()
    single = block.reshape(-1)[: max(block.size // 2, 1)]
    rows = np.full((3, 4), 2**32 - 1, np.uint32)
    rows[:, :2] = [[1, 2], [2, 5], [0, 9]]
    expected = sorted({*np.unique(single).tolist(), 0, 1, 2, 5, 9})
    assert present_values(single, rows).tolist() == expected
    zero_d = np.array(block.reshape(-1)[0])
    assert present_values(zero_d).tolist() == [int(zero_d)]


class _Frame:
    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        return self.data[key].copy()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("block", [8, 16])
def test_set_tables_of_labels_at_the_top_of_their_dtype(tmp_path, dtype, block) -> None:
    """A mask whose labels include its dtype's largest value (255 in a uint8 mask, 65535 in
    a uint16 one): every level is written and each set table lists exactly the categories of
    its grid; level 1's categories are the labels."""
    import zarr
    from zarr.storage import ZipStore

    top = int(np.iinfo(dtype).max)
    rng = np.random.default_rng(5)
    cells = rng.integers(top - 6, top + 1, (6, 5, 7))
    labels = np.repeat(np.repeat(np.repeat(cells, 3, 0), 3, 1), 3, 2)[:17, :14, :19]
    labels = labels.astype(dtype)
    labels[:2] = 0
    source = LabelSource(path=tmp_path / "labels", lattice_id="L", frames=(_Frame(labels),))
    plan = plan_levels(labels.shape, 4, LevelOptions(min_size_mb=1e-9))
    sink = ZipSink(tmp_path / "data.zip")
    writer = DataWriter(sink, Compressor.LZ4)
    (tmp_path / "scratch").mkdir()
    write_lattice(
        writer, source, plan, tmp_path / "scratch", 4, Engine(ThreadedRunner(2), block=block)
    )
    writer.finish()
    sink.close()
    root = zarr.open_group(store=ZipStore(tmp_path / "data.zip", mode="r"), mode="r")
    with zipfile.ZipFile(tmp_path / "data.zip") as zf:
        members = set(zf.namelist())
        ratios = sorted(int(n.split("/")[2]) for n in members if n.endswith("/0/set_table/0"))
        assert ratios[:2] == [1, 2]
        for ratio in ratios:
            key = f"lattice_segmentation_data/L/{ratio}/0"
            grid = root[f"{key}/grid"][:]
            table = json.loads(zf.read(f"{key}/set_table/0"))[0]
            assert sorted(int(k) for k in table) == np.unique(grid).tolist()
            if ratio == 1:
                assert np.array_equal(grid, labels)
                assert table[str(top)] == [top]


def test_blocks_one_sample_thick_at_odd_starts_keep_their_categories(tmp_path) -> None:
    """Blocks of 1-sample chunks (block 2, chunk 1: the API allows them, the CLI's chunks
    of >= 8 do not) are one sample thick at odd starts, where no window of the block's own
    holds their samples: such a block reports its own values, and every set table still
    lists exactly the categories of its grid."""
    import zarr
    from zarr.storage import ZipStore

    rng = np.random.default_rng(1)
    idx = np.indices((23, 19, 26)) // 2
    lut = rng.integers(0, 300, int(idx[0].max() * 400 + idx[1].max() * 20 + idx[2].max()) + 1)
    labels = lut[idx[0] * 400 + idx[1] * 20 + idx[2]].astype(np.uint16)
    source = LabelSource(path=tmp_path / "labels", lattice_id="L", frames=(_Frame(labels),))
    plan = plan_levels(labels.shape, 1, LevelOptions(min_size_mb=1e-9))
    sink = ZipSink(tmp_path / "data.zip")
    writer = DataWriter(sink, Compressor.LZ4)
    (tmp_path / "scratch").mkdir()
    engine = Engine(ThreadedRunner(1), block=2)
    write_lattice(writer, source, plan, tmp_path / "scratch", 1, engine)
    writer.finish()
    sink.close()
    root = zarr.open_group(store=ZipStore(tmp_path / "data.zip", mode="r"), mode="r")
    with zipfile.ZipFile(tmp_path / "data.zip") as zf:
        names = zf.namelist()
        ratios = sorted(int(n.split("/")[2]) for n in names if n.endswith("/0/set_table/0"))
        assert len(ratios) >= 4
        for ratio in ratios:
            key = f"lattice_segmentation_data/L/{ratio}/0"
            grid = root[f"{key}/grid"][:]
            table = json.loads(zf.read(f"{key}/set_table/0"))[0]
            assert sorted(int(k) for k in table) == np.unique(grid).tolist(), ratio
