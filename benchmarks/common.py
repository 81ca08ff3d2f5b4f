"""Shared pieces of the benchmarks: seeded synthetic maps and a wall-time/peak-RSS runner."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

__all__ = [
    "Measurement",
    "measure",
    "preprocess_argv",
    "write_synthetic_map",
    "write_synthetic_mask",
]


def write_synthetic_map(path: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """A float32 MRC map (z, y, x slabs written one at a time): smooth blobs plus noise,
    so that compression behaves as on real density (neither constant nor pure noise)."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    y = np.linspace(-1, 1, ny, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, nx, dtype=np.float32)[None, :]
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        mrc.voxel_size = 2.0
        slab = max(1, 2**26 // (ny * nx * 4))
        for z0 in range(0, nz, slab):
            z1 = min(nz, z0 + slab)
            z = np.linspace(-1, 1, nz, dtype=np.float32)[z0:z1, None, None]
            blob = np.exp(-((x * 3) ** 2 + (y * 3) ** 2 + (z * 3) ** 2)) * 4
            noise = rng.normal(0, 0.3, size=(z1 - z0, ny, nx)).astype(np.float32)
            mrc.data[z0:z1] = np.round(blob + noise, 3)
        mrc.update_header_stats()


@dataclass(frozen=True)
class Measurement:
    label: str
    seconds: float
    peak_rss_mib: float


def measure(label: str, argv: list[str]) -> Measurement:
    """Run ``argv`` in a child process; wall time and that child's peak RSS (ru_maxrss)."""
    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True)\n"
        "dt = time.perf_counter() - t\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(f'{dt} {r}')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *argv],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    seconds, rss_kib = out.stdout.strip().splitlines()[-1].split()
    return Measurement(label, float(seconds), int(rss_kib) / 1024)


def own_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def now() -> float:
    return time.perf_counter()


def write_synthetic_mask(
    path: Path, shape: tuple[int, int, int], labels: int, seed: int = 1
) -> None:
    """A uint16 label map (MRC mode 6): ~``labels`` spherical organelles on background 0,
    written slab by slab (the same voxel size as :func:`write_synthetic_map`)."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(labels, 3)) * (nz, ny, nx)
    radii = rng.uniform(0.04, 0.12, size=labels) * min(shape)
    y = np.arange(ny, dtype=np.float32)[:, None]
    x = np.arange(nx, dtype=np.float32)[None, :]
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=6, overwrite=True) as mrc:
        mrc.voxel_size = 2.0
        for z in range(nz):
            plane = np.zeros((ny, nx), np.uint16)
            for value, ((cz, cy, cx), r) in enumerate(zip(centres, radii, strict=True), start=1):
                dz2 = (z - cz) ** 2
                if dz2 > r * r:
                    continue
                inside = (y - cy) ** 2 + (x - cx) ** 2 + dz2 <= r * r
                plane[inside] = value
            mrc.data[z] = plane


def preprocess_argv(inputs: list[tuple[Path, str]], out: Path, entry: str) -> list[str]:
    """``python -m cli preprocess --mode add`` of ``inputs`` into ``out/db``."""
    argv = [sys.executable, "-m", "cli", "preprocess", "--mode", "add"]
    for path, kind in inputs:
        argv += ["--input-path", str(path), "--input-kind", kind]
    names = ["--entry-id", entry, "--source-db", "bench", "--source-db-id", entry]
    names += ["--source-db-name", "bench", "--working-folder", str(out / "wf")]
    return [*argv, *names, "--db-path", str(out / "db")]
