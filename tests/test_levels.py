"""Level planning (DESIGN 3.3)."""

from __future__ import annotations

import pytest

from pipeline.algorithms.levels import level_shape, plan_levels
from pipeline.db.metadata import levels_document
from pipeline.errors import OptionError
from pipeline.options import LevelOptions


def test_small_map_gets_one_step():
    plan = plan_levels((64, 64, 64), 4, LevelOptions())
    assert plan.stored_ratios == (1, 2)
    assert plan.level(2).shape == (32, 32, 32)
    assert levels_document(plan) == [
        {"level": 1, "available": True},
        {"level": 2, "available": True},
    ]


def test_steps_until_a_level_is_below_min_size():
    # 512^3 float32 = 536.9 MB; /8 = 67 MB, /64 = 8.4 MB >= 5 MB, /512 = 1.05 MB < 5 MB
    assert plan_levels((512, 512, 512), 4, LevelOptions()).ratios == (1, 2, 4)
    assert plan_levels((512, 512, 512), 4, LevelOptions(min_size_mb=1)).ratios == (1, 2, 4, 8)


def test_grid_dimensions_are_ceil_and_axes_of_one_stay_one():
    assert level_shape((65, 1, 7), 4) == (17, 1, 2)
    assert plan_levels((1, 1, 1), 4, LevelOptions()).ratios == (1,)


def test_remove_original_resolution_marks_level_1_unavailable():
    plan = plan_levels((64, 64, 64), 4, LevelOptions(remove_original_resolution=True))
    assert plan.stored_ratios == (2,)
    assert levels_document(plan) == [
        {"level": 1, "available": False},
        {"level": 2, "available": True},
    ]


def test_min_level_extends_the_pyramid_and_bounds_stored_levels():
    plan = plan_levels((64, 64, 64), 4, LevelOptions(min_level=4))
    assert plan.ratios == (1, 2, 4)
    assert plan.stored_ratios == (1, 4)


def test_max_level_caps_the_pyramid():
    plan = plan_levels((512, 512, 512), 4, LevelOptions(max_level=2))
    assert plan.stored_ratios == (1, 2)


def test_max_size_skips_large_levels_and_extends_until_one_fits():
    plan = plan_levels((512, 512, 512), 4, LevelOptions(max_size_mb=1.1))
    assert plan.stored_ratios == (8,)
    assert plan.level(8).nbytes <= 1.1e6 < plan.level(4).nbytes
    assert levels_document(plan)[0] == {"level": 1, "available": False}


def test_pyramid_stops_at_one_sample_per_axis():
    assert plan_levels((4, 4, 4), 4, LevelOptions(min_size_mb=1e-9)).ratios == (1, 2, 4)
    assert plan_levels((5, 1, 1), 4, LevelOptions(min_size_mb=1e-9)).ratios == (1, 2, 4, 8)
    with pytest.raises(OptionError, match="beyond the coarsest level 64"):
        plan_levels((64, 64, 64), 4, LevelOptions(min_level=1024))


def test_nothing_stored_is_an_option_error():
    with pytest.raises(OptionError, match="no level would be stored"):
        plan_levels((64, 64, 64), 4, LevelOptions(max_level=1, remove_original_resolution=True))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_level": 3}, "power of two"),
        ({"max_level": 6}, "power of two"),
        ({"min_level": 8, "max_level": 4}, "greater than"),
        ({"min_size_mb": 0}, "must be > 0"),
        ({"max_size_mb": -1}, "must be > 0"),
        ({"max_size_mb": float("nan")}, "finite"),
        ({"min_size_mb": float("inf")}, "finite"),
    ],
)
def test_invalid_level_options(kwargs, message):
    with pytest.raises(OptionError, match=message):
        LevelOptions(**kwargs)
