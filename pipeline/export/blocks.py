"""Block tasks of an export: read a block of a stored level, write it to the output array.

A task reads one output shard's region ``[x, y, z]`` from the entry's data.zip (dequantized
volume voxels, or category ids mapped to label values), turns it to ``z, y, x`` and writes that
whole shard of the output, so no two tasks touch one shard. Tasks run on the runners of
:mod:`pipeline.engine.runner` (threads or dask.distributed workers): a job holds paths and small
tables only, and each process opens the entry once.
"""

from __future__ import annotations

import collections
import functools
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.db.entry import Entry
from pipeline.db.layout import DATA_ZIP, EntryLocation
from pipeline.errors import InputFormatError, PreprocessorError
from pipeline.export.labels import LabelLut, apply_lut

__all__ = [
    "ArraySpec",
    "ExportJob",
    "close_entries",
    "data_stamp",
    "export_block",
    "save_lut",
    "shard_grid",
    "stop_writing",
]


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """Shape ``[x, y, z]`` and dtype of the stored array a job reads (what the runner sizes
    blocks by)."""

    shape: tuple[int, int, int]
    dtype: np.dtype


@dataclass(frozen=True, slots=True, eq=False)
class ExportJob:
    """One stored array (level, frame, channel or lattice) to one output array region."""

    source: ArraySpec
    location: EntryLocation
    level: int
    time: int
    channel: str | None  # volume channel, or None for a lattice
    lattice: str | None
    lut: str | None  # lattices: .npy file of the category id -> label value table
    target: str  # the output array's folder
    index: tuple[int, ...]  # leading (t, c) indices in the output array
    dtype: str  # output dtype
    stamp: tuple[int, int]  # data.zip's (inode, mtime) when the export started


def shard_grid(
    shape: tuple[int, ...], shards: tuple[int, ...]
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(start, stop)`` of every shard of an array, in C order.

    >>> shard_grid((5, 3), (4, 4))
    [((0, 0), (4, 3)), ((4, 0), (5, 3))]
    """
    axes = [
        [(a, min(a + s, n)) for a in range(0, n, s)] for n, s in zip(shape, shards, strict=True)
    ]
    return [
        (tuple(a for a, _ in combo), tuple(b for _, b in combo))
        for combo in itertools.product(*axes)
    ]


_LOCK = threading.Lock()
_OPEN: dict[tuple[str, str, str], tuple[tuple[int, int], Entry]] = {}


def data_stamp(location: EntryLocation) -> tuple[int, int]:
    """(inode, mtime) of the entry's data.zip: a commit replaces the file, changing both."""
    st = (location.folder / DATA_ZIP).stat()
    return st.st_ino, st.st_mtime_ns


def _entry(location: EntryLocation, stamp: tuple[int, int]) -> Entry:
    """The entry, opened once per process; an entry whose data.zip is no longer the one the
    export started with (an ``extend`` or edit committed meanwhile) is an error."""
    key = (str(location.db_path), location.source_db, location.entry_id)
    with _LOCK:
        cached = _OPEN.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if data_stamp(location) != stamp:
            raise InputFormatError(
                "the entry changed during the export; run the export again",
                location.folder / DATA_ZIP,
            )
        if cached is not None:
            cached[1].close()
        entry = Entry(location)
        _OPEN[key] = (stamp, entry)
        return entry


def save_lut(lut: LabelLut, path: Path) -> str:
    """Store a label table for the block tasks (on the file system every worker sees, so a
    table of millions of categories is not shipped with every task)."""
    np.save(path, np.stack(lut))
    return str(path)


@functools.lru_cache(maxsize=8)
def _lut(path: str) -> LabelLut:
    """A label table, loaded once per process."""
    keys, values = np.load(path)
    return keys, values


def close_entries() -> None:
    """Close the entries this process opened (the end of an export in the client)."""
    with _LOCK:
        for _, entry in _OPEN.values():
            entry.close()
        _OPEN.clear()


# export_block calls running in this process, per thread: a signal's exception in the main
# thread may strike between a task's count and its ``try`` (or inside its ``finally``), where
# no code can take the count back; the thread that stops the export runs no task any more
_RUNNING: collections.Counter[int] = collections.Counter()
_CHANGED = threading.Condition()
_STOPPED: set[str] = set()  # temporary output folders no task may write into any more


def stop_writing(root: Path, timeout: float = 120.0) -> None:
    """After a failed or interrupted export: no task of this process writes under ``root``
    any more (tasks not yet started skip their shard), and this waits for the running ones,
    so removing ``root`` afterwards removes it for good (a late write would recreate it).
    Tasks are waited for in the other threads: this one runs none now (one it ran was
    interrupted by the exception that brought it here, wherever that struck: its count, if
    left behind, is dropped)."""
    me = threading.get_ident()
    with _CHANGED:
        _STOPPED.add(str(root))
        _RUNNING.pop(me, None)
        _CHANGED.wait_for(lambda: not +_RUNNING, timeout)
    _settle_zarr_io(timeout)


def _settle_zarr_io(timeout: float) -> None:
    """Wait for the writes zarr's own event loop still runs. A zarr call interrupted in the
    calling thread (Ctrl-C while a block task runs there, with one thread) leaves its coroutine
    running on zarr's loop, where it would write its shard after the folder is removed."""
    import asyncio
    import sys

    sync = sys.modules.get("zarr.core.sync")
    loop = getattr(sync, "loop", [None])[0] if sync is not None else None
    if loop is None or loop.is_closed() or not loop.is_running():
        return

    async def others() -> None:
        mine = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not mine]
        if tasks:
            await asyncio.wait(tasks)

    future = asyncio.run_coroutine_threadsafe(others(), loop)
    try:
        future.result(timeout)
    except Exception:  # timed out or failed: removing the folder is still the best left to do
        future.cancel()


def _stopped(target: str) -> bool:
    """Whether ``target`` (an output array's folder) is under a stopped export, or gone (a
    worker of a cluster, which the client cannot reach, finds the folder removed)."""
    path = Path(target)
    return any(str(p) in _STOPPED for p in path.parents) or not (path / "zarr.json").exists()


def _read(job: ExportJob, box: Any) -> np.ndarray:
    entry = _entry(job.location, job.stamp)
    if job.lattice is None:
        assert job.channel is not None
        return entry.read_volume(job.level, job.time, job.channel, box)
    assert job.lut is not None
    lut = _lut(job.lut)
    region = tuple(slice(a, b) for a, b in box)
    grid = np.asarray(entry.lattice_grid(job.lattice, job.level, job.time)[region])
    try:
        return apply_lut(grid, lut, np.dtype(job.dtype))
    except KeyError as exc:
        raise InputFormatError(
            f"lattice {job.lattice} level {job.level} frame {job.time}: category {exc} is not "
            "in the set table (the entry is damaged)",
            job.location.folder / DATA_ZIP,
        ) from None


def export_block(
    job: ExportJob, start: tuple[int, ...], stop: tuple[int, ...], number: int
) -> tuple[None, list[tuple[str, bytes]]]:
    """Copy block ``[start, stop)`` (``[x, y, z]``) of a stored array into its output array.
    Returns no chunks: the task writes the output shard itself."""
    me = threading.get_ident()
    with _CHANGED:
        if _stopped(job.target):
            return None, []
        _RUNNING[me] += 1
    try:
        _copy_block(job, tuple(zip(start, stop, strict=True)))
    finally:
        with _CHANGED:
            _RUNNING[me] -= 1
            _CHANGED.notify_all()
    return None, []


def _copy_block(job: ExportJob, box: tuple[tuple[int, int], ...]) -> None:
    import zarr

    try:
        data = _read(job, box)
    except (PreprocessorError, MemoryError):
        raise
    except Exception as exc:  # zip, codec or zarr errors of a damaged data.zip
        what = f"lattice {job.lattice}" if job.lattice is not None else f"channel {job.channel}"
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise InputFormatError(
            f"cannot read {what} level {job.level} frame {job.time} ({text})",
            job.location.folder / DATA_ZIP,
        ) from exc
    out = np.ascontiguousarray(data.transpose(2, 1, 0)).astype(job.dtype, copy=False)
    if _stopped(job.target):
        return
    target = zarr.open_array(Path(job.target), mode="r+", zarr_format=3)
    region = (*job.index, *(slice(a, b) for a, b in reversed(box)))
    target[region] = out
