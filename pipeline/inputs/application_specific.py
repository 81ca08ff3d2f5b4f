"""``application_specific_segmentation`` inputs.

DESIGN 8: "formats that can be converted to SFF by a maintained library; otherwise a clear
'not supported: <format>' error". The library that converts IMOD, Amira, Segger, ilastik … to
EMDB-SFF is sfftk, and it cannot be a dependency: its ``ahds`` requirement is published only as
a source package whose build imports numpy without declaring it, so a plain ``pip install`` of
this project would fail (see docs/inputs.md). So a file that already is EMDB-SFF (HDF5 or XML,
recognised by content whatever its name) is read as ``sff``; triangle mesh files (STL, OBJ, PLY,
OFF, glTF), which sfftk turns into SFF mesh lists, are read with trimesh into the same mesh model
(``mesh_files.py``); every other format is refused naming the format and the conversion command.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputNotFoundError, UnsupportedInputError
from pipeline.inputs.kinds import InputKind, Role, kinds_named
from pipeline.inputs.mesh_files import MESH_SUFFIXES, read_mesh_file
from pipeline.inputs.sff import is_sff, read_sff
from pipeline.model import Contents, ExtraData

__all__ = ["detect_format", "read_application_specific"]

# (magic prefix, format name), for files whose suffix says nothing
_MAGIC = (
    (b"IMOD", "IMOD model"),
    (b"# AmiraMesh", "Amira mesh"),
    (b"# Avizo", "Amira mesh"),
    (b"# HyperSurface", "Amira HyperSurface"),
    (b"\x89HDF\r\n\x1a\n", "HDF5 (Segger, ilastik or SuRVoS)"),
    (b"solid", "STL mesh"),
    (b"data_", "STAR file"),
)
_SUFFIX = {
    ".mod": "IMOD model",
    ".am": "Amira mesh",
    ".surf": "Amira HyperSurface",
    ".seg": "Segger segmentation",
    ".h5": "HDF5 (ilastik or SuRVoS)",
    ".hdf5": "HDF5",
}
# kinds not to suggest: those read here (an SFF is recognised by content, whatever its name)
_READ_HERE = (InputKind.SFF, InputKind.APPLICATION_SPECIFIC_SEGMENTATION)


def detect_format(path: Path) -> str:
    """A short name of a file's format, from its suffix (with the segmentation kinds
    registered for it) or its first bytes."""
    suffix = path.suffix.lower()
    kinds = [
        kind
        for kind in kinds_named(path)
        if kind.info.role is Role.SEGMENTATION and kind not in _READ_HERE
    ]
    if kinds:
        use = " or ".join(f"--input-kind {kind.value}" for kind in kinds)
        return f"{kinds[0].info.summary} ({suffix}; use {use})"
    if suffix in _SUFFIX:
        return f"{_SUFFIX[suffix]} ({suffix})"
    with open(path, "rb") as head:
        start = head.read(64)
    for magic, name in _MAGIC:
        if start.startswith(magic):
            return name
    return f"{suffix} file" if suffix else "unknown format"


def read_application_specific(
    path: Path, scratch: Path | None, extra: ExtraData | None = None
) -> Contents:
    """An EMDB-SFF file as ``sff``, a triangle mesh file (STL, OBJ, PLY, OFF, glTF) as one mesh
    set read with trimesh; any other format is refused with its name."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError("no such file", path)
    if is_sff(path):
        return read_sff(path, scratch, extra)
    if path.suffix.lower() in MESH_SUFFIXES:
        return Contents(meshes=(read_mesh_file(path, extra),))
    raise UnsupportedInputError(
        f"not supported: {detect_format(path)}; convert it to EMDB-SFF with sfftk "
        f"(sff convert {path.name} -o {path.stem}.hff) and give that with --input-kind sff",
        path,
    )
