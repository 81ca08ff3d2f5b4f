"""Writing lattice segmentations: the category pyramid of DESIGN 7.2 over the entry's levels.

Per lattice, one pass per level (like the volume's): blocks of level r are stored and stepped
to level 2r in parallel; their new label combinations are merged here, in block order, into the
lattice's :class:`SetTable`, which decides the final category ids deterministically.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.algorithms.labels import SetTable
from pipeline.algorithms.levels import LevelPlan
from pipeline.algorithms.set_table import lexsort_unique_rows, sorted_unique
from pipeline.arrays import create_scratch, remove_scratch
from pipeline.db.writer import DataWriter
from pipeline.errors import GridMismatchError, InputFormatError
from pipeline.level_pass import Engine, LabelJob, run_label_pass
from pipeline.model import LabelSource, Vec3

__all__ = ["LatticeResult", "check_lattice_grid", "write_lattice"]

_SENTINEL = np.iinfo(np.uint32).max


@dataclass(frozen=True, slots=True)
class LatticeResult:
    lattice_id: str
    frames: int
    segment_ids: tuple[int, ...]  # segments present at level 1, over all frames


def check_lattice_grid(
    labels: LabelSource,
    shape: tuple[int, ...],
    voxel_size: Vec3,
    volume_path: Path,
    origin: Vec3 | None = None,
) -> None:
    """A lattice must lie on the volume's level-1 grid (DESIGN 3.3): same shape, same voxels,
    and, for formats placed in world coordinates, the same first sample (within half a
    voxel)."""
    if tuple(labels.shape) != tuple(shape):
        raise GridMismatchError(
            f"lattice grid {'x'.join(map(str, labels.shape))} does not match the volume grid "
            f"{'x'.join(map(str, shape))} of {volume_path}",
            labels.path,
        )
    if labels.voxel_size is not None and not all(
        math.isclose(a, b, rel_tol=1e-4) for a, b in zip(labels.voxel_size, voxel_size, strict=True)
    ):
        raise GridMismatchError(
            f"voxel size {tuple(labels.voxel_size)} A does not match the volume's "
            f"{tuple(voxel_size)} A of {volume_path}",
            labels.path,
        )
    if labels.placed_by_origin and labels.origin is not None and origin is not None:
        off = [abs(a - b) / v for a, b, v in zip(labels.origin, origin, voxel_size, strict=True)]
        if max(off) > 0.5:
            raise GridMismatchError(
                f"origin {tuple(round(o, 3) for o in labels.origin)} A does not match the "
                f"volume's {tuple(round(o, 3) for o in origin)} A of {volume_path} (the "
                "segmentation would be shifted by "
                f"{', '.join(f'{o:.1f}' for o in off)} voxels)",
                labels.path,
            )


def _lut(
    table: SetTable, blocks: list[tuple[int, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Scratch values of the blocks' combinations -> category ids, as ``(starts, values)``:
    combination ``index`` of block ``number`` becomes ``values[starts[number] + index]``.

    New unions get their ids in the sorted order of the distinct combinations of the whole
    level (as tuples of category ids), not in block order, so the ids do not depend on how the
    level was cut into blocks (runs with other block sizes store the same arrays)."""
    numbers = [number for number, _, _ in blocks]
    sizes = np.zeros(max(numbers, default=0) + 1, np.int64)
    for number, _present, combos in blocks:
        sizes[number] = combos.shape[0]
    starts = np.cumsum(sizes) - sizes
    parts = [combos for number, _, combos in sorted(blocks, key=lambda b: b[0]) if combos.size]
    if not parts:
        return starts, np.zeros(0, np.uint32)
    width = max(p.shape[1] for p in parts)
    rows = np.concatenate(
        [np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=_SENTINEL) for p in parts]
    )
    # in the order of tuples: a shorter row comes before the longer rows it starts
    first, inverse = lexsort_unique_rows(rows, sentinel_first=True)
    distinct = rows[first]
    single = (distinct != _SENTINEL).sum(axis=1) == 1
    ids = np.empty(first.size, np.uint32)
    ids[single] = distinct[single, 0]
    ids[~single] = table.union_ids(distinct[~single])
    return starts, ids[inverse]


def write_lattice(
    writer: DataWriter,
    labels: LabelSource,
    plan: LevelPlan,
    scratch: Path,
    chunk: int,
    engine: Engine,
) -> LatticeResult:
    """Store every planned level of every frame of a lattice with its set tables."""
    table = SetTable()
    order = labels.memory_order
    frames = len(labels.frames)
    sources: list[Any] = list(labels.frames)
    luts: list[tuple[np.ndarray, np.ndarray] | None] = [None] * frames
    level1: set[int] = set()
    segment_of = {s.value if s.value is not None else s.id: s.id for s in labels.segments}

    base = f"lattice_segmentation_data/{labels.lattice_id}"
    for i, lv in enumerate(plan.levels):
        below = plan.levels[i + 1] if i + 1 < len(plan.levels) else None
        jobs = []
        for t in range(frames):
            target = None
            if lv.stored:
                target = writer.array(
                    f"{base}/{lv.ratio}/{t}/grid",
                    lv.shape,
                    np.dtype(np.uint32),
                    (chunk,) * 3,
                    order=order,
                )
            next_level = None
            if below is not None:
                name = f"lattice-{labels.lattice_id}-{below.ratio}-{t}.raw"
                next_level = create_scratch(scratch, name, below.shape, np.dtype(np.uint64), order)
            jobs.append(LabelJob(sources[t], str(labels.path), luts[t], target, next_level))
        results = run_label_pass(
            jobs,
            engine,
            order,
            writer.sink,
            "segmentations",
            f"{labels.lattice_id} level {lv.ratio}",
        )
        presents = [sorted_unique(np.concatenate([p for _, p, _ in b])) for b in results]
        if lv.ratio == 1:  # every frame's labels first: they own their ids before any union
            for present in presents:
                table.add_labels(present, segment_of)
                level1.update(segment_of.get(v, v) for v in present.tolist())
        for t, (job, per_block) in enumerate(zip(jobs, results, strict=True)):
            present = presents[t]
            # the set table of level r is encoded in a thread while the unions of level 2r
            # are merged (it reads only sets that exist already); stored in the same order
            with ThreadPoolExecutor(1) as pool:
                encoded = pool.submit(table.encoded_table, present) if lv.stored else None
                if job.next_level is not None:
                    try:
                        luts[t] = _lut(table, per_block)
                    except OverflowError as exc:
                        raise InputFormatError(str(exc), labels.path) from exc
                if encoded is not None:
                    writer.encoded_object_array(
                        f"{base}/{lv.ratio}/{t}/set_table", encoded.result()
                    )
            if lv.ratio > 1:
                remove_scratch(sources[t])
            if job.next_level is not None:
                sources[t] = job.next_level
    for arr in sources:
        if plan.levels[-1].ratio > 1:
            remove_scratch(arr)
    return LatticeResult(labels.lattice_id, frames, tuple(sorted(level1)))
