"""The issue 12 cases of ``run.py``: start-up, small whole runs and the readers.

Each case measures its figure and its reference in the same run (alternating where both are
commands) and returns table rows ``(case, figure, reference, ratio, target)``:

- ``startup``: ``--version``, ``--help`` and ``preprocess --help`` against
  ``python -c "import numpy"`` (median of ``repeat`` runs each; target <= 3x);
- ``sample``: adding the 64^3 bundled sample (``test-data/generate.py``), whole process
  (target <= 0.6 s; also shown against ``import numpy``, the floor of any run);
- ``batch``: ``batch`` of 50 64^3 maps against a batch of one: seconds per entry after the
  first (target <= 0.1 s);
- ``ometiff``: reading every block of an OME-TIFF channel as a pass does, strip by strip
  (``tiff_segments``) against tifffile's zarr store (the reader before issue 12), MiB/s (target
  >= 2x), and the whole ``preprocess`` run's MiB/s;
- ``omezarr``: peak RSS of ``preprocess`` on ``bench_omezarr.py``'s 2 GiB image (target
  <= 800 MiB).
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from benchmarks.common import measure, preprocess_argv

ROOT = Path(__file__).resolve().parents[1]
Row = tuple[str, str, str, str, str, str]  # case, figure, reference, ratio, target, CPU


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# CPU seconds (user + system) of the last command run by _wall: on a machine shared with other
# work, wall time measures the scheduler as much as the program
LAST_CPU = [0.0]


def _wall(argv: list[str]) -> float:
    cpu = _children_cpu()
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    LAST_CPU[0] = _children_cpu() - cpu
    return time.perf_counter() - t


def _alternating(
    commands: dict[str, list[str]], repeat: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU time of each command, run in turn ``repeat`` times (after one
    warm-up)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():
        _wall(argv)  # bytecode, page cache
    for _ in range(repeat):
        for name, argv in commands.items():
            times[name].append(_wall(argv))
            cpus[name].append(LAST_CPU[0])
    median = statistics.median
    return {n: median(v) for n, v in times.items()}, {n: median(v) for n, v in cpus.items()}


def startup(work: Path, repeat: int) -> list[Row]:
    cli = [sys.executable, "-m", "cli"]
    wall, cpu = _alternating(
        {
            "import numpy": [sys.executable, "-c", "import numpy"],
            "--version": [*cli, "--version"],
            "--help": [*cli, "--help"],
            "preprocess --help": [*cli, "preprocess", "--help"],
        },
        max(repeat, 20),
    )
    floor, cpu_floor = wall["import numpy"], cpu["import numpy"]
    return [
        (
            name,
            f"{wall[name]:.3f} s",
            f"{floor:.3f} s",
            f"{wall[name] / floor:.2f}",
            "<= 3",
            f"{cpu[name]:.3f} s / {cpu[name] / cpu_floor:.2f}",
        )
        for name in ("--version", "--help", "preprocess --help")
    ]


def _sample_argv(work: Path) -> list[str]:
    folder = work / "sample"
    if not (folder / "sample_map.mrc").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "test-data" / "generate.py"), str(folder)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return preprocess_argv([(folder / "sample_map.mrc", "map")], work / "out-sample", "sample")


def sample(work: Path, repeat: int) -> list[Row]:
    argv = _sample_argv(work)
    out = work / "out-sample"
    numpy_argv = [sys.executable, "-c", "import numpy"]
    runs, floor, cpu, cpu_floor = [], [], [], []
    _wall(numpy_argv)
    for _ in range(max(repeat, 5)):
        subprocess.run(["rm", "-rf", str(out)], check=True)
        runs.append(_wall(argv))
        cpu.append(LAST_CPU[0])
        floor.append(_wall(numpy_argv))
        cpu_floor.append(LAST_CPU[0])
    wall, base = statistics.median(runs), statistics.median(floor)
    c, c0 = statistics.median(cpu), statistics.median(cpu_floor)
    ratio = f"{wall / base:.2f}"
    return [
        ("sample add (64^3)", f"{wall:.3f} s", f"{base:.3f} s", ratio, "<= 0.6 s",
         f"{c:.3f} s / {c / c0:.2f}")
    ]  # fmt: skip


def _batch_list(work: Path, n: int) -> Path:
    folder = work / "batch"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        path = folder / f"m{i}.mrc"
        if not path.exists():
            with mrcfile.new(path, overwrite=True) as mrc:
                mrc.set_data(rng.normal(size=(64, 64, 64)).astype(np.float32))
                mrc.voxel_size = 1.0
        entries.append({"entry_id": f"e{i}", "source_db": "b", "inputs": [[path.name, "map"]]})
    listing = folder / f"list{n}.json"
    listing.write_text(json.dumps(entries))
    return listing


def batch(work: Path, repeat: int) -> list[Row]:
    lists = {n: _batch_list(work, n) for n in (1, 50)}
    out = work / "out-batch"

    def argv(n: int) -> list[str]:
        return [
            sys.executable, "-m", "cli", "batch", str(lists[n]),
            "--working-folder", str(out / "wf"), "--db-path", str(out / f"db{n}"),
        ]  # fmt: skip

    one, fifty, cpu1, cpu50 = [], [], [], []
    for _ in range(max(repeat, 1)):
        subprocess.run(["rm", "-rf", str(out)], check=True)
        one.append(_wall(argv(1)))
        cpu1.append(LAST_CPU[0])
        fifty.append(_wall(argv(50)))
        cpu50.append(LAST_CPU[0])
    t1, t50 = statistics.median(one), statistics.median(fifty)
    per = (t50 - t1) / 49
    per_cpu = (statistics.median(cpu50) - statistics.median(cpu1)) / 49
    return [
        ("batch of 50 (per entry)", f"{per:.3f} s", f"{t1:.3f} s (one)", "-", "<= 0.1 s",
         f"{per_cpu:.3f} s")
    ]  # fmt: skip


def _read_all(arr: Any, block: int = 128) -> float:
    """MiB/s reading ``arr`` in the blocks of a pass ([x whole, 128, 128] plus the halo)."""
    nx, ny, nz = arr.shape
    t, n = time.perf_counter(), 0
    for z in range(0, nz, block):
        for y in range(0, ny, block):
            ys = slice(max(0, y - 2), min(ny, y + block + 2))
            zs = slice(max(0, z - 2), min(nz, z + block + 2))
            n += arr[0:nx, ys, zs].nbytes
    return n / 2**20 / (time.perf_counter() - t)


def ometiff(work: Path, repeat: int, gib: float = 0.5) -> list[Row]:
    from benchmarks.bench_ometiff import write_ometiff
    from pipeline.inputs import ometiff as reader

    rows: list[Row] = []
    for layout in ("tile", "strip"):
        path = work / f"ometiff_{layout}.ome.tif"
        if not path.exists():
            write_ometiff(path, gib, layout)
        speeds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(max(repeat, 2)):
            for segments in (True, False):
                reader.SEGMENT_READS = segments
                arr = reader.read_ometiff_image(path, None).volume.frames[0][0]
                speeds[segments].append(_read_all(arr))
        reader.SEGMENT_READS = True
        new, old = statistics.median(speeds[True]), statistics.median(speeds[False])
        rows.append(
            (f"ometiff {layout} read", f"{new:.0f} MiB/s", f"{old:.0f} MiB/s (zarr)",
             f"{new / old:.2f}", ">= 2", "-")
        )  # fmt: skip
        out = work / "out-ometiff"
        subprocess.run(["rm", "-rf", str(out)], check=True)
        m = measure("ometiff", preprocess_argv([(path, "ometiff_image")], out, "o"))
        size = path.stat().st_size / 2**20
        rows.append(
            (f"ometiff {layout} preprocess", f"{size / m.seconds:.0f} MiB/s",
             f"RSS {m.peak_rss_mib:.0f} MiB", "-", "-", f"{size / m.cpu_seconds:.0f} MiB/CPU s")
        )  # fmt: skip
    return rows


def omezarr(work: Path, repeat: int) -> list[Row]:
    from benchmarks.bench_omezarr import write_synthetic_omezarr

    shape = (2, 2, 256, 1024, 1024)
    image = work / "omezarr_256x1024.ome.zarr"
    if not image.exists():
        write_synthetic_omezarr(image, shape)
    out = work / "out-omezarr"
    runs = []
    for _ in range(max(repeat, 1)):
        subprocess.run(["rm", "-rf", str(out)], check=True)
        runs.append(measure("omezarr", preprocess_argv([(image, "omezarr")], out, "z")))
    rss = max(m.peak_rss_mib for m in runs)
    wall = statistics.median(m.seconds for m in runs)
    nbytes = int(np.prod(shape)) * 2
    return [
        ("omezarr 2 GiB peak RSS", f"{rss:.0f} MiB", f"{nbytes / 1e6 / wall:.0f} MB/s", "-",
         "<= 800 MiB", "-")
    ]  # fmt: skip


CASES: dict[str, Callable[[Path, int], list[Row]]] = {
    "startup": startup,
    "sample": sample,
    "batch": batch,
    "ometiff": ometiff,
    "omezarr": omezarr,
}


def print_rows(rows: list[Row]) -> None:
    """The table; the CPU column is the case's CPU time and its ratio to the reference's."""
    print(
        f"| {'case':<28} | {'figure':>12} | {'reference':>20} | ratio | target     "
        f"| {'CPU':>20} |"
    )
    print(f"|{'-' * 30}|{'-' * 14}|{'-' * 22}|-------|------------|{'-' * 22}|")
    for case, figure, reference, ratio, target, cpu in rows:
        print(
            f"| {case:<28} | {figure:>12} | {reference:>20} | {ratio:>5} | {target:<10} "
            f"| {cpu:>20} |"
        )
