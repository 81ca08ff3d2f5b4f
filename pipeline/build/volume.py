"""Writing the volume: every stored level of every frame and channel, quantized where asked,
with the statistics of every level reduced in the same passes (DESIGN 7.1)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from pipeline.algorithms.levels import Level, LevelPlan
from pipeline.algorithms.quantize import QuantizationParams
from pipeline.algorithms.statistics import Statistics, combine_moments
from pipeline.build.levels import LevelPass, run_levels
from pipeline.db.layout import QUANTIZATION_ATTRIBUTE, volume_key
from pipeline.db.metadata import quantization_record
from pipeline.db.writer import ArrayTarget, DataWriter
from pipeline.engine.passes import Engine, LevelJob, run_pass
from pipeline.errors import InputFormatError
from pipeline.inputs.compressed import check_free_space
from pipeline.model import LabelSource, VolumeSource
from pipeline.options import PreprocessOptions
from pipeline.progress import Reporter

__all__ = ["LevelKey", "check_scratch_space", "write_volume"]


def _quantized(options: PreprocessOptions, ratio: int, dtype: np.dtype) -> bool:
    """Whether level ``ratio`` of a volume of ``dtype`` is stored quantized."""
    q = options.quantize_dtype
    if q is None:
        return False
    if options.quantize_levels is not None and ratio not in options.quantize_levels:
        return False
    return dtype.itemsize > q.itemsize


LevelKey = tuple[int, int, str]  # (ratio, time, channel)


def _statistics(key: LevelKey, moments: np.ndarray, volume: VolumeSource) -> Statistics:
    st = combine_moments(moments)
    if not (math.isfinite(st.mean) and math.isfinite(st.std)):
        ratio, t, channel = key
        raise InputFormatError(
            f"the volume contains NaN or infinite values (level {ratio}, frame {t}, "
            f"channel {channel})",
            volume.path,
        )
    return st


def write_volume(
    writer: DataWriter,
    volume: VolumeSource,
    plan: LevelPlan,
    options: PreprocessOptions,
    scratch: Path,
    engine: Engine,
    warn: Reporter,
) -> dict[LevelKey, Statistics]:
    """Store every level of every frame and channel; return their statistics.

    One pass per level (DESIGN 7.1, :func:`pipeline.build.levels.run_levels`): the pass over
    level r writes level r's chunks (quantized where asked) and level 2r into a scratch file,
    reducing the statistics of both from the blocks it holds. The input is read once;
    quantizing level 1 needs its min/max first, so then a statistics-only pass over the input
    comes before.
    """
    order = volume.memory_order
    keys = [(t, c) for t in range(len(volume.frames)) for c in range(len(volume.channel_ids))]
    sources = {tc: volume.frames[tc[0]][tc[1]] for tc in keys}
    quantized = _quantized_levels(volume, plan, options, warn)
    stats: dict[LevelKey, Statistics] = {}
    if 1 in quantized:
        jobs = [LevelJob(sources[tc], None, None, None, measure=True) for tc in keys]
        moments = run_pass(jobs, engine, order, None, "read", "statistics")
        _reduce(stats, volume, 1, None, keys, jobs, moments)

    def one_pass(step: LevelPass[tuple[int, int]]) -> None:
        lv = step.level
        jobs = []
        for t, c in keys:
            target, params = None, None
            if lv.stored:
                target, params = _stored(writer, volume, options, lv, t, c, quantized, stats)
            measure = _key(volume, lv.ratio, t, c) not in stats
            jobs.append(
                LevelJob(step.sources[(t, c)], target, params, step.next_levels[(t, c)], measure)
            )
        moments = run_pass(jobs, engine, order, writer.sink, "levels", f"level {lv.ratio}")
        _reduce(stats, volume, lv.ratio, step.below, keys, jobs, moments)

    run_levels(
        plan,
        sources,
        one_pass,
        scratch=scratch,
        scratch_name=lambda tc, below: f"level-{below.ratio}-{tc[0]}-{tc[1]}.raw",
        dtype=volume.dtype,
        order=order,
    )
    return stats


def _key(volume: VolumeSource, ratio: int, t: int, c: int) -> LevelKey:
    return (ratio, t, volume.channel_ids[c])


def _quantized_levels(
    volume: VolumeSource, plan: LevelPlan, options: PreprocessOptions, warn: Reporter
) -> set[int]:
    """The stored levels stored quantized (a warning when --quantize-dtype-str cannot apply)."""
    dtype = volume.dtype
    quantized = {
        lv.ratio for lv in plan.levels if lv.stored and _quantized(options, lv.ratio, dtype)
    }
    if (
        options.quantize_dtype is not None
        and not quantized
        and dtype.itemsize <= (options.quantize_dtype.itemsize)
    ):
        warn(
            f"warning: {volume.path}: volume dtype {dtype} is not larger than "
            f"{options.quantize_dtype}; stored without quantization"
        )
    return quantized


def _stored(
    writer: DataWriter,
    volume: VolumeSource,
    options: PreprocessOptions,
    lv: Level,
    t: int,
    c: int,
    quantized: set[int],
    stats: dict[LevelKey, Statistics],
) -> tuple[ArrayTarget, QuantizationParams | None]:
    """The array a stored level is encoded into, and its quantization (from the level's
    min/max, known from the pass before) when the level is quantized."""
    dtype, params, attrs = volume.dtype, None, None
    out_dtype = dtype
    if lv.ratio in quantized:
        out_dtype = options.quantize_dtype
        st = stats[_key(volume, lv.ratio, t, c)]
        params = QuantizationParams.from_range(st.min, st.max, dtype, out_dtype)
        attrs = {QUANTIZATION_ATTRIBUTE: quantization_record(params)}
    target = writer.array(
        volume_key(lv.ratio, t, volume.channel_ids[c]),
        lv.shape,
        out_dtype,
        (options.chunk_size,) * 3,
        attrs,
        order=volume.memory_order,
    )
    return target, params


def _reduce(
    stats: dict[LevelKey, Statistics],
    volume: VolumeSource,
    ratio: int,
    below: Level | None,
    keys: list[tuple[int, int]],
    jobs: list[LevelJob],
    moments: list[np.ndarray],
) -> None:
    """The statistics a pass reduced: of level ``ratio`` where it measured them, and of the
    level ``below`` it wrote."""
    for (t, c), job, m in zip(keys, jobs, moments, strict=True):
        if job.measure:
            here = _key(volume, ratio, t, c)
            stats[here] = _statistics(here, m[:, 0], volume)
        if below is not None:
            there = _key(volume, below.ratio, t, c)
            stats[there] = _statistics(there, m[:, 1], volume)


def _scratch_peak(plan: LevelPlan, itemsize: int, arrays: int) -> int:
    """Most scratch bytes a pyramid pass holds at once: while level r is read from scratch the
    level below it is written, for each of ``arrays`` (frames x channels) arrays."""
    sizes = [math.prod(lv.shape) for lv in plan.levels[1:]]
    pairs = [a + b for a, b in zip(sizes, [*sizes[1:], 0], strict=True)]
    return max(pairs, default=0) * itemsize * arrays


def check_scratch_space(
    work: Path, plan: LevelPlan, volume: VolumeSource | None, lattices: tuple[LabelSource, ...]
) -> None:
    """The declared sizes against the working folder's free space, before any level is
    written there (the volume pass and then each lattice's pass)."""
    needed = 0
    if volume is not None:
        arrays = len(volume.frames) * len(volume.channel_ids)
        needed = _scratch_peak(plan, volume.dtype.itemsize, arrays)
    for lattice in lattices:  # label levels are kept as uint64 scratch
        needed = max(needed, _scratch_peak(plan, 8, len(lattice.frames)))
    check_free_space(work.parent, needed)
