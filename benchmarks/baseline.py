"""Baseline: read an MRC map and write it once as a zarr array, same compressor and chunks.

The floor ``preprocess`` is compared with: the same bounded block reads, the same chunk
encoder, 2 threads, a zarr 2 directory store; no pyramid, no statistics, no zip, no fsync.
With a mask, its labels are written once too, as the uint32 grid level 1 of a lattice stores
(no pyramid, no set tables): the part of a map + mask run that its stored bytes alone cost.
Usage: ``python benchmarks/baseline.py MAP OUT_DIR [MASK]`` (MASK of unsigned labels).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from pipeline.db.writer import DataWriter
from pipeline.engine.passes import LevelJob, run_pass, threaded_engine
from pipeline.inputs.mrc import memory_order, mrc_array, read_mrc_layout
from pipeline.options import Compressor


class DirectorySink:
    """Writes each key as a file below ``root``: a zarr 2 directory store."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        for key, data in items:
            self.put(key, data)

    def put(self, key: str, data: bytes) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)


def main(
    map_path: Path, out: Path, mask: Path | None = None, block: int = 128, chunk: int = 64
) -> None:
    writer = DataWriter(DirectorySink(out / "baseline.zarr"), Compressor.LZ4)
    engine = threaded_engine(os.cpu_count() or 1, block)
    for name, path, dtype in [("volume", map_path, None), ("labels", mask, np.uint32)]:
        if path is None:
            continue
        layout = read_mrc_layout(path, out / "scratch")
        arr = mrc_array(layout)
        if dtype is not None and arr.dtype.kind != "u":
            raise SystemExit(f"{path}: the floor takes unsigned labels (the benchmark's uint16)")
        order = memory_order(layout)
        stored = np.dtype(dtype or arr.dtype)
        target = writer.array(name, arr.shape, stored, (chunk,) * 3, order=order)
        run_pass([LevelJob(arr, target, None, None, measure=False)], engine, order, writer.sink)
    writer.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
