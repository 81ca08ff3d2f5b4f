"""Where block tasks run: threads of this process (default) or a dask.distributed cluster.

A pass of the pyramid is a list of independent block tasks whose encoded chunks must reach the
archive in block order (so the same inputs give the same data.zip). The order is the runner's
contract, the same for every runner, and nothing a task is told:

- the blocks of one :meth:`Runner.run_blocks` call are independent: they run in any order and
  at once;
- their chunks reach the sink in the order of the list (block ``n`` is numbered ``n``);
- the call returns only once every block is stored: a pass is a barrier, so the next pass (run
  after it by the caller) may read what this one wrote.

The runners differ only in how chunks travel:

- :class:`ThreadedRunner`: a pool of threads runs the block tasks; a block may start only when
  the block ``window`` blocks before it is appended (by the calling thread, in block order),
  which bounds the encoded data waiting in memory.
- :class:`DistributedRunner`: workers run the block tasks and write each block's encoded chunks
  to a part file in the run's working folder (a file system every worker sees); the client
  submits a sliding window of tasks and appends finished parts to the archive in block order.
  Workers write chunks; only the client writes the archive and commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pipeline.engine.sink import Chunk, ChunkSink, PreparingSink
from pipeline.errors import ClusterError, OptionError, PreprocessorError
from pipeline.memory import fix_map_threshold, trim
from pipeline.progress import NO_PROGRESS, Progress

__all__ = [
    "Block",
    "BlockTask",
    "CommsRunner",
    "DistributedRunner",
    "Runner",
    "ThreadedRunner",
    "memory_budget",
    "open_cluster",
]


class Block(NamedTuple):
    """One block of one job of a pass: samples ``[start, stop)`` of ``job.source``. The job is
    plain data (its arrays, how to encode its chunks): it travels to a worker as it is."""

    job: Any
    start: tuple[int, ...]
    stop: tuple[int, ...]


# task(job, start, stop, number) -> (summary, chunks): what one block gives
BlockTask = Callable[[Any, tuple[int, ...], tuple[int, ...], int], tuple[Any, list[Chunk]]]


class Runner(Protocol):
    workers: int  # block tasks that can run at once
    threads_per_process: int  # of those, how many share one process's memory

    def run_blocks(
        self,
        task: BlockTask,
        items: Sequence[Block],
        sink: ChunkSink | None,
        window: int,
        progress: Progress,
    ) -> list[Any]:
        """Run ``task(job, start, stop, n)`` for block ``n`` of ``items``; store the blocks'
        chunks in ``sink`` in block order; return the tasks' summaries in block order."""
        ...


def _block_bytes(item: Block) -> int:
    job, start, stop = item
    return math.prod(b - a for a, b in zip(start, stop, strict=True)) * job.source.dtype.itemsize


def _append(
    sink: ChunkSink | None, result: tuple[Any, list[Chunk]], progress: Progress, nbytes: int
) -> Any:
    """Store a task's chunks (after those of the block before it); the task's summary."""
    summary, chunks = result
    if chunks:
        if sink is None:
            raise ValueError("a pass that stores chunks needs a sink")
        sink.put_many(chunks)
    progress.advance(1, nbytes)
    return summary


class ThreadedRunner:
    """Block tasks on ``workers`` threads of this process (no dask graph: a pass is a plain
    sliding window over its blocks, so small inputs pay no scheduler start-up)."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self.threads_per_process = self.workers

    def run_blocks(
        self,
        task: BlockTask,
        items: Sequence[Block],
        sink: ChunkSink | None,
        window: int,
        progress: Progress = NO_PROGRESS,
    ) -> list[Any]:
        """Block ``n`` starts only once block ``n - window`` is appended, so at most ``window``
        blocks' results wait in memory; the calling thread appends them in block order."""
        window = max(1, window)
        fix_map_threshold()
        try:
            return self._run(task, items, sink, window, progress)
        finally:
            trim()  # what the pass freed goes back before the next one allocates

    def _run(
        self,
        task: BlockTask,
        items: Sequence[Block],
        sink: ChunkSink | None,
        window: int,
        progress: Progress,
    ) -> list[Any]:
        # a sink that can (the archive) checksums and frames each block's chunks in the
        # block's own thread; the calling thread then only writes them, in block order
        preparing = sink if isinstance(sink, PreparingSink) else None

        def run_one(item: Block, n: int) -> tuple[Any, Any]:
            summary, chunks = task(*item, n)
            if preparing is not None and chunks:
                return summary, preparing.prepare(chunks)
            return summary, chunks

        def append(result: tuple[Any, Any], item: Block) -> Any:
            summary, chunks = result
            if preparing is None or not chunks:
                return _append(sink, result, progress, _block_bytes(item))
            preparing.put_prepared(chunks)
            progress.advance(1, _block_bytes(item))
            return summary

        if self.workers == 1 or len(items) == 1:  # in this thread: no pool to start
            return [append(run_one(item, n), item) for n, item in enumerate(items)]
        summaries: list[Any] = []
        pending: deque[Future[Any]] = deque()

        def consume() -> None:
            result = pending.popleft().result()
            summaries.append(append(result, items[len(summaries)]))

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="block")
        try:
            for n, item in enumerate(items):
                if len(pending) >= window:
                    consume()
                pending.append(pool.submit(run_one, item, n))
            while pending:
                consume()
        finally:
            # on an error or an interrupt no block task outlives the pass (the caller then
            # removes the scratch files the tasks write)
            pool.shutdown(wait=True, cancel_futures=True)
        return summaries


def _spill(
    task: BlockTask, job: Any, start: tuple[int, ...], stop: tuple[int, ...], n: int, part: str
) -> tuple[Any, list[tuple[str, int, int]]]:
    """Run one block task on a worker; its encoded chunks go to the file ``part``."""
    fix_map_threshold()
    summary, chunks = task(job, start, stop, n)
    members = []
    if chunks:
        with open(part, "wb") as f:
            for key, data in chunks:
                f.write(data)
                members.append((key, len(data), zlib.crc32(data)))
    return summary, members


def _unspill(part: str, members: list[tuple[str, int, int]]) -> list[Chunk]:
    """The chunks a worker spilled to ``part`` (CRCs checked), removing the file."""
    chunks = []
    with open(part, "rb") as f:
        for key, size, crc in members:
            data = f.read(size)
            if len(data) != size or zlib.crc32(data) != crc:
                raise OSError(f"{part}: part file damaged on the way from a worker ({key})")
            chunks.append((key, data))
    os.unlink(part)
    return chunks


class DistributedRunner:
    """Block tasks on a dask.distributed cluster; chunks travel through part files in
    ``parts`` (a folder every worker can write and the client can read)."""

    transfer = "shared"

    def __init__(self, client: Any, parts: Path, wait: float = 60.0) -> None:
        self.client = client
        self.parts = Path(parts)
        self.wait = wait
        try:
            client.wait_for_workers(1, timeout=wait)
        except (TimeoutError, OSError) as exc:
            raise ClusterError(
                f"no worker joined the dask scheduler within {wait:.0f} s ({exc})"
            ) from None
        nthreads = client.nthreads().values()
        self.workers = max(1, sum(nthreads))
        self.threads_per_process = max(nthreads, default=1)

    def run_blocks(
        self,
        task: BlockTask,
        items: Sequence[Block],
        sink: ChunkSink | None,
        window: int,
        progress: Progress = NO_PROGRESS,
    ) -> list[Any]:
        self.parts.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        ahead = self.workers + max(window, 2)  # keep every worker busy, bound the parts on disk
        pending: deque[tuple[Any, str, int]] = deque()
        summaries: list[Any] = []

        def consume() -> None:
            future, part, nbytes = pending.popleft()
            summary, members = self._result(future)
            if members:
                if sink is None:
                    raise ValueError("a pass that stores chunks needs a sink")
                sink.put_many(_unspill(part, members))
            summaries.append(summary)
            progress.advance(1, nbytes)

        try:
            for n, item in enumerate(items):
                job, start, stop = item
                part = str(self.parts / f"{token}-{n:09d}.part")
                future = self.client.submit(
                    _spill,
                    task,
                    job,
                    start,
                    stop,
                    n,
                    part,
                    key=f"block-{token}-{n:09d}",
                    pure=False,
                )
                pending.append((future, part, _block_bytes(item)))
                if len(pending) >= ahead:
                    consume()
            while pending:
                consume()
        finally:
            for future, part, _ in pending:
                future.cancel()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(part)
        return summaries

    def _result(self, future: Any) -> Any:
        """The future's result; a cluster left without workers for ``wait`` seconds is an
        error rather than a wait without end, and the cluster's own failures (not the input's
        or the file system's) are a :class:`ClusterError`."""
        alone_since: float | None = None
        while True:
            try:
                return future.result(timeout=2.0)
            except TimeoutError:  # (an OSError: before the clause that re-raises those)
                if self.client.scheduler_info().get("workers"):
                    alone_since = None
                    continue
                alone_since = alone_since or time.monotonic()
                if time.monotonic() - alone_since > self.wait:
                    raise ClusterError(
                        f"the dask cluster has had no worker for {self.wait:.0f} s"
                    ) from None
            except (PreprocessorError, OSError):
                raise
            except Exception as exc:
                text = " ".join(str(exc).split())
                raise ClusterError(f"a block task failed on the cluster: {text}") from exc


class _Prefetched:
    """A block of a client-side array (with its halo), read by the client and shipped with
    the task to a worker that cannot see the file: reads inside it are views of it."""

    def __init__(self, lo: tuple[int, ...], data: Any, shape: tuple[int, ...]) -> None:
        self.lo = lo
        self.data = data
        self.shape = tuple(shape)
        self.dtype = data.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> Any:
        from pipeline.arrays import region_bounds

        bounds = region_bounds(key, self.shape)
        region = []
        for (a, b), lo, n in zip(bounds, self.lo, self.data.shape, strict=True):
            if a < lo or b > lo + n:
                raise ValueError(f"region {bounds} outside the block shipped to the worker")
            region.append(slice(a - lo, b - lo))
        return self.data[tuple(region)]


class _Captured:
    """Stands in for a next-level scratch array on a worker: keeps the blocks written, which
    travel back with the task's result and are written by the client."""

    def __init__(self) -> None:
        self.writes: list[tuple[tuple[int, ...], Any]] = []

    def write(self, origin: tuple[int, ...], block: Any) -> None:
        import numpy as np

        self.writes.append((tuple(origin), np.ascontiguousarray(block)))


def _comms_task(
    task: BlockTask, job: Any, start: tuple[int, ...], stop: tuple[int, ...], n: int
) -> tuple[Any, list[Chunk], list[tuple[tuple[int, ...], Any]]]:
    """One block task on a worker without the client's file system: its summary, its encoded
    chunks and the next level's blocks all go back as the task's result."""
    summary, chunks = task(job, start, stop, n)
    captured = getattr(job, "next_level", None)
    return summary, chunks, captured.writes if isinstance(captured, _Captured) else []


PREFETCH_MARGIN = 2  # samples around a shipped block: the widest halo a pass reads


def worker_readable(arr: Any) -> bool:
    """Whether a cluster worker reads ``arr`` itself, without the client's file system: an
    array over a URL's object says so with a true ``worker_readable`` attribute; views
    (transposed, cast) are looked through by their ``base``."""
    while arr is not None:
        if getattr(arr, "worker_readable", False):
            return True
        arr = getattr(arr, "base", None)
    return False


class CommsRunner(DistributedRunner):
    """Block tasks on a dask.distributed cluster whose workers do not see the client's working
    folder: encoded chunks (and blocks of the next level) come back as the tasks' results
    through dask's communication; arrays the workers cannot read (scratch levels, copies of
    inputs) are read by the client and shipped with the task. The blocks in flight are
    bounded so that the client's share stays under ``max_memory``."""

    transfer = "comms"

    def __init__(self, client: Any, max_memory: int | None = None, wait: float = 60.0) -> None:
        super().__init__(client, Path("."), wait)
        self.max_memory = max_memory
        self.peak_in_flight = 0  # most bytes the client held for tasks in flight (estimate)

    def _worker_job(self, job: Any, start: tuple[int, ...], stop: tuple[int, ...]) -> Any:
        """The job as a worker gets it."""
        changes: dict[str, Any] = {}
        source = job.source
        if not worker_readable(source):
            lo = tuple(max(s - PREFETCH_MARGIN, 0) for s in start)
            hi = tuple(min(e + PREFETCH_MARGIN, n) for e, n in zip(stop, source.shape, strict=True))
            data = source[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
            changes["source"] = _Prefetched(lo, data, source.shape)
        if getattr(job, "next_level", None) is not None:
            changes["next_level"] = _Captured()
        return dataclasses.replace(job, **changes) if changes else job

    def run_blocks(
        self,
        task: BlockTask,
        items: Sequence[Block],
        sink: ChunkSink | None,
        window: int,
        progress: Progress = NO_PROGRESS,
    ) -> list[Any]:
        token = uuid.uuid4().hex[:8]
        ahead = self.workers + max(window, 2)
        pending: deque[tuple[Any, Any, int, int]] = deque()
        in_flight = 0
        summaries: list[Any] = []

        def consume() -> None:
            nonlocal in_flight
            future, job, nbytes, cost = pending.popleft()
            summary, chunks, writes = self._result(future)
            future.release()
            for origin, block in writes:
                job.next_level.write(origin, block)
            if chunks:
                if sink is None:
                    raise ValueError("a pass that stores chunks needs a sink")
                sink.put_many(chunks)
            in_flight -= cost
            summaries.append(summary)
            progress.advance(1, nbytes)

        import dask

        # shipped blocks (up to --max-memory's block size) travel in the task: not a mistake
        quiet = dask.config.set({"distributed.admin.large-graph-warning-threshold": "64GiB"})
        try:
            for n, item in enumerate(items):
                job, start, stop = item
                nbytes = _block_bytes(item)
                # the client holds the block it ships (if any), then the chunks and the next
                # level's block coming back
                cost = (2 if worker_readable(job.source) else 3) * nbytes
                while pending and (
                    len(pending) >= ahead
                    or (self.max_memory is not None and in_flight + cost > self.max_memory)
                ):
                    consume()
                worker_job = self._worker_job(job, start, stop)
                future = self.client.submit(
                    _comms_task,
                    task,
                    worker_job,
                    start,
                    stop,
                    n,
                    key=f"block-{token}-{n:09d}",
                    pure=False,
                )
                del worker_job
                pending.append((future, job, nbytes, cost))
                in_flight += cost
                self.peak_in_flight = max(self.peak_in_flight, in_flight)
            while pending:
                consume()
        finally:
            quiet.__exit__(None, None, None)
            for future, *_ in pending:
                future.cancel()
        return summaries


def _sees(marker: str, token: str) -> bool:
    """On a worker: whether it sees the client's marker file (a shared file system)."""
    try:
        with open(marker) as f:
            return f.read() == token
    except OSError:
        return False


def probe_transfer(client: Any, folder: Path) -> str:
    """``"shared"`` when every worker sees ``folder`` (a marker file the client writes there),
    else ``"comms"``."""
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = folder / f".probe-{token[:12]}"
    marker.write_text(token)
    try:
        seen = client.run(_sees, str(marker), token)
    finally:
        marker.unlink(missing_ok=True)
    return "shared" if seen and all(seen.values()) else "comms"


# block data one task holds at once, in blocks: the haloed read, the float copy the filters
# work on, the level-2r output and the encoded chunks
TASK_BLOCKS = 6
DEFAULT_BLOCK_BYTES = 32 * 2**20


def memory_budget(
    max_memory: int | None,
    threads: int,
    window: int,
    smallest: int,
    fixed_threads: bool = False,
) -> tuple[int, int, int]:
    """(threads, window, block bytes) that keep the block data in flight,
    ``(TASK_BLOCKS * threads + window) * block bytes``, under ``max_memory``: blocks shrink
    first (down to ``smallest``), then fewer threads run at once (unless ``fixed_threads``: a
    cluster's workers run as many tasks as they have threads), then the window narrows."""
    if max_memory is None:
        return threads, window, DEFAULT_BLOCK_BYTES
    for n in range(threads, 0 if not fixed_threads else threads - 1, -1):
        for w in sorted({window, 2}, reverse=True):
            block_bytes = max_memory // (TASK_BLOCKS * n + w)
            if block_bytes >= smallest:
                return n, w, min(block_bytes, DEFAULT_BLOCK_BYTES)
    least = (TASK_BLOCKS * (threads if fixed_threads else 1) + 2) * smallest
    per = f" per worker of {threads} threads" if fixed_threads else ""
    raise OptionError(
        f"--max-memory {max_memory / 2**20:.0f} MiB is below the least this run can work in"
        f"{per} ({least / 2**20:.0f} MiB of blocks of {smallest / 2**20:.0f} MiB)"
    )


@contextlib.contextmanager
def open_cluster(
    scheduler: str | None,
    workers: int | None,
    parts: Path,
    transfer: str = "shared",
    max_memory: int | None = None,
) -> Iterator[Runner]:
    """A runner on a dask.distributed cluster: the one at ``scheduler``, or a local cluster of
    ``workers`` single-threaded processes started for the run. Chunks come back through part
    files in ``parts`` (``transfer="shared"``) or through dask's communication (``"comms"``,
    the client's share of the block data bounded by ``max_memory``); ``"auto"``: "shared" when
    every worker sees ``parts``, else "comms"."""
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler is not None:
            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except Exception as exc:  # OSError, TimeoutError, ValueError, TypeError (tls://)
                text = " ".join(str(exc).split()) or type(exc).__name__
                raise ClusterError(
                    f"--scheduler {scheduler}: cannot reach the dask scheduler ({text})"
                ) from None
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",  # no fixed port to collide with
                    silence_logs=logging.CRITICAL,  # task errors reach the user as one line
                )
            )
            client = stack.enter_context(Client(cluster))
        shared = DistributedRunner(client, parts)
        if transfer == "auto":
            transfer = probe_transfer(client, parts)
        if transfer == "comms":
            yield CommsRunner(client, max_memory, shared.wait)
        else:
            yield shared
