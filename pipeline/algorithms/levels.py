"""Level planning (DESIGN section 3.3): which 2x levels are computed and which are stored."""

from __future__ import annotations

import math
from dataclasses import dataclass

from pipeline.errors import OptionError
from pipeline.options import LevelOptions

__all__ = ["Level", "LevelPlan", "level_shape", "plan_from_stored", "plan_levels"]

MB = 10**6


def level_shape(shape: tuple[int, ...], ratio: int) -> tuple[int, ...]:
    """Grid of a level: ``ceil(n / ratio)`` per axis (an axis of length 1 stays 1).

    >>> level_shape((64, 63, 1), 2)
    (32, 32, 1)
    """
    return tuple(-(-n // ratio) for n in shape)


@dataclass(frozen=True, slots=True)
class Level:
    ratio: int
    shape: tuple[int, ...]
    nbytes: int
    stored: bool


@dataclass(frozen=True, slots=True)
class LevelPlan:
    """Levels 1, 2, 4, ... up to the coarsest stored one; each computed from the previous."""

    levels: tuple[Level, ...]

    @property
    def stored_ratios(self) -> tuple[int, ...]:
        return tuple(lv.ratio for lv in self.levels if lv.stored)

    @property
    def ratios(self) -> tuple[int, ...]:
        return tuple(lv.ratio for lv in self.levels)

    def level(self, ratio: int) -> Level:
        for lv in self.levels:
            if lv.ratio == ratio:
                return lv
        raise KeyError(ratio)


def plan_from_stored(shape: tuple[int, int, int], available: set[int], itemsize: int) -> LevelPlan:
    """The plan of an existing entry: levels 1 .. its coarsest stored one, ``available`` stored.

    >>> plan_from_stored((64, 64, 64), {1, 4}, 4).ratios
    (1, 2, 4)
    """
    top = max(available | {1})
    levels = []
    ratio = 1
    while ratio <= top:
        lshape = level_shape(shape, ratio)
        levels.append(Level(ratio, lshape, math.prod(lshape) * itemsize, ratio in available))
        ratio *= 2
    return LevelPlan(levels=tuple(levels))


def plan_levels(shape: tuple[int, int, int], itemsize: int, options: LevelOptions) -> LevelPlan:
    """Plan the pyramid of a grid (DESIGN section 3.3).

    The number of 2x steps is the largest k with bytes(level 1) / 8**k >= min size (MB = 10**6
    bytes), at least 1 for any grid with an axis longer than 1; it grows to reach
    ``min_level`` and to reach a level no larger than ``max_size_mb``, and stops where every
    axis has one sample. No level larger than ``max_size_mb`` is stored; level 1 is stored
    unless ``remove_original_resolution``; a downsampled level when its ratio lies within
    [min_level, max_level].

    >>> plan_levels((64, 64, 64), 4, LevelOptions()).stored_ratios
    (1, 2)
    """
    nbytes1 = math.prod(shape) * itemsize
    # beyond this many steps every axis has one sample
    coarsest = max(math.ceil(math.log2(n)) for n in shape) if max(shape) > 1 else 0
    if options.min_level is not None and options.min_level > 2**coarsest:
        raise OptionError(
            f"--min-downsampling-level {options.min_level} is beyond the coarsest level "
            f"{2**coarsest} of a {'x'.join(map(str, shape))} grid"
        )
    steps = 0
    if any(n > 1 for n in shape):
        steps = 1
        while nbytes1 / 8 ** (steps + 1) >= options.min_size_mb * MB:
            steps += 1
        if options.min_level is not None:
            steps = max(steps, int(math.log2(options.min_level)))
        if options.max_size_mb is not None:
            while (
                math.prod(level_shape(shape, 2**steps)) * itemsize > options.max_size_mb * MB
                and max(level_shape(shape, 2**steps)) > 1
            ):
                steps += 1
        if options.max_level is not None:
            steps = min(steps, int(math.log2(options.max_level)))
        steps = min(steps, coarsest)
    levels = []
    for k in range(steps + 1):
        ratio = 2**k
        lshape = level_shape(shape, ratio)
        size = math.prod(lshape) * itemsize
        fits = options.max_size_mb is None or size <= options.max_size_mb * MB
        if ratio == 1:
            stored = not options.remove_original_resolution and fits
        else:
            stored = (
                (options.min_level is None or ratio >= options.min_level)
                and (options.max_level is None or ratio <= options.max_level)
                and fits
            )
        levels.append(Level(ratio=ratio, shape=lshape, nbytes=size, stored=stored))
    plan = LevelPlan(levels=tuple(levels))
    if not plan.stored_ratios:
        raise OptionError(
            f"no level would be stored for a {'x'.join(map(str, shape))} grid with these "
            "level options (check --remove-original-resolution, --min/max-downsampling-level "
            "and --max-size-per-downsampling-lvl-mb)"
        )
    return plan
