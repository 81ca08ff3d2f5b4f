"""Statistics reduction and log quantization (DESIGN 4, 7.3) against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.algorithms.quantize import QuantizationParams, dequantize, quantize_block
from pipeline.algorithms.statistics import block_moments, combine_moments
from pipeline.db.metadata import quantization_params, quantization_record


@settings(max_examples=50, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=8),
    offset=st.floats(-1e3, 1e3),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_combined_block_moments_equal_numpy(sizes, offset, scale, seed):
    rng = np.random.default_rng(seed)
    parts = [(rng.normal(size=n) * scale + offset).astype(np.float32) for n in sizes]
    whole = np.concatenate(parts).astype(np.float64)
    st_ = combine_moments(np.stack([block_moments(p) for p in parts]))
    assert st_.count == whole.size
    assert st_.min == whole.min() and st_.max == whole.max()
    assert st_.mean == pytest.approx(whole.mean(), rel=1e-5, abs=1e-5 * scale)
    assert st_.std == pytest.approx(whole.std(), rel=1e-4, abs=1e-6 * scale)


def test_moments_of_strided_and_integer_blocks():
    x = np.arange(1000, dtype=np.int16).reshape(10, 10, 10)
    view = x[1:9, ::2, 3:]
    st_ = combine_moments(block_moments(view)[None])
    assert st_.mean == pytest.approx(view.mean())
    assert st_.std == pytest.approx(view.std())
    assert (st_.min, st_.max) == (view.min(), view.max())


@pytest.mark.parametrize("out", [np.uint8, np.uint16])
def test_quantization_decodes_within_one_half_log_step(out):
    rng = np.random.default_rng(0)
    x = (rng.gamma(2.0, 3.0, size=(30, 20, 10)) - 4).astype(np.float32)
    params = QuantizationParams.from_range(float(x.min()), float(x.max()), x.dtype, np.dtype(out))
    q = quantize_block(x, params, np.dtype(out))
    assert q.dtype == out
    assert params.num_steps == 2 ** (8 * np.dtype(out).itemsize) - 1
    assert params.min == 0.0
    assert params.max == pytest.approx(np.log(x.max() - x.min() + 1))
    decoded = dequantize(q, params)
    assert decoded.dtype == np.float32
    # |ln(x - m + 1) - (q delta + ymin)| <= delta / 2, so the value error is bounded by
    bound = (x.astype(np.float64) - x.min() + 1) * (np.exp(params.delta / 2) - 1) + 1e-5
    assert np.all(np.abs(decoded - x) <= bound)
    assert np.abs(decoded - x).max() > 0  # it is lossy: the test can tell


def test_quantization_of_a_constant_array_is_exact():
    x = np.full((4, 4, 4), 2.5, np.float32)
    params = QuantizationParams.from_range(2.5, 2.5, x.dtype, np.dtype(np.uint8))
    q = quantize_block(x, params, np.dtype(np.uint8))
    assert np.all(q == 0)
    np.testing.assert_array_equal(dequantize(q, params), x)


def test_quantization_params_round_trip_json():
    p = QuantizationParams.from_range(-1.5, 7.0, np.dtype("<f4"), np.dtype("u2"))
    record = quantization_record(p)
    assert quantization_params(record) == p
    assert set(record) == {"min", "max", "num_steps", "src_type", "to_remove_negatives"}
    assert record["src_type"] == "<f4" and record["to_remove_negatives"] == -1.5


def test_moments_of_huge_float32_values_do_not_overflow():
    x = (np.random.default_rng(1).normal(size=(20, 20, 20)) * 1e20).astype(np.float32)
    st_ = combine_moments(block_moments(x)[None])
    assert np.isfinite(st_.std)
    assert st_.std == pytest.approx(x.astype(np.float64).std(), rel=1e-5)
