"""Review checks of the faster label pyramid (issue 12): a block's combinations stay distinct
when slabs find them in different ways, scratch levels of either code give the same entries,
and every stored set table (reused or encoded) lists exactly its grid's categories."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import step_combinations, window_sets
from numcodecs import JSON

import pipeline.algorithms.labels as labels_module
import pipeline.engine.passes as passes_module
from pipeline.algorithms.labels import label_step_block
from pipeline.algorithms.levels import plan_levels
from pipeline.build.lattices import write_lattice
from pipeline.db.sinks import ZipSink
from pipeline.db.writer import DataWriter
from pipeline.engine.passes import Engine
from pipeline.engine.runner import ThreadedRunner
from pipeline.model import LabelSource
from pipeline.options import Compressor, LevelOptions

SENTINEL = (1 << 32) - 1


@pytest.mark.parametrize("fortran", [False, True])
def test_a_pair_found_in_two_kinds_of_slab_is_one_combination(monkeypatch, fortran) -> None:
    """Slabs of few mixed windows gather their two-category windows, others count pairs: a
    pair found both ways was returned twice."""
    monkeypatch.setattr(labels_module, "_SLAB_BYTES", 1)  # one plane of outputs per slab
    n = 40
    grid = np.ones((8, n, n), np.uint16)
    grid[0:2, :, n // 2 :] = 2  # slab 0: one face between 1 and 2 (few mixed windows)
    grid[4:] = np.indices((4, n, n))[2] % 2 + 1  # stripes of 1 and 2: every window mixed
    grid[6:, ::3, ::3] = 3
    out1 = (4, n // 2, n // 2)
    if fortran:  # the same planes as the slowest axis of an F-ordered block
        grid, out1 = np.ascontiguousarray(grid.transpose(2, 1, 0)), out1[::-1]
    block = np.asfortranarray(grid) if fortran else grid
    step = label_step_block(block, (0, 0, 0), grid.shape, (0, 0, 0), out1)
    combos = step_combinations(step)  # each combination once, parts in the order of tuples
    expected = window_sets(grid, out1)
    mixed_at = list(zip(*np.nonzero(step.mixed), strict=True))
    assert len(mixed_at) == step.index.size
    for pos, k in zip(mixed_at, step.index.tolist(), strict=True):
        assert combos[k] == expected[tuple(int(p) for p in pos)]


class _Frame:
    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        return self.data[key].copy()


def _entry(tmp_path, frames, *, repeat=1, block=8, threads=2) -> dict[str, bytes]:
    """Every zip member of a lattice written from ``frames`` (all planned levels)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    source = LabelSource(
        path=tmp_path / "labels", lattice_id="L", frames=tuple(_Frame(f) for f in frames)
    )
    plan = plan_levels(frames[0].shape, 4, LevelOptions(min_size_mb=1e-9))
    sink = ZipSink(tmp_path / "data.zip")
    writer = DataWriter(sink, Compressor.LZ4)
    (tmp_path / "scratch").mkdir(exist_ok=True)
    engine = Engine(ThreadedRunner(threads), block=block)
    write_lattice(writer, source, plan, tmp_path / "scratch", 4, engine, repeat=repeat)
    writer.finish()
    sink.close()
    with zipfile.ZipFile(tmp_path / "data.zip") as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _cells(shape, labels, cell, seed, offset=0, dtype=np.uint16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = np.indices(shape) // cell
    keys = (idx[0] * 1009 + idx[1]) * 1009 + idx[2]
    lut = rng.integers(0, labels, int(keys.max()) + 1)
    return (lut[keys] + offset).astype(dtype)


@pytest.mark.parametrize("wide", [(True, False), (False, True), (True, True, False)])
def test_scratch_codes_of_any_width_store_the_same_entry(tmp_path, monkeypatch, wide) -> None:
    """uint32 and uint64 scratch levels, mixed from level to level (uint64 where ``wide``
    says, cyclically), store the bytes of the default choice (uint32 at every level here)."""
    import pipeline.build.lattices as lattices_module

    frames = [_cells((23, 19, 26), 300, 2, seed, offset=seed) for seed in range(3)]
    frames.append(_cells((23, 19, 26), 40, 1, 9, offset=65_490))  # values up to 65535
    expected = _entry(tmp_path / "default", frames)
    chosen = []
    original = passes_module.scratch_code

    def mixed(*args):
        code = passes_module.WIDE_CODE if wide[len(chosen) % len(wide)] else original(*args)
        chosen.append(code.dtype)
        return code

    monkeypatch.setattr(lattices_module, "scratch_code", mixed)
    got = _entry(tmp_path / "mixed", frames)
    assert {np.dtype(np.uint32), np.dtype(np.uint64)} <= set(chosen)  # both widths taken
    assert got == expected


def test_frames_of_several_dtypes_keep_their_labels(tmp_path) -> None:
    """A uint16 frame beside a uint32 frame with labels above 2**16: the scratch levels hold
    the wide frame's labels apart from combinations (each frame's level 2 is the union of its
    own windows, checked against Python sets)."""
    import zarr
    from zarr.storage import ZipStore

    narrow = _cells((12, 10, 9), 5, 3, 4)
    wide = _cells((12, 10, 9), 5, 3, 5, offset=70_000, dtype=np.uint32)
    _entry(tmp_path / "e", [narrow, wide])
    root = zarr.open_group(store=ZipStore(tmp_path / "e" / "data.zip", mode="r"), mode="r")
    with zipfile.ZipFile(tmp_path / "e" / "data.zip") as zf:
        for t, labels in enumerate([narrow, wide]):
            grid = root[f"lattice_segmentation_data/L/2/{t}/grid"][:]
            table = json.loads(zf.read(f"lattice_segmentation_data/L/2/{t}/set_table/0"))[0]
            for i in np.ndindex(grid.shape):
                window = labels[tuple(slice(max(2 * a - 1, 0), 2 * a + 2) for a in i)]
                assert table[str(int(grid[i]))] == sorted(set(window.ravel().tolist()))


def test_every_stored_set_table_lists_its_grid(tmp_path) -> None:
    """Tables reused from the level before (same categories) or encoded: each is the JSON
    codec's bytes of exactly the categories of its grid, at every level and frame."""
    import zarr
    from zarr.storage import ZipStore

    uniform = np.full((12, 10, 9), 7, np.uint16)  # the same categories at every level
    halves = uniform.copy()
    halves[:6] = 3
    frames = [uniform, halves, _cells((12, 10, 9), 5, 3, 4)]
    _entry(tmp_path / "frames", frames)
    _entry(tmp_path / "repeat", [halves], repeat=3)
    for name, frame_count in (("frames", 3), ("repeat", 3)):
        root = zarr.open_group(
            store=ZipStore(tmp_path / name / "data.zip", mode="r"), mode="r", zarr_format=2
        )
        with zipfile.ZipFile(tmp_path / name / "data.zip") as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        for ratio in (1, 2, 4, 8):
            for t in range(frame_count):
                key = f"lattice_segmentation_data/L/{ratio}/{t}"
                if f"{key}/set_table/0" not in members:
                    continue
                grid = root[f"{key}/grid"][:]
                raw = members[f"{key}/set_table/0"]
                table = json.loads(raw)[0]
                assert sorted(int(k) for k in table) == np.unique(grid).tolist()
                doc = np.empty(1, dtype=object)
                doc[0] = table
                assert raw == JSON().encode(doc)


def test_merge_batches_come_in_order_and_stop_at_the_first_error() -> None:
    """The level merge's two threads: results in the items' order whatever finishes first;
    an error (a hash collision's ``_SlowPathError``) in a worker reaches the caller, and the
    items not started are never run."""
    import threading
    import time

    from pipeline.algorithms.set_table import _in_order, _SlowPathError

    def slow_first(i: int) -> int:
        time.sleep(0.02 if i % 3 == 0 else 0)
        return i * i

    assert list(_in_order(slow_first, iter(range(20)), 2)) == [i * i for i in range(20)]
    started = []
    lock = threading.Lock()

    def failing(i: int) -> int:
        with lock:
            started.append(i)
        if i == 3:
            raise _SlowPathError
        time.sleep(0.01)
        return i

    with pytest.raises(_SlowPathError):
        for _ in _in_order(failing, iter(range(1000)), 2, ahead=4):
            pass
    assert max(started) < 3 + 4 + 2  # at most ``ahead`` in flight past the failing one
