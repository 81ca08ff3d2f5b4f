"""Options of a run as one immutable, validated object (built by the CLI or by callers)."""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import OptionError
from pipeline.inputs.kinds import InputKind, kind_problem  # the registration of every kind

if TYPE_CHECKING:  # re-exported through __getattr__: importing options loads no part of the db
    from pipeline.db.names import validate_name

__all__ = [
    "OPTION_DEFAULTS",
    "Compressor",
    "InputKind",
    "InputSpec",
    "LevelOptions",
    "Mode",
    "PreprocessOptions",
    "build_options",
    "input_specs",
    "parse_dtype",
    "parse_size",
    "parse_storage_options",
    "validate_name",
    "validate_run_options",
]


class Mode(enum.Enum):
    ADD = "add"
    EXTEND = "extend"


class Compressor(enum.Enum):
    LZ4 = "lz4"
    ZSTD = "zstd"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One ``--input-path`` with its ``--input-kind``."""

    path: Path
    kind: InputKind


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


@dataclass(frozen=True, slots=True)
class LevelOptions:
    """How many 2x levels to compute and which to store (DESIGN section 3.3)."""

    min_size_mb: float = 5.0
    max_size_mb: float | None = None
    min_level: int | None = None
    max_level: int | None = None
    remove_original_resolution: bool = False

    def __post_init__(self) -> None:
        for name, size in (("min", self.min_size_mb), ("max", self.max_size_mb)):
            if size is not None and not math.isfinite(size):
                raise OptionError(f"--{name}-size-per-downsampling-lvl-mb must be finite")
        if self.min_size_mb <= 0:
            raise OptionError(
                f"--min-size-per-downsampling-lvl-mb must be > 0, got {self.min_size_mb}"
            )
        if self.max_size_mb is not None and self.max_size_mb <= 0:
            raise OptionError(
                f"--max-size-per-downsampling-lvl-mb must be > 0, got {self.max_size_mb}"
            )
        for name, value in (("min", self.min_level), ("max", self.max_level)):
            if value is not None and not _is_power_of_two(value):
                raise OptionError(
                    f"--{name}-downsampling-level must be a power of two (1, 2, 4, ...), "
                    f"got {value}"
                )
        if (
            self.min_level is not None
            and self.max_level is not None
            and self.min_level > self.max_level
        ):
            raise OptionError(
                f"--min-downsampling-level {self.min_level} is greater than "
                f"--max-downsampling-level {self.max_level}"
            )


def parse_dtype(text: str, option: str) -> np.dtype:
    """Parse a numpy dtype string (``f4``, ``float32``, ``u1`` ...) naming a real number type.

    >>> parse_dtype("f4", "--force-volume-dtype")
    dtype('float32')
    """
    try:
        dtype = np.dtype(text)
    except TypeError as exc:
        raise OptionError(f"{option}: not a numpy dtype: {text!r}") from exc
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise OptionError(f"{option}: {text!r} is not an integer or float dtype")
    return dtype.newbyteorder("=")


_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([kKmMgGtT]?)(i?)[bB]?\s*$")


def parse_size(text: str, option: str) -> int:
    """A size in bytes from ``2GiB``, ``1.5GB``, ``512MiB``, ``800M`` or a plain byte count
    (``k``/``M``/``G``/``T`` are powers of 1000, ``Ki``/``Mi``/``Gi``/``Ti`` of 1024).

    >>> parse_size("2GiB", "--max-memory"), parse_size("1.5G", "--max-memory")
    (2147483648, 1500000000)
    """
    match = _SIZE_RE.fullmatch(text)
    if not match:
        raise OptionError(f"{option}: not a size: {text!r} (e.g. 2GiB, 1500MB)")
    number, prefix, binary = match.groups()
    if binary and not prefix:
        raise OptionError(f"{option}: not a size: {text!r} (e.g. 2GiB, 1500MB)")
    power = "kmgt".find(prefix.lower()) + 1 if prefix else 0
    value = float(number) * (1024 if binary else 1000) ** power
    if not 1 <= value < 2**62:
        raise OptionError(f"{option}: {text!r} is not a size between 1 byte and 4 EiB")
    return int(value)


def validate_run_options(
    scheduler: str | None, workers: int | None, max_memory: int | None
) -> None:
    """``--scheduler``, ``--workers`` and ``--max-memory`` of a command that runs blocks."""
    if scheduler is not None and workers is not None:
        raise OptionError("--scheduler and --workers exclude each other")
    if workers is not None and workers < 1:
        raise OptionError(f"--workers must be at least 1, got {workers}")
    if max_memory is not None and max_memory <= 0:
        raise OptionError(f"--max-memory must be positive, got {max_memory}")


@dataclass(frozen=True, slots=True)
class PreprocessOptions:
    """Everything a ``preprocess`` run needs, validated on construction."""

    mode: Mode
    inputs: tuple[InputSpec, ...]
    entry_id: str
    source_db: str
    source_db_id: str
    source_db_name: str
    working_folder: Path
    db_path: Path
    levels: LevelOptions = field(default_factory=LevelOptions)
    quantize_dtype: np.dtype | None = None
    quantize_levels: tuple[int, ...] | None = None
    force_volume_dtype: np.dtype | None = None
    compressor: Compressor = Compressor.LZ4
    block_size: int = 128
    chunk_size: int = 64
    dry_run: bool = False
    max_memory: int | None = None  # bytes of block data in flight (--max-memory)
    scheduler: str | None = None  # address of a dask.distributed scheduler (--scheduler)
    workers: int | None = None  # processes of a local dask.distributed cluster (--workers)
    # fsspec options of URL inputs (--storage-options), e.g. {"anon": True}
    storage_options: dict[str, Any] | None = None
    # how a cluster's workers hand chunks back (--transfer): "shared" (part files in the
    # working folder), "comms" (dask's communication) or None (probed)
    transfer: str | None = None

    def __post_init__(self) -> None:
        if not self.inputs:
            raise OptionError("at least one --input-path/--input-kind pair is required")
        # the naming rules live in the db layer; imported here, so that importing options (as
        # the engine and the algorithms do) loads no part of the database
        from pipeline.db.names import validate_name

        validate_name(self.entry_id, "--entry-id")
        validate_name(self.source_db, "--source-db")
        if self.quantize_dtype is not None and self.quantize_dtype not in (
            np.dtype("u1"),
            np.dtype("u2"),
        ):
            raise OptionError(f"--quantize-dtype-str must be u1 or u2, got {self.quantize_dtype}")
        if self.quantize_levels is not None:
            for level in self.quantize_levels:
                if not _is_power_of_two(level):
                    raise OptionError(
                        "--quantize-downsampling-levels: levels are powers of two "
                        f"(1, 2, 4, ...), got {level}"
                    )
        if self.quantize_levels is not None and self.quantize_dtype is None:
            raise OptionError(
                "--quantize-downsampling-levels needs --quantize-dtype-str (u1 or u2): without "
                "it nothing is quantized"
            )
        if not _is_power_of_two(self.chunk_size) or self.chunk_size < 8:
            raise OptionError(f"chunk size must be a power of two >= 8, got {self.chunk_size}")
        if self.scheduler is not None or self.workers is not None:
            # worker processes have their own working directory: give them absolute paths
            object.__setattr__(self, "working_folder", Path(self.working_folder).absolute())
            object.__setattr__(self, "db_path", Path(self.db_path).absolute())
            absolute = tuple(
                s if _is_url(s.path) else InputSpec(Path(s.path).absolute(), s.kind)
                for s in self.inputs
            )
            object.__setattr__(self, "inputs", absolute)
        if self.transfer not in (None, "shared", "comms"):
            raise OptionError(f"--transfer must be shared or comms, got {self.transfer!r}")
        if self.transfer is not None and self.scheduler is None and self.workers is None:
            raise OptionError("--transfer applies to runs on a cluster (--scheduler, --workers)")
        validate_run_options(self.scheduler, self.workers, self.max_memory)
        if self.block_size % (2 * self.chunk_size):
            raise OptionError(
                f"block size {self.block_size} must be a multiple of twice the chunk size"
            )


# --- options from the command line's fields (preprocess and batch share this) -------------

def _levels_list(values: tuple[str, ...] | list[Any] | str | None) -> tuple[int, ...] | None:
    if not values:
        return None
    if isinstance(values, str):
        values = (values,)
    out = []
    for value in values:
        for token in re.split(r"[\s,]+", str(value).strip()):
            if not token:
                continue
            try:
                out.append(int(token))
            except ValueError as exc:
                raise OptionError(
                    f"--quantize-downsampling-levels: {token!r} is not a level number"
                ) from exc
    return tuple(out)


def input_specs(paths: Sequence[Path | str], kinds: Sequence[str]) -> tuple[InputSpec, ...]:
    """``--input-path``/``--input-kind`` pairs, by position."""
    if len(paths) != len(kinds):
        raise OptionError(
            f"{len(paths)} --input-path but {len(kinds)} --input-kind: give one kind per path, "
            "in the same order"
        )
    specs = []
    for path, kind in zip(paths, kinds, strict=True):
        if (problem := kind_problem(kind)) is not None:
            raise OptionError(f"unknown --input-kind {problem}")
        specs.append(InputSpec(path=_input_path(path), kind=InputKind(kind)))
    return tuple(specs)


def _is_url(path: Any) -> bool:
    from pipeline.inputs.source import is_url

    return is_url(path)


def _input_path(path: Path | str) -> Path:
    """A local path, or a URL kept as given (``s3://``, ``gs://``, ``http(s)://``)."""
    from pipeline.inputs.source import as_input_path

    return as_input_path(path)  # type: ignore[return-value]


def parse_storage_options(value: Any) -> dict[str, Any] | None:
    """``--storage-options``: a JSON object (text, or already parsed from a batch list)."""
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise OptionError(f"--storage-options: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise OptionError('--storage-options must be a JSON object, e.g. \'{"anon": true}\'')
    return value


# the fields of ``preprocess`` that have defaults (the batch list may set them per entry)
OPTION_DEFAULTS: dict[str, Any] = {
    "mode": "add",
    "quantize_dtype_str": None,
    "quantize_downsampling_levels": (),
    "force_volume_dtype": None,
    "max_size_per_downsampling_lvl_mb": None,
    "min_size_per_downsampling_lvl_mb": 5.0,
    "min_downsampling_level": None,
    "max_downsampling_level": None,
    "remove_original_resolution": False,
    "compressor": "lz4",
    "dry_run": False,
    "scheduler": None,
    "workers": None,
    "max_memory": None,
    "storage_options": None,
    "transfer": None,
}


def _dtype_field(fields: dict[str, Any], name: str) -> np.dtype | None:
    value = fields[name]
    return parse_dtype(str(value), f"--{name.replace('_', '-')}") if value else None


def build_options(fields: dict[str, Any]) -> PreprocessOptions:
    """:class:`PreprocessOptions` from the command line's fields (names as the ``preprocess``
    options, ``_`` for ``-``; ``inputs`` already paired), defaults for the missing ones."""
    f = {**OPTION_DEFAULTS, **fields}
    try:
        mode = Mode(f["mode"])
    except ValueError:
        raise OptionError(f"--mode must be add or extend, got {f['mode']!r}") from None
    try:
        compressor = Compressor(f["compressor"])
    except ValueError:
        raise OptionError(f"--compressor must be lz4 or zstd, got {f['compressor']!r}") from None
    max_memory = f["max_memory"]
    if isinstance(max_memory, str):
        max_memory = parse_size(max_memory, "--max-memory")
    return PreprocessOptions(
        mode=mode,
        inputs=tuple(f["inputs"]),
        entry_id=f["entry_id"],
        source_db=f["source_db"],
        source_db_id=f["source_db_id"],
        source_db_name=f["source_db_name"],
        working_folder=Path(f["working_folder"]),
        db_path=Path(f["db_path"]),
        levels=LevelOptions(
            min_size_mb=f["min_size_per_downsampling_lvl_mb"],
            max_size_mb=f["max_size_per_downsampling_lvl_mb"],
            min_level=f["min_downsampling_level"],
            max_level=f["max_downsampling_level"],
            remove_original_resolution=bool(f["remove_original_resolution"]),
        ),
        quantize_dtype=_dtype_field(f, "quantize_dtype_str"),
        quantize_levels=_levels_list(f["quantize_downsampling_levels"]),
        force_volume_dtype=_dtype_field(f, "force_volume_dtype"),
        compressor=compressor,
        dry_run=bool(f["dry_run"]),
        max_memory=max_memory,
        scheduler=f["scheduler"],
        workers=f["workers"],
        storage_options=parse_storage_options(f["storage_options"]),
        transfer=f["transfer"],
    )


def __getattr__(name: str) -> Any:
    # ``validate_name`` stays importable from here, loaded on first use (see __post_init__)
    if name == "validate_name":
        from pipeline.db.names import validate_name

        return validate_name
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
