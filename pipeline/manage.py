"""Management of existing entries, on the same lock and atomic commit path as ``preprocess``."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.db.commit import COMMITTED, after_commit_hook
from pipeline.db.layout import VOLUME_GROUP, EntryLocation, lattice_group, mesh_group
from pipeline.db.lock import entry_lock
from pipeline.db.rewrite import rewriting
from pipeline.db.safefs import (
    STAGING,
    ensure_dir,
    open_dir,
    opened_dir,
    opened_root,
    remove_dead_staging,
    remove_tree,
    staging_name,
)
from pipeline.errors import EntryNotFoundError, InputFormatError, OptionError
from pipeline.inputs.extra_data import load_json
from pipeline.json_errors import json_path, validation_problem

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = [
    "delete_entry",
    "edit_descriptions",
    "edit_segment_annotations",
    "remove_descriptions",
    "remove_segment_annotations",
    "remove_segmentation",
    "remove_volume",
]


def delete_entry(location: EntryLocation) -> None:
    """Remove an entry (even a damaged one): one rename out of sight, then deletion.

    The entry goes into a staging folder named after this process, so if the deletion is
    killed half-way the next writer of the database removes what is left.
    """
    with entry_lock(location):
        entry_folder_fds = _entry_fds(location)
        if entry_folder_fds is None:
            raise EntryNotFoundError(
                f"entry {location.key} does not exist", location.folder
            )
        source = entry_folder_fds
        try:
            created: set[str] = set()
            staging = ensure_dir(location.db_path, STAGING, created=created)
            # removed at the end when empty, unless it was there and empty before
            tidy = STAGING in created or bool(os.listdir(staging))
            try:
                remove_dead_staging(staging)
                trash = staging_name(location.source_db, location.entry_id)
                os.rename(location.entry_id, trash, src_dir_fd=source, dst_dir_fd=staging)
                COMMITTED.append(location.key)
                tidy = True  # the deletion is the outcome: tidy up an empty _staging found
                after_commit_hook()
                remove_tree(staging, trash)
            finally:
                os.close(staging)
        finally:
            os.close(source)
        if tidy:
            with contextlib.suppress(OSError), opened_root(location.db_path) as root:
                os.rmdir(STAGING, dir_fd=root)


def _entry_fds(location: EntryLocation) -> int | None:
    """The source folder's descriptor when the entry folder is in it (neither a symlink:
    refused, naming it); None when there is no such entry."""
    with opened_root(location.db_path) as root:
        try:
            source = open_dir(root, location.source_db, location.db_path / location.source_db)
        except FileNotFoundError:
            return None
    try:
        with opened_dir(source, location.entry_id, location.folder):
            return source
    except FileNotFoundError:
        os.close(source)
        return None
    except BaseException:
        os.close(source)
        raise


def _rewrite(
    location: EntryLocation, documents: EntryDocuments, drop: tuple[str, ...] = ()
) -> None:
    """Commit the entry's documents (a document that is None goes), and a data.zip without
    the members under ``drop``."""
    with rewriting(location) as rewrite:
        # removals: metadata stops naming what goes before data.zip loses it
        if drop:
            rewrite.drop(drop)
        rewrite.commit(documents)


def remove_segmentation(location: EntryLocation, ids: list[str], kind: str) -> None:
    """Remove lattice, mesh or geometric segmentations (with their annotations and data)
    from an entry."""
    from pipeline.db.validate import checked_documents

    if kind == "geometric_segmentation":
        kind = "geometric"
    if kind not in ("lattice", "mesh", "geometric"):
        raise OptionError(f"--kind {kind}: this database holds no {kind} segmentations yet")
    ids = list(dict.fromkeys(ids))
    with entry_lock(location):
        documents = checked_documents(location)
        model_kind = "primitive" if kind == "geometric" else kind
        present = documents.ids_of(model_kind)
        unknown = [i for i in ids if i not in present]
        if unknown:
            noun = "geometric segmentation" if kind == "geometric" else kind
            raise OptionError(
                f"no {noun} {', '.join(unknown)} in entry {location.key} "
                f"(it has: {', '.join(present) or 'none'})"
            )
        documents.remove_segmentations(model_kind, ids)
        group = {"lattice": lattice_group, "mesh": mesh_group}.get(kind)
        drop = tuple(group(i) for i in ids) if group is not None else ()
        _rewrite(location, documents, drop)


def remove_volume(location: EntryLocation) -> None:
    """Remove the volume; refused while lattices (placed on its grid) remain."""
    from pipeline.db.validate import checked_documents

    with entry_lock(location):
        documents = checked_documents(location)
        if documents.lattice_ids:
            raise OptionError(
                "lattices are placed on the volume's grid: remove them first "
                f"({', '.join(documents.lattice_ids)})"
            )
        if documents.metadata.volumes is None:
            raise OptionError("the entry has no volume")
        documents.remove_volume()
        _rewrite(location, documents, (f"{VOLUME_GROUP}/",))


def _items(path: Path, key: str) -> list[dict[str, Any]]:
    """Items of an edit document (a list, an object by id, or ``{key: either}``), each checked
    like the items of ``custom_annotations``
    (:func:`pipeline.inputs.json_models.edit_items_adapter`)."""
    from pydantic import ValidationError

    from pipeline.inputs.json_models import edit_items_adapter

    doc = load_json(path)
    prefix: tuple[str, ...] = ()
    items = doc
    if isinstance(doc, dict) and key in doc:
        prefix, items = (key,), doc[key]
    if not isinstance(items, list | dict):
        expected = f"expected a list of {key} objects, or an object by id"
        raise InputFormatError(f"{json_path(prefix)}: {expected}", path)
    try:
        edit_items_adapter(key, by_id=isinstance(items, dict)).validate_python(items)
    except ValidationError as exc:
        raise InputFormatError(validation_problem(exc, items, prefix), path) from None
    return list(items.values()) if isinstance(items, dict) else items


def _edit(location: EntryLocation, path: Path, key: str) -> None:
    from pipeline.db.validate import checked_documents

    items = _items(path, key)
    with entry_lock(location):
        documents = checked_documents(location)
        custom = {key: {d["id"]: d for d in items} if key == "descriptions" else items}
        merged = documents.merge(custom, str(path))
        # what a user adds names only frames where the segment occurs (the viewer draws it
        # at every frame its time names)
        problems = documents.reference_problems(*merged, where_present=True)
        if problems:
            raise InputFormatError(f"refused: {problems[0]}", path)
        _rewrite(location, documents)


def edit_descriptions(location: EntryLocation, path: Path) -> None:
    """Add or replace descriptions (by id) from a JSON file."""
    _edit(location, path, "descriptions")


def edit_segment_annotations(location: EntryLocation, path: Path) -> None:
    """Add or replace segment annotations (by id) from a JSON file."""
    _edit(location, path, "segment_annotations")


def _remove(location: EntryLocation, ids: list[str], key: str) -> None:
    from pipeline.db.validate import checked_documents

    ids = list(dict.fromkeys(ids))
    with entry_lock(location):
        # removing annotations is how an entry whose annotations name what is gone is repaired
        documents = checked_documents(location, allow_reference_problems=True)
        annotations = documents.annotations
        present = (
            set(annotations.descriptions)
            if key == "descriptions"
            else {a.id for a in annotations.segment_annotations}
        )
        unknown = sorted(set(ids) - present)
        if unknown:
            raise OptionError(f"no {key} with id {', '.join(unknown)}")
        if key == "descriptions":
            documents.remove_descriptions(ids)
        else:
            documents.remove_segment_annotations(ids)
        _rewrite(location, documents)


def remove_descriptions(location: EntryLocation, ids: list[str]) -> None:
    _remove(location, ids, "descriptions")


def remove_segment_annotations(location: EntryLocation, ids: list[str]) -> None:
    _remove(location, ids, "segment_annotations")
