"""``validate``: check an entry against the specification (DESIGN 3-6), and scan a database.

An entry is read from one committed version (pipeline/db/snapshot.py), its documents parsed
with the typed model (pipeline/db/documents.py), then checked in depth: every array the
metadata lists is in data.zip with the shape its box gives, and (unless ``quick``) every chunk
of every array is read, its CRC checked and decoded. Work and memory are bounded by what
data.zip really holds, whatever the metadata claims: counts are compared before any loop and one
chunk is in memory at a time. Problems are lines; an empty list means the entry is valid.

pydantic (through documents) and numcodecs are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.db.layout import (
    ANNOTATIONS_JSON,
    DATA_ZIP,
    GEOMETRIC_JSON,
    METADATA_JSON,
    EntryLocation,
    entry_key,
    lattice_key,
    mesh_key,
    volume_key,
)
from pipeline.errors import PreprocessorError

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = [
    "EntryCheck",
    "check_entry",
    "checked_documents",
    "database_leftovers",
    "has_entry_file",
    "scan_database",
    "staging_leftovers",
    "stray_files",
    "validate_entry",
]

MAX_CHUNK_BYTES = 256 << 20  # a decoded chunk larger than this is a problem, not an allocation
MAX_MEMBER_BYTES = 512 << 20


# --- the database ----------------------------------------------------------------------------


@dataclass
class DatabaseScan:
    entries: list[EntryLocation] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # "<path>: <why>" lines


def scan_database(db_path: Path) -> DatabaseScan:
    """Entry folders ``<source>/<entry>`` of a database, and what else is there (a file or a
    folder whose name no entry can have is foreign). ``_``/``.``-prefixed names are reserved
    and skipped."""
    from pipeline.db.names import validate_name

    scan = DatabaseScan()
    for source in sorted(Path(db_path).iterdir()):
        if source.name.startswith(("_", ".")):
            continue
        if source.is_symlink() or not source.is_dir():
            scan.foreign.append(f"{source.name}: not a source database folder")
            continue
        try:
            validate_name(source.name, "source folder")
        except PreprocessorError:
            scan.foreign.append(f"{source.name}: not a valid source database name")
            continue
        try:
            children = sorted(source.iterdir())
        except OSError as exc:
            scan.foreign.append(f"{source.name}: unreadable ({exc.strerror})")
            continue
        for entry in children:
            if entry.name.startswith(("_", ".")):
                continue
            where = entry_key(source.name, entry.name)
            if entry.is_symlink() or not entry.is_dir():
                scan.foreign.append(f"{where}: not an entry folder")
                continue
            try:
                scan.entries.append(EntryLocation(Path(db_path), source.name, entry.name))
            except PreprocessorError:
                scan.foreign.append(f"{where}: not a valid entry id (a folder not written here)")
    return scan


def has_entry_file(location: EntryLocation) -> bool:
    """Whether an entry folder holds any of an entry's files (a database has at least one such
    folder; a tree of other folders, such as /etc or a source checkout, is not a database)."""
    return any(
        os.path.lexists(location.folder / name)
        for name in (METADATA_JSON, ANNOTATIONS_JSON, DATA_ZIP, GEOMETRIC_JSON)
    )


def staging_leftovers(db_path: Path) -> list[tuple[str, int]]:
    """Folders under ``<db>/_staging`` (left by killed writers, or in use right now) with their
    size in bytes."""
    root = Path(db_path) / "_staging"
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        size = 0
        for parent, _, files in os.walk(folder):
            for name in files:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(parent, name)).st_size
        out.append((folder.name, size))
    return out


# --- one entry -------------------------------------------------------------------------------


@dataclass
class EntryCheck:
    """The parsed documents of an entry (None when they could not be parsed) and its
    problems."""

    documents: EntryDocuments | None
    problems: list[str]
    references: list[str] = field(default_factory=list)  # the reference problems among them


class _Checker:
    def __init__(self, zf: zipfile.ZipFile, deep: bool) -> None:
        self.zf = zf
        self.deep = deep
        self.problems: list[str] = []
        self.infos = {i.filename: i for i in zf.infolist()}
        self.read_chunks: set[str] = set()

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def read(self, name: str) -> bytes:
        info = self.infos[name]
        if info.file_size > MAX_MEMBER_BYTES:
            raise ValueError(f"{info.file_size} bytes")
        return self.zf.read(info)  # checks the member's CRC

    def array_meta(self, path: str) -> dict[str, Any] | None:
        key = f"{path}/.zarray"
        if key not in self.infos:
            self.problem(f"{DATA_ZIP}: missing array {path}")
            return None
        try:
            meta = json.loads(self.read(key))
            shape, chunks = meta["shape"], meta["chunks"]
            if not (
                isinstance(shape, list)
                and isinstance(chunks, list)
                and len(shape) == len(chunks)
                and all(type(n) is int and n >= 0 for n in shape)
                and all(type(n) is int and n > 0 for n in chunks)
            ):
                raise ValueError("bad shape or chunks")
            if meta["dtype"] != "|O":
                import numpy as np

                itemsize = np.dtype(meta["dtype"]).itemsize
                if math.prod(chunks) * itemsize > MAX_CHUNK_BYTES:
                    raise ValueError(f"chunks {chunks} too large")
            return meta
        except (
            ValueError,
            KeyError,
            TypeError,
            zipfile.BadZipFile,
            OSError,
            RecursionError,
        ) as exc:
            self.problem(f"{DATA_ZIP}: {key}: unreadable ({_short(exc)})")
            return None

    def decodes(self, path: str, meta: dict[str, Any]) -> bool:
        """Whether every stored chunk of an array decodes (a problem noted where one does not)."""
        try:
            for _ in self.chunks(path, meta):
                pass
        except _ZIP_ERRORS as exc:
            self.problem(f"{path}: unreadable chunk ({_short(exc)})")
            return False
        return True

    def chunks(self, path: str, meta: dict[str, Any]) -> Iterator[tuple[tuple[int, ...], Any]]:
        """(chunk index, decoded flat array) of every stored chunk of an array."""
        import numcodecs
        import numpy as np

        codec = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
        prefix = f"{path}/"
        shape, chunks = meta["shape"], meta["chunks"]
        grid = [-(-n // k) for n, k in zip(shape, chunks, strict=True)]
        dtype = None if meta["dtype"] == "|O" else np.dtype(meta["dtype"])
        for name in self.infos:
            if not name.startswith(prefix) or "/" in name[len(prefix) :]:
                continue
            last = name[len(prefix) :]
            if last.startswith("."):
                continue
            try:
                index = tuple(int(v) for v in last.split("."))
            except ValueError:
                self.problem(f"{DATA_ZIP}: {name}: not a chunk key of {path}")
                continue
            if len(index) != len(grid) or not all(
                0 <= i < g for i, g in zip(index, grid, strict=True)
            ):
                self.problem(f"{DATA_ZIP}: {name}: chunk outside the array {shape}")
                continue
            self.read_chunks.add(name)
            raw = self.read(name)
            _check_blosc_size(meta, raw, dtype)
            data: Any = codec.decode(raw) if codec else raw
            if dtype is None:
                for config in reversed(meta.get("filters") or []):
                    data = numcodecs.get_codec(config).decode(data)
                yield index, data
                continue
            flat = np.frombuffer(data, dtype=np.uint8)
            expected = math.prod(chunks) * dtype.itemsize
            if flat.size != expected:
                raise ValueError(f"chunk {last} decodes to {flat.size} bytes, not {expected}")
            yield index, flat.view(dtype)


def _check_blosc_size(meta: dict[str, Any], raw: bytes, dtype: Any) -> None:
    """A Blosc chunk states its decoded size in its header: refuse one larger than the array's
    chunk (or than the bound) before the codec allocates it."""
    if (meta.get("compressor") or {}).get("id") != "blosc" or len(raw) < 16:
        return
    stated = int.from_bytes(raw[4:8], "little")
    limit = MAX_CHUNK_BYTES
    if dtype is not None:
        limit = min(limit, math.prod(meta["chunks"]) * dtype.itemsize)
    if stated > limit:
        raise ValueError(f"chunk header states {stated} bytes, more than its {limit}")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    ValueError,
    EOFError,
    RuntimeError,
    KeyError,
    NotImplementedError,
    TypeError,
    OverflowError,
    MemoryError,
)


def _check_array(c: _Checker, path: str, box: list[int]) -> dict[str, Any] | None:
    meta = c.array_meta(path)
    if meta is None:
        return None
    if meta["shape"] != box:
        c.problem(f"{path}: shape {meta['shape']} != box {box}")
        return None
    if meta["dtype"] == "|O" or _numeric_kind(meta["dtype"]) is None:
        c.problem(f"{path}: dtype {meta['dtype']} is not a number type")
        return None
    if c.deep and not c.decodes(path, meta):
        return None
    return meta


def _numeric_kind(dtype: str) -> str | None:
    """The numpy kind (b, i, u, f) of a stored array's dtype; None for any other type."""
    import numpy as np

    kind = np.dtype(dtype).kind  # array_meta has already parsed it
    return kind if kind in "biuf" else None


def _check_volume(c: _Checker, docs: EntryDocuments) -> None:
    volumes = docs.metadata.volumes
    if volumes is None:
        return
    info = volumes.volume_sampling_info
    levels = info.available_levels
    frames = volumes.time_info.frames
    count = len(levels) * len(frames) * len(volumes.channel_ids)
    if count > len(c.infos):
        c.problem(
            f"{METADATA_JSON}: claims {count} volume arrays, {DATA_ZIP} holds only "
            f"{len(c.infos)} members"
        )
        return
    for level in levels:
        box = info.boxes.get(str(level))
        if box is None:
            c.problem(f"{METADATA_JSON}: no box for volume level {level}")
            continue
        for t in frames:
            for channel in volumes.channel_ids:
                _check_array(c, volume_key(level, t, channel), box.grid_dimensions)
                stats = info.descriptive_statistics.get(str(level), {}).get(str(t), {})
                if channel not in stats:
                    c.problem(
                        f"{METADATA_JSON}: no statistics for level {level} frame {t} "
                        f"channel {channel}"
                    )


def _set_table(c: _Checker, path: str) -> dict[int, list[int]] | None:
    meta = c.array_meta(path)
    if meta is None:
        return None
    if f"{path}/0" not in c.infos:
        c.problem(f"{DATA_ZIP}: missing set table chunk {path}/0")
        return None
    try:
        import numpy as np

        (_, data), *_ = list(c.chunks(path, meta))
        document = np.asarray(data, dtype=object).reshape(-1)[0]
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        return {int(k): [int(m) for m in v] for k, v in document.items()}
    except (*_ZIP_ERRORS, IndexError) as exc:
        c.problem(f"{path}: unreadable set table ({_short(exc)})")
        return None


def _grid_values(c: _Checker, path: str, meta: dict[str, Any]) -> set[int]:
    """Distinct values of a stored grid, decoded chunk by chunk (bounded memory)."""
    import numpy as np

    values: set[int] = set()
    shape, chunks = meta["shape"], meta["chunks"]
    expected = math.prod(-(-n // k) for n, k in zip(shape, chunks, strict=True))
    found = 0
    for index, flat in c.chunks(path, meta):
        found += 1
        chunk = flat.reshape(chunks, order=meta.get("order", "C"))
        # edge chunks are padded to the full chunk shape: only the array's part counts
        inside = tuple(
            slice(0, min(k, n - i * k)) for i, k, n in zip(index, chunks, shape, strict=True)
        )
        values.update(np.unique(chunk[inside]).tolist())
    if found < expected:  # a missing chunk reads as the fill value
        values.add(int(meta.get("fill_value") or 0))
    return values


def _check_lattice(c: _Checker, docs: EntryDocuments, lattice: str) -> dict[int, set[int]]:
    """Problems of one lattice; returns segment id -> frames where it occurs."""
    section = docs.metadata.segmentation_lattices
    info = section.segmentation_sampling_info[lattice]
    volumes = docs.metadata.volumes
    segments: dict[int, set[int]] = {}
    levels = info.available_levels
    if volumes is not None:
        vinfo = volumes.volume_sampling_info
        if levels != vinfo.available_levels:
            c.problem(
                f"lattice {lattice}: levels {levels} differ from the volume's "
                f"{vinfo.available_levels}"
            )
        if info.boxes != vinfo.boxes:
            c.problem(f"lattice {lattice}: boxes differ from the volume's (DESIGN 7.2)")
    frames = section.time_info[lattice].frames
    if len(levels) * len(frames) * 2 > len(c.infos):
        c.problem(
            f"{METADATA_JSON}: lattice {lattice} claims {len(levels) * len(frames)} levels and "
            f"frames, {DATA_ZIP} holds only {len(c.infos)} members"
        )
        return segments
    for n, level in enumerate(levels):
        box = info.boxes.get(str(level))
        if box is None:
            c.problem(f"{METADATA_JSON}: no box for lattice {lattice} level {level}")
            continue
        for t in frames:
            grid_path = lattice_key(lattice, level, t, "grid")
            meta = c.array_meta(grid_path)
            table = _set_table(c, lattice_key(lattice, level, t, "set_table"))
            if table is not None and n == 0:  # the finest level holds every segment
                for members in table.values():
                    for m in members:
                        segments.setdefault(m, set()).add(t)
            if meta is None:
                continue
            if meta["shape"] != box.grid_dimensions:
                c.problem(f"{grid_path}: shape {meta['shape']} != box {box.grid_dimensions}")
                continue
            if meta["dtype"] == "|O" or _numeric_kind(meta["dtype"]) not in ("i", "u"):
                c.problem(f"{grid_path}: dtype {meta['dtype']} is not an integer type")
                continue
            if not c.deep or table is None:
                continue
            try:
                values = _grid_values(c, grid_path, meta)
            except _ZIP_ERRORS as exc:
                c.problem(f"{grid_path}: unreadable chunk ({_short(exc)})")
                continue
            missing = sorted(values - set(table))
            if missing:
                c.problem(f"{grid_path}: values {missing[:10]} are not in the set table")
    return segments


def _check_mesh(c: _Checker, set_id: str, where: tuple[str, str, str, str], counts: Any) -> None:
    metas = {}
    for name, dtype in (("vertices", "<f4"), ("triangles", "<i4"), ("normals", "<f4")):
        path = mesh_key(set_id, *where, name)
        meta = metas[name] = c.array_meta(path)
        if meta is None:
            return
        expected = [getattr(counts, f"num_{name}"), 3]
        if meta["shape"] != expected or meta["dtype"] != dtype:
            c.problem(f"{path}: {meta['dtype']} {meta['shape']}, metadata says {expected}")
            return
    if not c.deep:
        return
    for name in ("vertices", "normals"):
        try:
            for _ in c.chunks(mesh_key(set_id, *where, name), metas[name]):
                pass
        except _ZIP_ERRORS as exc:
            c.problem(f"{mesh_key(set_id, *where, name)}: unreadable chunk ({_short(exc)})")
            return
    path = mesh_key(set_id, *where, "triangles")
    meta = metas["triangles"]
    rows, step = meta["shape"][0], meta["chunks"][0]
    low, high = 0, -1
    try:
        for (i, _), flat in c.chunks(path, meta):
            part = flat.reshape(-1, 3)[: max(0, rows - i * step)]
            if part.size:
                low, high = min(low, int(part.min())), max(high, int(part.max()))
    except _ZIP_ERRORS as exc:
        c.problem(f"{path}: unreadable chunk ({_short(exc)})")
        return
    if low < 0 or high >= counts.num_vertices:
        c.problem(f"{path}: indices {low}..{high} out of range for {counts.num_vertices} vertices")


def _check_mesh_set(c: _Checker, docs: EntryDocuments, set_id: str) -> None:
    info = docs.metadata.segmentation_meshes.segmentation_metadata[set_id]
    span = docs.metadata.segmentation_meshes.time_info[set_id]
    meshes = sum(
        len(level.mesh_ids)
        for frame in info.mesh_timeframes.values()
        for segment in frame.segment_ids.values()
        for level in segment.detail_lvls.values()
    )
    if 3 * meshes > len(c.infos):
        c.problem(
            f"{METADATA_JSON}: mesh set {set_id} lists {meshes} meshes, {DATA_ZIP} holds "
            f"only {len(c.infos)} members"
        )
        return
    for t, frame in info.mesh_timeframes.items():
        if not t.isdigit() or int(t) not in span.frames:
            c.problem(f"mesh set {set_id}: frame {t} outside its time_info")
        for segment, levels in frame.segment_ids.items():
            for level, meshes_ in levels.detail_lvls.items():
                if level not in info.detail_lvl_to_fraction:
                    c.problem(f"mesh set {set_id}: detail level {level} not in its fractions")
                for mesh_id, counts in meshes_.mesh_ids.items():
                    _check_mesh(c, set_id, (t, segment, level, mesh_id), counts)


def _check_data(c: _Checker, docs: EntryDocuments) -> None:
    _check_volume(c, docs)
    for lattice in docs.lattice_ids:
        docs.lattice_segments[lattice] = _check_lattice(c, docs, lattice)
    for set_id in docs.mesh_set_ids:
        _check_mesh_set(c, docs, set_id)
    if c.deep:  # every other array of the archive is read too
        for name in sorted(n for n in c.infos if n.endswith("/.zarray")):
            path = name[: -len("/.zarray")]
            if any(k.startswith(f"{path}/") for k in c.read_chunks):
                continue
            meta = c.array_meta(path)
            if meta is not None:
                c.decodes(path, meta)


def check_entry(location: EntryLocation, quick: bool = False) -> EntryCheck:
    """Parse an entry's documents and check it (``quick``: without reading chunks)."""
    from pipeline.db.documents import DocumentError, EntryDocuments
    from pipeline.db.snapshot import SnapshotError, read_snapshot

    try:
        snapshot = read_snapshot(location)
    except SnapshotError as exc:
        return EntryCheck(None, [str(exc)])
    with snapshot:
        problems = list(snapshot.problems)
        for name, data in (
            (METADATA_JSON, snapshot.metadata),
            (ANNOTATIONS_JSON, snapshot.annotations),
        ):
            if data is None and not any(p.startswith(name) for p in problems):
                problems.append(f"{name}: missing")
        if snapshot.data_zip is None and not any(p.startswith(DATA_ZIP) for p in problems):
            problems.append(f"{DATA_ZIP}: missing")
        if problems:
            return EntryCheck(None, problems)
        assert snapshot.metadata is not None and snapshot.annotations is not None
        try:
            docs = EntryDocuments.parse(snapshot.metadata, snapshot.annotations, snapshot.geometric)
        except DocumentError as exc:
            return EntryCheck(None, [str(exc)])
        problems.extend(docs.structure_problems())
        assert snapshot.data_zip is not None
        try:
            zf = zipfile.ZipFile(snapshot.data_zip)
        except _ZIP_ERRORS as exc:
            problems.append(f"{DATA_ZIP}: not a readable zip archive ({_short(exc)})")
            return EntryCheck(docs, problems)
        with zf:
            c = _Checker(zf, deep=not quick)
            try:
                _check_data(c, docs)
            except _ZIP_ERRORS as exc:
                c.problem(f"{DATA_ZIP}: unreadable ({_short(exc)})")
            problems.extend(c.problems)
        references = docs.reference_problems(where_present=True)
        problems.extend(references)
        return EntryCheck(docs, problems, references)


def checked_documents(
    location: EntryLocation, allow_reference_problems: bool = False
) -> EntryDocuments:
    """The documents of an entry a command is about to change (the caller holds its lock) or
    export: a missing entry or one that does not pass the quick checks is refused. With
    ``allow_reference_problems`` annotations naming what is not there are let through (the
    commands that remove annotations are how such an entry is repaired)."""
    from pipeline.errors import DamagedEntryError, EntryNotFoundError

    name = location.key
    if not location.exists():
        raise EntryNotFoundError(f"entry {name} does not exist", location.folder)
    check = check_entry(location, quick=True)
    problems = check.problems
    if allow_reference_problems:
        problems = [p for p in problems if p not in check.references]
    if problems or check.documents is None:
        first = problems[0] if problems else "unreadable"
        raise DamagedEntryError(f"{name}: damaged: {first}; run validate")
    return check.documents


def validate_entry(location: EntryLocation, quick: bool = False) -> list[str]:
    """Problems of one entry (empty: valid)."""
    return check_entry(location, quick).problems


# --- the database outside its entries (issue 11) ------------------------------------------------


def database_leftovers(db_path: Path) -> list[str]:
    """Every folder in ``<db>/_staging``, said whether its writer is gone (the next writer of
    the database removes it) or still running; a symlinked ``_staging`` is named as such."""
    from pipeline.db.safefs import SymlinkRefusedError, dead_staging

    try:
        dead = set(dead_staging(Path(db_path)))
    except SymlinkRefusedError as exc:
        return [f"{exc.path}: {exc.message}"]
    return [
        f"_staging/{name}: staging folder, {size} bytes (left by a writer that is gone: the "
        "next writer of the database removes it)"
        if name in dead
        else f"_staging/{name}: staging folder, {size} bytes (of a running writer)"
        for name, size in staging_leftovers(db_path)
    ]


def stray_files(location: EntryLocation) -> list[str]:
    """Files in an entry folder that are not the entry's own (a rewrite never carries them),
    and symlinks (refused by every writer)."""
    from pipeline.db.layout import ENTRY_FILES

    problems = []
    try:
        with os.scandir(location.folder) as it:
            found = sorted(it, key=lambda e: e.name)
    except OSError:
        return []
    for item in found:
        if item.is_symlink():
            problems.append(f"{item.name}: a symlink (writers refuse the entry until removed)")
        elif item.name not in ENTRY_FILES:
            problems.append(f"{item.name}: not a file of the entry (rewrites do not carry it)")
    return problems
