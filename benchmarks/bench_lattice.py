"""Map + mask benchmark (issue: lattice segmentations): a 512^3 float32 map plus a 512^3 uint16
mask with ~50 labels added in one run, against the map alone, measured in the same run.

Usage: ``python benchmarks/bench_lattice.py [--size 512] [--labels 50] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    Measurement,
    measure,
    preprocess_argv,
    write_synthetic_map,
    write_synthetic_mask,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--labels", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(__file__).with_name("work"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    n = args.size
    args.work.mkdir(parents=True, exist_ok=True)
    map_path = args.work / f"bench_{n}.map"
    mask_path = args.work / f"bench_{n}_mask_{args.labels}.mrc"
    if not map_path.exists():
        write_synthetic_map(map_path, (n, n, n))
    if not mask_path.exists():
        write_synthetic_mask(mask_path, (n, n, n), args.labels)
    out = args.work / "out"
    runs: dict[str, list[Measurement]] = {"map only": [], "map + mask": []}
    for _ in range(args.repeat):
        for label, inputs in (
            ("map only", [(map_path, "map")]),
            ("map + mask", [(map_path, "map"), (mask_path, "mask")]),
        ):
            shutil.rmtree(out, ignore_errors=True)
            runs[label].append(measure(label, preprocess_argv(inputs, out, "b")))
    shutil.rmtree(out, ignore_errors=True)
    gib = n**3 * (4 + 2) / 2**30
    print(
        f"N={n}: float32 map + uint16 mask ({args.labels} labels), {gib:.2f} GiB of input, "
        f"median of {args.repeat} alternating runs"
    )
    medians = {}
    for label, ms in runs.items():
        medians[label] = statistics.median(m.seconds for m in ms)
        rss = max(m.peak_rss_mib for m in ms)
        print(
            f"  {label:<11} wall {medians[label]:7.2f} s  peak RSS {rss:7.0f} MiB  "
            f"(runs: {', '.join(f'{m.seconds:.2f}' for m in ms)})"
        )
    ratio = medians["map + mask"] / medians["map only"]
    print(f"  ratio (map + mask)/(map only) time {ratio:.2f} (target <= 2.0)")
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
