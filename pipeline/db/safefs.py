"""File-system access below a database root that never follows a symlink (issue 11).

The database root (``--db-path``) may itself be a symlink; everything below it (``_locks``, lock
files, ``_staging``, source and entry folders, entry files) is opened relative to directory
descriptors with ``O_NOFOLLOW``, created with ``mkdir``/``rename``/``unlink`` on a ``dir_fd``,
and a symlink where the layout expects a folder or a file is refused with one line naming it.

Staging folders carry their writer in their name, ``<source>@<entry>@<host>@<pid>@<start>@<hex>``
(``start``: the process start time in clock ticks, so a reused pid is not taken for the writer);
:func:`remove_dead_staging` removes those whose writer is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import SymlinkRefusedError

__all__ = [
    "SymlinkRefusedError",
    "dead_staging",
    "descriptor_path",
    "ensure_dir",
    "is_dead_writer",
    "link_file",
    "open_dir",
    "opened_dir",
    "opened_entry",
    "refuse_symlinks",
    "remove_dead_staging",
    "remove_tree",
    "shown_path",
    "staging_name",
    "stamp_is_dead",
    "writer_stamp",
]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
STAGING = "_staging"
LOCKS = "_locks"


def _refuse(shown: Path, expected: str) -> SymlinkRefusedError:
    return SymlinkRefusedError(
        f"a symlink where the database expects a {expected}; refused (nothing below --db-path "
        "is followed through a link)",
        shown,
    )


def _is_link(dir_fd: int | None, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def open_root(db_path: Path, create: bool = False) -> int:
    """A descriptor of the database root (which may be a symlink itself)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    try:
        return os.open(db_path, flags)
    except FileNotFoundError:
        if not create:
            raise
    with contextlib.suppress(FileExistsError):
        db_path.mkdir(parents=True)
    return os.open(db_path, flags)


def open_dir(
    dir_fd: int, name: str, shown: Path, create: bool = False, created: set[str] | None = None
) -> int:
    """Open the folder ``name`` in ``dir_fd`` (created when ``create``), never through a link.

    Raises :class:`SymlinkRefusedError` naming ``shown`` for a symlink, FileNotFoundError when
    it does not exist (and ``create`` is false), NotADirectoryError for another file. When this
    call creates the folder, ``name`` is added to ``created`` (so the caller removes only what
    it made).
    """
    if create:
        try:
            os.mkdir(name, 0o755, dir_fd=dir_fd)
            if created is not None:
                created.add(name)
        except FileExistsError:
            pass
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_link(dir_fd, name):
            raise _refuse(shown, "folder") from None
        if exc.errno == errno.ENOTDIR:
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(shown)) from None
        raise


@contextlib.contextmanager
def opened_dir(dir_fd: int, name: str, shown: Path, create: bool = False) -> Iterator[int]:
    fd = open_dir(dir_fd, name, shown, create)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened_root(db_path: Path, create: bool = False) -> Iterator[int]:
    fd = open_root(db_path, create)
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(dir_fd: int, name: str, flags: int, shown: Path, mode: int = 0o644) -> int:
    """``os.open`` of a file in ``dir_fd`` without following a link (refused, naming it)."""
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse(shown, "file") from None
        raise


def ensure_dir(db_path: Path, *names: str, created: set[str] | None = None) -> int:
    """Open (creating as needed) ``db_path/names...``, every component below the root without
    following links; retried when a concurrent writer removes an empty folder meanwhile. The
    names of the folders this call created are added to ``created``."""
    for _ in range(100):
        try:
            fd = open_root(db_path, create=True)
        except FileNotFoundError:  # a parent removed by a concurrent writer: again
            continue
        shown = db_path
        try:
            for name in names:
                shown = shown / name
                child = open_dir(fd, name, shown, create=True, created=created)
                os.close(fd)
                fd = child
            return fd
        except FileNotFoundError:
            os.close(fd)
            continue
        except BaseException:
            os.close(fd)
            raise
    raise FileNotFoundError(errno.ENOENT, "keeps disappearing", str(db_path))


def remove_tree(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` and everything below it, never following a link (a link is
    removed as a link)."""
    if _is_link(dir_fd, name):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)
        return
    shutil.rmtree(name, ignore_errors=True, dir_fd=dir_fd)


def refuse_symlinks(db_path: Path, source_db: str, entry_id: str, files: tuple[str, ...]) -> None:
    """Refuse an entry whose source folder, entry folder or one of ``files`` is a symlink."""
    try:
        with (
            opened_root(db_path) as root,
            opened_dir(root, source_db, db_path / source_db) as src,
            opened_dir(src, entry_id, db_path / source_db / entry_id) as entry,
        ):
            for name in files:
                if _is_link(entry, name):
                    raise _refuse(db_path / source_db / entry_id / name, "file")
    except (FileNotFoundError, NotADirectoryError):
        return  # no such entry: the caller says so


@contextlib.contextmanager
def opened_entry(db_path: Path, source_db: str, entry_id: str) -> Iterator[int]:
    """A descriptor of the entry folder reached without following links below the root (a
    symlinked source or entry folder is refused, naming it): its files are then opened
    relative to it with ``O_NOFOLLOW`` (:func:`open_file`) or linked with
    ``follow_symlinks=False``, so no file outside the database is read through a link."""
    with (
        opened_root(db_path) as root,
        opened_dir(root, source_db, db_path / source_db) as src,
        opened_dir(src, entry_id, db_path / source_db / entry_id) as entry,
    ):
        yield entry


# /proc/self/fd/<n> paths handed out by descriptor_path, and the path each stands for in messages
_DESCRIPTOR_PATHS: dict[str, Path] = {}


def descriptor_path(dir_fd: int, shown: Path) -> Path:
    """A path that reaches the folder open as ``dir_fd`` through that descriptor, not through
    the names above it (Linux's ``/proc/self/fd``), for writers that only take paths; ``shown``
    where /proc is not mounted. :func:`shown_path` turns it back into ``shown`` for messages."""
    proc = Path(f"/proc/self/fd/{dir_fd}")
    try:
        same = os.path.samestat(os.stat(proc), os.fstat(dir_fd))
    except OSError:
        same = False
    if not same:
        return shown
    _DESCRIPTOR_PATHS[str(proc)] = shown
    return proc


def shown_path(path: str | Path) -> Path:
    """``path`` as the user knows it: a :func:`descriptor_path` prefix replaced by its folder."""
    text = str(path)
    for proc, shown in _DESCRIPTOR_PATHS.items():
        if text == proc or text.startswith(proc + "/"):
            return shown / text[len(proc) + 1 :] if text != proc else shown
    return Path(text)


def link_file(dir_fd: int, name: str, target: Path, shown: Path) -> None:
    """Hard-link the file ``name`` of ``dir_fd`` as ``target``; a link there (or one swapped in
    meanwhile) is refused, naming ``shown``, and nothing is left at ``target``."""
    fd = open_file(dir_fd, name, os.O_RDONLY, shown)
    try:
        os.link(name, target, src_dir_fd=dir_fd, follow_symlinks=False)
        linked = os.stat(target, follow_symlinks=False)
        if (linked.st_ino, linked.st_dev) != (os.fstat(fd).st_ino, os.fstat(fd).st_dev):
            os.unlink(target)
            raise _refuse(shown, "file")
    finally:
        os.close(fd)


# --- staging folders and their writers ----------------------------------------------------------


def _start_ticks(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:  # no /proc: only whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "0"
    return text.rpartition(")")[2].split()[19]


def _host() -> str:
    return socket.gethostname().replace("@", "_").replace("/", "_") or "host"


def writer_stamp() -> str:
    """``<host>@<pid>@<start>``: this process, in a form that outlives it in a folder name."""
    pid = os.getpid()
    return f"{_host()}@{pid}@{_start_ticks(pid) or 0}"


def stamp_is_dead(host: str, pid: str, start: str) -> bool | None:
    """Whether the writer of a stamp is gone; None when it ran on another host."""
    if host != _host():
        return None
    try:
        ticks = _start_ticks(int(pid))
    except ValueError:
        return None
    return ticks is None or (start != "0" and ticks != start)


def staging_name(source_db: str, entry_id: str) -> str:
    """A new staging folder name carrying this writer (names of sources/entries hold no "@")."""
    return f"{source_db}@{entry_id}@{writer_stamp()}@{uuid.uuid4().hex[:12]}"


def is_dead_writer(name: str, staging_fd: int | None = None) -> bool:
    """True when the staging folder ``name`` was made by a process that is gone.

    On this host: its pid no longer runs (or runs a different process, by start time). On
    another host: the entry's writer lock (which the writer holds while its staging exists)
    is free. Names of another form (older versions) count as dead once their entry's lock is
    free.
    """
    parts = name.split("@")
    if len(parts) == 6:
        dead = stamp_is_dead(*parts[2:5])
        if dead is not None:
            return dead
    if len(parts) >= 2 and staging_fd is not None:
        return _lock_free(staging_fd, parts[0], parts[1])
    return False


def _lock_free(staging_fd: int, source_db: str, entry_id: str) -> bool:
    """Whether nobody holds the writer lock of an entry (a shared probe: never blocks a
    writer for more than its short retry)."""
    try:
        locks = os.open(f"../{LOCKS}", _DIR_FLAGS, dir_fd=staging_fd)
    except OSError:
        return True  # no _locks folder: nobody holds any lock
    try:
        fd = os.open(f"{source_db}@{entry_id}.lock", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=locks)
    except OSError:
        os.close(locks)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
        os.close(locks)
    return True


def dead_staging(db_path: Path) -> list[str]:
    """Staging folders left by writers that are gone (what ``validate`` reports)."""
    try:
        with opened_root(db_path) as root, opened_dir(root, STAGING, db_path / STAGING) as fd:
            return sorted(n for n in os.listdir(fd) if is_dead_writer(n, fd))
    except (FileNotFoundError, NotADirectoryError):
        return []


def remove_dead_staging(staging_fd: int) -> None:
    """Remove the staging folders of dead writers (of any entry and command), and the lock
    files they left."""
    for name in os.listdir(staging_fd):
        if is_dead_writer(name, staging_fd):
            remove_tree(staging_fd, name)
    try:
        locks = os.open(f"../{LOCKS}", _DIR_FLAGS, dir_fd=staging_fd)
    except OSError:
        return
    try:
        for name in os.listdir(locks):
            _remove_free_lock(locks, name)
    finally:
        os.close(locks)


def _remove_free_lock(locks: int, name: str) -> None:
    """Unlink a lock file nobody holds (taken for an instant, as its last holder would)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=locks)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino == os.stat(name, dir_fd=locks, follow_symlinks=False).st_ino:
            os.unlink(name, dir_fd=locks)
    except OSError:
        pass
    finally:
        os.close(fd)
