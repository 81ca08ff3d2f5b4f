"""Pure functions on arrays: no I/O, no zarr, no database (DESIGN section 2)."""

from pipeline.algorithms.levels import LevelPlan, level_shape, plan_levels
from pipeline.algorithms.pyramid import downsample, downsample_block
from pipeline.algorithms.quantize import QuantizationParams, dequantize, quantize_block
from pipeline.algorithms.statistics import Statistics, block_moments, combine_moments

__all__ = [
    "LevelPlan",
    "QuantizationParams",
    "Statistics",
    "block_moments",
    "combine_moments",
    "dequantize",
    "downsample",
    "downsample_block",
    "level_shape",
    "plan_levels",
    "quantize_block",
]
