"""The label pyramid's scratch levels: how block-local combinations are coded and mapped back
to categories (``pipeline.engine.passes``), against plain Python."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.engine.passes import (
    WIDE_CODE,
    Engine,
    LabelJob,
    ScratchCode,
    _categories,
    scratch_code,
)
from pipeline.engine.runner import ThreadedRunner


def _engine(block: int = 8, max_bytes: int = 1 << 20) -> Engine:
    return Engine(ThreadedRunner(1), block=block, max_block_bytes=max_bytes)


@pytest.mark.parametrize("code", [WIDE_CODE, ScratchCode(np.dtype(np.uint32), 1000, 5)])
def test_codes_round_trip(code: ScratchCode) -> None:
    index = np.arange(1 << code.bits if code.bits < 10 else 1000)
    for number in (0, 3, 17):
        values = code.encode(number, index)
        assert values.dtype == code.dtype
        assert int(values.min()) >= code.base
        got_number, got_index = code.combinations(values)
        assert got_number.tolist() == [number] * index.size
        assert got_index.tolist() == index.tolist()


def test_wide_code_keeps_the_old_values() -> None:
    # 2**63 | block << 24 | index, as scratch files held before uint32 ones existed
    values = WIDE_CODE.encode(5, np.array([0, 7, (1 << 24) - 1]))
    assert values.tolist() == [(1 << 63) | (5 << 24) | i for i in (0, 7, (1 << 24) - 1)]


def test_small_categories_get_uint32_and_large_ones_uint64() -> None:
    shape = (40, 30, 20)
    small = scratch_code(shape, 2, 1, _engine(), "F", 65535)
    assert small.dtype == np.uint32 and small.base == 65536
    # blocks of whole 40x30 planes 8 deep: at most 20 x 15 x 4 = 1200 outputs, in 11 bits
    assert small.bits == 11
    assert scratch_code(shape, 4, 1, _engine(), "F", (1 << 32) - 2) == WIDE_CODE
    # 3 blocks per frame, 2**12 frames: numbers up to 2**25 above 2**31 still fit
    assert scratch_code(shape, 4, 1 << 12, _engine(), "F", 1 << 31).dtype == np.uint32
    # 2**20 frames do not
    assert scratch_code(shape, 4, 1 << 20, _engine(), "F", 1 << 31) == WIDE_CODE


@pytest.mark.parametrize("code", [WIDE_CODE, ScratchCode(np.dtype(np.uint32), 50, 8)])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_categories_map_combinations_through_the_lut(code: ScratchCode, layout: str) -> None:
    rng = np.random.default_rng(1)
    shape = (9, 7, 5)
    plain = rng.integers(0, 50, shape)
    mixed = rng.random(shape) < 0.4
    number = rng.integers(0, 3, shape)
    index = rng.integers(0, 20, shape)
    starts = np.array([0, 20, 40])
    lut = rng.integers(0, 10**6, 60).astype(np.uint32)
    data = np.where(mixed, code.encode(0, np.zeros(1, int))[0], plain).astype(code.dtype)
    for n in range(3):  # each block's combinations
        at = mixed & (number == n)
        data[at] = code.encode(n, index[at])
    expected = np.where(mixed, lut[starts[number] + index], plain)
    if layout == "F":
        data = np.asfortranarray(data)
    elif layout == "strided":
        wide = np.zeros((9, 14, 5), code.dtype)
        wide[:, ::2] = data
        data = wide[:, ::2]
    job = LabelJob(None, "labels.mrc", (starts, lut), None, None, source_code=code)
    got = _categories(data, job)
    assert got.dtype == np.uint32
    assert np.array_equal(got, expected)
