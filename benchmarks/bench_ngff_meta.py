"""OME-Zarr metadata step (issue 13): time of ``read_omezarr`` (open the group, parse and check
the NGFF metadata, open level 0 and the labels; no chunk is decoded) on the real samples of
``$CELLSTAR_SHARED_DATA/real/ome_zarr`` and on generated 0.4/0.5 images with labels.

Each case runs in a fresh interpreter that has already imported zarr and pydantic (a
``preprocess`` run imports both before it reads an input), so ``first`` is the first read
including the import of the metadata library (wall and CPU time: the CPU time says more on a
busy machine) and ``warm`` the median of later reads. The
import of ``ome_zarr_models`` alone is timed the same way.

Usage: ``python benchmarks/bench_ngff_meta.py [--repeat 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = (
    "ome-zarr-py_v0.1.zarr",
    "ome-zarr-py_v0.2.zarr",
    "czi_RUN1_tomogram.zarr",
    "ezzarr_plate_ones_mip.zarr/B/03/0",
    "ngio_test_image_czyx_metaonly.zarr",
)

_PROBE = """
import json, statistics, sys, time
import zarr, pydantic  # imported by every preprocess run before the reader
from pipeline.inputs.omezarr import read_omezarr
path, repeat = sys.argv[1], int(sys.argv[2])
start, cpu = time.perf_counter(), time.process_time()
read_omezarr(path, None, None)
first, first_cpu = time.perf_counter() - start, time.process_time() - cpu
times = []
for _ in range(repeat):
    start = time.perf_counter()
    read_omezarr(path, None, None)
    times.append(time.perf_counter() - start)
print(json.dumps({"first": first, "first_cpu": first_cpu, "warm": statistics.median(times)}))
"""

_IMPORT = """
import json, time
import zarr, pydantic
start, cpu = time.perf_counter(), time.process_time()
import ome_zarr_models.v04.multiscales, ome_zarr_models.v05.multiscales
print(json.dumps({"import": time.perf_counter() - start, "cpu": time.process_time() - cpu}))
"""


def _generated(folder: Path) -> list[Path]:
    """A 0.4 and a 0.5 image (t, c, z, y, x) with one label image each (written by ome-zarr)."""
    import numpy as np
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_labels

    out = []
    for fmt in (FormatV04(), FormatV05()):
        path = folder / f"gen_{fmt.version}.zarr"
        group = zarr.open_group(path, mode="w", zarr_format=fmt.zarr_format)
        units = {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
        scale = {"t": 1.0, "c": 1.0, "z": 0.5, "y": 0.25, "x": 0.25}
        write_image(
            np.zeros((2, 2, 4, 8, 8), np.uint8), group, fmt=fmt, axes="tczyx",
            scale=scale, axes_units=units, scale_factors=[2],
        )
        write_labels(
            np.zeros((4, 8, 8), np.uint8), group, name="cells", scaler=None, fmt=fmt,
            axes="zyx", scale_factors=[],
            label_metadata={"colors": [{"label-value": 1, "rgba": [255, 0, 0, 255]}]},
        )
        out.append(path)
    return out


def _run(code: str, *args: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    shared = Path(os.environ.get("CELLSTAR_SHARED_DATA", ROOT.parent / "shared" / "test-data"))
    real = shared / "real" / "ome_zarr"
    with tempfile.TemporaryDirectory() as tmp:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cases = [real / name for name in REAL if (real / name).exists()]
            cases += _generated(Path(tmp))
        print(f"{'input':40} {'first ms':>9} {'(cpu ms)':>9} {'warm ms':>8}")
        for path in cases:
            t = _run(_PROBE, str(path), str(args.repeat))
            name = str(path.relative_to(real)) if path.is_relative_to(real) else path.name
            cpu = t["first_cpu"] * 1e3
            print(f"{name:40} {t['first'] * 1e3:9.1f} {cpu:9.1f} {t['warm'] * 1e3:8.2f}")
        try:
            t = _run(_IMPORT)
            wall, cpu = t["import"] * 1e3, t["cpu"] * 1e3
            print(f"import ome_zarr_models after zarr, pydantic: {wall:.0f} ms ({cpu:.0f} ms cpu)")
        except subprocess.CalledProcessError:
            print("ome_zarr_models not installed")


if __name__ == "__main__":
    main()
