"""Map-only benchmark (issue: volume pipeline): preprocess --mode add vs. read-and-write-once.

Usage: ``python benchmarks/bench_volume.py --size 512 [--size 1024] [--work DIR]``.
Generates an N^3 float32 map (seeded), runs the baseline and ``preprocess`` in child processes
and prints wall time, peak RSS and the time ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import Measurement, measure, preprocess_argv, write_synthetic_map


def _median(values: list[float]) -> float:
    return statistics.median(values)


def run(size: int, work: Path, repeat: int) -> dict[str, float]:
    """Baseline and preprocess alternately ``repeat`` times; medians and their ratio."""
    work.mkdir(parents=True, exist_ok=True)
    map_path = work / f"bench_{size}.map"
    if not map_path.exists():
        write_synthetic_map(map_path, (size, size, size))
    out = work / "out"
    runs: dict[str, list[Measurement]] = {"baseline": [], "preprocess": []}
    for _ in range(repeat):
        shutil.rmtree(out, ignore_errors=True)
        runs["baseline"].append(
            measure(
                "baseline",
                [
                    sys.executable,
                    str(Path(__file__).with_name("baseline.py")),
                    str(map_path),
                    str(out),
                ],
            )
        )
        shutil.rmtree(out, ignore_errors=True)
        runs["preprocess"].append(
            measure(
                "preprocess",
                preprocess_argv([(map_path, "map")], out, f"bench-{size}"),
            )
        )
    shutil.rmtree(out, ignore_errors=True)
    gib = size**3 * 4 / 2**30
    print(f"N={size}: {size}^3 float32 map, {gib:.2f} GiB, median of {repeat} alternating runs")
    medians = {}
    for label, ms in runs.items():
        secs = _median([m.seconds for m in ms])
        rss = max(m.peak_rss_mib for m in ms)
        medians[label] = secs
        print(
            f"  {label:<11} wall {secs:7.2f} s  {gib * 1024 / secs:7.0f} MiB/s  "
            f"peak RSS {rss:7.0f} MiB  (runs: {', '.join(f'{m.seconds:.2f}' for m in ms)})"
        )
        medians[f"{label}_rss"] = rss
    ratio = medians["preprocess"] / medians["baseline"]
    print(f"  ratio preprocess/baseline time {ratio:.2f} (target <= 1.6)")
    return {"ratio": ratio, "rss": medians["preprocess_rss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path(__file__).with_name("work"))
    parser.add_argument("--keep", action="store_true", help="keep the generated maps")
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs per case")
    args = parser.parse_args()
    for size in args.size or [512, 1024]:
        run(size, args.work, args.repeat)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
