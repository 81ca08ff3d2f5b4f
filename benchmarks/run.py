"""The benchmark suite: one command, one table.

Usage::

    python benchmarks/run.py [--shape 512 | --shape 2048x2048x1024] [--case map --case map+mask]
                             [--repeat 3] [--labels 50] [--work DIR] [--keep]

Generates a seeded float32 map (smooth blobs plus noise) and a uint16 mask of about ``--labels``
spherical organelles in ``--work`` (deleted afterwards unless ``--keep``), runs every case in a
child process (alternating, ``--repeat`` times; the median wall time and the highest peak RSS of
each case are reported) and prints a table: case, input GiB, wall s, MB/s of input, peak RSS,
and the ratios the issues name, each measured in this one run:

- ``map`` / ``baseline``: preprocess against a read-and-write-once of the same map (the same
  block reads and chunk encoder into one zarr store; no pyramid, statistics, zip or fsync);
- ``map+mask`` / ``map``: a lattice of large regions (``--labels`` spherical organelles;
  target 1.5);
- ``map+cells`` / ``map`` and ``map+sparse`` / ``map``: masks of thousands of small labels
  (target 2.5): ``--small-labels`` random labels in 8x8x8-voxel cells (boundaries everywhere,
  like instance segmentations), and on a random 10% of the voxels (asked for by name: at 512^3
  it stores ~15 M distinct sets, a 0.8 GB entry, and peaks at ~10 GiB);
- ``baseline+cells`` / ``baseline`` and ``baseline+sparse`` / ``baseline``: the floor with the
  mask's labels written once too, as the uint32 grid a lattice stores at level 1 (no pyramid,
  no set tables): what the stored bytes of the finest level alone add to a map + mask run;
- ``map workers=2`` / ``map``: a local dask.distributed cluster against the threaded scheduler;
- ``map max-memory`` shows the peak RSS under ``--max-memory 256MiB``.

Issue 12's cases (``benchmarks/quick.py``; a second table, each figure with its reference
measured in this run): ``startup``, ``sample``, ``batch`` (run by default) and ``ometiff``,
``omezarr`` (asked for by name: they write 0.5 and 2 GiB inputs). The 384^3 map against the
floor is ``--shape 384 --case baseline --case map``.

Children run with bytecode caching on (``PYTHONPYCACHEPREFIX`` in the work folder), as an
installed package does; with ``PYTHONDONTWRITEBYTECODE`` set, every start would compile every
module again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import quick
from benchmarks.common import (
    measure,
    preprocess_argv,
    write_cells_mask,
    write_sparse_mask,
    write_synthetic_map,
    write_synthetic_mask,
)

Argv = Callable[[Path, Path, Path], list[str]]  # (map, mask, out) -> command


def _baseline(map_path: Path, mask: Path, out: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).with_name("baseline.py")), str(map_path), str(out)]


def _baseline_mask(map_path: Path, mask: Path, out: Path) -> list[str]:
    return [*_baseline(map_path, mask, out), str(mask)]


def _map(*extra: str) -> Argv:
    return lambda m, _k, out: [*preprocess_argv([(m, "map")], out, "bench"), *extra]


def _map_mask(m: Path, k: Path, out: Path) -> list[str]:
    return preprocess_argv([(m, "map"), (k, "mask")], out, "bench")


# case -> (command, inputs it reads: "map" and one mask: "mask", "cells" or "sparse")
CASES: dict[str, tuple[Argv, tuple[str, ...]]] = {
    "baseline": (_baseline, ("map",)),
    "baseline+cells": (_baseline_mask, ("map", "cells")),
    "baseline+sparse": (_baseline_mask, ("map", "sparse")),
    "map": (_map(), ("map",)),
    "map+mask": (_map_mask, ("map", "mask")),
    "map+cells": (_map_mask, ("map", "cells")),
    "map+sparse": (_map_mask, ("map", "sparse")),
    "map workers=2": (_map("--workers", "2"), ("map",)),
    "map max-memory": (_map("--max-memory", "256MiB"), ("map",)),
}
RATIOS = [  # (numerator, denominator, target)
    ("map", "baseline", "<= 1.6"),
    ("map+mask", "map", "<= 1.5"),
    ("map+cells", "map", "<= 2.5"),
    ("map+sparse", "map", "<= 2.5"),
    ("map workers=2", "map", "-"),
    ("baseline+cells", "baseline", "-"),
    ("baseline+sparse", "baseline", "-"),
]


def _shape(text: str) -> tuple[int, int, int]:
    """``N`` (a cube) or ``XxYxZ``; returned as the MRC's (z, y, x)."""
    parts = [int(p) for p in text.lower().split("x")]
    x, y, z = parts * 3 if len(parts) == 1 else parts
    return (z, y, x)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", default="512", help="N or XxYxZ (default 512)")
    parser.add_argument(
        "--case",
        action="append",
        choices=[*CASES, *quick.CASES],
        help="default: all but map+sparse, baseline+cells, baseline+sparse, ometiff and omezarr",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--labels", type=int, default=50, help="organelles in 'mask'")
    parser.add_argument(
        "--small-labels", type=int, default=2000, help="labels of 'cells' and 'sparse'"
    )
    parser.add_argument("--work", type=Path, default=Path(__file__).with_name("work"))
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    args = parser.parse_args()
    shape = _shape(args.shape)
    by_name = ("map+sparse", "baseline+cells", "baseline+sparse")
    chosen = args.case or [*(c for c in CASES if c not in by_name), "startup", "sample", "batch"]
    cases = [c for c in chosen if c in CASES]
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(args.work.absolute() / "pycache"))
    quick_rows = []
    for case in chosen:
        if case in quick.CASES:
            quick_rows += quick.CASES[case](args.work, args.repeat)
    if quick_rows:
        quick.print_rows(quick_rows)
        print()
    if not cases:
        return
    name = "x".join(map(str, shape[::-1]))
    files = {
        "map": args.work / f"map_{name}.mrc",
        "mask": args.work / f"mask_{args.labels}_{name}.mrc",
        "cells": args.work / f"cells_{args.small_labels}_{name}.mrc",
        "sparse": args.work / f"sparse_{args.small_labels}_{name}.mrc",
    }
    writers = {
        "map": lambda p: write_synthetic_map(p, shape),
        "mask": lambda p: write_synthetic_mask(p, shape, args.labels),
        "cells": lambda p: write_cells_mask(p, shape, args.small_labels),
        "sparse": lambda p: write_sparse_mask(p, shape, args.small_labels),
    }
    try:
        for kind in dict.fromkeys(i for c in cases for i in CASES[c][1]):
            if not files[kind].exists():
                writers[kind](files[kind])
        voxels = shape[0] * shape[1] * shape[2]
        nbytes = {"map": voxels * 4, "mask": voxels * 2, "cells": voxels * 2, "sparse": voxels * 2}
        out = args.work / "out"
        seconds: dict[str, list[float]] = {c: [] for c in cases}
        cpu: dict[str, list[float]] = {c: [] for c in cases}
        rss: dict[str, float] = dict.fromkeys(cases, 0.0)
        for _ in range(args.repeat):
            for case in cases:
                shutil.rmtree(out, ignore_errors=True)
                inputs = CASES[case][1]
                mask = files[inputs[1]] if len(inputs) > 1 else files["mask"]
                argv = CASES[case][0](files["map"], mask, out)
                m = measure(case, argv)
                print(
                    f"{case}: {m.seconds:.2f} s, CPU {m.cpu_seconds:.2f} s, "
                    f"{m.peak_rss_mib:.0f} MiB",
                    file=sys.stderr,
                )
                seconds[case].append(m.seconds)
                cpu[case].append(m.cpu_seconds)
                rss[case] = max(rss[case], m.peak_rss_mib)
        shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.keep:
            for path in files.values():
                path.unlink(missing_ok=True)
    print(
        f"shape {name} (x*y*z), float32 map + uint16 masks ({args.labels} organelles; "
        f"{args.small_labels} labels in cells / on 10% of the voxels); "
        f"median of {args.repeat} alternating run(s), peak RSS = highest\n"
    )
    print(f"| {'case':<16} | input GiB | wall s  |  MB/s | CPU s   | peak RSS MiB |")
    print(f"|{'-' * 18}|-----------|---------|-------|---------|--------------|")
    wall = {c: statistics.median(v) for c, v in seconds.items()}
    cpus = {c: statistics.median(v) for c, v in cpu.items()}
    for case in cases:
        size = sum(nbytes[i] for i in CASES[case][1])
        print(
            f"| {case:<16} | {size / 2**30:9.2f} | {wall[case]:7.2f} | "
            f"{size / 1e6 / wall[case]:5.0f} | {cpus[case]:7.2f} | {rss[case]:12.0f} |"
        )
    print()
    # CPU time (user + system, children included) ratios too: on a machine shared with other
    # work, wall time measures the scheduler as much as the program
    for top, bottom, target in RATIOS:
        if top in wall and bottom in wall:
            print(
                f"ratio {top} / {bottom}: {wall[top] / wall[bottom]:.2f} wall, "
                f"{cpus[top] / cpus[bottom]:.2f} CPU (target {target})"
            )


if __name__ == "__main__":
    main()
