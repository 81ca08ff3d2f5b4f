"""Baseline: read an MRC map and write it once as a zarr array, same compressor and chunks.

This is the floor ``preprocess`` is compared with: the same bounded reader, the same chunk
encoder and 2 threads, writing a zarr 2 directory store; no pyramid, no statistics, no zip.
Usage: ``python benchmarks/baseline.py MAP OUT_DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from pipeline.chunks import aligned_or_rechunked
from pipeline.db.sinks import DirectorySink
from pipeline.db.writer import ArrayTarget, DataWriter
from pipeline.inputs.mrc import memory_order, mrc_xyz_array, read_mrc_layout
from pipeline.options import Compressor


def _write(block: np.ndarray, target: ArrayTarget, block_info: dict | None = None) -> np.ndarray:
    origin = tuple(a for a, _ in block_info[0]["array-location"])  # type: ignore[index]
    target.write_block(block, origin)
    return np.zeros((1, 1, 1), np.uint8)


def main(map_path: Path, out: Path, block: int = 128, chunk: int = 64) -> None:
    layout = read_mrc_layout(map_path, out / "scratch")
    arr = mrc_xyz_array(layout, block)
    arr = arr.rechunk(tuple(aligned_or_rechunked(c, block) for c in arr.chunks))
    writer = DataWriter(DirectorySink(out / "baseline.zarr"), Compressor.LZ4)
    target = writer.array("volume", arr.shape, arr.dtype, (chunk,) * 3, order=memory_order(layout))
    done = da.map_blocks(
        _write,
        arr,
        target=target,
        dtype=np.uint8,
        chunks=tuple(tuple(1 for _ in c) for c in arr.chunks),
    )
    dask.compute(done, scheduler="threads", num_workers=os.cpu_count())
    writer.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
