"""Orchestration of ``preprocess``: inputs -> plan -> task graph -> zarr -> commit.

The only module that wires readers, algorithms and the database together (DESIGN section 2).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.algorithms.levels import LevelPlan
from pipeline.build.geometric import stage_geometric
from pipeline.build.lattices import LatticeResult, write_lattice
from pipeline.build.meshes import MeshSetResult, describe_mesh_sets, write_mesh_set
from pipeline.build.volume import check_scratch_space, write_volume
from pipeline.db.commit import staged_entry
from pipeline.db.layout import (
    DATA_ZIP,
    EntryLocation,
)
from pipeline.db.lock import entry_lock
from pipeline.db.metadata import (
    add_lattice_annotations,
    add_lattice_metadata,
    apply_entry_metadata,
    volume_channel_annotations,
    volume_metadata,
)
from pipeline.db.safefs import (
    link_file,
    open_file,
    opened_entry,
)
from pipeline.db.sinks import new_archive
from pipeline.db.writer import DataWriter
from pipeline.engine_setup import engine_for
from pipeline.errors import (
    InputFormatError,
)
from pipeline.inputs.annotations import read_custom_annotations
from pipeline.inputs.source import fetched, using_storage_options
from pipeline.level_pass import Engine
from pipeline.model import (
    LabelSource,
    MeshSetSource,
    VolumeSource,
)
from pipeline.notices import reporting_to
from pipeline.options import InputKind, Mode, PreprocessOptions
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
from pipeline.runner import Runner
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


def _write_lattices(
    writer: DataWriter,
    lattices: tuple[LabelSource, ...],
    plan: LevelPlan,
    work: Path,
    options: PreprocessOptions,
    engine: Engine,
    grid: Grid,
) -> list[LatticeResult]:
    return [
        write_lattice(
            writer,
            lattice,
            plan,
            work,
            options.chunk_size,
            engine,
            repeat_count(len(lattice.frames), grid),
        )
        for lattice in lattices
    ]


def _write_mesh_sets(
    writer: DataWriter, mesh_sets: tuple[MeshSetSource, ...], grid: Grid
) -> list[MeshSetResult]:
    return [write_mesh_set(writer, m, repeat_count(len(m.frames), grid)) for m in mesh_sets]


def _merge_custom_annotations(options: PreprocessOptions, documents: EntryDocuments) -> None:
    """Merge the custom annotations inputs; what they name must exist in the entry."""
    for spec in options.inputs:
        if spec.kind is InputKind.CUSTOM_ANNOTATIONS:
            with fetched(spec.path) as local:
                custom = read_custom_annotations(local)
            merged = documents.merge(custom, str(spec.path))
            problems = documents.reference_problems(*merged, where_present=True)
            if problems:
                raise InputFormatError(problems[0], spec.path)


def _entry_key(options: PreprocessOptions) -> str:
    return f"{options.source_db}/{options.entry_id}"


def _describe_lattices(
    documents: EntryDocuments,
    lattices: tuple[LabelSource, ...],
    written: list[LatticeResult],
    plan: LevelPlan,
    options: PreprocessOptions,
    warn: Reporter,
) -> None:
    """Add the lattices to metadata.json (on the volume's boxes) and to annotations.json.
    Segments named by the inputs (extra data, the SFF) but absent from a lattice are not
    annotated: a warning lists them."""
    for lattice in lattices:  # an SFF's name and details describe the entry
        documents.name_if_unnamed(lattice.name, lattice.details)
    volumes = documents.metadata.volumes
    units = None if volumes is None else volumes.time_info.units  # one time unit per entry
    for lattice, result in zip(lattices, written, strict=True):
        add_lattice_metadata(
            documents, result.lattice_id, plan, result.frames, units or lattice.time_units
        )
        absent = add_lattice_annotations(
            documents,
            _entry_key(options),
            result.lattice_id,
            lattice.segments,
            result.segment_ids,
            result.frames,
            times=result.segment_frames,
        )
        frames = set(range(result.frames))
        occurs = result.segment_frames or {s: frames for s in result.segment_ids}
        documents.lattice_segments[result.lattice_id] = {s: set(t) for s, t in occurs.items()}
        if absent:
            shown = ", ".join(map(str, absent[:20])) + (" ..." if len(absent) > 20 else "")
            warn(
                f"warning: {lattice.path}: lattice {result.lattice_id}: no voxels of segment(s) "
                f"{shown} named in the inputs; they are not annotated"
            )


def _note_commit(engine: Engine, location: EntryLocation, since: float) -> None:
    size = (location.folder / DATA_ZIP).stat().st_size
    engine.progress.note(
        "commit",
        f"{DATA_ZIP} {size / 1e6:.1f} MB and metadata in {time.perf_counter() - since:.1f} s",
    )


def _stage_documents(staged_folder: Path, documents: EntryDocuments) -> list[str]:
    """Write the entry's documents into the staged folder; returns their names (metadata.json
    last)."""
    from pipeline.db.documents import write_document

    names = []
    for name, data in documents.files().items():
        if data is not None:
            write_document(staged_folder / name, data)
            names.append(name)
    return names


def _extend(
    options: PreprocessOptions, location: EntryLocation, engine: Engine, warn: Reporter
) -> RunSummary:
    """Add lattices to an existing entry: a new data.zip holding the old members and the new
    ones, merged metadata and annotations, swapped in atomically. A damaged entry is refused."""
    from pipeline.db.validate import checked_documents

    started = time.perf_counter()
    documents = checked_documents(location)
    plan, grid = existing_grid(documents, location)
    with run_folder(options.working_folder, options.entry_id) as work:
        extra = read_extra(options)
        contents = read_inputs(options, extra, work / "scratch", engine.progress, grid)
        lattices = contents.lattices
        check_segmentations(location, contents, grid, documents)
        check_scratch_space(work, plan, None, lattices)
        shown = location.folder / DATA_ZIP
        with (
            staged_entry(location) as staged,
            opened_entry(location.db_path, location.source_db, location.entry_id) as entry_fd,
        ):
            finishing = time.perf_counter()
            if lattices or contents.meshes:
                with (
                    new_archive(staged.data_zip) as sink,
                    os.fdopen(open_file(entry_fd, DATA_ZIP, os.O_RDONLY, shown), "rb") as old,
                ):
                    sink.adopt(old)
                    writer = DataWriter(sink, options.compressor, existing=sink.keys)
                    written = _write_lattices(writer, lattices, plan, work, options, engine, grid)
                    meshes = _write_mesh_sets(writer, contents.meshes, grid)
                    finishing = time.perf_counter()
                    writer.finish()
            else:  # the archive does not change (it is never modified in place)
                link_file(entry_fd, DATA_ZIP, staged.data_zip, shown)
                written, meshes = [], []
            _describe_lattices(documents, lattices, written, plan, options, warn)
            describe_mesh_sets(documents, _entry_key(options), contents.meshes, meshes)
            stage_geometric(documents, contents.geometric, _entry_key(options))
            _merge_custom_annotations(options, documents)
            apply_entry_metadata(documents, extra)
            # only the entry's own documents are staged: stray files are reported by
            # validate, never carried (issue 11)
            names = _stage_documents(staged.folder, documents)
            staged.replace_existing([DATA_ZIP, *names])
            _note_commit(engine, location, finishing)
    return RunSummary(
        location=location,
        plan=plan,
        volume_shape=grid.shape,
        dtype=np.dtype(np.uint32),
        input_bytes=_input_bytes(None, lattices),
        seconds=time.perf_counter() - started,
        committed=True,
    )


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
        with engine_for(options, progress, runner) as engine:
            if options.mode is Mode.EXTEND:
                return _extend(options, location, engine, warn or (lambda _: None))
            summary = _add(options, location, engine, warn)
            warn_viewer_id(options)  # once the entry is there
            return summary


def _add(
    options: PreprocessOptions, location: EntryLocation, engine: Engine, warn: Reporter | None
) -> RunSummary:
    """A new entry: volume pyramid, lattices, metadata and annotations, one rename."""
    started = time.perf_counter()
    with run_folder(options.working_folder, options.entry_id) as work:
        extra = read_extra(options)
        contents = read_inputs(options, extra, work / "scratch", engine.progress)
        volume, plan = plan_new_entry(options, location, contents)
        lattices = contents.lattices
        check_scratch_space(work, plan, volume, lattices)
        with staged_entry(location) as staged:
            with new_archive(staged.data_zip) as sink:
                writer = DataWriter(sink, options.compressor)
                stats = write_volume(
                    writer, volume, plan, options, work, engine, warn or (lambda _: None)
                )
                grid = Grid.of(volume)
                written = _write_lattices(writer, lattices, plan, work, options, engine, grid)
                meshes = _write_mesh_sets(writer, contents.meshes, grid)
                finishing = time.perf_counter()
                writer.finish()
            from pipeline.db.documents import EntryDocuments

            documents = EntryDocuments.new(options.source_db_name, options.source_db_id)
            documents.set_volume(
                volume_metadata(volume, plan, stats), volume_channel_annotations(volume)
            )
            apply_entry_metadata(documents, extra)
            report = warn or (lambda _: None)
            _describe_lattices(documents, lattices, written, plan, options, report)
            describe_mesh_sets(documents, _entry_key(options), contents.meshes, meshes)
            stage_geometric(documents, contents.geometric, _entry_key(options))
            _merge_custom_annotations(options, documents)
            _stage_documents(staged.folder, documents)
            staged.commit()
            _note_commit(engine, location, finishing)
    return _summary(location, volume, plan, time.perf_counter() - started, True, lattices)
