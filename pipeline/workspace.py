"""The run's own folders: a private working folder under --working-folder, folders of killed
runs removed, and folders a run created on its way removed again when left empty."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from pipeline.db.safefs import stamp_is_dead, writer_stamp
from pipeline.errors import OptionError

__all__ = ["remove_stale", "run_folder", "tidy"]


@contextlib.contextmanager
def run_folder(working_folder: Path, entry_id: str, kind: str = "") -> Iterator[Path]:
    """A private folder under --working-folder, removed on success and on failure.

    Its name carries its writer (host, pid, process start); folders left by runs that were
    killed (SIGKILL, a lost node) on this host are removed when the next run starts here.
    """
    try:
        working_folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(
            f"--working-folder: cannot create the working folder: {exc.strerror}", working_folder
        ) from exc
    remove_stale(working_folder)
    folder = working_folder / f".cellstar-{kind}{entry_id}@{writer_stamp()}@{uuid.uuid4().hex[:12]}"
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def remove_stale(working_folder: Path) -> None:
    """Run folders of this host whose owning process is gone (also those of older versions,
    stamped by an ``.owner`` file)."""
    host = socket.gethostname()
    for folder in working_folder.glob(".cellstar-*"):
        parts = folder.name.split("@")
        if len(parts) == 5:
            if stamp_is_dead(*parts[1:4]):
                shutil.rmtree(folder, ignore_errors=True)
            continue
        try:
            pid, owner_host = (folder / ".owner").read_text().split()
            os.kill(int(pid), 0)
        except ProcessLookupError:
            if owner_host == host:
                shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):  # no stamp yet, being removed, or not ours to judge
            continue


@contextlib.contextmanager
def tidy(*paths: Path) -> Iterator[None]:
    """Folders on the way to ``paths`` that this run creates are removed again if nothing but
    empty folders (e.g. ``_locks``) is left in them."""
    new: set[Path] = set()
    for path in paths:
        q = path.absolute()
        while not q.exists():
            new.add(q)
            q = q.parent
    try:
        yield
    finally:
        # only the folders this run found missing, each only when empty: a concurrent run's
        # folders inside them (a new source folder, its staging) are never removed
        for q in sorted(new, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(q)

