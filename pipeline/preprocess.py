"""Orchestration of ``preprocess``: inputs -> plan -> task graph -> zarr -> commit.

The only module that wires readers, algorithms and the database together (DESIGN section 2).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.algorithms.levels import LevelPlan, plan_from_stored, plan_levels
from pipeline.algorithms.quantize import QuantizationParams
from pipeline.algorithms.statistics import Statistics, combine_moments
from pipeline.arrays import CastArray, create_scratch, remove_scratch
from pipeline.db.commit import staged_entry
from pipeline.db.layout import (
    DATA_ZIP,
    QUANTIZATION_ATTRIBUTE,
    EntryLocation,
    volume_key,
)
from pipeline.db.lock import entry_lock
from pipeline.db.metadata import (
    add_lattice_annotations,
    add_lattice_metadata,
    apply_entry_metadata,
    quantization_record,
    volume_channel_annotations,
    volume_metadata,
)
from pipeline.db.safefs import (
    link_file,
    open_file,
    opened_entry,
    stamp_is_dead,
    writer_stamp,
)
from pipeline.db.sinks import new_archive
from pipeline.db.writer import DataWriter
from pipeline.errors import (
    EntryExistsError,
    EntryNotFoundError,
    GridMismatchError,
    InputFormatError,
    InputNotFoundError,
    OptionError,
    UnsupportedInputError,
)
from pipeline.geometric import check_geometric_ids, stage_geometric
from pipeline.inputs.annotations import read_custom_annotations
from pipeline.inputs.compressed import check_free_space
from pipeline.inputs.extra_data import read_extra_data
from pipeline.inputs.registry import DIRECTORY_KINDS, READERS, VOLUME_KINDS, Contents, read_input
from pipeline.inputs.source import copying_objects, fetched, is_url, using_storage_options
from pipeline.inputs.source import exists as url_exists
from pipeline.lattices import LatticeResult, check_lattice_grid, write_lattice
from pipeline.level_pass import Engine, LevelJob, run_pass
from pipeline.meshes import MeshSetResult, check_mesh_sets, describe_mesh_sets, write_mesh_set
from pipeline.model import (
    ExtraData,
    GeometricSegmentation,
    LabelSource,
    MeshSetSource,
    VolumeSource,
)
from pipeline.notices import reporting_to
from pipeline.notices import warn as notice
from pipeline.options import InputKind, InputSpec, Mode, PreprocessOptions
from pipeline.progress import NO_PROGRESS, Progress
from pipeline.runner import Runner, ThreadedRunner, memory_budget, open_cluster

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = ["RunSummary", "plan_run", "preprocess"]

# extra data and custom annotations describe an entry; every other kind has a reader
SUPPORTED_KINDS = frozenset({*READERS, InputKind.EXTRA_DATA, InputKind.CUSTOM_ANNOTATIONS})

Reporter = Callable[[str], None]


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


def _check_inputs(options: PreprocessOptions) -> None:
    """Everything that can be checked before reading data: kinds, paths, counts."""
    for spec in options.inputs:
        if spec.kind not in SUPPORTED_KINDS:
            raise UnsupportedInputError(f"not supported yet: {spec.kind.value}", spec.path)
        if is_url(spec.path):
            _check_url(spec, options)
            continue
        if not spec.path.exists():
            raise InputNotFoundError("no such file or directory", spec.path)
        if spec.kind in DIRECTORY_KINDS:
            if not spec.path.is_dir():
                raise InputNotFoundError(
                    f"a {spec.kind.value} input must be a directory", spec.path
                )
        elif not spec.path.is_file():
            raise InputNotFoundError(f"a {spec.kind.value} input must be a file", spec.path)
    volumes = [s for s in options.inputs if s.kind in VOLUME_KINDS]
    if len(volumes) > 1:
        raise OptionError(
            f"an entry has one volume, got {len(volumes)} volume inputs: "
            + ", ".join(str(s.path) for s in volumes)
        )
    if len([s for s in options.inputs if s.kind is InputKind.EXTRA_DATA]) > 1:
        raise OptionError("at most one extra_data input per run")
    if options.mode is Mode.ADD and not volumes:
        raise OptionError(
            "an entry needs a volume input (map, nii_volume, omezarr or ometiff_image)"
        )
    if options.mode is Mode.EXTEND and volumes:
        raise OptionError(
            f"--mode extend adds segmentations; {volumes[0].path}: the entry already has a volume"
        )


def _check_url(spec: InputSpec, options: PreprocessOptions) -> None:
    """A URL input names an object (an OME-Zarr URL, a prefix: its reader checks it)."""
    if spec.kind in DIRECTORY_KINDS:
        return
    found = url_exists(str(spec.path), options.storage_options)
    if found is None:
        raise InputNotFoundError("no such object", spec.path)
    if found != "file":
        raise InputNotFoundError(
            f"a {spec.kind.value} input must be an object, not a prefix", spec.path
        )


# kinds whose voxels workers read themselves (the others are read by the client)
_WORKER_READ_KINDS = frozenset(
    {*VOLUME_KINDS, InputKind.MASK, InputKind.NII_SEGMENTATION, InputKind.OMETIFF_SEGMENTATION}
)


def _check_transfer(options: PreprocessOptions, runner: Runner) -> None:
    """Workers that cannot see the working folder (``--transfer comms``) cannot see local
    inputs either: those must be URLs."""
    if getattr(runner, "transfer", "shared") != "comms":
        return
    for spec in options.inputs:
        if spec.kind in _WORKER_READ_KINDS and not is_url(spec.path):
            raise OptionError(
                f"{spec.path}: a local file, but the cluster's workers do not share this "
                "machine's file system (--transfer comms): give the input as a URL (s3://, "
                "gs://, https://) or run on workers that see the working folder"
            )


def _warn_viewer_id(options: PreprocessOptions) -> None:
    """The Mol* viewer opens an entry id without ``-`` as ``<source>-<id>``: say so."""
    if options.mode is Mode.ADD and "-" not in options.entry_id:
        notice(
            f"entry id {options.entry_id!r} has no '-': the Mol* viewer opens it as "
            f"'{options.source_db}-{options.entry_id}', which is not this entry (use an id "
            f"like '{options.source_db}-{options.entry_id}' to open it in the viewer)",
            f"{options.source_db}/{options.entry_id}",
        )


def _check_location(options: PreprocessOptions) -> EntryLocation:
    location = EntryLocation(options.db_path, options.source_db, options.entry_id)
    if options.mode is Mode.ADD and location.exists():
        raise EntryExistsError(
            f"entry {options.source_db}/{options.entry_id} already exists (use --mode extend "
            "to add data to it)",
            location.folder,
        )
    if options.mode is Mode.EXTEND and not location.exists():
        raise EntryNotFoundError(
            f"entry {options.source_db}/{options.entry_id} does not exist (use --mode add)",
            location.folder,
        )
    return location


@contextlib.contextmanager
def _run_folder(working_folder: Path, entry_id: str, kind: str = "") -> Iterator[Path]:
    """A private folder under --working-folder, removed on success and on failure.

    Its name carries its writer (host, pid, process start); folders left by runs that were
    killed (SIGKILL, a lost node) on this host are removed when the next run starts here.
    """
    try:
        working_folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(
            f"--working-folder: cannot create the working folder: {exc.strerror}", working_folder
        ) from exc
    _remove_stale(working_folder)
    folder = working_folder / f".cellstar-{kind}{entry_id}@{writer_stamp()}@{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_stale(working_folder: Path) -> None:
    """Run folders of this host whose owning process is gone (also those of older versions,
    stamped by an ``.owner`` file)."""
    host = socket.gethostname()
    for folder in working_folder.glob(".cellstar-*"):
        parts = folder.name.split("@")
        if len(parts) == 5:
            if stamp_is_dead(*parts[1:4]):
                shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            pid, owner_host = (folder / ".owner").read_text().split()
            os.kill(int(pid), 0)
        except ProcessLookupError:
            if owner_host == host:
                shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):  # no stamp yet, being removed, or not ours to judge
            continue


@contextlib.contextmanager
def _tidy(*paths: Path) -> Iterator[None]:
    """Folders on the way to ``paths`` that this run creates are removed again if nothing but
    empty folders (e.g. ``_locks``) is left in them."""
    new: set[Path] = set()
    for path in paths:
        q = path.absolute()
        while not q.exists():
            new.add(q)
            q = q.parent
    try:
        yield
    finally:
        # only the folders this run found missing, each only when empty: a concurrent run's
        # folders inside them (a new source folder, its staging) are never removed
        for q in sorted(new, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(q)


def _first(options: PreprocessOptions, kinds: frozenset[InputKind]) -> InputSpec | None:
    return next((s for s in options.inputs if s.kind in kinds), None)


# segmentation kinds whose data is decoded or decompressed into scratch when read
_DECODED_KINDS = frozenset({InputKind.SFF, InputKind.MASK, InputKind.NII_SEGMENTATION})


def _read_inputs(
    options: PreprocessOptions,
    extra: ExtraData | None,
    scratch: Path | None,
    progress: Progress = NO_PROGRESS,
    grid: _Grid | None = None,
) -> Contents:
    """Every input through its reader (the volume first), merged into one :class:`Contents`.

    Segmentations that are decoded or decompressed into scratch are first read header-only
    and their grids checked against ``grid`` (extend) or this run's volume, so a lattice that
    cannot fit is refused before any of its bytes are decoded.
    """
    started = time.perf_counter()
    specs = sorted(
        (s for s in options.inputs if s.kind in READERS), key=lambda s: s.kind not in VOLUME_KINDS
    )
    volume: VolumeSource | None = None
    lattices: list[LabelSource] = []
    geometric: list[GeometricSegmentation] = []
    meshes: list[MeshSetSource] = []
    for spec in specs:
        target = grid or (_Grid.of(volume) if volume is not None else None)
        if scratch is not None and target is not None and spec.kind in _DECODED_KINDS:
            for lattice in read_input(spec.kind, spec.path, None, extra).lattices:
                check_lattice_grid(lattice, target.shape, target.voxel, target.path, target.origin)
        contents = read_input(spec.kind, spec.path, scratch, extra)
        volume = volume or contents.volume
        lattices.extend(contents.lattices)
        geometric.extend(contents.geometric)
        meshes.extend(contents.meshes)
    dtype = options.force_volume_dtype
    if volume is not None and dtype is not None and dtype != volume.dtype:
        volume = replace(
            volume,
            frames=tuple(tuple(CastArray(a, dtype) for a in frame) for frame in volume.frames),
        )
    progress.note("read", f"{len(specs)} input(s) opened in {time.perf_counter() - started:.1f} s")
    return Contents(
        volume=volume,
        lattices=tuple(lattices),
        geometric=tuple(geometric),
        meshes=tuple(meshes),
    )


@dataclass(frozen=True, slots=True)
class _Grid:
    """The entry volume's level-1 grid that segmentations must sit on."""

    shape: tuple[int, int, int]
    voxel: tuple[float, float, float]
    origin: tuple[float, float, float]
    frames: int
    path: Path  # the volume's file (add) or the entry's folder (extend), for messages

    @classmethod
    def of(cls, volume: VolumeSource) -> _Grid:
        return cls(volume.shape, volume.voxel_size, volume.origin, len(volume.frames), volume.path)


def _check_segmentations(
    options: PreprocessOptions,
    contents: Contents,
    grid: _Grid,
    documents: EntryDocuments | None,
) -> None:
    """What a run adds, checked before anything is written: every lattice on the volume's grid
    and within its time frames, ids unique in the run and new to the entry (``documents`` of an
    entry being extended), geometric and mesh ids likewise."""
    taken = set(documents.lattice_ids) if documents else set()
    seen: dict[str, Path] = {}
    for lattice in contents.lattices:
        check_lattice_grid(lattice, grid.shape, grid.voxel, grid.path, grid.origin)
        _check_frames(f"lattice {lattice.lattice_id}", len(lattice.frames), grid, lattice.path)
        if lattice.lattice_id in seen:
            raise OptionError(
                f"lattice id {lattice.lattice_id!r} given twice: {seen[lattice.lattice_id]} and "
                f"{lattice.path} (map one with segmentation_ids_mapping in extra_data)"
            )
        seen[lattice.lattice_id] = lattice.path
    clash = sorted(set(seen) & taken)
    if clash:
        raise OptionError(
            f"lattice id(s) {', '.join(clash)} already in entry {options.source_db}/"
            f"{options.entry_id} (from {', '.join(str(seen[i]) for i in clash)}; give new ids "
            "with segmentation_ids_mapping in extra_data)"
        )
    check_geometric_ids(
        contents.geometric, documents.geometric_ids if documents else None, _entry_key(options)
    )
    check_mesh_sets(contents.meshes, documents.mesh_set_ids if documents else ())
    for mesh_set in contents.meshes:
        _check_frames(f"mesh set {mesh_set.set_id}", len(mesh_set.frames), grid, mesh_set.path)


def _check_frames(what: str, frames: int, grid: _Grid, path: Path) -> None:
    """A segmentation has the volume's time frames, or one frame (then stored at every frame
    of the volume: the viewer asks for every segmentation at every frame it shows)."""
    if frames not in (1, grid.frames):
        raise GridMismatchError(
            f"{frames} time frames, but the volume of {grid.path} has {grid.frames} ({what}: "
            "a segmentation needs the volume's frames, or one frame, then stored at every "
            "frame)",
            path,
        )


def _repeat(frames: int, grid: _Grid) -> int:
    """How often a segmentation's frames are stored: a one-frame segmentation at every frame
    of the volume."""
    return grid.frames if frames == 1 else 1


def _plan_new_entry(
    options: PreprocessOptions, contents: Contents
) -> tuple[VolumeSource, LevelPlan]:
    """The volume of a new entry, its inputs checked, and its level plan."""
    volume = contents.volume
    assert volume is not None  # checked in _check_inputs
    _check_segmentations(options, contents, _Grid.of(volume), None)
    plan = plan_levels(volume.shape, volume.dtype.itemsize, options.levels)
    _check_quantize_levels(options, plan)
    return volume, plan


def _check_quantize_levels(options: PreprocessOptions, plan: LevelPlan) -> None:
    """Every level named by --quantize-downsampling-levels must be stored."""
    if options.quantize_levels is None:
        return
    missing = sorted(set(options.quantize_levels) - set(plan.stored_ratios))
    if missing:
        raise OptionError(
            f"--quantize-downsampling-levels: level(s) {', '.join(map(str, missing))} not stored "
            f"(stored: {', '.join(map(str, plan.stored_ratios))})"
        )


def _quantized(options: PreprocessOptions, ratio: int, dtype: np.dtype) -> bool:
    q = options.quantize_dtype
    if q is None:
        return False
    if options.quantize_levels is not None and ratio not in options.quantize_levels:
        return False
    return dtype.itemsize > q.itemsize


@contextlib.contextmanager
def _engine(
    options: PreprocessOptions, progress: Progress, runner: Runner | None
) -> Iterator[Engine]:
    """The run's engine: its runner (threads, or a dask.distributed cluster; ``runner`` when
    the caller shares one between runs) and its memory budget."""
    smallest = (2 * options.chunk_size) ** 3 * 8  # one block edge cubed, 8-byte label scratch
    threaded = runner is None and options.scheduler is None and options.workers is None
    # threads: the budget may run fewer; checked here too before a cluster is reached
    threads, window, block_bytes = memory_budget(
        options.max_memory, _workers() if threaded else 1, 4, smallest
    )
    if threaded:
        # remote maps and masks: copied first by large ranged requests, within the blocks' budget
        with copying_objects(block_bytes * threads):
            yield Engine(ThreadedRunner(threads), options.block_size, block_bytes, window, progress)
        return
    with contextlib.ExitStack() as stack:
        if runner is None:
            parts = stack.enter_context(
                _run_folder(options.working_folder, options.entry_id, "parts-")
            )
            runner = stack.enter_context(
                open_cluster(
                    options.scheduler,
                    options.workers,
                    parts,
                    transfer=options.transfer or "auto",
                    max_memory=options.max_memory,
                )
            )
        _check_transfer(options, runner)
        # a cluster's workers run as many tasks as they have threads: only blocks shrink
        _, window, block_bytes = memory_budget(
            options.max_memory, runner.threads_per_process, 4, smallest, fixed_threads=True
        )
        # workers that share the working folder read the client's copy; others read in place
        shared = getattr(runner, "transfer", "shared") != "comms"
        with copying_objects(block_bytes if shared else None):
            yield Engine(runner, options.block_size, block_bytes, window, progress)


def _workers() -> int:
    """CPUs this process may run on (affinity and container limits), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


LevelKey = tuple[int, int, str]  # (ratio, time, channel)


def _statistics(key: LevelKey, moments: np.ndarray, volume: VolumeSource) -> Statistics:
    st = combine_moments(moments)
    if not (math.isfinite(st.mean) and math.isfinite(st.std)):
        ratio, t, channel = key
        raise InputFormatError(
            f"the volume contains NaN or infinite values (level {ratio}, frame {t}, "
            f"channel {channel})",
            volume.path,
        )
    return st


def _write_volume(
    writer: DataWriter,
    volume: VolumeSource,
    plan: LevelPlan,
    options: PreprocessOptions,
    scratch: Path,
    engine: Engine,
    warn: Reporter,
) -> dict[LevelKey, Statistics]:
    """Store every level of every frame and channel; return their statistics.

    One pass per level (DESIGN 7.1): the pass over level r writes level r's chunks and level 2r
    into a scratch file, reducing the statistics of both from the blocks it holds. The input is
    read once; quantizing level 1 needs its min/max first, so then a statistics-only pass
    over the input comes before.
    """
    dtype, order = volume.dtype, volume.memory_order
    keys = [(t, c) for t in range(len(volume.frames)) for c in range(len(volume.channel_ids))]

    def key(ratio: int, t: int, c: int) -> LevelKey:
        return (ratio, t, volume.channel_ids[c])

    quantized = {
        lv.ratio for lv in plan.levels if lv.stored and _quantized(options, lv.ratio, dtype)
    }
    if (
        options.quantize_dtype is not None
        and not quantized
        and dtype.itemsize <= (options.quantize_dtype.itemsize)
    ):
        warn(
            f"warning: {volume.path}: volume dtype {dtype} is not larger than "
            f"{options.quantize_dtype}; stored without quantization"
        )
    stats: dict[LevelKey, Statistics] = {}
    sources = {tc: volume.frames[tc[0]][tc[1]] for tc in keys}
    if 1 in quantized:
        jobs = [LevelJob(sources[tc], None, None, None, measure=True) for tc in keys]
        moments_ = run_pass(jobs, engine, order, None, "read", "statistics")
        for tc, moments in zip(keys, moments_, strict=True):
            stats[key(1, *tc)] = _statistics(key(1, *tc), moments[:, 0], volume)
    for i, lv in enumerate(plan.levels):
        below = plan.levels[i + 1] if i + 1 < len(plan.levels) else None
        jobs = []
        for t, c in keys:
            target, params = None, None
            if lv.stored:
                attrs = None
                out_dtype = dtype
                if lv.ratio in quantized:
                    out_dtype = options.quantize_dtype
                    st = stats[key(lv.ratio, t, c)]
                    params = QuantizationParams.from_range(st.min, st.max, dtype, out_dtype)
                    attrs = {QUANTIZATION_ATTRIBUTE: quantization_record(params)}
                target = writer.array(
                    volume_key(lv.ratio, t, volume.channel_ids[c]),
                    lv.shape,
                    out_dtype,
                    (options.chunk_size,) * 3,
                    attrs,
                    order=order,
                )
            next_level = None
            if below is not None:
                name = f"level-{below.ratio}-{t}-{c}.raw"
                next_level = create_scratch(scratch, name, below.shape, dtype, order)
            measure = key(lv.ratio, t, c) not in stats
            jobs.append(LevelJob(sources[(t, c)], target, params, next_level, measure))
        for (t, c), job, moments in zip(
            keys,
            jobs,
            run_pass(jobs, engine, order, writer.sink, "levels", f"level {lv.ratio}"),
            strict=True,
        ):
            if job.measure:
                stats[key(lv.ratio, t, c)] = _statistics(key(lv.ratio, t, c), moments[:, 0], volume)
            if below is not None:
                stats[key(below.ratio, t, c)] = _statistics(
                    key(below.ratio, t, c), moments[:, 1], volume
                )
            if lv.ratio > 1:  # the scratch copy of level r is no longer needed
                remove_scratch(sources[(t, c)])
            if job.next_level is not None:
                sources[(t, c)] = job.next_level
    for arr in sources.values():
        if plan.levels[-1].ratio > 1:
            remove_scratch(arr)
    return stats


def _scratch_peak(plan: LevelPlan, itemsize: int, arrays: int) -> int:
    """Most scratch bytes a pyramid pass holds at once: while level r is read from scratch the
    level below it is written, for each of ``arrays`` (frames x channels) arrays."""
    sizes = [math.prod(lv.shape) for lv in plan.levels[1:]]
    pairs = [a + b for a, b in zip(sizes, [*sizes[1:], 0], strict=True)]
    return max(pairs, default=0) * itemsize * arrays


def _check_scratch_space(
    work: Path, plan: LevelPlan, volume: VolumeSource | None, lattices: tuple[LabelSource, ...]
) -> None:
    """The declared sizes against the working folder's free space, before any level is
    written there (the volume pass and then each lattice's pass)."""
    needed = 0
    if volume is not None:
        arrays = len(volume.frames) * len(volume.channel_ids)
        needed = _scratch_peak(plan, volume.dtype.itemsize, arrays)
    for lattice in lattices:  # label levels are kept as uint64 scratch
        needed = max(needed, _scratch_peak(plan, 8, len(lattice.frames)))
    check_free_space(work.parent, needed)


def _read_extra(options: PreprocessOptions) -> ExtraData | None:
    spec = _first(options, frozenset({InputKind.EXTRA_DATA}))
    if spec is None:
        return None
    with fetched(spec.path) as local:
        extra = read_extra_data(local)
    return replace(extra, path=spec.path) if is_url(spec.path) else extra


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
    _check_inputs(options)
    location = _check_location(options)
    # headers only: nothing is written, compressed maps are not decompressed
    extra = _read_extra(options)
    if options.mode is Mode.EXTEND:
        from pipeline.db.validate import checked_documents

        documents = checked_documents(location)
        plan, grid = _existing_grid(documents, location)
        _check_segmentations(options, _read_inputs(options, extra, None), grid, documents)
        return RunSummary(location, plan, grid.shape, np.dtype(np.uint32), 0, 0.0, committed=False)
    volume, plan = _plan_new_entry(options, _read_inputs(options, extra, None))
    _warn_viewer_id(options)
    return _summary(location, volume, plan, 0.0, done=False)


def _write_lattices(
    writer: DataWriter,
    lattices: tuple[LabelSource, ...],
    plan: LevelPlan,
    work: Path,
    options: PreprocessOptions,
    engine: Engine,
    grid: _Grid,
) -> list[LatticeResult]:
    return [
        write_lattice(
            writer,
            lattice,
            plan,
            work,
            options.chunk_size,
            engine,
            _repeat(len(lattice.frames), grid),
        )
        for lattice in lattices
    ]


def _write_mesh_sets(
    writer: DataWriter, mesh_sets: tuple[MeshSetSource, ...], grid: _Grid
) -> list[MeshSetResult]:
    return [write_mesh_set(writer, m, _repeat(len(m.frames), grid)) for m in mesh_sets]


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


def _existing_grid(documents: EntryDocuments, location: EntryLocation) -> tuple[LevelPlan, _Grid]:
    """The entry's level plan and level-1 grid (shape, voxel size, origin, time frames)."""
    volumes = documents.metadata.volumes
    box = None if volumes is None else volumes.volume_sampling_info.boxes.get("1")
    if volumes is None or box is None:
        raise EntryNotFoundError("entry has no volume grid in metadata.json", location.folder)
    shape = tuple(box.grid_dimensions)
    voxel = tuple(float(v) for v in box.voxel_size)
    origin = tuple(float(v) for v in box.origin)
    available = set(volumes.volume_sampling_info.available_levels)
    frames = len(volumes.time_info.frames)
    grid = _Grid(shape, voxel, origin, frames, location.folder)  # type: ignore[arg-type]
    return plan_from_stored(shape, available, 4), grid  # type: ignore[arg-type]


def _stage_documents(staged_folder: Path, documents: EntryDocuments) -> list[str]:
    """Write the entry's documents into the staged folder; returns their names (metadata.json
    last)."""
    from pipeline.db.documents import write_documents

    return write_documents(staged_folder, documents.files())


def _extend(
    options: PreprocessOptions, location: EntryLocation, engine: Engine, warn: Reporter
) -> RunSummary:
    """Add lattices to an existing entry: a new data.zip holding the old members and the new
    ones, merged metadata and annotations, swapped in atomically. A damaged entry is refused."""
    from pipeline.db.validate import checked_documents

    started = time.perf_counter()
    documents = checked_documents(location)
    plan, grid = _existing_grid(documents, location)
    with _run_folder(options.working_folder, options.entry_id) as work:
        extra = _read_extra(options)
        contents = _read_inputs(options, extra, work / "scratch", engine.progress, grid)
        lattices = contents.lattices
        _check_segmentations(options, contents, grid, documents)
        _check_scratch_space(work, plan, None, lattices)
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
    _check_inputs(options)
    location = EntryLocation(options.db_path, options.source_db, options.entry_id)
    with (
        using_storage_options(options.storage_options),
        reporting_to(warn),
        _tidy(options.working_folder, options.db_path),
        entry_lock(location),
    ):
        _check_location(options)
        with _engine(options, progress, runner) as engine:
            if options.mode is Mode.EXTEND:
                return _extend(options, location, engine, warn or (lambda _: None))
            summary = _add(options, location, engine, warn)
            _warn_viewer_id(options)  # once the entry is there
            return summary


def _add(
    options: PreprocessOptions, location: EntryLocation, engine: Engine, warn: Reporter | None
) -> RunSummary:
    """A new entry: volume pyramid, lattices, metadata and annotations, one rename."""
    started = time.perf_counter()
    with _run_folder(options.working_folder, options.entry_id) as work:
        extra = _read_extra(options)
        contents = _read_inputs(options, extra, work / "scratch", engine.progress)
        volume, plan = _plan_new_entry(options, contents)
        lattices = contents.lattices
        _check_scratch_space(work, plan, volume, lattices)
        with staged_entry(location) as staged:
            with new_archive(staged.data_zip) as sink:
                writer = DataWriter(sink, options.compressor)
                stats = _write_volume(
                    writer, volume, plan, options, work, engine, warn or (lambda _: None)
                )
                grid = _Grid.of(volume)
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
