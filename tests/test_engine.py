"""The engine (pipeline/engine): its boundary (no database), jobs that travel without their
sink, and the per-block steps of a level pass against numpy references."""

from __future__ import annotations

import ast
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import binomial_reference

from pipeline.algorithms.quantize import QuantizationParams
from pipeline.db.sinks import ZipSink
from pipeline.db.writer import DataWriter
from pipeline.engine.passes import (
    LevelJob,
    block_grid,
    next_level_block,
    read_block,
    run_pass,
    stored_values,
    threaded_engine,
)
from pipeline.engine.sink import ChunkSink, PreparingSink
from pipeline.options import Compressor

ENGINE = Path(__file__).resolve().parents[1] / "pipeline" / "engine"


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_modules_never_import_the_database():
    files = sorted(ENGINE.glob("*.py"))
    assert {f.name for f in files} >= {"passes.py", "runner.py", "sink.py"}
    for f in files:
        assert not [m for m in _imported_modules(f) if m.split(".")[:2] == ["pipeline", "db"]], f


def test_importing_the_engine_loads_no_database_module():
    """In a fresh interpreter: the engine modules and every project module they import inside
    functions (``pipeline.inputs.source`` for the cluster runner, ...) pull in no part of
    ``pipeline.db``, directly or through what they import."""
    modules = {f"pipeline.engine.{f.stem}" for f in ENGINE.glob("*.py") if f.stem != "__init__"}
    for f in ENGINE.glob("*.py"):
        modules |= {m for m in _imported_modules(f) if m.startswith("pipeline.")}
    code = (
        "import importlib, sys\n"
        f"for m in {sorted(modules)!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['pipeline', 'db']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_archive_is_a_preparing_chunk_sink(tmp_path):
    sink = ZipSink(tmp_path / "a.zip")
    try:
        assert isinstance(sink, PreparingSink)
    finally:
        sink.abort()

    class Plain:
        def put_many(self, items):
            pass

    plain: ChunkSink = Plain()
    assert not isinstance(plain, PreparingSink)


def test_a_job_pickles_without_the_archive_it_is_stored_in(tmp_path):
    """The archive (an open file and a lock) cannot be pickled: a job travels to a cluster
    worker as it is because it holds how to encode chunks, never the sink."""
    sink = ZipSink(tmp_path / "a.zip")
    try:
        with pytest.raises(TypeError):
            pickle.dumps(sink)
        writer = DataWriter(sink, Compressor.LZ4)
        target = writer.array("v", (8, 8, 8), np.dtype("f4"), (4, 4, 4))
        job = LevelJob(np.zeros((8, 8, 8), "f4"), target, None, None, measure=True)
        back = pickle.loads(pickle.dumps(job))
        block = np.arange(64, dtype="f4").reshape(4, 4, 4)
        assert [(k, bytes(d)) for k, d in back.store.encode(block, (4, 0, 0))] == [
            (k, bytes(d)) for k, d in target.encode(block, (4, 0, 0))
        ]
    finally:
        sink.abort()


@pytest.mark.parametrize("shape", [(9, 7, 1), (16, 5, 6)])
def test_read_block_adds_the_margin_clipped_at_the_edges(shape):
    data = np.arange(math.prod(shape), dtype=np.int32).reshape(shape)
    for start, stop in block_grid(shape, (4, 4, 4)):
        lo, block = read_block(data, start, stop, 2)
        # reference: 2 more samples each side, fewer at the array's edges, none on axes of 1
        want_lo = tuple(0 if n == 1 else max(s - 2, 0) for s, n in zip(start, shape, strict=True))
        want_hi = tuple(min(e + 2, n) for e, n in zip(stop, shape, strict=True))
        assert lo == want_lo
        np.testing.assert_array_equal(
            block, data[tuple(slice(a, b) for a, b in zip(want_lo, want_hi, strict=True))]
        )
        lo, block = read_block(data, start, stop, None)
        assert lo == start
        np.testing.assert_array_equal(
            block, data[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
        )


@pytest.mark.parametrize("shape", [(13, 8, 5), (6, 11, 1)])
def test_next_level_blocks_assemble_the_filtered_volume(shape):
    data = np.random.default_rng(3).normal(size=shape)
    out = np.full(tuple((n + 1) // 2 for n in shape), np.nan)
    for start, stop in block_grid(shape, (4, 4, 4)):
        lo, block = read_block(data, start, stop, 2)
        first, values = next_level_block(block, lo, shape, start, stop)
        region = tuple(slice(a, a + n) for a, n in zip(first, values.shape, strict=True))
        assert np.isnan(out[region]).all()  # every output sample comes from one block
        out[region] = values
    np.testing.assert_allclose(out, binomial_reference(data), rtol=1e-12, atol=1e-12)


def test_stored_values_is_the_block_or_its_logarithmic_quantization():
    block = np.random.default_rng(4).uniform(-3, 50, size=(5, 6, 7)).astype(np.float32)
    assert stored_values(block, None, np.dtype("f4")) is block
    lo, hi = float(block.min()), float(block.max())
    params = QuantizationParams.from_range(lo, hi, block.dtype, np.dtype("u1"))
    q = stored_values(block, params, np.dtype("u1"))
    # DESIGN 7.3: q = round((ln(x - m + 1) - ymin) / delta), 255 steps over the range
    delta = (math.log(hi - lo + 1.0) - 0.0) / 254
    want = np.clip(np.rint(np.log(block.astype(np.float64) - lo + 1.0) / delta), 0, 255)
    assert q.dtype == np.uint8
    np.testing.assert_array_equal(q, want.astype(np.uint8))


class _Level:
    """An in-memory next level (what a scratch file is to a pass)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.data = np.full(shape, np.nan)

    def write(self, origin, block) -> None:
        self.data[tuple(slice(a, a + n) for a, n in zip(origin, block.shape, strict=True))] = block


class _Chunks:
    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def put_many(self, items) -> None:
        self.items += items


def test_a_level_pass_stores_measures_and_downsamples_like_numpy(tmp_path):
    shape = (20, 12, 9)
    data = np.random.default_rng(5).normal(size=shape)
    sink = ZipSink(tmp_path / "a.zip")
    try:
        target = DataWriter(sink, Compressor.LZ4).array("v", shape, data.dtype, (4, 4, 4))
    finally:
        sink.abort()
    below = _Level(tuple((n + 1) // 2 for n in shape))
    chunks = _Chunks()
    job = LevelJob(data, target, None, below, measure=True)
    [moments] = run_pass([job], threaded_engine(2, block=8), "C", chunks)
    # chunks: every chunk once, in block order, decoding to the data
    keys = [k for k, _ in chunks.items]
    assert len(keys) == len(set(keys)) == 5 * 3 * 3
    stored = np.zeros(shape)
    for key, raw in chunks.items:
        index = tuple(int(i) for i in key.split("/")[-1].split("."))
        chunk = np.frombuffer(target.codec.decode(raw), data.dtype).reshape(4, 4, 4)
        region = tuple(slice(4 * i, min(4 * i + 4, n)) for i, n in zip(index, shape, strict=True))
        stored[region] = chunk[tuple(slice(0, r.stop - r.start) for r in region)]
    np.testing.assert_array_equal(stored, data)
    np.testing.assert_allclose(below.data, binomial_reference(data), rtol=1e-12, atol=1e-12)
    # moments per block: [count, mean, M2, min, max] of level r and of level 2r
    this, lower = moments[:, 0], moments[:, 1]
    assert this[:, 0].sum() == data.size and lower[:, 0].sum() == below.data.size
    assert this[:, 3].min() == data.min() and this[:, 4].max() == data.max()
    np.testing.assert_allclose((this[:, 0] * this[:, 1]).sum() / data.size, data.mean())
    np.testing.assert_allclose(lower[:, 4].max(), below.data.max())


@pytest.mark.parametrize("workers", [1, 3])
def test_a_preparing_sink_gets_the_chunks_in_block_order(tmp_path, workers):
    """Blocks finishing out of order: the archive's members still follow the block numbers
    (the order is the runner's, not the tasks')."""
    import time
    import zipfile

    from pipeline.engine.runner import Block, ThreadedRunner

    delays = np.random.default_rng(6).uniform(0, 0.01, 24)

    def task(job, start, stop, n):
        time.sleep(delays[n])
        return n, [(f"c/{n:02d}", bytes([n]) * (n + 1))]

    class Job:
        source = np.zeros(1, np.uint8)

    sink = ZipSink(tmp_path / "a.zip")
    items = [Block(Job(), (n,), (n + 1,)) for n in range(24)]
    summaries = ThreadedRunner(workers).run_blocks(task, items, sink, window=4)
    sink.close()
    assert summaries == list(range(24))
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        assert zf.namelist() == [f"c/{n:02d}" for n in range(24)]
        for n in range(24):
            assert zf.read(f"c/{n:02d}") == bytes([n]) * (n + 1)


def test_worker_readable_arrays_say_so_through_their_views():
    """The cluster runner ships a block to a worker unless the array reads a URL itself: the
    array says so (``worker_readable``), views are looked through."""
    from pipeline.arrays import CastArray, TransposedArray
    from pipeline.engine.runner import worker_readable
    from pipeline.inputs.source import RemoteRawArray

    remote = RemoteRawArray("http://127.0.0.1:9/m.mrc", (4, 5, 6), np.dtype("<f4"), 1024, {}, 2000)
    assert worker_readable(remote)
    assert worker_readable(CastArray(TransposedArray(remote, (2, 1, 0)), np.dtype("f8")))
    local = np.zeros((4, 5, 6), np.float32)
    assert not worker_readable(local)
    assert not worker_readable(local[1:])  # a numpy view: its base is a local array
    assert not worker_readable(CastArray(TransposedArray(local, (2, 1, 0)), np.dtype("f8")))
