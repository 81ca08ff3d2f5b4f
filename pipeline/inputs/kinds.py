"""The input kinds: one registration each, the only place that says what a kind is.

Every ``--input-kind`` is one member of :class:`InputKind`, whose value is its
:class:`Registration`: name, role, file or folder, name endings, its reader and the function
that lists what its files say as stored (``inspect``), and how a run treats it. From these come
the CLI's ``--input-kind`` choices, kind guessing (``inspect`` without ``--input-kind``), the
checks and hints of error messages ("must be a directory"), ``inspect``'s file facts and the
reader ``preprocess`` calls (``pipeline/inputs/registry.py``). docs/inputs.md says how to add
a kind.

This module is light on purpose (the CLI imports it at start-up): readers are named by dotted
path and imported on first use, so a run pays only for the format libraries of its inputs.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.model import Contents, ExtraData

__all__ = [
    "DECODED_KINDS",
    "DIRECTORY_KINDS",
    "IN_PLACE_KINDS",
    "MESH_SUFFIXES",
    "READ_KINDS",
    "VOLUME_KINDS",
    "WORKER_READ_KINDS",
    "Facts",
    "InputKind",
    "Reader",
    "Registration",
    "Role",
    "check_input_path",
    "facts_of",
    "guess_kind",
    "kind_problem",
    "kinds_named",
    "reader_of",
]

Reader = Callable[[Path, "Path | None", "ExtraData | None"], "Contents"]
Facts = Callable[[Path, "ExtraData | None"], dict[str, Any]]


class Role(enum.Enum):
    """What an input gives the entry."""

    VOLUME = "volume"  # the entry's volume (an entry has exactly one)
    SEGMENTATION = "segmentation"  # lattices, mesh sets or geometric segmentations
    DESCRIPTION = "description"  # extra data, annotations: read by preprocess, not a reader


@dataclass(frozen=True, slots=True)
class Registration:
    """What one input kind is; see :class:`InputKind` for every kind's."""

    name: str  # the --input-kind value
    role: Role
    summary: str  # what it is, for messages and docs
    folder: bool = False  # a folder (or URL prefix), not a file
    suffixes: tuple[str, ...] = ()  # name endings of its inputs, lower case
    guessed: bool = True  # a name with one of ``suffixes`` is taken for this kind
    markers: tuple[str, ...] = ()  # files inside a folder that make it this kind
    reader: str | None = None  # "module:function", (path, scratch, extra) -> Contents
    facts: str | None = None  # "module:function", (path, extra) -> dict (inspect)
    in_place: bool = False  # a URL is read in place by ranged requests (else spooled)
    decoded: bool = False  # its data is decoded or decompressed into scratch when read
    workers_read: bool = False  # cluster workers read its voxels themselves


_MRC_SUFFIXES = (".map", ".mrc", ".ccp4", ".rec", ".st", ".ali", ".mrcs")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_OMETIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.tf2", ".ome.tf8", ".ome.btf")
MESH_SUFFIXES = (".stl", ".obj", ".ply", ".off", ".glb", ".gltf")
_IN = "pipeline.inputs."


class InputKind(enum.Enum):
    """The input kinds, in ``--input-kind`` order; ``kind.value`` is the name,
    ``kind.info`` the :class:`Registration`."""

    info: Registration

    def __new__(cls, info: Registration) -> InputKind:
        member = object.__new__(cls)
        member._value_ = info.name
        member.info = info
        return member

    MAP = Registration(
        "map",
        Role.VOLUME,
        "an MRC/CCP4 map",
        suffixes=_MRC_SUFFIXES,
        reader=_IN + "mrc:read_map",
        facts=_IN + "mrc:mrc_facts",
        in_place=True,
        workers_read=True,
    )
    SFF = Registration(
        "sff",
        Role.SEGMENTATION,
        "an EMDB-SFF segmentation (HDF5 .hff or XML .sff)",
        suffixes=(".hff", ".sff"),
        reader=_IN + "sff:read_sff",
        decoded=True,
    )
    OMEZARR = Registration(
        "omezarr",
        Role.VOLUME,
        "an OME-Zarr (NGFF) image folder, with its labels",
        folder=True,
        suffixes=(".zarr",),
        markers=(".zattrs", "zarr.json"),
        reader=_IN + "omezarr:read_omezarr",
        facts=_IN + "omezarr:omezarr_facts",
        in_place=True,
        workers_read=True,
    )
    MASK = Registration(
        "mask",
        Role.SEGMENTATION,
        "an MRC label map",
        suffixes=_MRC_SUFFIXES,
        guessed=False,  # named like a map: only with --input-kind mask
        reader=_IN + "mask:read_mask",
        facts=_IN + "mrc:mrc_facts",
        in_place=True,
        decoded=True,
        workers_read=True,
    )
    APPLICATION_SPECIFIC_SEGMENTATION = Registration(
        "application_specific_segmentation",
        Role.SEGMENTATION,
        "an EMDB-SFF file by content, or a triangle mesh file (STL, OBJ, PLY, OFF, glTF)",
        suffixes=MESH_SUFFIXES,
        guessed=False,
        reader=_IN + "application_specific:read_application_specific",
    )
    CUSTOM_ANNOTATIONS = Registration(
        "custom_annotations",
        Role.DESCRIPTION,
        "an annotations JSON",
        suffixes=(".json",),
        guessed=False,
    )
    NII_VOLUME = Registration(
        "nii_volume",
        Role.VOLUME,
        "a NIfTI-1/2 image",
        suffixes=_NIFTI_SUFFIXES,
        reader=_IN + "nifti:read_nifti_volume",
        facts=_IN + "nifti:nifti_facts",
        workers_read=True,
    )
    NII_SEGMENTATION = Registration(
        "nii_segmentation",
        Role.SEGMENTATION,
        "a NIfTI-1/2 label image",
        suffixes=_NIFTI_SUFFIXES,
        guessed=False,
        reader=_IN + "nifti:read_nifti_segmentation",
        facts=_IN + "nifti:nifti_facts",
        decoded=True,
        workers_read=True,
    )
    GEOMETRIC_SEGMENTATION = Registration(
        "geometric_segmentation",
        Role.SEGMENTATION,
        "a geometric segmentation JSON (shape primitives)",
        suffixes=(".json",),
        guessed=False,
        reader=_IN + "geometric:read_geometric_segmentation",
    )
    STAR_FILE_GEOMETRIC_SEGMENTATION = Registration(
        "star_file_geometric_segmentation",
        Role.SEGMENTATION,
        "a RELION STAR particle list (spheres)",
        suffixes=(".star",),
        reader=_IN + "star:read_star_geometric",
    )
    OMETIFF_IMAGE = Registration(
        "ometiff_image",
        Role.VOLUME,
        "an OME-TIFF image",
        suffixes=_OMETIFF_SUFFIXES,
        reader=_IN + "ometiff:read_ometiff_image",
        facts=_IN + "ometiff:ometiff_facts",
        workers_read=True,
    )
    OMETIFF_SEGMENTATION = Registration(
        "ometiff_segmentation",
        Role.SEGMENTATION,
        "an OME-TIFF label image",
        suffixes=_OMETIFF_SUFFIXES,
        guessed=False,
        reader=_IN + "ometiff:read_ometiff_segmentation",
        facts=_IN + "ometiff:ometiff_facts",
        workers_read=True,
    )
    EXTRA_DATA = Registration(
        "extra_data",
        Role.DESCRIPTION,
        "an extra data JSON (voxel sizes, ids, names)",
        suffixes=(".json",),
        guessed=False,
    )


def _kinds(test: Callable[[Registration], bool]) -> frozenset[InputKind]:
    return frozenset(kind for kind in InputKind if test(kind.info))


# kinds with a reader (the others describe the entry and are read by preprocess itself)
READ_KINDS = _kinds(lambda r: r.reader is not None)
# kinds that hold the entry's volume (an entry has exactly one)
VOLUME_KINDS = _kinds(lambda r: r.role is Role.VOLUME)
# kinds whose input is a directory rather than a file
DIRECTORY_KINDS = _kinds(lambda r: r.folder)
# kinds read from a URL in place, by ranged requests; the others are read from a copy of the
# object in scratch (formats read once, whole, or through libraries that want a local file)
IN_PLACE_KINDS = _kinds(lambda r: r.in_place)
# segmentation kinds whose data is decoded or decompressed into scratch when read
DECODED_KINDS = _kinds(lambda r: r.decoded)
# kinds whose voxels cluster workers read themselves (the others are read by the client)
WORKER_READ_KINDS = _kinds(lambda r: r.workers_read)


def _imported(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def reader_of(kind: InputKind) -> Reader:
    """The reader of ``kind``, imported now (a ``KeyError`` for kinds without one)."""
    if kind.info.reader is None:
        raise KeyError(kind)
    return _imported(kind.info.reader)  # type: ignore[no-any-return]


def facts_of(kind: InputKind) -> Facts | None:
    """The function that lists what ``kind``'s files say as stored, for ``inspect`` (None:
    the source model shows all its headers say)."""
    return None if kind.info.facts is None else _imported(kind.info.facts)


_COMPRESSED = (".gz", ".bz2")


def kind_problem(name: str) -> str | None:
    """Why ``name`` is no input kind (None: it is one), for messages ``unknown ... <why>``."""
    if name in {k.value for k in InputKind}:
        return None
    return f"{name!r} (one of: {', '.join(k.value for k in InputKind)})"


def _by_name(name: str) -> InputKind | None:
    """The guessed kind whose suffix ends ``name`` (the longest such suffix)."""
    found = [
        (len(suffix), kind)
        for kind in InputKind
        if kind.info.guessed
        for suffix in kind.info.suffixes
        if name.endswith(suffix)
    ]
    return max(found, key=lambda item: item[0])[1] if found else None


def kinds_named(path: Path | str) -> list[InputKind]:
    """Every kind whose suffixes end the name (after a ``.gz``/``.bz2``), guessed or not:
    the kinds to suggest for a file given as another.

    >>> [k.value for k in kinds_named("labels.mrc")]
    ['map', 'mask']
    """
    from pipeline.inputs.source import as_input_path

    name = as_input_path(path).name.lower().rstrip("/")
    names = (name, *(name.removesuffix(c) for c in _COMPRESSED if name.endswith(c)))
    return [kind for kind in InputKind if any(n.endswith(kind.info.suffixes) for n in names)]


def _known_endings() -> str:
    return ", ".join(
        f"{'/'.join(kind.info.suffixes)} ({kind.value})"
        for kind in InputKind
        if kind.info.guessed and kind.info.suffixes
    )


def guess_kind(path: Path | str) -> InputKind:
    """The kind a name suggests: the registered suffixes of the guessed kinds (after a
    ``.gz``/``.bz2``), else a local folder holding a kind's marker file.

    >>> guess_kind("emd_1832.map.gz").value, guess_kind("a.ome.tif").value
    ('map', 'ometiff_image')
    """
    from pipeline.errors import OptionError
    from pipeline.inputs.source import as_input_path, is_url

    name = as_input_path(path).name.lower().rstrip("/")
    for candidate in (name, *(name.removesuffix(c) for c in _COMPRESSED if name.endswith(c))):
        kind = _by_name(candidate)
        if kind is not None:
            return kind
    if not is_url(path):
        for kind in InputKind:
            if any((Path(path) / marker).exists() for marker in kind.info.markers):
                return kind
    raise OptionError(
        f"{path}: cannot tell the input kind from the name; give --input-kind "
        f"(names guessed: {_known_endings()})"
    )


def _looks_like(path: Path, kind: InputKind) -> str:
    """`` (<name> looks like a <other kind> input)`` when the name suggests another kind."""
    from pipeline.errors import OptionError

    try:
        other = guess_kind(path)
    except OptionError:
        return ""
    return "" if other is kind else f" ({path.name} looks like a {other.value} input)"


def check_input_path(kind: InputKind, path: Path) -> None:
    """A local input must exist and be a folder or a file as its kind says (URLs are checked
    by their readers); the message says what the kind expects."""
    from pipeline.errors import InputNotFoundError

    if not path.exists():
        raise InputNotFoundError("no such file or directory", path)
    if kind.info.folder and not path.is_dir():
        raise InputNotFoundError(
            f"a {kind.value} input must be a directory ({kind.info.summary})"
            + _looks_like(path, kind),
            path,
        )
    if not kind.info.folder and not path.is_file():
        raise InputNotFoundError(
            f"a {kind.value} input must be a file ({kind.info.summary})" + _looks_like(path, kind),
            path,
        )
