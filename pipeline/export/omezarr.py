"""``export --format ome-zarr``: an entry as an OME-NGFF 0.5 image (zarr v3, sharded).

One multiscale dataset per stored volume level, every lattice as a label image under
``labels/<lattice id>`` (label rule: :mod:`pipeline.export.labels`), mesh sets and geometric
segmentations as sidecar files (:mod:`pipeline.export.sidecars`). The entry is read and the
image written shard by shard on the runners of ``preprocess`` (threads or dask.distributed,
memory bounded by ``--max-memory`` through :func:`pipeline.engine.runner.memory_budget`), into a
temporary folder beside the output that is renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.db.entry import Entry
from pipeline.db.layout import DATA_ZIP, QUANTIZATION_ATTRIBUTE, EntryLocation
from pipeline.db.names import validate_name
from pipeline.engine.passes import Engine
from pipeline.engine.runner import Block
from pipeline.engine_setup import EngineSpec, open_engine
from pipeline.errors import InputFormatError, OptionError, PreprocessorError
from pipeline.export.blocks import (
    ArraySpec,
    ExportJob,
    close_entries,
    data_stamp,
    export_block,
    save_lut,
    shard_grid,
    stop_writing,
)
from pipeline.export.entry_view import EntryView, LatticeView, entry_view
from pipeline.export.labels import label_dtype, label_lut
from pipeline.export.ngff import Layout, image_attributes, label_attributes, labels_group_attributes
from pipeline.export.sidecars import write_geometric, write_meshes
from pipeline.options import Compressor, validate_run_options
from pipeline.progress import NO_PROGRESS, Progress

__all__ = ["ExportOptions", "ExportSummary", "export_omezarr"]

# bytes per voxel a task holds per block element at most (dequantization works in float64)
_TASK_ITEMSIZE = 8


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """What ``export`` needs, validated on construction (paths made absolute: cluster workers
    have their own working directory)."""

    db_path: Path
    source_db: str
    entry_id: str
    output: Path
    overwrite: bool = False
    max_memory: int | None = None
    scheduler: str | None = None
    workers: int | None = None
    compressor: Compressor = Compressor.LZ4
    chunk_size: int = 64

    def __post_init__(self) -> None:
        validate_name(self.source_db, "--source-db")
        validate_name(self.entry_id, "--entry-id")
        object.__setattr__(self, "db_path", Path(self.db_path).absolute())
        object.__setattr__(self, "output", Path(self.output).absolute())
        validate_run_options(self.scheduler, self.workers, self.max_memory)
        if self.chunk_size < 1:
            raise OptionError(f"chunk size must be positive, got {self.chunk_size}")


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What an export wrote (for the command's last line and the tests)."""

    output: Path
    levels: tuple[int, ...]
    lattices: tuple[str, ...]
    mesh_files: int
    geometric_files: int
    seconds: float
    shard_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _engine(
    options: ExportOptions, progress: Progress, parts: Path
) -> contextlib.AbstractContextManager[Engine]:
    """Threads, or a dask.distributed cluster, with the memory budget of ``preprocess``
    (:func:`pipeline.engine_setup.open_engine`); a cluster's part files go to ``parts``."""
    spec = EngineSpec(
        options.max_memory,
        options.scheduler,
        options.workers,
        2 * options.chunk_size,
        options.chunk_size**3 * _TASK_ITEMSIZE,
    )
    return open_engine(spec, progress, lambda: contextlib.nullcontext(parts))


def shard_edge(chunk: int, block_bytes: int) -> int:
    """The largest ``chunk * 2**k`` whose cube of 8-byte voxels fits in ``block_bytes``.

    >>> shard_edge(64, 32 * 2**20), shard_edge(64, 2**20)
    (128, 64)
    """
    edge = chunk
    while (2 * edge) ** 3 * _TASK_ITEMSIZE <= block_bytes:
        edge *= 2
    return edge


def _chunks_and_shards(
    grid: Sequence[int], chunk: int, edge: int
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Chunk and shard shapes ``z, y, x`` of a grid ``[nx, ny, nz]``."""
    chunks, shards = [], []
    for n in reversed(tuple(grid)):
        c = min(chunk, n)
        chunks.append(c)
        shards.append(min(edge, -(-n // c) * c))
    return tuple(chunks), tuple(shards)  # type: ignore[return-value]


def _check_output(options: ExportOptions, location: EntryLocation) -> None:
    out = options.output.resolve()
    db = options.db_path.resolve()
    if out == db or db in out.parents or out in db.parents:
        # inside, the server and `list` would take it for an entry; above, --overwrite would
        # remove the database
        raise OptionError("--output must lie outside the database folder", out)
    if not (options.output.exists() or options.output.is_symlink()):
        return
    if not options.overwrite:
        raise OptionError("output already exists (give --overwrite to replace it)", out)
    if not _replaceable(options.output):
        raise OptionError(
            "--overwrite replaces only an earlier export (a folder with zarr.json) or an empty "
            "folder; remove this one yourself if it is meant to go",
            out,
        )


def _replaceable(path: Path) -> bool:
    """Whether ``--overwrite`` may remove ``path``: a zarr v3 group folder (an earlier export),
    an empty folder or a dangling symbolic link; never a file or a folder of other things (a
    mistyped ``--output .`` must not remove the working directory)."""
    if path.is_symlink() and not path.exists():
        return True
    if not path.is_dir():
        return False
    return (path / "zarr.json").is_file() or not any(path.iterdir())


@contextlib.contextmanager
def _staging(output: Path) -> Iterator[Path]:
    """A new folder beside ``output``, removed again if the export fails (with the parent
    folders the export created for it)."""
    created = [p for p in (output.parent, *output.parent.parents) if not p.exists()]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OptionError(
            "cannot create the output's folder: a part of its path is a file", output.parent
        ) from None
    tmp = output.parent / f".{output.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        tmp.mkdir()
        yield tmp
    except BaseException:
        stop_writing(tmp)  # block tasks still running (an interrupt) must not recreate it
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # deepest first; only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _publish(tmp: Path, output: Path, overwrite: bool) -> None:
    """Rename the finished folder to ``output`` (the old output, if replaced, removed after)."""
    if not (output.exists() or output.is_symlink()):
        os.rename(tmp, output)
        return
    if not overwrite:
        raise OptionError("output already exists (give --overwrite to replace it)", output)
    if not _replaceable(output):  # created during the export
        raise OptionError("output appeared during the export and is no earlier export", output)
    old = output.parent / f".{output.name}.old-{uuid.uuid4().hex[:12]}"
    os.rename(output, old)
    try:
        os.rename(tmp, output)
    except BaseException:
        os.rename(old, output)
        raise
    _remove(old)


def _run(engine: Engine, jobs: Sequence[ExportJob], shards: tuple[int, ...], detail: str) -> None:
    """Every shard of every job through the engine's runner, with a progress step."""
    spatial = tuple(reversed(shards[-3:]))  # [x, y, z]
    items = [Block(job, a, b) for job in jobs for a, b in shard_grid(job.source.shape, spatial)]
    engine.progress.start("export", detail, len(items))
    try:
        engine.runner.run_blocks(export_block, items, None, engine.window, engine.progress)
    except BaseException:
        engine.progress.abandon()
        raise
    engine.progress.finish()


@dataclass(frozen=True, slots=True)
class _Writer:
    """What every array of one export shares: the entry, its data.zip stamp, the engine, the
    options and the shard edge."""

    entry: Entry
    stamp: tuple[int, int]
    options: ExportOptions
    engine: Engine
    edge: int
    scratch: Path  # label tables for the block tasks (inside the temporary output folder)

    def create_array(
        self, group: Any, name: str, layout: Layout, shape: tuple[int, ...], dtype: np.dtype
    ) -> tuple[str, tuple[int, ...]]:
        """An empty sharded array ``group/name``: (its folder, its shard shape)."""
        import zarr

        lead = len(layout.names) - 3
        chunks, shards = _chunks_and_shards(shape[lead:][::-1], self.options.chunk_size, self.edge)
        group.create_array(
            name=name,
            shape=shape,
            dtype=dtype,
            chunks=(1,) * lead + chunks,
            shards=(1,) * lead + shards,
            compressors=zarr.codecs.BloscCodec(
                cname=self.options.compressor.value, clevel=5, shuffle="shuffle"
            ),
            fill_value=0,
            dimension_names=layout.names,
        )
        return str(Path(group.store.root) / group.path / name), (1,) * lead + shards

    def job(self, stored: Any, level: int, time: int, target: str, **kw: Any) -> ExportJob:
        """The job copying stored array ``stored`` (level, frame) into ``target``."""
        return ExportJob(
            source=ArraySpec(tuple(stored.shape), np.dtype(stored.dtype)),  # type: ignore[arg-type]
            location=self.entry.location,
            level=level,
            time=time,
            target=target,
            stamp=self.stamp,
            **kw,
        )


def _value_dtype(stored: Any) -> np.dtype:
    """The dtype of a stored volume array's values: its source dtype when quantized."""
    quantization = dict(stored.attrs).get(QUANTIZATION_ATTRIBUTE)
    return np.dtype(quantization["src_type"] if quantization else stored.dtype)


def _export_volume(w: _Writer, view: EntryView, root: Any) -> dict[str, tuple[int, ...]]:
    layout = Layout(time=len(view.frames) > 1, channel=len(view.channel_ids) > 1)
    root.attrs.update(image_attributes(view, layout))
    shards: dict[str, tuple[int, ...]] = {}
    for i, box in enumerate(view.levels):
        dtype = _value_dtype(w.entry.volume_array(box.level, view.frames[0], view.channel_ids[0]))
        shape = layout.shape(len(view.frames), len(view.channel_ids), box.grid)
        target, shard = w.create_array(root, str(i), layout, shape, dtype)
        jobs = []
        for ti, t in enumerate(view.frames):
            for ci, channel in enumerate(view.channel_ids):
                stored = w.entry.volume_array(box.level, t, channel)
                if _value_dtype(stored) != dtype:
                    raise InputFormatError(
                        f"volume level {box.level}: channel {channel} frame {t} holds "
                        f"{_value_dtype(stored)}, the first channel {dtype}",
                        w.entry.location.folder / DATA_ZIP,
                    )
                jobs.append(
                    w.job(
                        stored,
                        box.level,
                        t,
                        target,
                        channel=channel,
                        lattice=None,
                        lut=None,
                        index=layout.index(ti, ci),
                        dtype=str(dtype),
                    )
                )
        _run(w.engine, jobs, shard, f"volume level {box.level}")
        shards[str(i)] = shard
    return shards


def _export_lattice(
    w: _Writer, number: int, lattice: LatticeView, labels: Any
) -> dict[str, tuple[int, ...]]:
    layout = Layout(time=len(lattice.frames) > 1, channel=False)
    lid = lattice.lattice_id
    luts: dict[tuple[int, int], str] = {}
    dtype = np.dtype(np.uint32)
    for box in lattice.levels:
        for t in lattice.frames:
            lut = label_lut(w.entry.set_table(lid, box.level, t))
            dtype = np.promote_types(dtype, label_dtype([lut]))
            luts[(box.level, t)] = save_lut(lut, w.scratch / f"{number}-{box.level}-{t}.npy")
    attributes = label_attributes(
        lid, layout, lattice.levels, lattice.time_units, lattice.frames[0], lattice.segments
    )
    group = labels.create_group(lid, attributes=attributes)
    shards: dict[str, tuple[int, ...]] = {}
    for i, box in enumerate(lattice.levels):
        shape = layout.shape(len(lattice.frames), 1, box.grid)
        target, shard = w.create_array(group, str(i), layout, shape, dtype)
        jobs = [
            w.job(
                w.entry.lattice_grid(lid, box.level, t),
                box.level,
                t,
                target,
                channel=None,
                lattice=lid,
                lut=luts[(box.level, t)],
                index=layout.index(ti, 0),
                dtype=str(dtype),
            )
            for ti, t in enumerate(lattice.frames)
        ]
        _run(w.engine, jobs, shard, f"labels {lid} level {box.level}")
        shards[f"labels/{lid}/{i}"] = shard
    return shards


def _write_image(
    w: _Writer, view: EntryView, tmp: Path
) -> tuple[dict[str, tuple[int, ...]], int, int]:
    import zarr

    root = zarr.open_group(zarr.storage.LocalStore(tmp), mode="w-", zarr_format=3)
    shards = _export_volume(w, view, root)
    if view.lattices:
        labels = root.create_group(
            "labels", attributes=labels_group_attributes([lt.lattice_id for lt in view.lattices])
        )
        for number, lattice in enumerate(view.lattices):
            shards |= _export_lattice(w, number, lattice, labels)
    meshes = write_meshes(w.entry, view, tmp)
    if meshes:
        w.engine.progress.note("export", f"meshes: {meshes} PLY files and meshes/index.json")
    geometric = write_geometric(w.entry, view, tmp)
    if geometric:
        w.engine.progress.note("export", f"geometric segmentations: {geometric} JSON files")
    if data_stamp(w.entry.location) != w.stamp:
        raise InputFormatError(
            "the entry changed during the export; run the export again",
            w.entry.location.folder / DATA_ZIP,
        )
    return shards, meshes, geometric


def _open(location: EntryLocation) -> Entry:
    """The entry for reading (a data.zip that is no zip archive is the entry's error)."""
    try:
        return Entry(location)
    except PreprocessorError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputFormatError(
            f"the entry's data cannot be opened ({exc})", location.folder / DATA_ZIP
        ) from exc


def export_omezarr(options: ExportOptions, progress: Progress = NO_PROGRESS) -> ExportSummary:
    """Export an entry as an OME-NGFF 0.5 image at ``options.output`` (see the module doc).

    A missing entry, an existing output (without ``overwrite``) or an entry without a volume
    is a :class:`PreprocessorError`; nothing is left at the output's place on failure.
    """
    since = time.perf_counter()
    location = EntryLocation(options.db_path, options.source_db, options.entry_id)
    from pipeline.db.validate import checked_documents

    # a missing entry, or one that does not pass validate --quick, is refused (one line)
    view = entry_view(checked_documents(location))
    if not view.levels or not view.frames or not view.channel_ids:
        raise InputFormatError(
            "the entry has no stored volume level: nothing to export as an image", location.folder
        )
    _check_output(options, location)
    stamp = data_stamp(location)
    with _staging(options.output) as tmp:
        parts, scratch = tmp / ".parts", tmp / ".luts"
        try:
            with _open(location) as entry, _engine(options, progress, parts) as engine:
                edge = shard_edge(options.chunk_size, engine.max_block_bytes)
                scratch.mkdir()
                writer = _Writer(entry, stamp, options, engine, edge, scratch)
                shards, meshes, geometric = _write_image(writer, view, tmp)
        except PreprocessorError:
            raise
        except (KeyError, ValueError, RuntimeError, zipfile.BadZipFile) as exc:
            # reading the entry's arrays, tables or meshes in this process
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise InputFormatError(
                f"the entry's data is damaged or incomplete ({text})", location.folder / DATA_ZIP
            ) from exc
        finally:
            close_entries()
        shutil.rmtree(parts, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
        _publish(tmp, options.output, options.overwrite)
    progress.note("commit", f"{options.output}")
    return ExportSummary(
        output=options.output,
        levels=tuple(b.level for b in view.levels),
        lattices=tuple(lt.lattice_id for lt in view.lattices),
        mesh_files=meshes,
        geometric_files=geometric,
        seconds=time.perf_counter() - since,
        shard_shapes=shards,
    )
