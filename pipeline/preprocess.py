"""Orchestration of ``preprocess``: inputs -> plan -> task graph -> zarr -> commit.

The only module that wires readers, algorithms and the database together (DESIGN section 2).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from pipeline.algorithms.levels import Level, LevelPlan, plan_levels
from pipeline.algorithms.pyramid import downsample
from pipeline.algorithms.quantize import QuantizationParams, quantize_block
from pipeline.algorithms.statistics import Statistics, block_moments, combine_moments
from pipeline.chunks import aligned_or_rechunked
from pipeline.db.commit import staged_entry
from pipeline.db.layout import ANNOTATIONS_JSON, METADATA_JSON, EntryLocation
from pipeline.db.metadata import (
    apply_entry_metadata,
    empty_annotations,
    empty_metadata,
    volume_channel_annotations,
    volume_metadata,
)
from pipeline.db.sinks import ZipSink
from pipeline.db.writer import ArrayTarget, DataWriter
from pipeline.errors import (
    EntryExistsError,
    EntryNotFoundError,
    InputFormatError,
    InputNotFoundError,
    OptionError,
    UnsupportedInputError,
)
from pipeline.inputs.extra_data import read_extra_data
from pipeline.inputs.mrc import read_map
from pipeline.model import ExtraData, VolumeSource
from pipeline.options import InputKind, InputSpec, Mode, PreprocessOptions

__all__ = ["RunSummary", "plan_run", "preprocess"]

SUPPORTED_KINDS = frozenset({InputKind.MAP, InputKind.EXTRA_DATA})
VOLUME_KINDS = frozenset(
    {InputKind.MAP, InputKind.NII_VOLUME, InputKind.OMEZARR, InputKind.OMETIFF_IMAGE}
)
DIRECTORY_KINDS = frozenset({InputKind.OMEZARR})

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
            f"{self.input_bytes / 1e6:.1f} MB per channel and frame"
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
    if options.mode is Mode.EXTEND:
        raise UnsupportedInputError("not supported yet: --mode extend")
    if not volumes:
        raise OptionError(
            "an entry needs a volume input (map, nii_volume, omezarr or ometiff_image)"
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
def _run_folder(working_folder: Path, entry_id: str) -> Iterator[Path]:
    """A private folder under --working-folder, removed on success and on failure."""
    try:
        working_folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"cannot create the working folder: {exc.strerror}") from exc
    folder = working_folder / f".cellstar-{entry_id}-{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _first(options: PreprocessOptions, kinds: frozenset[InputKind]) -> InputSpec | None:
    return next((s for s in options.inputs if s.kind in kinds), None)


def _read_volume(
    options: PreprocessOptions, extra: ExtraData | None, scratch: Path
) -> VolumeSource:
    spec = _first(options, VOLUME_KINDS)
    assert spec is not None  # checked in _check_inputs
    voxel = extra.volume_voxel_size if extra is not None else None
    volume = read_map(spec.path, scratch, voxel_size=voxel, block=options.block_size)
    if options.force_volume_dtype is not None and options.force_volume_dtype != volume.dtype:
        dtype = options.force_volume_dtype
        volume = replace(
            volume,
            frames=tuple(tuple(a.astype(dtype) for a in frame) for frame in volume.frames),
        )
    return volume


def _store_block(
    block: np.ndarray,
    target: ArrayTarget | None,
    params: QuantizationParams | None,
    measure: bool,
    block_info: Any = None,
) -> np.ndarray:
    """Write one chunk-aligned block (quantized if ``params``) and return its moments."""
    if target is not None:
        origin = tuple(a for a, _ in block_info[0]["array-location"])
        data = block if params is None else quantize_block(block, params, target.dtype)
        target.write_block(data, origin)
    if not measure:
        return np.zeros((1, 1, 1, 5))
    return block_moments(block)[None, None, None, :]


def _store_and_measure(
    level: da.Array,
    target: ArrayTarget | None,
    params: QuantizationParams | None = None,
    measure: bool = True,
) -> da.Array:
    """A (blocks x 5) array of per-block moments; computing it writes the level's chunks."""
    return da.map_blocks(
        _store_block,
        level,
        target=target,
        params=params,
        measure=measure,
        chunks=(*(tuple(1 for _ in c) for c in level.chunks), (5,)),
        new_axis=3,
        dtype=np.float64,
        meta=np.empty((0, 0, 0, 0), np.float64),
        name=f"store-{uuid.uuid4().hex}",
    )


def _quantized(options: PreprocessOptions, ratio: int, dtype: np.dtype) -> bool:
    q = options.quantize_dtype
    if q is None:
        return False
    if options.quantize_levels is not None and ratio not in options.quantize_levels:
        return False
    return dtype.itemsize > q.itemsize


def _compute(graphs: Any, progress: bool) -> Any:
    ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if progress:
        from dask.diagnostics import ProgressBar

        ctx = ProgressBar(minimum=1.0)
    with ctx:
        return dask.compute(graphs, scheduler="threads", num_workers=os.cpu_count())[0]


LevelKey = tuple[int, int, str]  # (ratio, time, channel)


def _levels(
    volume: VolumeSource, plan: LevelPlan, block: int
) -> Iterator[tuple[LevelKey, Level, da.Array]]:
    """Every planned level of every frame and channel, each built from the previous level."""
    # The pyramid is computed on C-contiguous blocks (the filter is symmetric in the axes):
    # for Fortran-ordered sources that is the transposed view, transposed back for storage.
    flip = volume.memory_order == "F"
    for t, frame in enumerate(volume.frames):
        for channel, arr in zip(volume.channel_ids, frame, strict=True):
            level = arr.T if flip else arr
            for lv in plan.levels:
                level = level.rechunk(tuple(aligned_or_rechunked(c, block) for c in level.chunks))
                if lv.ratio > 1:
                    level = downsample(level)
                yield (lv.ratio, t, channel), lv, (level.T if flip else level)


def _statistics(
    moments: dict[LevelKey, np.ndarray], volume: VolumeSource
) -> dict[LevelKey, Statistics]:
    stats = {key: combine_moments(m) for key, m in moments.items()}
    for (ratio, t, channel), st in stats.items():
        if not (math.isfinite(st.mean) and math.isfinite(st.std)):
            raise InputFormatError(
                f"the volume contains NaN or infinite values (level {ratio}, frame {t}, "
                f"channel {channel})",
                volume.path,
            )
    return stats


def _write_volume(
    writer: DataWriter,
    volume: VolumeSource,
    plan: LevelPlan,
    options: PreprocessOptions,
    progress: bool,
    warn: Reporter,
) -> dict[LevelKey, Statistics]:
    """Store every level of every frame and channel; return their statistics.

    Without quantization this is one pass: statistics are reduced from the blocks being
    written. Quantization needs each level's min/max before its first block is encoded, so a
    first pass computes the statistics and a second one writes.
    """
    block, chunk = options.block_size, options.chunk_size
    dtype = volume.dtype
    quantized = {
        key
        for key, lv, _ in _levels(volume, plan, block)
        if lv.stored and _quantized(options, lv.ratio, dtype)
    }
    if options.quantize_dtype is not None and not quantized:
        warn(
            f"warning: {volume.path}: volume dtype {dtype} is not larger than "
            f"{options.quantize_dtype}; stored without quantization"
        )
    stats: dict[LevelKey, Statistics] | None = None
    if quantized:
        measured = {
            key: _store_and_measure(lvl, None) for key, _, lvl in _levels(volume, plan, block)
        }
        stats = _statistics(_compute(measured, progress), volume)
    parts: dict[LevelKey, da.Array] = {}
    for key, lv, level in _levels(volume, plan, block):
        target, params = None, None
        if lv.stored:
            ratio, t, channel = key
            attrs, out_dtype = None, dtype
            if key in quantized:
                assert stats is not None and options.quantize_dtype is not None
                out_dtype = options.quantize_dtype
                params = QuantizationParams.from_range(
                    stats[key].min, stats[key].max, dtype, out_dtype
                )
                attrs = {"quantization_data_dict": params.to_json()}
            target = writer.array(
                f"volume_data/{ratio}/{t}/{channel}",
                lv.shape,
                out_dtype,
                (chunk,) * 3,
                attrs,
                order=volume.memory_order,
            )
        parts[key] = _store_and_measure(level, target, params, measure=stats is None)
    moments = _compute(parts, progress)
    return stats if stats is not None else _statistics(moments, volume)


def _read_extra(options: PreprocessOptions) -> ExtraData | None:
    spec = _first(options, frozenset({InputKind.EXTRA_DATA}))
    return read_extra_data(spec.path) if spec is not None else None


def _summary(
    location: EntryLocation, volume: VolumeSource, plan: LevelPlan, seconds: float, done: bool
) -> RunSummary:
    frames = len(volume.frames) * len(volume.channel_ids)
    return RunSummary(
        location=location,
        plan=plan,
        volume_shape=volume.shape,
        dtype=volume.dtype,
        input_bytes=math.prod(volume.shape) * volume.dtype.itemsize * frames,
        seconds=seconds,
        committed=done,
    )


def plan_run(options: PreprocessOptions) -> RunSummary:
    """Check the inputs and compute the level plan without writing anything (``--dry-run``)."""
    _check_inputs(options)
    location = _check_location(options)
    with _run_folder(options.working_folder, options.entry_id) as work:
        volume = _read_volume(options, _read_extra(options), work / "scratch")
        plan = plan_levels(volume.shape, volume.dtype.itemsize, options.levels)
        return _summary(location, volume, plan, 0.0, done=False)


def preprocess(
    options: PreprocessOptions, *, progress: bool = False, warn: Reporter | None = None
) -> RunSummary:
    """Run ``preprocess`` (add): read inputs lazily, build and store the pyramid, commit.

    Chunks stream from the task graph straight into the staged data.zip; the entry appears
    by one rename. Any :class:`pipeline.errors.PreprocessorError` leaves the database as it was.
    """
    started = time.perf_counter()
    _check_inputs(options)
    location = _check_location(options)
    with _run_folder(options.working_folder, options.entry_id) as work:
        extra = _read_extra(options)
        volume = _read_volume(options, extra, work / "scratch")
        plan = plan_levels(volume.shape, volume.dtype.itemsize, options.levels)
        with staged_entry(location) as staged:
            sink = ZipSink(staged.data_zip)
            try:
                writer = DataWriter(sink, options.compressor)
                stats = _write_volume(
                    writer, volume, plan, options, progress, warn or (lambda _: None)
                )
                writer.finish()
            finally:
                sink.close()
            metadata = empty_metadata(options.source_db_name, options.source_db_id)
            metadata["volumes"] = volume_metadata(volume, plan, stats)
            apply_entry_metadata(metadata, extra)
            annotations = empty_annotations(options.source_db_name, options.source_db_id)
            annotations["volume_channels_annotations"] = volume_channel_annotations(volume)
            staged.write_json(METADATA_JSON, metadata)
            staged.write_json(ANNOTATIONS_JSON, annotations)
            staged.commit()
    return _summary(location, volume, plan, time.perf_counter() - started, done=True)
