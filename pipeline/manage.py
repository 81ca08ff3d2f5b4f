"""Management of existing entries, on the same lock and atomic commit path as ``preprocess``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.db.commit import staged_entry
from pipeline.db.layout import VOLUME_GROUP, EntryLocation, lattice_group, mesh_group
from pipeline.db.lock import entry_lock
from pipeline.db.rewrite import rewriting
from pipeline.errors import InputFormatError, OptionError
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
    """Remove an entry (even a damaged one): one rename out of sight, then deletion
    (:meth:`pipeline.db.commit.StagedEntry.remove_existing`)."""
    with entry_lock(location), staged_entry(location) as staged:
        staged.remove_existing()


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
