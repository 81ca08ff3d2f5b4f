"""One writer per entry (DESIGN 9): an exclusive ``flock`` on ``<db>/_locks/<db>@<entry>.lock``.

The kernel drops the lock when its holder dies, so a lock left by a killed process is simply
taken over (the file that stays behind is not a lock by itself). The holder's pid, host and
start time are written into the file for the message a second writer gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.db.layout import ENTRY_FILES, EntryLocation
from pipeline.db.safefs import LOCKS, ensure_dir, open_file, opened_root, refuse_symlinks
from pipeline.errors import EntryLockedError

__all__ = ["EntryLockedError", "entry_lock"]


def _lock_name(location: EntryLocation) -> str:
    # names hold no "@", so "<source-db>@<entry-id>" is unambiguous
    return f"{location.source_db}@{location.entry_id}.lock"


def _lock_path(location: EntryLocation) -> Path:
    return location.db_path / LOCKS / _lock_name(location)


def _take(fd: int) -> bool:
    """An exclusive lock, retried briefly: a writer cleaning up dead staging folders probes
    locks with a shared lock for an instant."""
    for attempt in range(10):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt < 9:
                time.sleep(0.02)
    return False


@contextlib.contextmanager
def entry_lock(location: EntryLocation) -> Iterator[None]:
    """Hold the entry's writer lock for the duration of the block; fail fast if taken.

    ``_locks`` and the lock file are opened without following symlinks (refused, naming them).
    """
    path = _lock_path(location)
    name = _lock_name(location)
    new_database = not os.path.lexists(location.db_path)
    created: set[str] = set()
    while True:
        locks = ensure_dir(location.db_path, LOCKS, created=created)
        # removed at the end when empty, unless it was there and empty before this writer and
        # the writer fails (a refused or failed run leaves the database exactly as it was)
        tidy = LOCKS in created or bool(os.listdir(locks))
        try:
            fd = open_file(locks, name, os.O_RDWR | os.O_CREAT, path)
        except FileNotFoundError:  # _locks was removed by another writer just now: again
            os.close(locks)
            continue
        except BaseException:
            os.close(locks)
            raise
        if not _take(fd):
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            os.close(locks)
            raise EntryLockedError(
                f"entry {location.key} is being written by {holder}; "
                "try again when it has finished",
                location.folder,
            ) from None
        # the file may have been removed by its last holder between our open and flock
        try:
            same = os.fstat(fd).st_ino == os.stat(name, dir_fd=locks, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
        os.close(locks)
    try:
        stamp = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode(), 0)
        # every writer holds this lock: a symlinked source or entry folder or entry file is
        # refused before anything is read or written through it
        refuse_symlinks(location.db_path, location.source_db, location.entry_id, ENTRY_FILES)
        yield
        tidy = True  # a writer that succeeded tidies up an empty _locks it found
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=locks)
        os.close(fd)
        os.close(locks)
        # leave no trace in the database (an empty _locks that was there before stays); a
        # writer racing with this rmdir retries its open
        if tidy:
            with contextlib.suppress(OSError), opened_root(location.db_path) as root:
                os.rmdir(LOCKS, dir_fd=root)
        if new_database:  # a refused or failed first writer leaves no empty database behind
            with contextlib.suppress(OSError):
                os.rmdir(location.db_path)
