"""Writing lattice segmentations: the category pyramid of DESIGN 7.2 over the entry's levels.

Per lattice, one pass per level (the volume's loop, :mod:`pipeline.build.levels`): blocks of
level r are stored and stepped to level 2r in parallel; their new label combinations are merged
here, in block order, into the lattice's :class:`SetTable`, which decides the final category
ids deterministically.
"""

from __future__ import annotations

import itertools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.algorithms.labels import SetTable
from pipeline.algorithms.levels import Level, LevelPlan
from pipeline.algorithms.set_table import sorted_unique
from pipeline.build.levels import LevelPass, run_levels
from pipeline.db.layout import lattice_key
from pipeline.db.writer import ArrayTarget, DataWriter
from pipeline.db.zarr2 import chunk_key
from pipeline.engine.passes import (
    WIDE_CODE,
    Engine,
    LabelJob,
    ScratchCode,
    run_label_pass,
    scratch_code,
)
from pipeline.errors import GridMismatchError, InputFormatError
from pipeline.memory import heaps_kept
from pipeline.model import LabelSource, Vec3

__all__ = [
    "LatticeResult",
    "RepeatedTarget",
    "UniformChunkTarget",
    "check_lattice_grid",
    "check_lattice_transform",
    "write_lattice",
]

_SENTINEL = np.iinfo(np.uint32).max


@dataclass(frozen=True, slots=True)
class LatticeResult:
    lattice_id: str
    frames: int
    segment_ids: tuple[int, ...]  # segments present at level 1, over all frames
    # segment id -> the frames it is present in (level 1)
    segment_frames: dict[int, tuple[int, ...]] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class RepeatedTarget:
    """Several arrays of one shape, chunking and codec that hold the same data (a one-frame
    lattice stored at every frame of the volume): each block is encoded once and its chunks
    stored under every array's keys."""

    targets: tuple[ArrayTarget | UniformChunkTarget, ...]

    @property
    def path(self) -> str:
        return self.targets[0].path

    @property
    def dtype(self) -> np.dtype:
        return self.targets[0].dtype

    def encode(self, block: np.ndarray, origin: tuple[int, ...]) -> list[tuple[str, bytes]]:
        first = self.targets[0]
        chunks = first.encode(block, origin)
        return [
            (target.path + key[len(first.path) :], data)
            for target in self.targets
            for key, data in chunks
        ]


_UNIFORM_CACHE = 256  # distinct values whose one-value chunk a target keeps


@dataclass(frozen=True, slots=True, eq=False)
class UniformChunkTarget:
    """An array target that encodes a whole chunk holding one value once per value and reuses
    its bytes (a mask of large regions has many chunks of background or of one region's
    inside): the same keys and bytes in the same order, the compressor run once."""

    target: ArrayTarget
    cache: dict[int, bytes] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.target.path

    @property
    def dtype(self) -> np.dtype:
        return self.target.dtype

    def encode(self, block: np.ndarray, origin: tuple[int, ...]) -> list[tuple[str, bytes]]:
        chunks = self.target.chunks
        out: list[tuple[str, bytes]] = []
        ranges = [range(0, n, c) for n, c in zip(block.shape, chunks, strict=True)]
        for starts in itertools.product(*ranges):  # the order of encode_block
            piece = block[tuple(slice(s, s + c) for s, c in zip(starts, chunks, strict=True))]
            at = tuple(o + s for o, s in zip(origin, starts, strict=True))
            value = int(piece.min()) if piece.shape == chunks and piece.size else None
            if value is None or value != int(piece.max()):
                out.extend(self.target.encode(piece, at))
                continue
            data = self.cache.get(value)
            if data is None:
                ((_, data),) = self.target.encode(piece, at)
                if len(self.cache) < _UNIFORM_CACHE:
                    self.cache[value] = data
            index = tuple(a // c for a, c in zip(at, chunks, strict=True))
            out.append((chunk_key(self.target.path, index), data))
        return out


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
    if labels.transform is not None and origin is not None:
        check_lattice_transform(labels, voxel_size, origin, volume_path)
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


def _short(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def check_lattice_transform(
    labels: LabelSource, voxel_size: Vec3, origin: Vec3, volume_path: Path
) -> None:
    """A lattice with its own index -> Angstrom transform (SFF) must put every sample within
    half a volume voxel of the volume's sample of the same index (checked at the grid's
    corners, where an affine map strays most), else an error naming both geometries."""
    assert labels.transform is not None
    matrix = np.asarray(labels.transform, dtype=np.float64)
    ends = [(0, n - 1) for n in labels.shape]
    corners = np.array(list(itertools.product(*ends)), dtype=np.float64)
    theirs = corners @ matrix[:, :3].T + matrix[:, 3]
    voxel = np.asarray(voxel_size, dtype=np.float64)
    ours = corners * voxel + np.asarray(origin, dtype=np.float64)
    off = float(np.max(np.abs(theirs - ours) / voxel))
    if off > 0.5:
        lattice_voxel = np.sqrt((matrix[:, :3] ** 2).sum(axis=0))
        raise GridMismatchError(
            f"lattice {labels.lattice_id}: its {labels.transform_name or 'transform'} gives "
            f"voxel size {_short(lattice_voxel)} A and origin {_short(matrix[:, 3])} A, but the "
            f"volume of {volume_path} has voxel size {_short(voxel_size)} A and origin "
            f"{_short(origin)} A (samples up to {off:.1f} voxels apart; the lattice must lie "
            "on the volume's grid within half a voxel)",
            labels.path,
        )


def _lut(
    table: SetTable, blocks: list[tuple[int, np.ndarray, tuple[np.ndarray, ...]]]
) -> tuple[np.ndarray, np.ndarray]:
    """Scratch values of the blocks' combinations -> category ids, as ``(starts, values)``:
    combination ``index`` of block ``number`` becomes ``values[starts[number] + index]``.

    New unions get their ids in the sorted order of the distinct combinations of the whole
    level (as tuples of category ids), not in block order, so the ids do not depend on how the
    level was cut into blocks (runs with other block sizes store the same arrays)."""
    numbers = [number for number, _, _ in blocks]
    sizes = np.zeros(max(numbers, default=0) + 1, np.int64)
    for number, _present, combos in blocks:  # (a block's parts: rows of one width each)
        sizes[number] = sum(part.shape[0] for part in combos)
    starts = np.cumsum(sizes) - sizes
    ordered = sorted(blocks, key=lambda b: b[0])
    parts = [part for _, _, combos in ordered for part in combos if part.size]
    if not parts:
        return starts, np.zeros(0, np.uint32)
    # a row of one category keeps it; new unions numbered in the order of tuples (a shorter
    # row before the longer rows it starts). The merge's temporaries of a few MiB each are
    # served from the heaps meanwhile (if the whole lattice's are not already): as fresh maps
    # each would cost its pages again.
    with heaps_kept():
        return starts, table.level_ids(parts)


_REMEMBERED = 256 * 2**20  # bytes of encoded set tables kept for the next level


def _remember(
    tables: dict[int, tuple[np.ndarray, bytes]], frame: int, present: np.ndarray, payload: bytes
) -> None:
    """Keep a frame's last stored set table (its categories and bytes) while all frames' fit in
    ``_REMEMBERED``."""
    tables.pop(frame, None)
    if sum(len(b) for _, b in tables.values()) + len(payload) <= _REMEMBERED:
        tables[frame] = (present, payload)


def write_lattice(
    writer: DataWriter,
    labels: LabelSource,
    plan: LevelPlan,
    scratch: Path,
    chunk: int,
    engine: Engine,
    repeat: int = 1,
) -> LatticeResult:
    """Store every planned level of every frame of a lattice with its set tables.

    ``repeat``: a one-frame lattice is stored at frames ``0 .. repeat - 1`` (the volume's
    frames), computed once. Its passes and merges make many temporaries of a few MiB, block
    after block: a caller may keep the heaps around it (``memory.heaps_kept``; ``preprocess``
    does unless ``--max-memory`` is given), so that freed memory is used again."""
    if repeat > 1 and len(labels.frames) != 1:
        raise ValueError("only a one-frame lattice can be repeated over frames")
    table = SetTable()
    order = labels.memory_order
    frames = len(labels.frames)
    luts: list[tuple[np.ndarray, np.ndarray] | None] = [None] * frames
    level1: set[int] = set()
    occurs: dict[int, list[int]] = {}
    segment_of = {s.value if s.value is not None else s.id: s.id for s in labels.segments}
    codes: dict[int, ScratchCode] = {}  # how the scratch of each level holds combinations
    tables: dict[int, tuple[np.ndarray, bytes]] = {}  # frame -> last stored level's table

    def scratch_dtype(level: Level, below: Level) -> np.dtype:
        kinds = {np.dtype(f.dtype) for f in labels.frames}
        if level.ratio > 1:  # categories: up to the table's largest id
            itemsize = codes[level.ratio].dtype.itemsize
            code = scratch_code(level.shape, itemsize, frames, engine, order, table.top)
        elif len(kinds) > 1:  # frames of several dtypes: several block grids
            code = WIDE_CODE
        else:  # labels: up to their dtype's largest value
            (kind,) = kinds
            small = kind.kind in "ui" and kind.itemsize <= 2
            top = (1 << 8 * kind.itemsize) - 1 if small else _SENTINEL
            code = scratch_code(level.shape, kind.itemsize, frames, engine, order, top)
        codes[below.ratio] = code
        return code.dtype

    def one_pass(step: LevelPass[int]) -> None:
        lv = step.level
        jobs = []
        for t in range(frames):
            target = None
            if lv.stored:
                copies = [
                    UniformChunkTarget(
                        writer.array(
                            lattice_key(labels.lattice_id, lv.ratio, u, "grid"),
                            lv.shape,
                            np.dtype(np.uint32),
                            (chunk,) * 3,
                            order=order,
                        )
                    )
                    for u in ([t] if repeat == 1 else range(repeat))
                ]
                target = copies[0]
                if len(copies) > 1:
                    target = RepeatedTarget(tuple(copies))
            next_level = step.next_levels[t]
            jobs.append(
                LabelJob(
                    step.sources[t],
                    str(labels.path),
                    luts[t],
                    target,
                    next_level,
                    source_code=codes.get(lv.ratio),
                    next_code=WIDE_CODE if step.below is None else codes[step.below.ratio],
                )
            )
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
            for t, present in enumerate(presents):
                table.add_labels(present, segment_of)
                ids = {segment_of.get(v, v) for v in present.tolist()}
                level1.update(ids)
                for u in [t] if repeat == 1 else range(repeat):
                    for segment in ids:
                        occurs.setdefault(segment, []).append(u)
        for t, (job, per_block) in enumerate(zip(jobs, results, strict=True)):
            present = presents[t]
            # the set table of level r is encoded in a thread while the unions of level 2r
            # are merged (the table is read here, before they add sets); stored in the same
            # order. The last level's table has nothing beside it: it may use two threads.
            threads = 1 if job.next_level is not None else 2
            # a level with the categories of the frame's last stored one has its table too
            # (sets never change once they have an id): those bytes again
            same = tables.get(t)
            same = same[1] if same is not None and np.array_equal(same[0], present) else None
            with ThreadPoolExecutor(1) as pool:
                encoded = None
                if lv.stored and same is None:
                    encoded = pool.submit(table.table_encoder(present, threads))
                if job.next_level is not None:
                    try:
                        luts[t] = _lut(table, per_block)
                    except OverflowError as exc:
                        raise InputFormatError(str(exc), labels.path) from exc
                if lv.stored:
                    payload = same if encoded is None else encoded.result()
                    _remember(tables, t, present, payload)
                    for u in [t] if repeat == 1 else range(repeat):
                        key = lattice_key(labels.lattice_id, lv.ratio, u, "set_table")
                        writer.encoded_object_array(key, payload)

    run_levels(
        plan,
        dict(enumerate(labels.frames)),
        one_pass,
        scratch=scratch,
        scratch_name=lambda t, below: f"lattice-{labels.lattice_id}-{below.ratio}-{t}.raw",
        dtype=scratch_dtype,
        order=order,
    )
    return LatticeResult(
        labels.lattice_id,
        frames * repeat,
        tuple(sorted(level1)),
        {segment: tuple(ts) for segment, ts in occurs.items()},
    )
