"""The binomial pyramid kernel against an independent scipy reference (DESIGN 7.1)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import binomial_reference
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.algorithms.pyramid import downsample_block, mirror_index, output_range
from pipeline.engine.passes import block_grid


def _whole(x: np.ndarray) -> np.ndarray:
    n = x.shape
    return downsample_block(x, (0,) * x.ndim, n, (0,) * x.ndim, tuple((v + 1) // 2 for v in n))


def _blockwise(x: np.ndarray, block: tuple[int, ...]) -> np.ndarray:
    """What the level pass does: every block read with its 2-sample halo, results assembled."""
    out = np.zeros(tuple((n + 1) // 2 for n in x.shape), x.dtype)
    for start, stop in block_grid(x.shape, block):
        lo = tuple(max(s - 2, 0) if n > 1 else 0 for s, n in zip(start, x.shape, strict=True))
        hi = tuple(min(e + 2, n) for e, n in zip(stop, x.shape, strict=True))
        rng = [output_range(s, e) for s, e in zip(start, stop, strict=True)]
        piece = downsample_block(
            x[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))],
            lo,
            x.shape,
            tuple(a for a, _ in rng),
            tuple(b for _, b in rng),
        )
        out[tuple(slice(a, b) for a, b in rng)] = piece
    return out


def test_mirror_index_reflects_about_edge_samples():
    assert mirror_index(np.arange(-3, 8), 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]
    assert mirror_index(np.array([-2, -1, 0, 1, 2, 3]), 2).tolist() == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize(
    "shape",
    [
        (64, 64, 64),
        (65, 33, 7),
        (1, 9, 130),
        (257, 3, 2),
        (5, 1, 4),
        (2, 2, 2),
        (3, 3, 3),
        (17, 1, 1),
        (1, 1, 1),
    ],
)
def test_float32_level2_equals_scipy_reference(shape):
    x = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    got = _whole(x)
    ref = binomial_reference(x)
    assert got.shape == ref.shape == tuple((n + 1) // 2 for n in shape)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32])
def test_integer_levels_round_to_nearest_and_keep_dtype(dtype):
    info = np.iinfo(dtype)
    rng = np.random.default_rng(3)
    x = rng.integers(info.min, info.max, size=(13, 8, 9), endpoint=True).astype(dtype)
    got = _whole(x)
    ref = np.clip(np.rint(binomial_reference(x)), info.min, info.max).astype(dtype)
    assert got.dtype == dtype
    # a .5 tie may round either way after float accumulation: allow 1 step, but only there
    diff = np.abs(got.astype(np.int64) - ref.astype(np.int64))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= max(1, diff.size // 1000)


def test_float64_stays_float64_and_exact():
    x = np.random.default_rng(5).normal(size=(9, 10, 11))
    got = _whole(x)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, binomial_reference(x), rtol=1e-12, atol=1e-12)


def test_fortran_ordered_block_gives_same_values_and_layout():
    x = np.asfortranarray(np.random.default_rng(6).normal(size=(20, 14, 9)).astype(np.float32))
    got = _whole(x)
    assert got.flags.f_contiguous
    np.testing.assert_allclose(got, binomial_reference(x), rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 40)] * 3),
    block=st.tuples(*[st.sampled_from([2, 4, 8, 16])] * 3),
    seed=st.integers(0, 2**16),
)
def test_blockwise_with_halos_equals_whole_array(shape, block, seed):
    x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    blockwise = _blockwise(x, block)
    np.testing.assert_allclose(blockwise, binomial_reference(x), rtol=1e-5, atol=1e-6)
    # bit for bit the whole-array result: a sample never depends on the block it fell in
    # (so runs with other block sizes, e.g. under --max-memory, store the same bytes)
    np.testing.assert_array_equal(blockwise, _whole(x))


def test_level_origin_sample_sits_on_even_samples():
    # a delta at an even index 2i lands (with weight 6/16 per axis) on level-2 sample i
    x = np.zeros((9, 9, 9), np.float32)
    x[4, 6, 2] = 4096
    got = _whole(x)
    assert got[2, 3, 1] == pytest.approx(4096 * (6 / 16) ** 3)
    assert np.unravel_index(np.argmax(got), got.shape) == (2, 3, 1)
