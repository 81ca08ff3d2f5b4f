"""Logarithmic quantization (DESIGN section 7.3) and its inverse."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["QuantizationParams", "dequantize", "quantize_block"]


@dataclass(frozen=True, slots=True)
class QuantizationParams:
    """The ``quantization_data_dict`` attribute of a quantized array."""

    min: float  # min of y = ln(x - m + 1)
    max: float  # max of y
    num_steps: int  # 2**bits - 1
    src_type: str  # numpy dtype string of the original data, e.g. "<f4"
    to_remove_negatives: float  # m = min(x)

    @classmethod
    def from_range(
        cls, xmin: float, xmax: float, src_dtype: np.dtype, out_dtype: np.dtype
    ) -> QuantizationParams:
        """Parameters for an array whose values span ``[xmin, xmax]``.

        >>> QuantizationParams.from_range(-1.0, 1.0, np.dtype("f4"), np.dtype("u1")).num_steps
        255
        """
        return cls(
            min=math.log(1.0),
            max=math.log(xmax - xmin + 1.0),
            num_steps=2 ** (8 * np.dtype(out_dtype).itemsize) - 1,
            src_type=np.dtype(src_dtype).str,
            to_remove_negatives=float(xmin),
        )

    @property
    def delta(self) -> float:
        return (self.max - self.min) / (self.num_steps - 1)


def quantize_block(
    block: np.ndarray, params: QuantizationParams, out_dtype: np.dtype
) -> np.ndarray:
    """``q = round((ln(x - m + 1) - ymin) / delta)`` as ``out_dtype``."""
    y = np.log1p(block.astype(np.float64) - params.to_remove_negatives)
    if params.delta > 0:
        y -= params.min
        y /= params.delta
        np.rint(y, out=y)
        np.clip(y, 0, params.num_steps, out=y)
    else:  # constant array: every value is m, encoded as step 0
        y[...] = 0
    return y.astype(out_dtype)


def dequantize(q: np.ndarray, params: QuantizationParams) -> np.ndarray:
    """``x = exp(q * delta + ymin) - 1 + m`` in the source dtype."""
    x = np.exp(q.astype(np.float64) * params.delta + params.min) - 1.0 + params.to_remove_negatives
    src = np.dtype(params.src_type)
    if src.kind in "iu":
        info = np.iinfo(src)
        x = np.clip(np.rint(x), info.min, info.max)
    return x.astype(src)
