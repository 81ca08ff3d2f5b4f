"""Rewriting an existing entry: one staged copy that replaces it in one step.

``preprocess --mode extend`` and every management command (``remove-*``, ``edit-*``) go this
way: the entry's documents are staged anew; its data.zip is kept as it is (a hard link), or
rewritten with the old members (all of them, or all but some groups) and new ones appended;
then the staged folder takes the entry's place (:meth:`StagedEntry.replace_existing`).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from pipeline.db.commit import StagedEntry, staged_entry
from pipeline.db.layout import DATA_ZIP, EntryLocation
from pipeline.db.safefs import link_file, open_file, opened_entry
from pipeline.db.sinks import ZipSink, new_archive
from pipeline.errors import DamagedEntryError

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = ["EntryRewrite", "rewriting", "stage_documents"]


def stage_documents(folder: Path, documents: EntryDocuments) -> list[str]:
    """Write the entry's documents into a staged folder; returns their names, in the order
    the fallback of :meth:`StagedEntry.replace_existing` replaces them."""
    from pipeline.db.documents import write_documents

    return write_documents(folder, documents.files())  # a document that is None goes


class EntryRewrite:
    """A staged copy of an entry opened through its folder's descriptor (never a symlink)."""

    def __init__(self, location: EntryLocation, staged: StagedEntry, entry_fd: int) -> None:
        self.location = location
        self.staged = staged
        self._entry_fd = entry_fd
        self._archive_written = False

    def _old_archive(self) -> BinaryIO:
        shown = self.location.folder / DATA_ZIP
        return os.fdopen(open_file(self._entry_fd, DATA_ZIP, os.O_RDONLY, shown), "rb")

    @contextlib.contextmanager
    def archive(self) -> Iterator[ZipSink]:
        """A new data.zip that starts with every member of the old one; new members are put
        into the sink it yields."""
        with new_archive(self.staged.data_zip) as sink, self._old_archive() as old:
            sink.adopt(old)
            yield sink
        self._archive_written = True

    def drop(self, groups: tuple[str, ...]) -> None:
        """A new data.zip without the members under ``groups``."""
        try:
            with (
                new_archive(self.staged.data_zip) as sink,
                self._old_archive() as raw,
                zipfile.ZipFile(raw) as zf,
            ):
                for info in zf.infolist():
                    if not info.filename.startswith(groups):
                        sink.put(info.filename, zf.read(info))
        except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError) as exc:
            raise DamagedEntryError(
                f"{self.location.key}: damaged: {DATA_ZIP}: {exc}; run validate"
            ) from exc
        self._archive_written = True

    def commit(self, documents: EntryDocuments) -> None:
        """Stage the documents (an archive not rewritten is kept as it is: it is never
        modified in place) and put the staged folder in the entry's place."""
        if not self._archive_written:
            link_file(
                self._entry_fd, DATA_ZIP, self.staged.data_zip, self.location.folder / DATA_ZIP
            )
        # only the entry's own documents are staged: stray files are reported by validate,
        # never carried (issue 11)
        names = stage_documents(self.staged.folder, documents)
        self.staged.replace_existing([DATA_ZIP, *names])


@contextlib.contextmanager
def rewriting(location: EntryLocation) -> Iterator[EntryRewrite]:
    """Stage a rewrite of an existing entry; nothing but a committed entry stays behind."""
    with (
        staged_entry(location) as staged,
        opened_entry(location.db_path, location.source_db, location.entry_id) as entry_fd,
    ):
        yield EntryRewrite(location, staged, entry_fd)
