"""Packing the working hierarchy into data.zip and committing an entry atomically (section 9)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.db.layout import ANNOTATIONS_JSON, DATA_ZIP, METADATA_JSON, EntryLocation
from pipeline.errors import EntryExistsError

__all__ = ["commit_new_entry", "pack_zip", "write_json"]

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed so the same inputs give the same bytes


def _members(root: Path) -> Iterator[tuple[str, Path]]:
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = Path(folder) / name
            yield full.relative_to(root).as_posix(), full


def pack_zip(root: Path, target: Path) -> None:
    """Pack a zarr directory hierarchy into a stored (uncompressed) ZIP64 file, sorted members."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, full in _members(root):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with open(full, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, length=8 * 2**20)


def write_json(path: Path, document: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=4, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_new_entry(
    location: EntryLocation,
    tree_root: Path,
    metadata: dict[str, Any],
    annotations: dict[str, Any],
    extra_files: dict[str, Any] | None = None,
) -> None:
    """Create the entry folder atomically: build it under ``<db>/_staging`` then rename.

    A crash before the rename leaves only a staging folder (ignored by the server, removed by
    the next run); the entry appears complete or not at all.
    """
    staging = location.staging_root / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        pack_zip(tree_root, staging / DATA_ZIP)
        _fsync_path(staging / DATA_ZIP)
        write_json(staging / METADATA_JSON, metadata)
        write_json(staging / ANNOTATIONS_JSON, annotations)
        for name, document in (extra_files or {}).items():
            write_json(staging / name, document)
        _fsync_path(staging)
        location.folder.parent.mkdir(parents=True, exist_ok=True)
        if location.exists():
            raise EntryExistsError(
                f"entry {location.source_db}/{location.entry_id} already exists", location.folder
            )
        try:
            os.rename(staging, location.folder)
        except OSError as exc:  # another writer created it meanwhile
            raise EntryExistsError(
                f"entry {location.source_db}/{location.entry_id} already exists", location.folder
            ) from exc
        _fsync_path(location.folder.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            location.staging_root.rmdir()
