"""Staging an entry on the database's file system and committing it atomically (section 9)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.db.layout import (
    DATA_ZIP,
    EntryLocation,
)
from pipeline.db.safefs import (
    STAGING,
    descriptor_path,
    ensure_dir,
    open_dir,
    opened_dir,
    opened_root,
    remove_dead_staging,
    remove_tree,
    staging_name,
)
from pipeline.errors import EntryExistsError, EntryNotFoundError

__all__ = [
    "COMMITTED",
    "StagedEntry",
    "staged_entry",
    "write_json",
]


def write_json(path: Path, document: Any) -> None:
    """Write a JSON document and fsync it."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=4)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


# what this process has committed (``<source>/<entry>``), for honest messages on a signal
COMMITTED: list[str] = []


def _after_commit_hook() -> None:
    """Test hook: ``CELLSTAR_TEST_DELAY_AFTER_COMMIT=<seconds>`` sleeps right after the commit's
    rename (a signal test delivers its signal then)."""
    delay = os.environ.get("CELLSTAR_TEST_DELAY_AFTER_COMMIT")
    if delay:
        import time

        time.sleep(float(delay))


class StagedEntry:
    """A new entry folder under ``<db>/_staging`` that becomes the entry by one rename.

    Every folder below the database root is reached through directory descriptors without
    following links (:mod:`pipeline.db.safefs`); the staging folder's name carries its writer,
    so the next writer of the database removes it should this process die.
    """

    def __init__(self, location: EntryLocation) -> None:
        self.location = location
        created: set[str] = set()
        while True:
            self._staging_fd = ensure_dir(location.db_path, STAGING, created=created)
            # removed at the end when empty, unless it was there and empty before this writer
            # and nothing is committed (a refused or failed run leaves the database as it was)
            self._tidy = STAGING in created or bool(os.listdir(self._staging_fd))
            # folders of earlier writers (any entry, any command) that were killed
            remove_dead_staging(self._staging_fd)
            self.name = staging_name(location.source_db, location.entry_id)
            try:
                os.mkdir(self.name, 0o755, dir_fd=self._staging_fd)
                break
            except FileNotFoundError:  # _staging removed by another writer just now: again
                os.close(self._staging_fd)
                continue
        self.shown = location.staging_root / self.name
        self._fd = open_dir(self._staging_fd, self.name, self.shown)
        # files are written by path (zip and JSON writers), so the path goes through the
        # folder's own descriptor: a _staging swapped for a symlink meanwhile is never followed
        self.folder = descriptor_path(self._fd, self.shown)

    @property
    def data_zip(self) -> Path:
        return self.folder / DATA_ZIP

    def write_json(self, name: str, document: Any) -> None:
        write_json(self.folder / name, document)

    def _source_fd(self, create: bool) -> int:
        with opened_root(self.location.db_path) as root:
            return open_dir(
                root,
                self.location.source_db,
                self.location.db_path / self.location.source_db,
                create=create,
            )

    def _committed(self) -> None:
        COMMITTED.append(self.location.key)
        self._tidy = True  # a writer that committed tidies up an empty _staging it found
        _after_commit_hook()

    def commit(self) -> None:
        """Rename the staged folder to the entry folder; fails if the entry appeared meanwhile."""
        os.fsync(self._fd)
        target = self.location.folder
        entry = self.location.entry_id
        source = self._source_fd(create=True)
        try:
            try:
                os.stat(entry, dir_fd=source, follow_symlinks=False)
                exists = True
            except FileNotFoundError:
                exists = False
            if exists:
                raise EntryExistsError(f"entry {self.location.key} already exists", target)
            try:
                os.rename(self.name, entry, src_dir_fd=self._staging_fd, dst_dir_fd=source)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                raise EntryExistsError(  # created in between (by a writer that ignored the lock)
                    f"entry {self.location.key} already exists", target
                ) from exc
            self._committed()
            os.fsync(source)
        finally:
            os.close(source)

    def replace_existing(self, order: list[str]) -> None:
        """Make the staged folder the entry in place of the existing one.

        Linux: one ``renameat2(RENAME_EXCHANGE)`` swaps the two folders atomically (the old one
        is then discarded with the staging folder). Elsewhere the staged files replace the
        entry's one by one in ``order`` (data first, metadata.json last), each atomically.
        """
        os.fsync(self._fd)
        with self._existing_source("disappeared") as source:
            if not _exchange(self._staging_fd, self.name, source, self.location.entry_id):
                entry = self.location.entry_id
                with opened_dir(source, entry, self.location.folder) as entry_fd:
                    for name in order:
                        os.replace(name, name, src_dir_fd=self._fd, dst_dir_fd=entry_fd)
            self._committed()
            os.fsync(source)

    def remove_existing(self) -> None:
        """Delete the entry (even a damaged one): one rename puts it in place of the empty
        staged folder, out of sight; :meth:`discard` then deletes it. Should that deletion be
        killed half-way, the next writer of the database removes what is left."""
        with self._existing_source("does not exist") as source:
            os.rename(
                self.location.entry_id, self.name, src_dir_fd=source, dst_dir_fd=self._staging_fd
            )
            self._committed()

    @contextlib.contextmanager
    def _existing_source(self, missing: str) -> Iterator[int]:
        """The source folder's descriptor, the entry's folder being in it (a symlink is
        refused, naming it); else :class:`EntryNotFoundError` ``entry <key> <missing>``."""
        target = self.location.folder
        try:
            source = self._source_fd(create=False)
        except FileNotFoundError:
            raise EntryNotFoundError(f"entry {self.location.key} {missing}", target) from None
        try:
            try:
                with opened_dir(source, self.location.entry_id, target):
                    pass
            except FileNotFoundError:
                raise EntryNotFoundError(
                    f"entry {self.location.key} {missing}", target
                ) from None
            yield source
        finally:
            os.close(source)

    def discard(self) -> None:
        os.close(self._fd)
        remove_tree(self._staging_fd, self.name)
        os.close(self._staging_fd)
        # shared by every entry's writers: removed only when empty (they retry their mkdir);
        # an empty one that was there before this writer stays
        if self._tidy:
            with contextlib.suppress(OSError), opened_root(self.location.db_path) as root:
                os.rmdir(STAGING, dir_fd=root)


def _exchange(a_fd: int, a: str, b_fd: int, b: str) -> bool:
    """Atomically swap two names with renameat2(RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rename_exchange = 2
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    if renameat2(a_fd, os.fsencode(a), b_fd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), b)


@contextlib.contextmanager
def staged_entry(location: EntryLocation) -> Iterator[StagedEntry]:
    """Stage a new entry; whatever happens, nothing but a committed entry stays behind."""
    staged = StagedEntry(location)
    try:
        yield staged
    finally:
        staged.discard()
