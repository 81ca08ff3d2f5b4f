"""One pass of the pyramid: level r -> (stored chunks of level r, level 2r), as independent tasks.

Each task reads its own block of level r with the 2-sample halo the filter needs (positioned
reads of the input, or of the scratch file holding level r), encodes the block's chunks,
reduces its moments and writes its part of level 2r to the next scratch file. Blocks share no
data, so memory is bounded by the blocks in flight whatever the volume's size.

A task is a composition of small per-block steps: ``read_block`` (block and halo),
``_store`` (:func:`stored_values`, then the job's ``encode``), ``block_moments``, ``_step_down``
(:func:`next_level_block`, written to the next level). A job names how its chunks are encoded
(a :class:`~pipeline.engine.sink.ChunkEncoder`), never where they are stored: the runner hands
them to the pass's :class:`~pipeline.engine.sink.ChunkSink`, in block order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.algorithms.labels import (
    LABEL_HALO,
    label_step_block,
    present_values,
    thread_buffer,
    thread_buffer_like,
)
from pipeline.algorithms.pyramid import HALO, downsample_block, output_range
from pipeline.algorithms.quantize import QuantizationParams, quantize_block
from pipeline.algorithms.statistics import block_moments
from pipeline.arrays import LazyArray, RawArrayFile, TransposedArray
from pipeline.chunks import align_chunks
from pipeline.engine.runner import DEFAULT_BLOCK_BYTES, Block, Runner, ThreadedRunner
from pipeline.engine.sink import ChunkEncoder, ChunkSink
from pipeline.errors import InputFormatError
from pipeline.progress import NO_PROGRESS, Progress

__all__ = [
    "WIDE_CODE",
    "Engine",
    "LabelJob",
    "LevelJob",
    "ScratchCode",
    "block_grid",
    "block_shape",
    "next_level_block",
    "read_block",
    "run_label_pass",
    "run_pass",
    "scratch_code",
    "stored_values",
]

_NO_MOMENTS = np.full(5, np.nan)


def block_shape(
    shape: tuple[int, ...],
    itemsize: int,
    order: str,
    block: int,
    max_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[int, ...]:
    """The blocks of a pass: whole rows of the fastest-varying axis where they fit.

    A block reads its region row by row; rows that are whole rows of the file make one
    contiguous run per slab, which the kernel reads ahead, while pieces of rows make a strided
    pattern of small reads. So the fastest axis is taken whole, with ``block`` (or, to keep a
    block under ``max_bytes``, ``block // 2``, still a multiple of the chunk) along the other
    axes. Rows too long for that are cut into the longest multiple of ``block`` that fits with
    ``block // 2`` along the other axes (long pieces of rows read faster than a thinner halo
    saves).

    >>> block_shape((512, 512, 512), 4, "F", 128)
    (512, 128, 128)
    >>> block_shape((2048, 2048, 1024), 4, "F", 128)
    (2048, 64, 64)
    >>> block_shape((8192, 8192, 512), 4, "F", 128)
    (2048, 64, 64)
    """
    fast = 0 if order == "F" else len(shape) - 1
    rest = len(shape) - 1
    for edge in (block, block // 2):
        if shape[fast] * edge**rest * itemsize <= max_bytes:
            return tuple(shape[a] if a == fast else edge for a in range(len(shape)))
    edge = block // 2
    fast_len = max(block, (max_bytes // (edge**rest * itemsize)) // block * block)
    return tuple(min(shape[a], fast_len) if a == fast else edge for a in range(len(shape)))


def block_grid(
    shape: tuple[int, ...], blocks: tuple[int, ...], order: str = "C"
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(start, stop)`` of every block; inner boundaries are multiples of the block size.

    Blocks come in the data's memory order (``order``: the last axis varies fastest for "C",
    the first for "F"), so blocks that share rows of the file follow each other and read
    what the ones before brought into the page cache.

    >>> block_grid((5, 3), (4, 4))
    [((0, 0), (5, 3))]
    >>> [start for start, _ in block_grid((4, 4), (2, 2), "F")]
    [(0, 0), (2, 0), (0, 2), (2, 2)]
    """
    axes = []
    for n, b in zip(shape, blocks, strict=True):
        bounds = np.cumsum((0, *align_chunks(n, b))).tolist()
        axes.append(list(itertools.pairwise(bounds)))
    combos = itertools.product(*(axes[::-1] if order == "F" else axes))
    return [
        (tuple(s for s, _ in combo), tuple(e for _, e in combo))
        for combo in (c[::-1] if order == "F" else c for c in combos)
    ]


@dataclass(frozen=True, slots=True)
class Engine:
    """How passes run: the runner, the largest block, the append window and the progress."""

    runner: Runner
    block: int = 128  # block edge (a multiple of twice the chunk edge)
    max_block_bytes: int = DEFAULT_BLOCK_BYTES
    window: int = 4
    progress: Progress = NO_PROGRESS

    def blocks(self, arr: LazyArray, order: str) -> tuple[int, ...]:
        """The blocks of a pass over ``arr``, whose fastest axis is given by ``order``."""
        return block_shape(
            arr.shape, np.dtype(arr.dtype).itemsize, order, self.block, self.max_block_bytes
        )


def threaded_engine(threads: int = 2, block: int = 128) -> Engine:
    """An engine on dask's threaded scheduler (tests and library callers)."""
    return Engine(ThreadedRunner(threads), block=block)


@dataclass(frozen=True, slots=True, eq=False)
class LevelJob:
    """The work on one array (one frame and channel) in a pass."""

    source: LazyArray  # level r, [x, y, z]
    store: ChunkEncoder | None  # encodes level r's chunks (None: level r is not stored)
    quantization: QuantizationParams | None
    next_level: Any | None  # writable lazy array for level 2r, or None at the coarsest level
    measure: bool  # reduce level r's moments (level 1; others were measured by the last pass)


def read_block(
    source: LazyArray,
    start: tuple[int, ...],
    stop: tuple[int, ...],
    margin: int | None,
    reuse: bool = False,
) -> tuple[tuple[int, ...], np.ndarray]:
    """Block ``[start, stop)`` of ``source`` with ``margin`` extra samples on each side
    (clipped at the array's edges; none for axes of length 1): ``(lo, data)``. With
    ``reuse``, a raw file (or its transpose) is read into this thread's reused buffer (see
    :func:`_read_reused`): the data is valid until the thread's next such read."""
    shape = source.shape
    halo = [margin if (margin and n > 1) else 0 for n in shape]
    lo = tuple(max(s - h, 0) for s, h in zip(start, halo, strict=True))
    hi = tuple(min(e + h, n) for e, h, n in zip(stop, halo, shape, strict=True))
    data = _read_reused(source, lo, hi) if reuse else None
    if data is None:
        data = source[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    return lo, data


_READ_SLOT = 6  # thread_buffer slot of the blocks a label pass reads


def _local_file(arr: Any) -> bool:
    """Whether ``arr`` is a local raw file (not a subclass: remote files read otherwise), or
    its transpose: read and written in place, keeping no reference to the blocks."""
    if isinstance(arr, TransposedArray):
        arr = arr.base
    return type(arr) is RawArrayFile


def _read_reused(
    source: LazyArray, lo: tuple[int, ...], hi: tuple[int, ...]
) -> np.ndarray | None:
    """Region ``[lo, hi)`` of a raw file of its own dtype, or of a transposed one, read into
    this thread's reused buffer (a fresh block-sized buffer faults on every page as the file is
    read into it); None for other sources."""
    if not _local_file(source):
        return None
    base, perm = source, tuple(range(len(lo)))
    if isinstance(source, TransposedArray):
        base, perm = source.base, source.perm
    if base.file_dtype != base.dtype:
        return None
    base_lo, base_hi = [0] * len(lo), [0] * len(lo)
    for out_axis, base_axis in enumerate(perm):
        base_lo[base_axis], base_hi[base_axis] = lo[out_axis], hi[out_axis]
    shape = [b - a for a, b in zip(base_lo, base_hi, strict=True)]
    buffer = thread_buffer(_READ_SLOT, shape, base.file_dtype)
    key = tuple(slice(a, b) for a, b in zip(base_lo, base_hi, strict=True))
    return np.transpose(base.read_into(key, buffer), perm)


def _inner(
    data: np.ndarray, lo: tuple[int, ...], start: tuple[int, ...], stop: tuple[int, ...]
) -> np.ndarray:
    """The block itself, without its margin (a view)."""
    return data[tuple(slice(s - a, e - a) for s, e, a in zip(start, stop, lo, strict=True))]


def _output_range(
    start: tuple[int, ...], stop: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """First and end (exclusive) level-2r samples of a level-r block."""
    ranges = [output_range(s, e) for s, e in zip(start, stop, strict=True)]
    return tuple(a for a, _ in ranges), tuple(b for _, b in ranges)


def stored_values(
    block: np.ndarray, quantization: QuantizationParams | None, dtype: np.dtype
) -> np.ndarray:
    """The values a level-r block is stored as: quantized to ``dtype`` when ``quantization``
    is given, else the block itself (no copy)."""
    return block if quantization is None else quantize_block(block, quantization, dtype)


def next_level_block(
    data: np.ndarray,
    lo: tuple[int, ...],
    shape: tuple[int, ...],
    start: tuple[int, ...],
    stop: tuple[int, ...],
) -> tuple[tuple[int, ...], np.ndarray]:
    """Level-2r samples of level-r block ``[start, stop)`` of an array of ``shape``, from
    ``data`` (the block read with its halo from ``lo``): ``(first sample, values)``."""
    out0, out1 = _output_range(start, stop)
    return out0, downsample_block(data, lo, shape, out0, out1)


def _store(job: LevelJob, inner: np.ndarray, start: tuple[int, ...]) -> list[tuple[str, bytes]]:
    """Level r's chunks of the block (quantized where the job says), none if not stored."""
    if job.store is None:
        return []
    return job.store.encode(stored_values(inner, job.quantization, job.store.dtype), start)


def _step_down(
    job: LevelJob,
    data: np.ndarray,
    lo: tuple[int, ...],
    start: tuple[int, ...],
    stop: tuple[int, ...],
) -> np.ndarray:
    """Write the block's part of level 2r to the next level; its moments (NaN: no level 2r)."""
    if job.next_level is None:
        return _NO_MOMENTS
    out0, out = next_level_block(data, lo, job.source.shape, start, stop)
    job.next_level.write(out0, out)
    return block_moments(out)


def _task(
    job: LevelJob, start: tuple[int, ...], stop: tuple[int, ...], number: int
) -> tuple[np.ndarray, list[tuple[str, bytes]]]:
    """One block: read -> store (quantize, encode) -> measure -> step down to level 2r.
    Returns moments ``[[level r], [level 2r]]`` (NaN rows where not asked) and level r's
    chunks."""
    margin = HALO if job.next_level is not None else None
    lo, data = read_block(job.source, start, stop, margin)
    inner = _inner(data, lo, start, stop)
    chunks = _store(job, inner, start)
    this = block_moments(inner) if job.measure else _NO_MOMENTS
    below = _step_down(job, data, lo, start, stop)
    return np.stack([this, below]), chunks


def _run_chain(
    jobs: Sequence[Any],
    task: Callable[..., Any],
    engine: Engine,
    order: str,
    sink: ChunkSink | None,
    stage: str,
    detail: str,
    blocks: Callable[[Any], tuple[int, ...]] | None = None,
) -> list[list[tuple[int, Any]]]:
    """Every block of every job through the engine's runner; per job, per block (block
    number, summary). Blocks are numbered job by job, each job's in memory order: chunks
    reach ``sink`` in that order whatever runs the tasks."""
    items: list[Block] = []
    owners: list[int] = []
    for i, job in enumerate(jobs):
        shape = blocks(job.source) if blocks is not None else engine.blocks(job.source, order)
        for start, stop in block_grid(job.source.shape, shape, order):
            items.append(Block(job, start, stop))
            owners.append(i)
    engine.progress.start(stage, detail, len(items))
    try:
        summaries = engine.runner.run_blocks(task, items, sink, engine.window, engine.progress)
    except BaseException:
        engine.progress.abandon()
        raise
    engine.progress.finish()
    per_job: list[list[tuple[int, Any]]] = [[] for _ in jobs]
    for number, (owner, summary) in enumerate(zip(owners, summaries, strict=True)):
        per_job[owner].append((number, summary))
    return per_job


def run_pass(
    jobs: Sequence[LevelJob],
    engine: Engine,
    order: str,
    sink: ChunkSink | None = None,
    stage: str = "levels",
    detail: str = "",
) -> list[np.ndarray]:
    """One pass of the intensity pyramid; per job, the (blocks, 2, 5) moments."""
    per_job = _run_chain(jobs, _task, engine, order, sink, stage, detail)
    return [np.stack([moments for _, moments in blocks_]) for blocks_ in per_job]


# --- label (category) pyramid ------------------------------------------------------------

# thread_buffer slots of a label task (0-5: the window extrema, 6: reads, 7: present_values)
_CATEGORY_SLOT, _SCRATCH_SLOT = 8, 10
_MAP_RUN = 1 << 17  # scratch values mapped to categories at once


@dataclass(frozen=True, slots=True)
class ScratchCode:
    """How a scratch level of the label pyramid holds its voxels: a category id below
    ``base``; a block-local combination ``index`` of block ``number`` as
    ``base + (number << bits | index)``, mapped to its category by the next pass.

    uint32 where the level's categories and every block's combinations fit (half the bytes
    to write and read), else uint64 (``2**63 | number << 24 | index``)."""

    dtype: np.dtype
    base: int
    bits: int

    def encode(self, number: int, index: np.ndarray) -> np.ndarray:
        """The scratch values of combinations ``index`` of block ``number``."""
        head = self.base + (number << self.bits)
        return index.astype(self.dtype) + self.dtype.type(head)

    def combinations(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(block number, index) of scratch values at or above ``base``."""
        offset = values - self.dtype.type(self.base)
        number = (offset >> self.dtype.type(self.bits)).astype(np.intp)
        return number, (offset & self.dtype.type((1 << self.bits) - 1)).astype(np.intp)


WIDE_CODE = ScratchCode(np.dtype(np.uint64), 1 << 63, 24)
_U32_TOP = (1 << 32) - 1


def label_blocks(
    shape: tuple[int, ...], itemsize: int, engine: Engine, order: str
) -> tuple[int, ...]:
    """The blocks of a label pass over a level of ``shape`` and ``itemsize``."""
    return plane_block_shape(
        shape, itemsize, order, engine.block, engine.max_block_bytes, 2 * engine.runner.workers
    )


def scratch_code(
    shape: tuple[int, ...], itemsize: int, frames: int, engine: Engine, order: str, top: int
) -> ScratchCode:
    """The code of the next level's scratch for a label pass over ``frames`` arrays of
    ``shape`` and ``itemsize`` whose categories are at most ``top``: blocks are numbered over
    all frames as the pass numbers them; a block's combinations are fewer than its outputs."""
    grid = block_grid(shape, label_blocks(shape, itemsize, engine, order), order)
    outputs = max(
        math.prod(b - a for a, b in zip(*_output_range(*block), strict=True)) for block in grid
    )
    bits = max(outputs - 1, 1).bit_length()
    base = top + 1
    if base + ((len(grid) * frames) << bits) <= _U32_TOP:
        return ScratchCode(np.dtype(np.uint32), base, bits)
    return WIDE_CODE


@dataclass(frozen=True, slots=True, eq=False)
class LabelJob:
    """The work on one lattice frame in a pass of the label pyramid."""

    source: LazyArray  # level r: labels (level 1) or a scratch file (``source_code``), [x, y, z]
    path: str  # the input file, for error messages
    # scratch values -> category ids (levels > 1): (first index of each block, category ids)
    lut: tuple[np.ndarray, np.ndarray] | None
    store: ChunkEncoder | None  # encodes level r's grid
    next_level: Any | None  # writable lazy array for level 2r (``next_code``), or None
    source_code: ScratchCode | None = None  # how the source holds combinations (levels > 1)
    next_code: ScratchCode = WIDE_CODE  # how level 2r is to hold them


def _categories(data: np.ndarray, job: LabelJob) -> np.ndarray:
    """Level-r category ids: labels checked at level 1 (kept in their unsigned dtype up to 32
    bits, widened to uint32 only where stored), scratch values mapped to uint32 after."""
    if job.lut is None:
        kind, size = data.dtype.kind, data.dtype.itemsize
        if kind == "u" and size <= 2:  # every value is a category: no check, no copy
            return data
        if kind == "f" and not np.array_equal(data, np.rint(data)):
            raise InputFormatError("not a label volume: values are not whole numbers", job.path)
        if data.size and (data.min() < 0 or data.max() > np.iinfo(np.uint32).max - 1):
            raise InputFormatError(
                f"label values must lie in 0..{np.iinfo(np.uint32).max - 1}, "
                f"found {data.min()}..{data.max()}",
                job.path,
            )
        if kind in "iu" and size <= 4:  # non-negative: the same bits unsigned, no copy
            return data.view(np.dtype(f"u{size}"))
        return data.astype(np.uint32)
    starts, values = job.lut
    code = job.source_code or WIDE_CODE
    contiguous = data.flags.c_contiguous or data.flags.f_contiguous
    if data.dtype == np.uint32 and data.flags.writeable and contiguous:
        out = data  # (a block read for this task only: mapped in place)
    else:  # in reused buffers (nothing keeps them after the block's task)
        out = thread_buffer_like(_CATEGORY_SLOT, data, np.dtype(np.uint32))
        np.copyto(out, data, casting="unsafe")  # plain categories are below 2**32
    # combinations -> categories, a cache-sized run of the block at a time (temporaries of
    # the whole block would be fresh memory, every page of it faulted in)
    if not contiguous:
        data = np.ascontiguousarray(data)  # (in the order of ``out``: C)
    flat, cats = data.reshape(-1, order="A"), out.reshape(-1, order="A")
    base = data.dtype.type(code.base)
    for a in range(0, flat.size, _MAP_RUN):
        run = flat[a : a + _MAP_RUN]
        at = np.flatnonzero(run >= base)
        if at.size:
            number, index = code.combinations(run[at])
            cats[a + at] = values[starts[number] + index]
    return out


def _windows_cover(start: tuple[int, ...], stop: tuple[int, ...]) -> bool:
    """Whether every level-r sample of block ``[start, stop)`` lies in the window of one of
    the block's own level-2r outputs (centres 2i in the block): along each axis a sample is
    a centre or next to one in the block, unless the block is one sample thick at an odd
    start.

    >>> _windows_cover((0, 4), (1, 6)), _windows_cover((3, 0), (4, 2))
    (True, False)
    """
    return all(e - s >= 2 or s % 2 == 0 for s, e in zip(start, stop, strict=True))


def _label_task(
    job: LabelJob, start: tuple[int, ...], stop: tuple[int, ...], number: int
) -> tuple[tuple[np.ndarray, tuple[np.ndarray, ...]], list[tuple[str, bytes]]]:
    """One block: ((categories seen, combinations: parts of one width each), encoded chunks
    of level r).

    The categories seen are the block's own (without its halo) or those of its windows (single
    ones and members of combinations, halo included), whichever are fewer values: every voxel
    of a block lies in one of its own windows (unless the block is one sample thick at an odd
    start, 1-sample chunks only: :func:`_windows_cover`), so over all blocks any mix of the
    two is exactly the categories of level r.
    """
    margin = LABEL_HALO if job.next_level is not None else None
    # (nothing keeps the block after the task: read into a reused buffer)
    lo, data = read_block(job.source, start, stop, margin, reuse=True)
    cats = _categories(data, job)
    inner = _inner(cats, lo, start, stop)
    chunks = job.store.encode(inner, start) if job.store is not None else []
    if job.next_level is None:
        return (present_values(inner), ()), chunks
    out0, out1 = _output_range(start, stop)
    step = label_step_block(cats, lo, job.source.shape, out0, out1)
    code = job.next_code
    if _local_file(job.next_level):  # written at once: a reused buffer will do
        scratch = thread_buffer_like(_SCRATCH_SLOT, step.single, code.dtype)
        np.copyto(scratch, step.single)
    else:  # (a cluster worker's next level keeps the block until the task returns)
        scratch = step.single.astype(code.dtype)
    if step.rows > 1 << code.bits:
        raise InputFormatError(
            f"more than {1 << code.bits} label combinations in one block", job.path
        )
    scratch[step.mixed] = code.encode(number, step.index)
    job.next_level.write(out0, scratch)
    windows = step.single.size + sum(part.size for part in step.combos)
    if inner.size <= windows or not _windows_cover(start, stop):
        return (present_values(inner), step.combos), chunks
    return (present_values(step.single, *step.combos), step.combos), chunks


def run_label_pass(
    jobs: Sequence[LabelJob],
    engine: Engine,
    order: str,
    sink: ChunkSink | None = None,
    stage: str = "segmentations",
    detail: str = "",
) -> list[list[tuple[int, np.ndarray, tuple[np.ndarray, ...]]]]:
    """One pass of the label pyramid; per job, per block: (block number, categories seen,
    combinations)."""
    def blocks(source: LazyArray) -> tuple[int, ...]:
        return label_blocks(source.shape, np.dtype(source.dtype).itemsize, engine, order)

    per_job = _run_chain(jobs, _label_task, engine, order, sink, stage, detail, blocks)
    return [[(n, seen, combos) for n, (seen, combos) in blocks_] for blocks_ in per_job]


def plane_block_shape(
    shape: tuple[int, ...],
    itemsize: int,
    order: str,
    block: int,
    max_bytes: int = DEFAULT_BLOCK_BYTES,
    min_blocks: int = 1,
) -> tuple[int, ...]:
    """The blocks of a label pass: whole planes of the two fastest-varying axes, ``block``
    (or ``block // 2``) deep, where they fit in ``max_bytes``; else :func:`block_shape`.
    ``block // 2`` also where ``block`` would give fewer than ``min_blocks`` blocks (two per
    worker: a pass of as many blocks as workers waits for its slowest block on one core).

    A block of whole planes is one contiguous run of the file (a few large reads instead of one
    read per row), which is most of a label pass's cost when its windows are uniform. The
    stored bytes do not depend on the blocks.

    >>> plane_block_shape((512, 512, 512), 2, "F", 128)
    (512, 512, 64)
    >>> plane_block_shape((2048, 2048, 1024), 2, "F", 128)
    (2048, 64, 64)
    >>> plane_block_shape((256, 256, 256), 2, "F", 128)
    (256, 256, 128)
    >>> plane_block_shape((256, 256, 256), 2, "F", 128, min_blocks=4)
    (256, 256, 64)
    """
    slow = len(shape) - 1 if order == "F" else 0
    plane = math.prod(n for a, n in enumerate(shape) if a != slow) * itemsize
    fits = [edge for edge in (block, block // 2) if plane * edge <= max_bytes]
    if not fits:
        return block_shape(shape, itemsize, order, block, max_bytes)
    edge = next((e for e in fits if -(-shape[slow] // e) >= min_blocks), fits[-1])
    return tuple(min(n, edge) if a == slow else n for a, n in enumerate(shape))
