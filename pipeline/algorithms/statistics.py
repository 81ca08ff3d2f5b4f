"""Descriptive statistics as a reduction: per-block moments, combined exactly (Chan et al.)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Statistics", "block_moments", "combine_moments"]

# layout of a moments vector
COUNT, MEAN, M2, MIN, MAX = range(5)
_SLAB_VALUES = 1 << 18  # values per slab of the deviation pass (1 MiB of float32)


def block_moments(block: np.ndarray) -> np.ndarray:
    """``[count, mean, M2, min, max]`` of a block (M2 = sum of squared deviations from the mean).

    float32 blocks are reduced in float32 with numpy's pairwise summation (relative error
    ~1e-7 log n) about a first estimate of the mean, everything else in float64; blocks are
    combined in float64 (:func:`combine_moments`).

    >>> block_moments(np.array([1.0, 2.0, 3.0])).tolist()
    [3.0, 2.0, 2.0, 1.0, 3.0]
    """
    if block.size == 0:
        return np.array([0.0, 0.0, 0.0, np.inf, -np.inf])
    lo, hi = float(block.min()), float(block.max())
    # float32 accumulation while squares and sums stay far from float32's range (3.4e38)
    small = max(abs(lo), abs(hi)) < 1e15
    acc = np.float32 if block.dtype in (np.float16, np.float32) and small else np.float64
    # reductions over all axes read strided views in place (no flattening copy)
    # shifted data: deviations from a first estimate of the mean, then corrected exactly
    shift = acc(float(block.sum(dtype=acc)) / block.size)
    # deviations slab by slab (memory order) in one small reused buffer: no block-sized
    # temporary, and the slab stays in cache between the subtraction and the squares
    # axes ordered by decreasing stride: slabs along the slowest axis, rows contiguous
    view = np.transpose(block, np.argsort([-abs(st) for st in block.strides], kind="stable"))
    view = view.reshape(1, -1) if view.ndim < 2 else view
    step = max(1, _SLAB_VALUES // max(1, view[0].size))
    buf = np.empty((min(step, view.shape[0]), *view.shape[1:]), dtype=acc)
    dsum = 0.0
    sq = 0.0
    for start in range(0, view.shape[0], step):
        part = view[start : start + step]
        dev = buf[: part.shape[0]]
        np.subtract(part, shift, out=dev, dtype=acc)
        dsum += float(dev.sum(dtype=acc))
        np.multiply(dev, dev, out=dev)
        sq += float(dev.sum(dtype=acc))
    dmean = dsum / block.size
    m2 = max(sq - block.size * dmean * dmean, 0.0)
    mean = float(shift) + dmean
    return np.array([block.size, mean, m2, lo, hi])


@dataclass(frozen=True, slots=True)
class Statistics:
    """Population statistics (``std`` with ddof 0, as numpy's default)."""

    count: int
    mean: float
    std: float
    min: float
    max: float


def combine_moments(parts: np.ndarray) -> Statistics:
    """Combine moment vectors (shape ``(..., 5)``) of disjoint blocks into whole-array statistics.

    >>> combine_moments(np.stack([block_moments(np.array([1.0])),
    ...                           block_moments(np.array([2.0, 3.0]))])).std ** 2
    0.6666666666666666
    """
    p = parts.reshape(-1, 5)
    n = p[:, COUNT]
    total = n.sum()
    if total == 0:
        raise ValueError("statistics of an empty array")
    mean = float((n * p[:, MEAN]).sum() / total)
    m2 = float(p[:, M2].sum() + (n * (p[:, MEAN] - mean) ** 2).sum())
    return Statistics(
        count=int(total),
        mean=mean,
        std=float(np.sqrt(m2 / total)),
        min=float(p[:, MIN].min()),
        max=float(p[:, MAX].max()),
    )
