"""Management of existing entries, on the same lock and atomic commit path as ``preprocess``."""

from __future__ import annotations

import contextlib
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

from pipeline.db.commit import (
    COMMITTED,
    _after_commit_hook,
    entry_files_to_carry,
    staged_entry,
    write_json,
)
from pipeline.db.layout import (
    ANNOTATIONS_JSON,
    DATA_ZIP,
    GEOMETRIC_JSON,
    METADATA_JSON,
    EntryLocation,
)
from pipeline.db.lock import entry_lock
from pipeline.db.metadata import merge_annotations
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
from pipeline.db.sinks import new_archive
from pipeline.errors import EntryNotFoundError, InputFormatError, OptionError
from pipeline.geometric import drop_geometric, read_entry_geometric
from pipeline.inputs.annotations import check_annotations_document
from pipeline.inputs.extra_data import load_json

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
                f"entry {location.source_db}/{location.entry_id} does not exist", location.folder
            )
        source = entry_folder_fds
        try:
            staging = ensure_dir(location.db_path, STAGING)
            try:
                remove_dead_staging(staging)
                trash = staging_name(location.source_db, location.entry_id)
                os.rename(location.entry_id, trash, src_dir_fd=source, dst_dir_fd=staging)
                COMMITTED.append(f"{location.source_db}/{location.entry_id}")
                _after_commit_hook()
                remove_tree(staging, trash)
            finally:
                os.close(staging)
        finally:
            os.close(source)
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
    location: EntryLocation,
    metadata: dict[str, Any],
    annotations: dict[str, Any],
    drop: tuple[str, ...] = (),
    documents: dict[str, Any] | None = None,
) -> None:
    """Commit new JSON documents, and a data.zip without the members under ``drop``;
    ``documents`` replace other files of the entry (None: the file goes)."""
    documents = documents or {}
    with staged_entry(location) as staged:
        # removals: metadata stops naming what goes before data.zip loses it
        names = [METADATA_JSON, ANNOTATIONS_JSON]
        if drop:
            with (
                new_archive(staged.data_zip) as sink,
                zipfile.ZipFile(location.folder / DATA_ZIP) as zf,
            ):
                for info in zf.infolist():
                    if not info.filename.startswith(drop):
                        sink.put(info.filename, zf.read(info))
            names.append(DATA_ZIP)
        else:  # only the JSON documents change: keep the archive as it is
            os.link(location.folder / DATA_ZIP, staged.data_zip)
        for name in entry_files_to_carry(location, documents):
            shutil.copy2(location.folder / name, staged.folder / name, follow_symlinks=False)
            names.append(name)
        for name, document in documents.items():
            if document is not None:
                write_json(staged.folder / name, document)
                names.append(name)
        write_json(staged.folder / ANNOTATIONS_JSON, annotations)
        write_json(staged.folder / METADATA_JSON, metadata)
        staged.replace_existing(names)


# --kind -> (metadata.json section, its per-id info key, data.zip group)
_SEGMENTATION_KINDS = {
    "lattice": ("segmentation_lattices", "segmentation_sampling_info", "lattice_segmentation_data"),
    "mesh": ("segmentation_meshes", "segmentation_metadata", "mesh_segmentation_data"),
}


def remove_segmentation(location: EntryLocation, ids: list[str], kind: str) -> None:
    """Remove lattice, mesh or geometric segmentations (with their annotations and data)
    from an entry."""
    if kind in ("geometric", "geometric_segmentation"):
        _remove_geometric(location, list(dict.fromkeys(ids)))
        return
    if kind not in _SEGMENTATION_KINDS:
        raise OptionError(f"--kind {kind}: this database holds no {kind} segmentations yet")
    key, info, group = _SEGMENTATION_KINDS[kind]
    with entry_lock(location):
        metadata, annotations = location.read_documents()
        section = metadata[key]
        ids = list(dict.fromkeys(ids))
        unknown = [i for i in ids if i not in section["segmentation_ids"]]
        if unknown:
            raise OptionError(
                f"no {kind} {', '.join(unknown)} in entry {location.source_db}/"
                f"{location.entry_id} (it has: {', '.join(section['segmentation_ids']) or 'none'})"
            )
        for i in ids:
            section["segmentation_ids"].remove(i)
            section[info].pop(i, None)
            section["time_info"].pop(i, None)
        gone = set(ids)
        annotations["segment_annotations"] = [
            a
            for a in annotations["segment_annotations"]
            if not (a.get("segment_kind") == kind and a.get("segmentation_id") in gone)
        ]
        annotations["descriptions"] = {
            k: d
            for k, d in annotations["descriptions"].items()
            if not (
                d.get("target_kind") == kind
                and (d.get("target_id") or {}).get("segmentation_id") in gone
            )
        }
        drop = tuple(f"{group}/{i}/" for i in ids)
        _rewrite(location, metadata, annotations, drop)


def _remove_geometric(location: EntryLocation, ids: list[str]) -> None:
    with entry_lock(location):
        metadata, annotations = location.read_documents()
        entry = f"{location.source_db}/{location.entry_id}"
        document = read_entry_geometric(location.folder)
        rest = drop_geometric(metadata, annotations, document, ids, entry)
        _rewrite(location, metadata, annotations, documents={GEOMETRIC_JSON: rest or None})


def remove_volume(location: EntryLocation) -> None:
    """Remove the volume; refused while lattices (placed on its grid) remain."""
    with entry_lock(location):
        metadata, annotations = location.read_documents()
        if metadata["segmentation_lattices"]["segmentation_ids"]:
            raise OptionError(
                "lattices are placed on the volume's grid: remove them first "
                f"({', '.join(metadata['segmentation_lattices']['segmentation_ids'])})"
            )
        if not metadata.get("volumes"):
            raise OptionError("the entry has no volume")
        metadata["volumes"] = None
        annotations["volume_channels_annotations"] = []
        _rewrite(location, metadata, annotations, ("volume_data/",))


def _items(path: Path, key: str) -> list[dict[str, Any]]:
    """Items of a JSON file (a list, an object by id, or ``{key: ...}``), checked like
    ``custom_annotations``."""
    doc = load_json(path)
    if isinstance(doc, dict) and key in doc:
        doc = doc[key]
    if isinstance(doc, dict):
        doc = list(doc.values())
    if not isinstance(doc, list) or not all(
        isinstance(d, dict) and isinstance(d.get("id"), str) for d in doc
    ):
        raise InputFormatError(f"expected a list of {key} objects, each with a string id", path)
    document = {key: {d["id"]: d for d in doc} if key == "descriptions" else doc}
    check_annotations_document(document, path)
    return doc


def edit_descriptions(location: EntryLocation, path: Path) -> None:
    """Add or replace descriptions (by id) from a JSON file."""
    items = _items(path, "descriptions")
    with entry_lock(location):
        metadata, annotations = location.read_documents()
        merge_annotations(annotations, _custom(descriptions={d["id"]: d for d in items}))
        _rewrite(location, metadata, annotations)


def edit_segment_annotations(location: EntryLocation, path: Path) -> None:
    """Add or replace segment annotations (by id) from a JSON file."""
    items = _items(path, "segment_annotations")
    with entry_lock(location):
        metadata, annotations = location.read_documents()
        merge_annotations(annotations, _custom(segment_annotations=items))
        _rewrite(location, metadata, annotations)


def _remove(location: EntryLocation, ids: list[str], key: str) -> None:
    ids = list(dict.fromkeys(ids))
    with entry_lock(location):
        metadata, annotations = location.read_documents()
        present = (
            set(annotations[key]) if key == "descriptions" else {a["id"] for a in annotations[key]}
        )
        unknown = sorted(set(ids) - present)
        if unknown:
            raise OptionError(f"no {key} with id {', '.join(unknown)}")
        if key == "descriptions":
            for i in ids:
                annotations[key].pop(i)
        else:
            annotations[key] = [a for a in annotations[key] if a["id"] not in set(ids)]
        _rewrite(location, metadata, annotations)


def remove_descriptions(location: EntryLocation, ids: list[str]) -> None:
    _remove(location, ids, "descriptions")


def remove_segment_annotations(location: EntryLocation, ids: list[str]) -> None:
    _remove(location, ids, "segment_annotations")


def _custom(**parts: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": None,
        "details": None,
        "descriptions": {},
        "segment_annotations": [],
        "volume_channels_annotations": [],
    }
    doc.update(parts)
    return doc
