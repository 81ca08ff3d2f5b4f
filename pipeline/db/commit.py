"""Staging an entry on the database's file system and committing it atomically (section 9)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.db.layout import DATA_ZIP, EntryLocation
from pipeline.errors import EntryExistsError, EntryNotFoundError

__all__ = ["StagedEntry", "staged_entry", "write_json"]


def write_json(path: Path, document: Any) -> None:
    """Write a JSON document and fsync it."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=4)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedEntry:
    """A new entry folder under ``<db>/_staging`` that becomes the entry by one rename."""

    def __init__(self, location: EntryLocation) -> None:
        self.location = location
        prefix = f"{location.source_db}@{location.entry_id}@"  # names hold no "@"
        # folders of earlier runs of this entry that were killed (the caller holds the lock)
        if location.staging_root.is_dir():
            for stale in location.staging_root.glob(f"{prefix}*"):
                shutil.rmtree(stale, ignore_errors=True)
        self.folder = location.staging_root / f"{prefix}{uuid.uuid4().hex}"
        while True:
            location.staging_root.mkdir(parents=True, exist_ok=True)
            try:
                self.folder.mkdir()
                break
            except FileNotFoundError:  # _staging removed by another writer just now: again
                continue

    @property
    def data_zip(self) -> Path:
        return self.folder / DATA_ZIP

    def write_json(self, name: str, document: Any) -> None:
        write_json(self.folder / name, document)

    def commit(self) -> None:
        """Rename the staged folder to the entry folder; fails if the entry appeared meanwhile."""
        _fsync_path(self.folder)
        target = self.location.folder
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise EntryExistsError(
                f"entry {self.location.source_db}/{self.location.entry_id} already exists", target
            )
        try:
            os.rename(self.folder, target)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            raise EntryExistsError(  # created in between (by a writer that ignored the lock)
                f"entry {self.location.source_db}/{self.location.entry_id} already exists", target
            ) from exc
        _fsync_path(target.parent)

    def replace_existing(self, order: list[str]) -> None:
        """Make the staged folder the entry in place of the existing one.

        Linux: one ``renameat2(RENAME_EXCHANGE)`` swaps the two folders atomically (the old one
        is then discarded with the staging folder). Elsewhere the staged files replace the
        entry's one by one in ``order`` (data first, metadata.json last), each atomically.
        """
        _fsync_path(self.folder)
        target = self.location.folder
        if not target.is_dir():
            raise EntryNotFoundError(
                f"entry {self.location.source_db}/{self.location.entry_id} disappeared", target
            )
        if not _exchange(self.folder, target):
            for name in order:
                os.replace(self.folder / name, target / name)
        _fsync_path(target.parent)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        # shared by every entry's writers: removed only when empty (they retry their mkdir)
        with contextlib.suppress(OSError):
            self.location.staging_root.rmdir()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def staged_entry(location: EntryLocation) -> Iterator[StagedEntry]:
    """Stage a new entry; whatever happens, nothing but a committed entry stays behind."""
    staged = StagedEntry(location)
    try:
        yield staged
    finally:
        staged.discard()
