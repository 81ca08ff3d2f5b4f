"""A/B: the same ``preprocess --mode add`` of one map with two source trees, runs alternating.

Usage: ``python benchmarks/ab.py MAP BEFORE_TREE AFTER_TREE [--rounds N] [--baseline]
[--mask MASK]``. Each round runs before, after (and ``baseline.py`` of AFTER_TREE with
``--baseline``) once, in turn, after one warm-up round; prints median wall and CPU (user +
system) of each and their ratios. With ``--mask``, each tree also runs the map with that mask
(``before+mask``, ``after+mask``) and the ratios map+mask / map of each tree are printed too. On
a shared machine, only figures from one such run compare.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _argv(
    name: str, tree: Path, map_path: Path, out: Path, mask: Path | None = None
) -> list[str]:
    if name == "baseline":
        return [sys.executable, str(tree / "benchmarks" / "baseline.py"), str(map_path), str(out)]
    names = ["--entry-id", "ab-ab", "--source-db", "ab", "--source-db-id", "ab"]
    names += ["--source-db-name", "ab", "--working-folder", str(out / "wf")]
    head = [sys.executable, "-m", "cli", "preprocess", "--mode", "add"]
    inputs = ["--input-path", str(map_path), "--input-kind", "map"]
    if mask is not None:
        inputs += ["--input-path", str(mask), "--input-kind", "mask"]
    return [*head, *inputs, *names, "--db-path", str(out / "db")]


def _run(argv: list[str], tree: Path) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=tree, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("map", type=Path)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", action="store_true")
    parser.add_argument("--mask", type=Path, default=None)
    args = parser.parse_args()
    trees = {"before": args.before.absolute(), "after": args.after.absolute()}
    if args.baseline:
        trees["baseline"] = trees["after"]
    if args.mask is not None:
        trees["before+mask"] = trees["before"]
        trees["after+mask"] = trees["after"]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "out"
        os.environ.setdefault("PYTHONPYCACHEPREFIX", str(Path(work) / "pycache"))
        for round_ in range(args.rounds + 1):
            for name, tree in trees.items():
                shutil.rmtree(out, ignore_errors=True)
                mask = args.mask.absolute() if name.endswith("+mask") else None
                measured = _run(_argv(name, tree, args.map.absolute(), out, mask), tree)
                if round_:  # the first round warms caches and bytecode
                    results[name].append(measured)
    med = {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in results.items()
    }
    for name, (wall, cpu) in med.items():
        print(f"{name:11s} wall {wall:.3f} s  CPU {cpu:.3f} s  ({len(results[name])} runs)")
    ref = "baseline" if args.baseline else "before"
    for name in ("before", "after") if args.baseline else ("after",):
        wall, cpu = med[name]
        print(f"{name} / {ref}: wall {wall / med[ref][0]:.2f}, CPU {cpu / med[ref][1]:.2f}")
    if args.mask is not None:
        for name in ("before", "after"):
            (w, c), (w0, c0) = med[name + "+mask"], med[name]
            print(f"{name}: map+mask / map: wall {w / w0:.2f}, CPU {c / c0:.2f}")
        (w, c), (w0, c0) = med["after+mask"], med["before+mask"]
        print(f"after+mask / before+mask: wall {w / w0:.2f}, CPU {c / c0:.2f}")


if __name__ == "__main__":
    main()
