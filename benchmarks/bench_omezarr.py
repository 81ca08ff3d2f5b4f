"""OME-Zarr benchmark (issue 4): peak RSS and throughput of ``preprocess`` on a generated
multi-frame, multi-channel OME-Zarr image (default 2 GiB: t=2, c=2, 256 x 1024 x 1024 uint16).

The image is written by ome-zarr (NGFF 0.4, zarr v2, chunks 1 x 1 x 64 x 256 x 256, one
dataset) from a lazily generated dask array, so writing it is bounded in memory too.

Usage: ``python benchmarks/bench_omezarr.py [--size 1024] [--depth 256] [--repeat 1]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dask.array as da
import numpy as np
import zarr

from benchmarks.common import Measurement, measure, preprocess_argv

CHUNKS = (1, 1, 64, 256, 256)


def _block(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    """Smooth structure plus seeded noise (compresses like real light microscopy)."""
    assert block_info is not None
    (t0, _), (c0, _), (z0, z1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    rng = np.random.default_rng([t0, c0, z0, y0, x0])
    z = np.arange(z0, z1, dtype=np.float32)[:, None, None]
    y = np.arange(y0, y1, dtype=np.float32)[None, :, None]
    x = np.arange(x0, x1, dtype=np.float32)[None, None, :]
    wave = 1000 + 400 * np.sin(x / 37 + c0) * np.cos(y / 53 + t0) * np.sin(z / 29)
    noise = rng.normal(0, 30, size=wave.shape)
    return np.clip(wave + noise, 0, 65535).astype(np.uint16)[None, None]


def write_synthetic_omezarr(path: Path, shape: tuple[int, ...]) -> None:
    with warnings.catch_warnings():  # ome_zarr.writer's deprecated Scaler default
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_image
    data = da.zeros(shape, dtype=np.uint16, chunks=CHUNKS).map_blocks(_block, dtype=np.uint16)
    group = zarr.open_group(path, mode="w", zarr_format=2)
    write_image(
        data,
        group,
        fmt=FormatV04(),
        axes=["t", "c", "z", "y", "x"],
        scale={"t": 1.0, "c": 1.0, "z": 0.5, "y": 0.2, "x": 0.2},
        axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        scale_factors=[],
        storage_options={"chunks": CHUNKS},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1024, help="y and x")
    parser.add_argument("--depth", type=int, default=256, help="z")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path(__file__).with_name("work"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    shape = (2, 2, args.depth, args.size, args.size)
    args.work.mkdir(parents=True, exist_ok=True)
    image = args.work / f"bench_{args.depth}x{args.size}.ome.zarr"
    if not image.exists():
        write_synthetic_omezarr(image, shape)
    out = args.work / "out"
    runs: list[Measurement] = []
    for _ in range(args.repeat):
        shutil.rmtree(out, ignore_errors=True)
        runs.append(measure("omezarr", preprocess_argv([(image, "omezarr")], out, "b")))
    shutil.rmtree(out, ignore_errors=True)
    nbytes = int(np.prod(shape)) * 2
    wall = statistics.median(m.seconds for m in runs)
    rss = max(m.peak_rss_mib for m in runs)
    print(
        f"OME-Zarr t,c,z,y,x = {shape} uint16, {nbytes / 2**30:.2f} GiB: "
        f"wall {wall:.1f} s ({nbytes / 1e6 / wall:.0f} MB/s), peak RSS {rss:.0f} MiB "
        f"(target <= 1536 MiB; runs: {', '.join(f'{m.seconds:.1f}' for m in runs)})"
    )
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
