"""One committed version of an entry, read consistently while writers commit.

A commit swaps the entry folder whole (``renameat2(RENAME_EXCHANGE)``, pipeline/db/commit.py):
the folder is opened once as a directory descriptor and every file of the entry is opened
through it, so all of them belong to the same version even if a commit swaps the folder in the
meantime (opened files stay readable after the old version is deleted). When the old version
is deleted before every file was opened, the read starts again from the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field
from typing import IO

from pipeline.db.layout import (
    ANNOTATIONS_JSON,
    DATA_ZIP,
    GEOMETRIC_JSON,
    METADATA_JSON,
    EntryLocation,
)
from pipeline.errors import SnapshotError

__all__ = ["EntrySnapshot", "SnapshotError", "read_snapshot"]

_ATTEMPTS = 20
_MAX_JSON = 1 << 30


@dataclass
class EntrySnapshot:
    """The JSON documents (bytes; None when absent) and an open data.zip of one version."""

    metadata: bytes | None
    annotations: bytes | None
    geometric: bytes | None
    data_zip: IO[bytes] | None
    files: list[str] = field(default_factory=list)  # every name in the folder
    problems: list[str] = field(default_factory=list)  # files that could not be read

    def close(self) -> None:
        if self.data_zip is not None:
            self.data_zip.close()

    def __enter__(self) -> EntrySnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_small(dir_fd: int, name: str, problems: list[str]) -> bytes | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            problems.append(f"{name}: a symbolic link, not a file")
        else:
            problems.append(f"{name}: unreadable ({exc.strerror})")
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # fdopen refuses a folder with an exception
        os.close(fd)
        problems.append(f"{name}: not a file")
        return None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > _MAX_JSON:
            problems.append(f"{name}: {size} bytes, too large for an entry document")
            return None
        return f.read(_MAX_JSON + 1)


def _replaced(dir_fd: int, location: EntryLocation) -> bool:
    """Whether the folder read is no longer the entry (a commit swapped it and the old
    version is being deleted)."""
    mine = os.fstat(dir_fd)
    try:
        now = os.stat(location.folder, follow_symlinks=False)
    except FileNotFoundError:
        return mine.st_nlink == 0
    return (mine.st_ino, mine.st_dev) != (now.st_ino, now.st_dev) or mine.st_nlink == 0


def _open_once(location: EntryLocation) -> EntrySnapshot:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        dir_fd = os.open(location.folder, flags)
    except OSError as exc:
        raise SnapshotError(f"cannot open the entry folder ({exc.strerror})") from exc
    try:
        problems: list[str] = []
        files = sorted(os.listdir(dir_fd))
        data_zip: IO[bytes] | None = None
        try:
            fd = os.open(DATA_ZIP, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0), dir_fd=dir_fd)
            if stat.S_ISREG(os.fstat(fd).st_mode):
                data_zip = os.fdopen(fd, "rb")
            else:
                os.close(fd)
                problems.append(f"{DATA_ZIP}: not a file")
        except FileNotFoundError:
            if DATA_ZIP in files:  # listed, then gone: the version was replaced meanwhile
                raise
        except OSError as exc:
            problems.append(f"{DATA_ZIP}: unreadable ({exc.strerror})")
        try:
            docs = [_read_small(dir_fd, n, problems) for n in (METADATA_JSON, ANNOTATIONS_JSON)]
            geometric = _read_small(dir_fd, GEOMETRIC_JSON, problems)
        except BaseException:
            if data_zip is not None:
                data_zip.close()
            raise
        snapshot = EntrySnapshot(docs[0], docs[1], geometric, data_zip, files, problems)
        # a file listed but not found: this version was deleted while being read
        missing = [
            n
            for n, v in (
                (METADATA_JSON, docs[0]),
                (ANNOTATIONS_JSON, docs[1]),
                (GEOMETRIC_JSON, geometric),
            )
            if v is None and n in files and not any(p.startswith(n) for p in problems)
        ]
        incomplete = data_zip is None or docs[0] is None or docs[1] is None
        if missing or (incomplete and _replaced(dir_fd, location)):
            snapshot.close()
            raise FileNotFoundError(errno.ENOENT, "replaced while reading", location.folder)
        return snapshot
    finally:
        os.close(dir_fd)


def read_snapshot(location: EntryLocation) -> EntrySnapshot:
    """The files of one committed version of the entry (see the module's docstring)."""
    for _ in range(_ATTEMPTS):
        with contextlib.suppress(FileNotFoundError):
            return _open_once(location)
    raise SnapshotError("the entry kept changing while being read; try again")
