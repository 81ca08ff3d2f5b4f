"""Baseline: read an MRC map and write it once as a zarr array, same compressor and chunks.

The floor ``preprocess`` is compared with: the same bounded block reads, the same chunk
encoder, 2 threads, a zarr 2 directory store; no pyramid, no statistics, no zip, no fsync.
Usage: ``python benchmarks/baseline.py MAP OUT_DIR``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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


def main(map_path: Path, out: Path, block: int = 128, chunk: int = 64) -> None:
    layout = read_mrc_layout(map_path, out / "scratch")
    arr = mrc_array(layout)
    order = memory_order(layout)
    writer = DataWriter(DirectorySink(out / "baseline.zarr"), Compressor.LZ4)
    target = writer.array("volume", arr.shape, arr.dtype, (chunk,) * 3, order=order)
    engine = threaded_engine(os.cpu_count() or 1, block)
    run_pass([LevelJob(arr, target, None, None, measure=False)], engine, order, writer.sink)
    writer.finish()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
