"""Write the project's small synthetic sample inputs (run by the README's first command).

- ``generated/sample_map.mrc``: a 64^3 float32 density map, voxel 2 A, origin (-64, -64, -64) A,
  holding two Gaussian blobs: rho(p) = 2 exp(-|p - a|^2 / (2 * 6^2)) + exp(-|p - b|^2 / (2 * 4^2))
  with p in voxel units, a = (20, 32, 32), b = (44, 30, 36).
- ``generated/sample_mask.mrc``: the matching label mask (MRC mode 0) on the same grid:
  1 inside the sphere of radius 12 around a, 2 inside radius 8 around b (2 wins), else 0.

Usage: ``python test-data/generate.py [OUT_DIR]`` (default: test-data/generated).
"""

from __future__ import annotations

import sys
from pathlib import Path

import mrcfile
import numpy as np

SHAPE = (64, 64, 64)  # x, y, z
VOXEL = 2.0
START = -32  # N*START: origin -64 A
CENTRES = ((20.0, 32.0, 32.0), (44.0, 30.0, 36.0))
SIGMAS = (6.0, 4.0)
HEIGHTS = (2.0, 1.0)
RADII = (12.0, 8.0)


def _distance2(centre: tuple[float, float, float]) -> np.ndarray:
    x, y, z = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in SHAPE), indexing="ij")
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2


def density() -> np.ndarray:
    """The analytic density, indexed [x, y, z]."""
    rho = np.zeros(SHAPE)
    for centre, sigma, height in zip(CENTRES, SIGMAS, HEIGHTS, strict=True):
        rho += height * np.exp(-_distance2(centre) / (2 * sigma**2))
    return rho.astype(np.float32)


def labels() -> np.ndarray:
    """The label mask, indexed [x, y, z]."""
    mask = np.zeros(SHAPE, np.int8)
    for value, (centre, radius) in enumerate(zip(CENTRES, RADII, strict=True), start=1):
        mask[_distance2(centre) <= radius**2] = value
    return mask


def _write(path: Path, xyz: np.ndarray) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(xyz.transpose(2, 1, 0)))  # file order z, y, x
        mrc.voxel_size = VOXEL
        mrc.header.nxstart = mrc.header.nystart = mrc.header.nzstart = START


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "sample_map.mrc", density())
    _write(out / "sample_mask.mrc", labels())
    print(f"wrote {out / 'sample_map.mrc'} and {out / 'sample_mask.mrc'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("generated"))
