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

from pipeline.db.layout import EntryLocation
from pipeline.errors import EntryLockedError

__all__ = ["EntryLockedError", "entry_lock"]


def _lock_path(location: EntryLocation) -> Path:
    # names hold no "@", so "<source-db>@<entry-id>" is unambiguous
    return location.db_path / "_locks" / f"{location.source_db}@{location.entry_id}.lock"


@contextlib.contextmanager
def entry_lock(location: EntryLocation) -> Iterator[None]:
    """Hold the entry's writer lock for the duration of the block; fail fast if taken."""
    path = _lock_path(location)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # _locks was removed by another writer just now: again
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise EntryLockedError(
                f"entry {location.source_db}/{location.entry_id} is being written by {holder}; "
                "try again when it has finished",
                location.folder,
            ) from None
        # the file may have been removed by its last holder between our open and flock
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        stamp = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, stamp.encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        # leave no trace in the database; a writer racing with this rmdir retries its open
        with contextlib.suppress(OSError):
            path.parent.rmdir()
