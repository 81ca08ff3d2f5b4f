"""Shared pieces of the benchmarks: seeded synthetic maps and a wall-time/peak-RSS runner."""

from __future__ import annotations

import contextlib
import os
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
    "write_cells_mask",
    "write_sparse_mask",
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
    cpu_seconds: float = float("nan")  # user + system time of the command and its children


def measure(label: str, argv: list[str], sample: float = 0.05) -> Measurement:
    """Run ``argv`` in a child process: wall time and peak RSS.

    The peak is the larger of the command's own ru_maxrss (reported by a small wrapper
    process, so cases do not mix) and the highest sum of RSS over the command and all its
    descendants, sampled every ``sample`` seconds (so the worker processes of a local
    dask.distributed cluster count too).
    """
    import psutil

    code = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "dt = time.perf_counter() - t\n"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(f'{dt} {u.ru_maxrss} {u.ru_utime + u.ru_stime}')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE, text=True
    )
    wrapper = psutil.Process(proc.pid)
    tree_peak = 0
    while proc.poll() is None:
        total = 0
        with contextlib.suppress(psutil.Error):
            for p in wrapper.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
        tree_peak = max(tree_peak, total)
        time.sleep(sample)
    out = proc.stdout.read() if proc.stdout else ""
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    seconds, rss_kib, cpu = out.strip().splitlines()[-1].split()
    peak = max(tree_peak / 2**20, int(rss_kib) / 1024)
    return Measurement(label, float(seconds), peak, float(cpu))


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


def write_cells_mask(
    path: Path, shape: tuple[int, int, int], labels: int, cell: int = 8, seed: int = 2
) -> None:
    """A uint16 label map of cubic ``cell``-voxel cells, each holding one of ``labels`` random
    labels (1..labels): boundaries everywhere, like instance segmentations of cells."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    cells = rng.integers(1, labels + 1, size=tuple(-(-n // cell) for n in shape), dtype=np.uint16)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=6, overwrite=True) as mrc:
        mrc.voxel_size = 2.0
        for z in range(nz):
            plane = np.repeat(np.repeat(cells[z // cell], cell, axis=0), cell, axis=1)
            mrc.data[z] = plane[:ny, :nx]


def write_sparse_mask(
    path: Path, shape: tuple[int, int, int], labels: int, fraction: float = 0.1, seed: int = 3
) -> None:
    """A uint16 label map with random labels (1..labels) on a random ``fraction`` of the
    voxels and background 0 elsewhere (the worst case: almost every window is mixed)."""
    nz, ny, nx = shape
    rng = np.random.default_rng(seed)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=6, overwrite=True) as mrc:
        mrc.voxel_size = 2.0
        for z in range(nz):
            values = rng.integers(1, labels + 1, size=(ny, nx), dtype=np.uint16)
            mrc.data[z] = np.where(rng.random((ny, nx)) < fraction, values, 0)


def preprocess_argv(inputs: list[tuple[Path, str]], out: Path, entry: str) -> list[str]:
    """``python -m cli preprocess --mode add`` of ``inputs`` into ``out/db``."""
    argv = [sys.executable, "-m", "cli", "preprocess", "--mode", "add"]
    for path, kind in inputs:
        argv += ["--input-path", str(path), "--input-kind", kind]
    names = ["--entry-id", entry, "--source-db", "bench", "--source-db-id", entry]
    names += ["--source-db-name", "bench", "--working-folder", str(out / "wf")]
    return [*argv, *names, "--db-path", str(out / "db")]
