"""Typed errors of the pipeline.

Every error a user can cause derives from :class:`PreprocessorError`; the command line prints it as
one line ``error: <file>: <what is wrong>`` and exits with :attr:`PreprocessorError.exit_status`.
Each subclass also inherits the matching builtin so callers may catch either.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ClusterError",
    "DamagedEntryError",
    "DocumentError",
    "EntryExistsError",
    "EntryLockedError",
    "EntryNotFoundError",
    "GridMismatchError",
    "InputAccessError",
    "InputFormatError",
    "InputNotFoundError",
    "InsufficientSpaceError",
    "OptionError",
    "PreprocessorError",
    "SnapshotError",
    "SymlinkRefusedError",
    "UnsupportedInputError",
]


class PreprocessorError(Exception):
    """Base of every error caused by input files, options or the database state."""

    exit_status = 2

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        super().__init__(message)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        # raised in a dask.distributed worker, re-raised in the client
        return (type(self), (self.message, self.path))


class OptionError(PreprocessorError, ValueError):
    """An option value is invalid or options contradict each other."""


class InputNotFoundError(PreprocessorError, FileNotFoundError):
    """An input path does not exist or is not the kind of path expected."""


class InputFormatError(PreprocessorError, ValueError):
    """An input file cannot be read: truncated, corrupt, unsupported variant or invalid content."""


class InputAccessError(PreprocessorError, PermissionError):
    """A remote input (URL) cannot be read: access denied, no credentials, server errors."""


class UnsupportedInputError(PreprocessorError, NotImplementedError):
    """An input kind or format this version cannot process."""


class GridMismatchError(InputFormatError):
    """Two inputs that must share a grid (shape, voxel size) do not."""


class ClusterError(PreprocessorError, RuntimeError):
    """A dask.distributed cluster could not be reached or could not run a task."""

    exit_status = 1


class EntryExistsError(PreprocessorError, FileExistsError):
    """``add`` of an entry that is already in the database."""


class EntryNotFoundError(PreprocessorError, FileNotFoundError):
    """``extend`` (or a read) of an entry that is not in the database."""


class DocumentError(PreprocessorError, ValueError):
    """A document of an entry is not what this version writes (file and JSON path named)."""


class DamagedEntryError(PreprocessorError):
    """A writer met an entry that does not pass its checks (``validate`` lists them)."""


class EntryLockedError(PreprocessorError, BlockingIOError):
    """Another process is writing the entry (``pipeline.db.lock``)."""


class InsufficientSpaceError(PreprocessorError, OSError):
    """A folder has less free space than a run's declared sizes need."""


class SymlinkRefusedError(PreprocessorError, OSError):
    """A symlink (or another kind of file) where the database layout expects a folder or file."""


class SnapshotError(Exception):
    """An entry cannot be read at all (gone, not a folder, unreadable files): raised by
    ``pipeline.db.snapshot`` and reported by ``validate`` as a finding, not a user error."""
