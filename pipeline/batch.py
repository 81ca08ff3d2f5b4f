"""``batch``: many entries from one list (CSV or JSON), on one runner, failures reported per entry.

A list row names an entry and its inputs; options of ``preprocess`` may be set per row. Relative
input paths are taken from the list file's folder. Each entry is a full ``preprocess`` run (own
lock, own staging, own atomic commit), so a failed entry leaves the database as it was and the
batch goes on with the next one.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.db.layout import EntryLocation
from pipeline.engine.runner import Runner
from pipeline.engine_setup import EngineSpec, check_budget, engine_spec, open_runner
from pipeline.errors import InputFormatError, PreprocessorError
from pipeline.inputs.limits import json_int
from pipeline.inputs.source import is_url
from pipeline.json_errors import parse_json
from pipeline.options import build_options, input_specs
from pipeline.preprocess import RunSummary, preprocess
from pipeline.progress import NO_PROGRESS, Progress

__all__ = ["BatchEntry", "BatchResult", "read_batch", "run_batch"]

@dataclass(frozen=True, slots=True)
class BatchEntry:
    """One row of the list: where it is (for messages) and its ``preprocess`` fields."""

    where: str  # e.g. "row 3" or "entry 2"
    fields: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.fields.get('source_db')}/{self.fields.get('entry_id')}"


@dataclass(frozen=True, slots=True)
class BatchResult:
    entry: BatchEntry
    summary: RunSummary | None
    error: str | None
    seconds: float
    skipped: bool = False  # --skip-existing: the entry was already in the database

    @property
    def ok(self) -> bool:
        return self.error is None


def _entry(raw: dict[str, Any], n: int, path: Path, csv_row: bool) -> BatchEntry:
    """Row ``n`` checked with :class:`pipeline.inputs.json_models.BatchRow`. Its problems are
    said as ``row 3: <field>: ...`` (CSV, counting the header as row 1) or with their JSON
    path ``$[2].<field>: ...``."""
    from pydantic import ValidationError

    from pipeline.inputs.json_models import BatchRow
    from pipeline.json_errors import validation_problem

    where = f"row {n}" if csv_row else f"$[{n}]"
    if None in raw:  # csv.DictReader's key for cells beyond the header
        raise InputFormatError(
            f"{where}: more cells than columns (separate inputs with ';': kind:path;kind:path)",
            path,
        )
    fields = {k.strip().replace("-", "_"): v for k, v in raw.items()}
    fields = {k: v for k, v in fields.items() if v not in ("", None)}
    flag = fields.get("remove_original_resolution")
    if isinstance(flag, str):  # CSV cells are text
        if flag.strip().lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise InputFormatError(
                f"{_field(where, 'remove_original_resolution', csv_row)}: not a yes/no", path
            )
        fields["remove_original_resolution"] = flag.strip().lower() in ("1", "true", "yes")
    for name, kind in (
        ("min_size_per_downsampling_lvl_mb", float),
        ("max_size_per_downsampling_lvl_mb", float),
        ("min_downsampling_level", int),
        ("max_downsampling_level", int),
    ):
        if isinstance(fields.get(name), str):
            try:
                fields[name] = kind(fields[name])
            except ValueError:
                raise InputFormatError(
                    f"{_field(where, name, csv_row)}: not a number: {fields[name]!r}", path
                ) from None
    try:
        row = BatchRow.model_validate(fields)
    except ValidationError as exc:
        problem = validation_problem(exc, fields)  # "$.<field>...: <problem>"
        if csv_row:  # "row 3: inputs: ..."
            located = problem[1:].removeprefix(".")
            problem = f"{where}{located}" if located.startswith(":") else f"{where}: {located}"
        else:  # "$[2].inputs: ..."
            problem = where + problem[1:]
        raise InputFormatError(problem, path) from None
    fields["inputs"] = [
        (str(path.parent / file) if not (is_url(file) or Path(file).is_absolute()) else file, kind)
        for file, kind in row.inputs
    ]
    fields.setdefault("source_db_id", fields["entry_id"])
    fields.setdefault("source_db_name", fields["source_db"])
    return BatchEntry(where if csv_row else f"entry {n}", fields)


def _field(where: str, name: str, csv_row: bool) -> str:
    return f"{where}: {name}" if csv_row else f"{where}.{name}"


def read_batch(path: Path) -> list[BatchEntry]:
    """The entries of a batch list: a JSON list of objects, or a CSV file with a header row."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # spreadsheets write a byte-order mark
    except FileNotFoundError:
        raise InputFormatError("no such batch list", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFormatError(f"cannot read the batch list: {exc}", path) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("["):
        rows = parse_json(text, path, parse_int=json_int(path))
        if not isinstance(rows, list):
            raise InputFormatError("$: a JSON batch list is a list of objects", path)
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise InputFormatError(f"$[{i}]: must be a JSON object", path)
        entries = [_entry(r, i, path, csv_row=False) for i, r in enumerate(rows)]
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise InputFormatError("empty CSV batch list (a header row is needed)", path)
        entries = [
            _entry(r, i, path, csv_row=True) for i, r in enumerate(reader, start=2)
        ]
    if not entries:
        raise InputFormatError("the batch list has no entries", path)
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.name in seen:
            raise InputFormatError(
                f"{entry.where}: entry {entry.name} already listed ({seen[entry.name]})", path
            )
        seen[entry.name] = entry.where
    return entries


def run_batch(
    entries: list[BatchEntry],
    common: dict[str, Any],
    *,
    progress: Progress = NO_PROGRESS,
    report: Callable[[BatchResult], None] = lambda _: None,
    warn: Callable[[str], None] | None = None,
    skip_existing: bool = False,
) -> list[BatchResult]:
    """Run every entry with the ``common`` fields (working folder, database, scheduler, ...)
    on one runner; never stops at a failed entry. ``skip_existing``: entries already in the
    database are reported as skipped (a killed batch re-run completes the rest)."""
    spec = _common_engine(common)
    results = []
    with _shared_runner(spec, Path(common["working_folder"])) as runner:
        for entry in entries:
            started = time.perf_counter()
            summary, error = None, None
            if skip_existing and _exists(entry, common):
                result = BatchResult(entry, None, None, 0.0, skipped=True)
                report(result)
                results.append(result)
                continue
            try:
                kinds = [kind for _, kind in entry.fields["inputs"]]
                files = [file for file, _ in entry.fields["inputs"]]
                fields = {**entry.fields, **common, "inputs": input_specs(files, kinds)}
                summary = preprocess(
                    build_options(fields), progress=progress, warn=warn, runner=runner
                )
            except PreprocessorError as exc:
                error = str(exc)
            except OSError as exc:
                error = f"{exc.filename + ': ' if exc.filename else ''}{exc.strerror or exc}"
            except Exception as exc:  # a bug must not stop an archive-scale batch
                last = traceback.extract_tb(exc.__traceback__)[-1]
                error = (
                    f"internal error {type(exc).__name__}: {exc} ({last.filename}:{last.lineno})"
                )
            result = BatchResult(entry, summary, error, time.perf_counter() - started)
            report(result)
            results.append(result)
    return results


def _exists(entry: BatchEntry, common: dict[str, Any]) -> bool:
    """Whether the entry is in the database (a bad name is left for the run to report)."""
    try:
        location = EntryLocation(
            Path(common["db_path"]), entry.fields["source_db"], entry.fields["entry_id"]
        )
    except PreprocessorError:
        return False
    return location.exists()


def _common_engine(common: dict[str, Any]) -> EngineSpec:
    """The engine every entry shares (--scheduler, --workers, --max-memory, --transfer),
    checked once, before any entry runs: a bad value is the batch's error, not every entry's."""
    probe = build_options(
        {
            **common,
            "inputs": input_specs(["-"], ["map"]),
            "entry_id": "probe",
            "source_db": "probe",
            "source_db_id": "probe",
            "source_db_name": "probe",
        }
    )
    spec = engine_spec(probe)
    check_budget(spec)
    return spec


@contextlib.contextmanager
def _shared_runner(spec: EngineSpec, working_folder: Path) -> Iterator[Runner | None]:
    """One cluster connection for the whole batch; None: each run uses its own threads."""
    if spec.scheduler is None and spec.workers is None:
        yield None
        return
    parts = working_folder.absolute() / f"batch-parts-{uuid.uuid4().hex[:8]}"
    try:
        with open_runner(spec, parts) as runner:
            yield runner
    finally:
        shutil.rmtree(parts, ignore_errors=True)
