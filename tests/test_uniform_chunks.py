"""Lattice grids encode chunks of one value once: the same keys and bytes as chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.build.lattices import UniformChunkTarget
from pipeline.db.writer import ArrayTarget, compressor_codec
from pipeline.options import Compressor


@pytest.mark.parametrize("order", ["C", "F"])
def test_uniform_chunks_give_the_plain_bytes(order):
    shape, chunks = (20, 16, 11), (8, 8, 8)
    grid = np.zeros(shape, np.uint16)
    grid[8:16, 8:16, :8] = 7  # a whole chunk of 7
    grid[0:8, 0:8, 0:3] = 3  # a mixed chunk
    grid[16:, :, 8:] = 5  # partial edge chunks of one value (stored padded with 0)
    grid = np.asfortranarray(grid) if order == "F" else grid
    codec = compressor_codec(Compressor.LZ4)
    plain = ArrayTarget("g/1", shape, chunks, np.dtype(np.uint32), codec, order)
    cached = UniformChunkTarget(plain)
    expected = plain.encode(grid, (0, 0, 0))
    assert cached.encode(grid, (0, 0, 0)) == expected
    assert cached.encode(grid, (0, 0, 0)) == expected  # from the cache the second time
    assert set(cached.cache) == {0, 7}  # whole chunks only
    part = grid[8:16, 8:16, :]
    assert cached.encode(part, (8, 8, 0)) == plain.encode(part, (8, 8, 0))
