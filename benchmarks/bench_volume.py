"""Map-only benchmark (issue: volume pipeline): preprocess --mode add vs. read-and-write-once.

Usage: ``python benchmarks/bench_volume.py --size 512 [--size 1024] [--work DIR]``.
Generates an N^3 float32 map (seeded), runs the baseline and ``preprocess`` in child processes
and prints wall time, peak RSS and the time ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import measure, write_synthetic_map


def run(size: int, work: Path) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    map_path = work / f"bench_{size}.map"
    if not map_path.exists():
        write_synthetic_map(map_path, (size, size, size))
    shutil.rmtree(work / "out", ignore_errors=True)
    base = measure(
        "baseline",
        [
            sys.executable,
            str(Path(__file__).with_name("baseline.py")),
            str(map_path),
            str(work / "out"),
        ],
    )
    shutil.rmtree(work / "out", ignore_errors=True)
    prep = measure(
        "preprocess",
        [
            sys.executable,
            "-m",
            "cli",
            "preprocess",
            "--mode",
            "add",
            "--input-path",
            str(map_path),
            "--input-kind",
            "map",
            "--entry-id",
            f"bench-{size}",
            "--source-db",
            "bench",
            "--source-db-id",
            f"b{size}",
            "--source-db-name",
            "bench",
            "--working-folder",
            str(work / "out" / "wf"),
            "--db-path",
            str(work / "out" / "db"),
        ],
    )
    shutil.rmtree(work / "out", ignore_errors=True)
    gib = size**3 * 4 / 2**30
    print(f"N={size} input {gib:.2f} GiB")
    for m in (base, prep):
        print(
            f"  {m.label:<11} wall {m.seconds:7.2f} s  {gib * 1024 / m.seconds:7.0f} MiB/s  "
            f"peak RSS {m.peak_rss_mib:7.0f} MiB"
        )
    print(f"  ratio preprocess/baseline time {prep.seconds / base.seconds:.2f} (target <= 1.6)")
    return {"ratio": prep.seconds / base.seconds, "rss": prep.peak_rss_mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path(__file__).with_name("work"))
    parser.add_argument("--keep", action="store_true", help="keep the generated maps")
    args = parser.parse_args()
    for size in args.size or [512, 1024]:
        run(size, args.work)
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
