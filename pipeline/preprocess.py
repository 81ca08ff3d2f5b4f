"""``preprocess``: plan -> build -> commit, for a new entry (``add``) and for segmentations
added to an existing one (``extend``).

The only module that wires readers, algorithms and the database together (DESIGN section 2):

- plan (:mod:`pipeline.plan`): inputs checked and read lazily, the grid and the level plan;
- build (:mod:`pipeline.build`): the volume pyramid, lattices and mesh sets streamed into a
  staged data.zip on the run's engine (:mod:`pipeline.engine_setup`);
- commit: the documents staged, then one rename (add) or one exchange with the old entry
  (extend, through :mod:`pipeline.db.rewrite`, as every management command).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.algorithms.levels import LevelPlan
from pipeline.arrays import local_raw
from pipeline.build.geometric import stage_geometric
from pipeline.build.lattices import LatticeResult, write_lattice
from pipeline.build.meshes import MeshSetResult, describe_mesh_sets, write_mesh_set
from pipeline.build.records import describe_lattices, merge_custom_annotations
from pipeline.build.volume import check_scratch_space, write_volume
from pipeline.db.commit import staged_entry
from pipeline.db.layout import (
    DATA_ZIP,
    EntryLocation,
)
from pipeline.db.lock import entry_lock
from pipeline.db.metadata import (
    apply_entry_metadata,
    volume_channel_annotations,
    volume_metadata,
)
from pipeline.db.rewrite import rewriting, stage_documents
from pipeline.db.sinks import new_archive
from pipeline.db.writer import DataWriter
from pipeline.engine.passes import Engine
from pipeline.engine.runner import Runner, ThreadedRunner
from pipeline.engine_setup import engine_for
from pipeline.inputs.registry import Contents
from pipeline.inputs.source import using_storage_options
from pipeline.memory import BUILD_KEPT, heaps_kept
from pipeline.model import (
    LabelSource,
    VolumeSource,
)
from pipeline.notices import reporting_to
from pipeline.options import Mode, PreprocessOptions
from pipeline.plan import (
    Grid,
    check_inputs,
    check_location,
    check_segmentations,
    existing_grid,
    plan_new_entry,
    read_extra,
    read_inputs,
    repeat_count,
    warn_viewer_id,
)
from pipeline.progress import NO_PROGRESS, Progress, Reporter
from pipeline.workspace import run_folder, tidy

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = ["RunSummary", "plan_run", "preprocess"]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What a run did (or, for a dry run, would do)."""

    location: EntryLocation
    plan: LevelPlan
    volume_shape: tuple[int, int, int]
    dtype: np.dtype
    input_bytes: int
    seconds: float
    committed: bool

    def plan_lines(self) -> list[str]:
        lines = [
            f"volume {'x'.join(map(str, self.volume_shape))} {self.dtype}, "
            f"{math.prod(self.volume_shape) * self.dtype.itemsize / 1e6:.1f} MB per channel "
            "and frame"
        ]
        for lv in self.plan.levels:
            lines.append(
                f"level {lv.ratio:>4}  grid {'x'.join(map(str, lv.shape)):>16}  "
                f"{lv.nbytes / 1e6:10.2f} MB  {'stored' if lv.stored else 'not stored'}"
            )
        return lines


def preprocess(
    options: PreprocessOptions,
    *,
    progress: Progress = NO_PROGRESS,
    warn: Reporter | None = None,
    runner: Runner | None = None,
) -> RunSummary:
    """Run ``preprocess``: read inputs lazily, build and store the pyramids, commit.

    ``add`` streams chunks from the task graph straight into a staged data.zip and the entry
    appears by one rename; ``extend`` adds lattices to an existing entry. Any
    :class:`pipeline.errors.PreprocessorError` leaves the database as it was.
    """
    check_inputs(options)
    location = EntryLocation(options.db_path, options.source_db, options.entry_id)
    with (
        using_storage_options(options.storage_options),
        reporting_to(warn),
        tidy(options.working_folder, options.db_path),
        entry_lock(location),
    ):
        check_location(options)
        report = warn or (lambda _: None)
        with engine_for(options, progress, runner) as engine:
            if options.mode is Mode.EXTEND:
                return _extend(options, location, engine, report)
            summary = _add(options, location, engine, report)
            warn_viewer_id(options)  # once the entry is there
            return summary


def plan_run(options: PreprocessOptions) -> RunSummary:
    """Check the inputs and compute the level plan without writing anything (``--dry-run``)."""
    with using_storage_options(options.storage_options):
        return _plan_run(options)


def _plan_run(options: PreprocessOptions) -> RunSummary:
    check_inputs(options)
    location = check_location(options)
    # headers only: nothing is written, compressed maps are not decompressed
    extra = read_extra(options)
    if options.mode is Mode.EXTEND:
        from pipeline.db.validate import checked_documents

        documents = checked_documents(location)
        plan, grid = existing_grid(documents, location)
        check_segmentations(location, read_inputs(options, extra, None), grid, documents)
        return RunSummary(location, plan, grid.shape, np.dtype(np.uint32), 0, 0.0, committed=False)
    volume, plan = plan_new_entry(options, location, read_inputs(options, extra, None))
    warn_viewer_id(options)
    return _summary(location, volume, plan, 0.0, done=False)


def _add(
    options: PreprocessOptions, location: EntryLocation, engine: Engine, warn: Reporter
) -> RunSummary:
    """A new entry: volume pyramid, segmentations, metadata and annotations, one rename."""
    from pipeline.db.documents import EntryDocuments

    started = time.perf_counter()
    with run_folder(options.working_folder, options.entry_id) as work:
        # plan: every input read (lazily) and checked, the levels planned
        extra = read_extra(options)
        contents = read_inputs(options, extra, work / "scratch", engine.progress)
        volume, plan = plan_new_entry(options, location, contents)
        check_scratch_space(work, plan, volume, contents.lattices)
        with staged_entry(location) as staged:
            # build: every chunk streamed into the staged data.zip
            with new_archive(staged.data_zip) as sink:
                writer = DataWriter(sink, options.compressor)
                with _heaps_kept(options, volume, engine):
                    stats = write_volume(writer, volume, plan, options, work, engine, warn)
                    written, meshes = _build_segmentations(
                        writer, contents, plan, work, options, engine, Grid.of(volume)
                    )
                finishing = time.perf_counter()
                writer.finish()
            # commit: the documents staged, then one rename
            documents = EntryDocuments.new(options.source_db_name, options.source_db_id)
            documents.set_volume(
                volume_metadata(volume, plan, stats), volume_channel_annotations(volume)
            )
            apply_entry_metadata(documents, extra)
            _record_segmentations(
                documents, options, contents, written, meshes, plan, location, warn
            )
            stage_documents(staged.folder, documents)
            staged.commit()
            _note_commit(engine, location, finishing)
    return _summary(
        location, volume, plan, time.perf_counter() - started, True, contents.lattices
    )


def _extend(
    options: PreprocessOptions, location: EntryLocation, engine: Engine, warn: Reporter
) -> RunSummary:
    """Add segmentations to an existing entry: a new data.zip holding the old members and the
    new ones, merged metadata and annotations, swapped in atomically. A damaged entry is
    refused."""
    from pipeline.db.validate import checked_documents

    started = time.perf_counter()
    # plan: the entry's grid and levels, the inputs checked against them
    documents = checked_documents(location)
    plan, grid = existing_grid(documents, location)
    with run_folder(options.working_folder, options.entry_id) as work:
        extra = read_extra(options)
        contents = read_inputs(options, extra, work / "scratch", engine.progress, grid)
        check_segmentations(location, contents, grid, documents)
        check_scratch_space(work, plan, None, contents.lattices)
        with rewriting(location) as rewrite:
            # build: only when data is added is the archive rewritten (old members first)
            finishing = time.perf_counter()
            written: list[LatticeResult] = []
            meshes: list[MeshSetResult] = []
            if contents.lattices or contents.meshes:
                with rewrite.archive() as sink:
                    writer = DataWriter(sink, options.compressor, existing=sink.keys)
                    written, meshes = _build_segmentations(
                        writer, contents, plan, work, options, engine, grid
                    )
                    finishing = time.perf_counter()
                    writer.finish()
            # commit
            _record_segmentations(
                documents, options, contents, written, meshes, plan, location, warn
            )
            apply_entry_metadata(documents, extra)
            rewrite.commit(documents)
            _note_commit(engine, location, finishing)
    return RunSummary(
        location=location,
        plan=plan,
        volume_shape=grid.shape,
        dtype=np.dtype(np.uint32),
        input_bytes=_input_bytes(None, contents.lattices),
        seconds=time.perf_counter() - started,
        committed=True,
    )


def _heaps_kept(
    options: PreprocessOptions,
    volume: VolumeSource | None = None,
    engine: Engine | None = None,
) -> contextlib.AbstractContextManager[None]:
    """Where the build takes its temporaries from the heaps (freed memory used again, warm;
    a fresh map faults every page it is given), unless ``--max-memory`` bounds the run: every
    lattice's passes and merges (many temporaries of a few MiB, block after block: ~10 %
    faster on masks of many labels), and with a ``volume`` the whole build (its passes, then
    the lattices and mesh sets) where its blocks run in this process (``engine``'s threads,
    not a cluster's workers) and it is read from local raw files (MRC, CCP4; also a URL's copy
    or a decompressed scratch file): 16 GiB map 0.90x the wall and CPU, peak RSS +8-16 %.
    Other volumes (OME-Zarr, TIFF, NIfTI, ranged reads of URLs) are read through libraries
    that allocate as they decode; measured on OME-Zarr, their freed buffers fragment the
    heaps (the 2 GiB benchmark peaked at ~1 GiB against 790 MiB). Nested: the outer keeps
    them. docs/labels.md ("Memory, third round")."""
    if options.max_memory is not None:
        return contextlib.nullcontext()
    if volume is not None:
        raw = all(local_raw(a) for frame in volume.frames for a in frame)
        if not raw or not isinstance(getattr(engine, "runner", None), ThreadedRunner):
            return contextlib.nullcontext()
    return heaps_kept(BUILD_KEPT)


def _build_segmentations(
    writer: DataWriter,
    contents: Contents,
    plan: LevelPlan,
    work: Path,
    options: PreprocessOptions,
    engine: Engine,
    grid: Grid,
) -> tuple[list[LatticeResult], list[MeshSetResult]]:
    """Every lattice and mesh set of the run into the archive (a one-frame segmentation at
    every frame of the volume)."""
    written = []
    for lattice in contents.lattices:
        with _heaps_kept(options):
            repeat = repeat_count(len(lattice.frames), grid)
            written.append(
                write_lattice(writer, lattice, plan, work, options.chunk_size, engine, repeat)
            )
    meshes = [
        write_mesh_set(writer, m, repeat_count(len(m.frames), grid)) for m in contents.meshes
    ]
    return written, meshes


def _record_segmentations(
    documents: EntryDocuments,
    options: PreprocessOptions,
    contents: Contents,
    written: list[LatticeResult],
    meshes: list[MeshSetResult],
    plan: LevelPlan,
    location: EntryLocation,
    warn: Reporter,
) -> None:
    """What the run added, recorded in the entry's documents; custom annotations merged."""
    describe_lattices(documents, contents.lattices, written, plan, location.key, warn)
    describe_mesh_sets(documents, location.key, contents.meshes, meshes)
    stage_geometric(documents, contents.geometric, location.key)
    merge_custom_annotations(options, documents)


def _note_commit(engine: Engine, location: EntryLocation, since: float) -> None:
    size = (location.folder / DATA_ZIP).stat().st_size
    engine.progress.note(
        "commit",
        f"{DATA_ZIP} {size / 1e6:.1f} MB and metadata in {time.perf_counter() - since:.1f} s",
    )


def _input_bytes(volume: VolumeSource | None, lattices: tuple[LabelSource, ...]) -> int:
    """Bytes of voxel data a run reads once: every frame and channel of the volume and every
    frame of every lattice, in their input dtypes."""
    total = sum(
        math.prod(lat.shape) * lat.frames[0].dtype.itemsize * len(lat.frames) for lat in lattices
    )
    if volume is not None:
        frames = len(volume.frames) * len(volume.channel_ids)
        total += math.prod(volume.shape) * volume.dtype.itemsize * frames
    return total


def _summary(
    location: EntryLocation,
    volume: VolumeSource,
    plan: LevelPlan,
    seconds: float,
    done: bool,
    lattices: tuple[LabelSource, ...] = (),
) -> RunSummary:
    return RunSummary(
        location=location,
        plan=plan,
        volume_shape=volume.shape,
        dtype=volume.dtype,
        input_bytes=_input_bytes(volume, lattices),
        seconds=seconds,
        committed=done,
    )
