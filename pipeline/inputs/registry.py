"""Which reader reads which ``--input-kind``, and what a reader gives back.

Every reader has one signature, ``reader(path, scratch, extra) -> Contents``: ``scratch`` is a
folder for decompressed or decoded copies (None in a dry run or ``inspect``, where readers read
headers only), ``extra`` the run's validated extra data. ``preprocess`` and ``inspect`` only
ever go through :data:`READERS`, so a new input kind is one reader module and one line here.

Readers are imported when first called, never here: a run pays only for the format libraries
(h5py, nibabel, tifffile, zarr, trimesh, ...) of its own inputs (tests/test_startup.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.inputs.source import (
    Url,
    is_url,
    local_copy_folder,
    renamed_errors,
    spool,
    storage_options,
)
from pipeline.model import (
    ExtraData,
    GeometricSegmentation,
    LabelSource,
    MeshSetSource,
    VolumeSource,
)
from pipeline.options import InputKind

__all__ = [
    "DIRECTORY_KINDS",
    "FORMAT_FACTS",
    "READERS",
    "VOLUME_KINDS",
    "Contents",
    "Reader",
    "read_input",
]


@dataclass(frozen=True, slots=True)
class Contents:
    """What one input holds, in the source model."""

    volume: VolumeSource | None = None
    lattices: tuple[LabelSource, ...] = ()
    geometric: tuple[GeometricSegmentation, ...] = ()
    meshes: tuple[MeshSetSource, ...] = ()


Reader = Callable[[Path, Path | None, ExtraData | None], Contents]
Facts = Callable[[Path, ExtraData | None], dict[str, Any]]


def _map(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.mrc import read_map

    voxel = extra.volume_voxel_size if extra is not None else None
    where = extra.path if extra is not None else None
    return Contents(volume=read_map(path, scratch, voxel_size=voxel, extra_path=where))


def _mask(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.mask import read_mask

    return Contents(lattices=(read_mask(path, scratch, extra),))


def _sff(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.sff import read_sff_contents

    sff = read_sff_contents(path, scratch, extra)
    return Contents(lattices=sff.lattices, meshes=sff.meshes)


def _application_specific(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.application_specific import read_application_specific

    sff = read_application_specific(path, scratch, extra)
    return Contents(lattices=sff.lattices, meshes=sff.meshes)


def _nii_volume(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.nifti import read_nifti_volume

    return Contents(volume=read_nifti_volume(path, scratch, extra))


def _nii_segmentation(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.nifti import read_nifti_segmentation

    return Contents(lattices=(read_nifti_segmentation(path, scratch, extra),))


def _geometric(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.geometric import read_geometric

    return Contents(geometric=(read_geometric(path, extra),))


def _star(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.star import read_star_geometric

    return Contents(geometric=(read_star_geometric(path, extra),))


def _ometiff_image(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.ometiff import read_ometiff_image

    return Contents(volume=read_ometiff_image(path, extra))


def _ometiff_segmentation(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.ometiff import read_ometiff_segmentation

    return Contents(lattices=tuple(read_ometiff_segmentation(path, extra)))


def _omezarr(path: Path, scratch: Path | None, extra: ExtraData | None) -> Contents:
    from pipeline.inputs.omezarr import read_omezarr

    volume, lattices = read_omezarr(path, scratch, extra)
    return Contents(volume=volume, lattices=lattices)


READERS: dict[InputKind, Reader] = {
    InputKind.MAP: _map,
    InputKind.MASK: _mask,
    InputKind.SFF: _sff,
    InputKind.NII_VOLUME: _nii_volume,
    InputKind.NII_SEGMENTATION: _nii_segmentation,
    InputKind.GEOMETRIC_SEGMENTATION: _geometric,
    InputKind.STAR_FILE_GEOMETRIC_SEGMENTATION: _star,
    InputKind.OMETIFF_IMAGE: _ometiff_image,
    InputKind.OMETIFF_SEGMENTATION: _ometiff_segmentation,
    InputKind.OMEZARR: _omezarr,
    InputKind.APPLICATION_SPECIFIC_SEGMENTATION: _application_specific,
}


def _mrc_facts(path: Path, extra: ExtraData | None) -> dict[str, Any]:
    from pipeline.inputs.mrc import mrc_facts

    return mrc_facts(path)


def _nifti_facts(path: Path, extra: ExtraData | None) -> dict[str, Any]:
    from pipeline.inputs.nifti import nifti_facts

    return nifti_facts(path)


def _ometiff_facts(path: Path, extra: ExtraData | None) -> dict[str, Any]:
    from pipeline.inputs.ometiff import ometiff_facts

    return ometiff_facts(path, extra)


def _omezarr_facts(path: Path, extra: ExtraData | None) -> dict[str, Any]:
    from pipeline.inputs.omezarr import omezarr_facts

    return omezarr_facts(path)


# what the file says as stored, for ``inspect`` (the kinds whose headers carry more than the
# source model shows)
FORMAT_FACTS: dict[InputKind, Facts] = {
    InputKind.MAP: _mrc_facts,
    InputKind.MASK: _mrc_facts,
    InputKind.NII_VOLUME: _nifti_facts,
    InputKind.NII_SEGMENTATION: _nifti_facts,
    InputKind.OMETIFF_IMAGE: _ometiff_facts,
    InputKind.OMETIFF_SEGMENTATION: _ometiff_facts,
    InputKind.OMEZARR: _omezarr_facts,
}

# kinds that hold the entry's volume (an entry has exactly one)
VOLUME_KINDS = frozenset(
    {InputKind.MAP, InputKind.NII_VOLUME, InputKind.OMEZARR, InputKind.OMETIFF_IMAGE}
)
# kinds whose input is a directory rather than a file
DIRECTORY_KINDS = frozenset({InputKind.OMEZARR})


def read_input(
    kind: InputKind, path: Path, scratch: Path | None, extra: ExtraData | None
) -> Contents:
    """Read one input with its kind's reader (the kind must be in :data:`READERS`)."""
    if is_url(path):
        return _read_url(kind, Url(path), scratch, extra)
    return READERS[kind](Path(path), scratch, extra)


# kinds read from a URL in place, by ranged requests; the others are read from a copy of the
# object in ``scratch`` (SFF, NIfTI, STAR, JSON, OME-TIFF: formats read once, whole, or
# through libraries that want a local file)
IN_PLACE_KINDS = frozenset({InputKind.MAP, InputKind.MASK, InputKind.OMEZARR})


def _read_url(kind: InputKind, url: Url, scratch: Path | None, extra: ExtraData | None) -> Contents:
    if kind in IN_PLACE_KINDS:
        return READERS[kind](url, scratch, extra)  # type: ignore[arg-type]
    local = spool(url, local_copy_folder(scratch), storage_options())
    with renamed_errors(local, url):
        contents = READERS[kind](local, scratch, extra)

    def named(item: Any) -> Any:
        return replace(item, path=url) if str(getattr(item, "path", "")) == str(local) else item

    return Contents(
        volume=named(contents.volume) if contents.volume is not None else None,
        lattices=tuple(map(named, contents.lattices)),
        geometric=tuple(map(named, contents.geometric)),
        meshes=tuple(map(named, contents.meshes)),
    )
