"""Reading an input of a given kind: the reader its registration names, local or by URL.

Every reader has one signature, ``reader(path, scratch, extra) -> Contents``: ``scratch`` is a
folder for decompressed or decoded copies (None in a dry run or ``inspect``, where readers read
headers only), ``extra`` the run's validated extra data. ``preprocess`` and ``inspect`` only
ever go through :func:`read_input`; what each kind is (its reader among the rest) is said once,
in ``pipeline/inputs/kinds.py``.

Readers are imported when first called, never here: a run pays only for the format libraries
(h5py, nibabel, tifffile, zarr, trimesh, ...) of its own inputs (tests/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pipeline.inputs.kinds import (
    DECODED_KINDS,
    DIRECTORY_KINDS,
    IN_PLACE_KINDS,
    READ_KINDS,
    VOLUME_KINDS,
    WORKER_READ_KINDS,
    InputKind,
    Reader,
    reader_of,
)
from pipeline.inputs.source import (
    Url,
    is_url,
    local_copy_folder,
    renamed_errors,
    spool,
    storage_options,
)
from pipeline.model import Contents, ExtraData

__all__ = [
    "DECODED_KINDS",
    "DIRECTORY_KINDS",
    "IN_PLACE_KINDS",
    "READERS",
    "VOLUME_KINDS",
    "WORKER_READ_KINDS",
    "Contents",
    "Reader",
    "read_input",
]


class _Readers(Mapping[InputKind, Reader]):
    """Kind -> reader for the kinds that have one; a reader is imported when looked up."""

    def __getitem__(self, kind: InputKind) -> Reader:
        return reader_of(kind)

    def __iter__(self) -> Iterator[InputKind]:
        return (kind for kind in InputKind if kind in READ_KINDS)

    def __len__(self) -> int:
        return len(READ_KINDS)

    def __contains__(self, kind: object) -> bool:
        return kind in READ_KINDS


READERS: Mapping[InputKind, Reader] = _Readers()


def read_input(
    kind: InputKind, path: Path, scratch: Path | None, extra: ExtraData | None
) -> Contents:
    """Read one input with its kind's reader (the kind must have one)."""
    if is_url(path):
        return _read_url(kind, Url(path), scratch, extra)
    return reader_of(kind)(Path(path), scratch, extra)


def _read_url(kind: InputKind, url: Url, scratch: Path | None, extra: ExtraData | None) -> Contents:
    if kind in IN_PLACE_KINDS:
        return reader_of(kind)(url, scratch, extra)  # type: ignore[arg-type]
    local = spool(url, local_copy_folder(scratch), storage_options())
    with renamed_errors(local, url):
        contents = reader_of(kind)(local, scratch, extra)

    def named(item: Any) -> Any:
        return replace(item, path=url) if str(getattr(item, "path", "")) == str(local) else item

    return Contents(
        volume=named(contents.volume) if contents.volume is not None else None,
        lattices=tuple(map(named, contents.lattices)),
        geometric=tuple(map(named, contents.geometric)),
        meshes=tuple(map(named, contents.meshes)),
    )
