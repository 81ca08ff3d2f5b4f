"""The level loop every pyramid of an entry runs (DESIGN 7.1, 7.2): the volume's arrays (one per
frame and channel) and each lattice's frames.

One pass per planned level r, over every array at once: the pass reads level r (the input at
r = 1, else the scratch file the pass before wrote), stores it where the plan says so and
writes level 2r into a new scratch file. What a pass does with each block (read, quantize,
encode, reduce, downsample, or the label steps) is the caller's; the loop owns the order of
the passes and the lifetime of the scratch files: each is created just before the pass that
writes it and removed after the pass that reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from pipeline.algorithms.levels import Level, LevelPlan
from pipeline.arrays import create_scratch, remove_scratch

__all__ = ["LevelPass", "run_levels"]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class LevelPass(Generic[K]):
    """One pass of the loop: ``level`` of every array (by key) read from ``sources``, the
    next level (``below``; None after the last level) written into ``next_levels``."""

    level: Level
    below: Level | None
    sources: Mapping[K, Any]
    next_levels: Mapping[K, Any]  # a scratch array per key, or None after the last level


def run_levels(
    plan: LevelPlan,
    sources: Mapping[K, Any],
    one_pass: Callable[[LevelPass[K]], None],
    *,
    scratch: Path,
    scratch_name: Callable[[K, Level], str],
    dtype: np.dtype | Callable[[Level, Level], np.dtype],
    order: str,
) -> None:
    """Run ``one_pass`` for every level of ``plan``, in order, over the arrays ``sources``
    (level 1 of each array, by key).

    The next level of each array goes into ``scratch / scratch_name(key, below)``, of
    ``dtype`` (or ``dtype(level, below)``, asked just before the pass over ``level``) and laid
    out in ``order`` (the input's memory order); a scratch level is removed once the pass
    over it is done (the input itself never is).
    """
    current = dict(sources)
    for i, level in enumerate(plan.levels):
        below = plan.levels[i + 1] if i + 1 < len(plan.levels) else None
        kind = None
        if below is not None:
            kind = dtype if isinstance(dtype, np.dtype) else dtype(level, below)
        next_levels = {
            key: None
            if below is None
            else create_scratch(scratch, scratch_name(key, below), below.shape, kind, order)
            for key in current
        }
        one_pass(LevelPass(level, below, dict(current), next_levels))
        for key, next_level in next_levels.items():
            if level.ratio > 1:  # the scratch copy of level r is no longer needed
                remove_scratch(current[key])
            if next_level is not None:
                current[key] = next_level
