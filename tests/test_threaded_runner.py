"""The threaded runner without dask (issue 12): block order, the append window, errors, and
chunk bytes that do not depend on the thread that encodes them."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pipeline.db.sinks import ZipSink
from pipeline.db.writer import DataWriter
from pipeline.engine.runner import ThreadedRunner
from pipeline.options import Compressor


class _Job:
    class source:  # noqa: N801 (what _block_bytes reads)
        dtype = np.dtype("u1")


class _ListSink:
    def __init__(self) -> None:
        self.keys: list[str] = []

    def put(self, key: str, data: bytes) -> None:
        self.put_many([(key, data)])

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        self.keys += [k for k, _ in items]


def _items(n: int) -> list:
    return [(_Job(), (i,), (i + 1,)) for i in range(n)]


@pytest.mark.parametrize("workers", [1, 3])
def test_chunks_are_stored_in_block_order_and_summaries_returned(workers: int) -> None:
    rng = np.random.default_rng(0)
    delays = rng.uniform(0, 0.01, 20)

    def task(job, start, stop, n):
        time.sleep(delays[n])  # later blocks often finish first
        return n * 10, [(f"k{n:02d}", b"x")]

    sink = _ListSink()
    summaries = ThreadedRunner(workers).run_blocks(task, _items(20), sink, window=4)
    assert summaries == [n * 10 for n in range(20)]
    assert sink.keys == [f"k{n:02d}" for n in range(20)]


def test_at_most_window_blocks_wait_or_run() -> None:
    lock = threading.Lock()
    live = [0]
    peak = [0]

    def task(job, start, stop, n):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.005)
        return n, []

    class _Counting(_ListSink):
        def put_many(self, items):
            with lock:
                live[0] -= 1

    # every block stores one chunk, so the sink sees each block's append
    def chunked(job, start, stop, n):
        task(job, start, stop, n)
        return n, [(f"k{n}", b"")]

    ThreadedRunner(4).run_blocks(chunked, _items(30), _Counting(), window=3)
    assert 1 <= peak[0] <= 3


def test_a_failing_block_stops_the_pass_and_no_task_outlives_it() -> None:
    running = []

    def task(job, start, stop, n):
        if n == 3:
            raise ValueError("block 3 is bad")
        running.append(n)
        time.sleep(0.01)
        running.remove(n)
        return n, []

    with pytest.raises(ValueError, match="block 3"):
        ThreadedRunner(2).run_blocks(task, _items(50), None, window=4)
    assert running == []  # every started task had finished when the error reached us


def _block_starts(encoded: bytes) -> list[int]:
    """Where each Blosc block of a Blosc 1 chunk starts (the offsets after its 16-byte header)."""
    nbytes, blocksize = np.frombuffer(encoded[4:12], "<u4")
    count = -(-int(nbytes) // int(blocksize))
    return np.frombuffer(encoded[16 : 16 + 4 * count], "<i4").tolist()


def test_chunk_bytes_do_not_depend_on_the_encoding_thread(tmp_path: Path) -> None:
    """A one-block pass encodes in the calling (main) thread, other blocks in pool threads:
    both must give the same bytes. Blosc's own threads (which numcodecs would use in the main
    thread) store a chunk's blocks in the order they finish: the bytes would vary run to run."""
    rng = np.random.default_rng(1)
    block = rng.normal(size=(128, 128, 64)).astype(np.float32)  # 2 chunks of 1 MiB
    writer = DataWriter(ZipSink(tmp_path / "a.zip"), Compressor.LZ4)
    target = writer.array("v", block.shape, block.dtype, (64, 64, 64))
    assert threading.current_thread() is threading.main_thread()
    with ThreadPoolExecutor(1) as pool:
        there = pool.submit(target.encode, block, (0, 0, 0)).result()
    for _ in range(20):
        here = target.encode(block, (0, 0, 0))
        assert [k for k, _ in here] == [k for k, _ in there]
        assert [bytes(d) for _, d in here] == [bytes(d) for _, d in there]
        for _, data in here:
            starts = _block_starts(bytes(data))
            assert len(starts) > 1
            assert starts == sorted(starts)
