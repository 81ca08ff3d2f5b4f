"""Pure functions on arrays: no I/O, no zarr, no database (DESIGN section 2)."""

from pipeline.algorithms.levels import LevelPlan, level_shape, plan_levels
from pipeline.algorithms.pyramid import HALO, downsample_block, output_range
from pipeline.algorithms.quantize import QuantizationParams, dequantize, quantize_block
from pipeline.algorithms.statistics import Statistics, block_moments, combine_moments

__all__ = [
    "HALO",
    "LevelPlan",
    "QuantizationParams",
    "Statistics",
    "block_moments",
    "combine_moments",
    "dequantize",
    "downsample_block",
    "level_shape",
    "output_range",
    "plan_levels",
    "quantize_block",
]
