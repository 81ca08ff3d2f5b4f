"""OME-TIFF benchmark (issue 4): peak RSS of ``preprocess`` on a ~2 GiB ``ometiff_image``.

Usage: ``python benchmarks/bench_ometiff.py [--gib 2] [--layout tile|strip|page] [--work DIR]``.
Writes a uint16 Z, C, Y, X OME-TIFF (2 channels, 1024 x 1024 planes, as many Z planes as the
size asks for) plane by plane with tifffile, so generating it stays in bounded memory; runs
``preprocess --mode add`` in a child process; prints wall time, throughput and the child's peak
RSS (target <= 1.5 GiB); deletes the file and the database.

Layouts: ``tile`` (256 x 256 tiles), ``strip`` (64-row strips) or ``page`` (one strip per
plane, tifffile's default for uncompressed data: every region read decodes whole planes).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import measure, preprocess_argv

PLANE = 1024  # Y = X
CHANNELS = 2
TILE = 256
ROWS_PER_STRIP = 64


def _planes(nz: int, seed: int) -> Iterator[np.ndarray]:
    """uint16 planes in Z, C order: a smooth blob per channel plus noise."""
    rng = np.random.default_rng(seed)
    y = np.linspace(-1, 1, PLANE, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, PLANE, dtype=np.float32)[None, :]
    for z in range(nz):
        zz = (2 * z / max(nz - 1, 1) - 1) * 3
        for c in range(CHANNELS):
            blob = np.exp(-((x * 3 + c) ** 2 + (y * 3) ** 2 + zz**2)) * 3000
            noise = rng.integers(0, 200, size=(PLANE, PLANE), dtype=np.uint16)
            yield (blob.astype(np.uint16) + noise).astype(np.uint16)


def _tiles(planes: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    for plane in planes:
        for ty in range(0, PLANE, TILE):
            for tx in range(0, PLANE, TILE):
                yield plane[ty : ty + TILE, tx : tx + TILE]


def write_ometiff(path: Path, gib: float, layout: str, seed: int = 0) -> tuple[int, ...]:
    """A ~``gib`` GiB uint16 ZCYX OME-TIFF written plane by plane; returns its shape."""
    nz = max(1, math.ceil(gib * 2**30 / (CHANNELS * PLANE * PLANE * 2)))
    shape = (nz, CHANNELS, PLANE, PLANE)
    planes = _planes(nz, seed)
    options: dict = {}
    if layout == "tile":
        data: Iterator[np.ndarray] = _tiles(planes)
        options["tile"] = (TILE, TILE)
    else:
        data = planes
        if layout == "strip":
            options["rowsperstrip"] = ROWS_PER_STRIP
    metadata = {
        "axes": "ZCYX",
        "PhysicalSizeX": 0.1,
        "PhysicalSizeY": 0.1,
        "PhysicalSizeZ": 0.2,
        "Channel": {"Name": ["dna", "membrane"]},
    }
    tifffile.imwrite(
        path,
        data=data,
        shape=shape,
        dtype=np.uint16,
        ome=True,
        bigtiff=True,
        photometric="minisblack",
        metadata=metadata,
        **options,
    )
    return shape


def run(gib: float, layout: str, work: Path) -> float:
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"bench_{layout}.ome.tif"
    out = work / "out"
    try:
        shape = write_ometiff(path, gib, layout)
        size = path.stat().st_size
        shutil.rmtree(out, ignore_errors=True)
        m = measure("preprocess", preprocess_argv([(path, "ometiff_image")], out, "bench-ometiff"))
        print(
            f"OME-TIFF {layout}: ZCYX {shape} uint16, {size / 2**30:.2f} GiB: "
            f"wall {m.seconds:.1f} s, {size / 2**20 / m.seconds:.0f} MiB/s, "
            f"peak RSS {m.peak_rss_mib:.0f} MiB (target <= 1536 MiB)"
        )
        return m.peak_rss_mib
    finally:
        path.unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=2.0, help="size of the generated file")
    parser.add_argument("--layout", choices=["tile", "strip", "page"], action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path(__file__).with_name("work"))
    args = parser.parse_args()
    try:
        for layout in args.layout or ["tile"]:
            run(args.gib, layout, args.work)
    finally:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
