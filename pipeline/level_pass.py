"""One pass of the pyramid: level r -> (stored chunks of level r, level 2r), as independent tasks.

Each task reads its own block of level r with the 2-sample halo the filter needs (positioned
reads of the input, or of the scratch file holding level r), writes the block's chunks, reduces
its moments and writes its part of level 2r to the next scratch file. Tasks share nothing, so
memory is bounded by the blocks in flight whatever the volume's size, and they run unchanged on
the threaded scheduler or on a dask.distributed cluster.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np

from pipeline.algorithms.pyramid import HALO, downsample_block, output_range
from pipeline.algorithms.quantize import QuantizationParams, quantize_block
from pipeline.algorithms.statistics import block_moments
from pipeline.arrays import LazyArray
from pipeline.chunks import align_chunks
from pipeline.db.writer import ArrayTarget

__all__ = ["LevelJob", "block_grid", "block_shape", "run_pass"]

_NO_MOMENTS = np.full(5, np.nan)
MAX_BLOCK_BYTES = 32 * 2**20


def block_shape(
    shape: tuple[int, ...], itemsize: int, order: str, block: int, max_bytes: int = MAX_BLOCK_BYTES
) -> tuple[int, ...]:
    """``block`` along every axis but the fastest-varying one, which gets the longest multiple
    of ``block`` (or its whole length) that keeps a block under ``max_bytes``: reads are then
    long contiguous runs.

    >>> block_shape((512, 512, 512), 4, "F", 128)
    (512, 128, 128)
    """
    fast = 0 if order == "F" else len(shape) - 1
    others = block ** (len(shape) - 1) * itemsize
    fast_len = max(block, (max_bytes // others) // block * block)
    return tuple(
        (shape[a] if shape[a] <= fast_len else fast_len) if a == fast else block
        for a in range(len(shape))
    )


def block_grid(
    shape: tuple[int, ...], blocks: tuple[int, ...]
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(start, stop)`` of every block; inner boundaries are multiples of the block size.

    >>> block_grid((5, 3), (4, 4))
    [((0, 0), (5, 3))]
    """
    axes = []
    for n, b in zip(shape, blocks, strict=True):
        bounds = np.cumsum((0, *align_chunks(n, b))).tolist()
        axes.append(list(itertools.pairwise(bounds)))
    return [
        (tuple(s for s, _ in combo), tuple(e for _, e in combo))
        for combo in itertools.product(*axes)
    ]


@dataclass(frozen=True, slots=True, eq=False)
class LevelJob:
    """The work on one array (one frame and channel) in a pass."""

    source: LazyArray  # level r, [x, y, z]
    store: ArrayTarget | None  # where level r's chunks go (None: level r is not stored)
    quantization: QuantizationParams | None
    next_level: Any | None  # writable lazy array for level 2r, or None at the coarsest level
    measure: bool  # reduce level r's moments (level 1; others were measured by the last pass)


def _task(job: LevelJob, start: tuple[int, ...], stop: tuple[int, ...]) -> np.ndarray:
    """Process one block; returns moments ``[[level r], [level 2r]]`` (NaN rows if not asked)."""
    shape = job.source.shape
    halo = [HALO if (job.next_level is not None and n > 1) else 0 for n in shape]
    lo = tuple(max(s - h, 0) for s, h in zip(start, halo, strict=True))
    hi = tuple(min(e + h, n) for e, h, n in zip(stop, halo, shape, strict=True))
    data = job.source[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    inner = data[tuple(slice(s - a, e - a) for s, e, a in zip(start, stop, lo, strict=True))]
    if job.store is not None:
        stored = (
            inner
            if job.quantization is None
            else quantize_block(inner, job.quantization, job.store.dtype)
        )
        job.store.write_block(stored, start)
    this = block_moments(inner) if job.measure else _NO_MOMENTS
    below = _NO_MOMENTS
    if job.next_level is not None:
        out_range = [output_range(s, e) for s, e in zip(start, stop, strict=True)]
        out = downsample_block(
            data, lo, shape, tuple(a for a, _ in out_range), tuple(b for _, b in out_range)
        )
        job.next_level.write(tuple(a for a, _ in out_range), out)
        below = block_moments(out)
    return np.stack([this, below])


def run_pass(
    jobs: Sequence[LevelJob],
    blocks: Callable[[LazyArray], tuple[int, ...]],
    compute: Callable[[list[Any]], list[np.ndarray]],
) -> list[np.ndarray]:
    """Run every block of every job as one task graph; per job, the (blocks, 2, 5) moments."""
    tasks: list[Any] = []
    owners: list[int] = []
    for i, job in enumerate(jobs):
        for start, stop in block_grid(job.source.shape, blocks(job.source)):
            tasks.append(dask.delayed(_task, pure=False)(job, start, stop))
            owners.append(i)
    results = compute(tasks)
    per_job: list[list[np.ndarray]] = [[] for _ in jobs]
    for owner, result in zip(owners, results, strict=True):
        per_job[owner].append(result)
    return [np.stack(r) for r in per_job]
