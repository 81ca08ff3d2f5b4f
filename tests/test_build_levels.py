"""The level loop shared by volumes and lattices (pipeline/build/levels.py): pass order, what
each pass reads, and the lifetime of the scratch files between passes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.algorithms.levels import plan_levels
from pipeline.build.levels import LevelPass, run_levels
from pipeline.options import LevelOptions


def _plan(shape):
    # levels down to about 1 byte (uint8)
    return plan_levels(shape, 1, LevelOptions(min_size_mb=1e-6))


@pytest.mark.parametrize("order", ["C", "F"])
def test_each_pass_reads_what_the_pass_before_wrote_and_scratch_goes(tmp_path, order):
    shape = (8, 6, 4)
    plan = _plan(shape)
    assert [lv.ratio for lv in plan.levels] == [1, 2, 4]
    rng = np.random.default_rng(0)
    inputs = {t: rng.integers(0, 200, shape, dtype=np.uint8) for t in range(2)}
    seen = []

    def one_pass(step: LevelPass[int]) -> None:
        files = sorted(p.name for p in tmp_path.iterdir())
        seen.append((step.level.ratio, None if step.below is None else step.below.ratio, files))
        for t, source in step.sources.items():
            data = np.asarray(source[tuple(slice(0, n) for n in step.level.shape)])
            if step.level.ratio == 1:
                assert source is inputs[t]  # level 1 is the input itself
            else:  # what the previous pass wrote: the input sampled every ratio voxels
                r = step.level.ratio
                np.testing.assert_array_equal(data, inputs[t][::r, ::r, ::r])
            target = step.next_levels[t]
            if step.below is None:
                assert target is None
            else:
                assert target.shape == step.below.shape
                target.write((0, 0, 0), np.ascontiguousarray(data[::2, ::2, ::2]))

    run_levels(
        plan,
        inputs,
        one_pass,
        scratch=tmp_path,
        scratch_name=lambda t, below: f"lv-{below.ratio}-{t}.raw",
        dtype=np.dtype(np.uint8),
        order=order,
    )
    # level 2's files exist during the first pass; level 1's are never files; a scratch
    # level is gone once the pass over it is done
    assert seen == [
        (1, 2, ["lv-2-0.raw", "lv-2-1.raw"]),
        (2, 4, ["lv-2-0.raw", "lv-2-1.raw", "lv-4-0.raw", "lv-4-1.raw"]),
        (4, None, ["lv-4-0.raw", "lv-4-1.raw"]),
    ]
    assert list(tmp_path.iterdir()) == []


def test_one_level_plan_makes_no_scratch(tmp_path):
    plan = _plan((1, 1, 1))
    assert [lv.ratio for lv in plan.levels] == [1]
    passes = []
    source = np.zeros((1, 1, 1), np.uint8)
    run_levels(
        plan,
        {0: source},
        lambda step: passes.append((step.level.ratio, step.below, dict(step.next_levels))),
        scratch=tmp_path,
        scratch_name=lambda t, below: "never",
        dtype=np.dtype(np.uint8),
        order="C",
    )
    assert passes == [(1, None, {0: None})]
    assert list(tmp_path.iterdir()) == []
