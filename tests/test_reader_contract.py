"""The reader contract, checked on every registered reader (``pipeline/inputs/kinds.py``).

Every reader is ``reader(path, scratch, extra) -> Contents`` and must: give what its role says
(a volume, or lattices / mesh sets / geometric segmentations); put arrays in ``[x, y, z]`` order
and sizes in Angstrom; return without reading the voxel payload (lazy) and then read only the
blocks asked for (bounded reads); and never open its input for writing.

Inputs are generated here, each with its format's own library or layout, over an asymmetric
grid whose every voxel holds its own index (``x + X*y + X*Y*z``): a swapped axis, a flip or an
off-by-one shows as wrong values. A kind added to the registration without a case here fails
:func:`test_every_registered_reader_has_a_case`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import write_mrc, write_sff_lattice

from pipeline.inputs.kinds import DECODED_KINDS, READ_KINDS, InputKind, Role, reader_of
from pipeline.model import Contents, ExtraData

X, Y, Z = 128, 96, 64  # an asymmetric grid of 786,432 voxels (3 MB as float32)


def grid_zyx() -> np.ndarray:
    """Each voxel's own index ``x + X*y + X*Y*z``, stored [z, y, x] (as files store it)."""
    return np.arange(X * Y * Z, dtype=np.int64).reshape(Z, Y, X)


def grid_xyz() -> np.ndarray:
    return grid_zyx().transpose(2, 1, 0)


# --- the inputs, one writer per kind ----------------------------------------------------------


def _map(folder: Path) -> Path:
    return write_mrc(folder / "m.mrc", grid_zyx().astype(np.float32), voxel_size=(1.5, 2.0, 2.5))


def _mask(folder: Path) -> Path:  # labels stored as float32 holding integers
    return write_mrc(folder / "m_msk.mrc", grid_zyx().astype(np.float32), (1.5, 2.0, 2.5))


def _nifti(folder: Path, name: str, dtype: type) -> Path:
    import nibabel as nib

    # 0.5 x 0.25 x 0.125 micrometre voxels, sample 0 at (1, 2, 3) micrometres
    affine = np.diag([0.5, 0.25, 0.125, 1.0])
    affine[:3, 3] = (1.0, 2.0, 3.0)
    image = nib.Nifti1Image(grid_xyz().astype(dtype), affine)  # NIfTI arrays are [i, j, k]
    image.header.set_xyzt_units("micron")
    image.to_filename(folder / name)
    return folder / name


def _ometiff(folder: Path, name: str, dtype: type) -> Path:
    import tifffile

    meta = {
        "axes": "ZYX",
        "PhysicalSizeX": 0.5,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.25,
        "PhysicalSizeYUnit": "µm",
        "PhysicalSizeZ": 3.0,
        "PhysicalSizeZUnit": "Å",
    }
    tifffile.imwrite(folder / name, grid_zyx().astype(dtype), ome=True, metadata=meta)
    return folder / name


def _omezarr(folder: Path) -> Path:
    import zarr

    path = folder / "image.zarr"
    group = zarr.open_group(path, mode="w", zarr_format=2)
    array = group.create_array(  # uncompressed: the payload is as large as the grid
        "0", shape=(Z, Y, X), chunks=(16, 32, 32), dtype="f4", compressors=None
    )
    array[:] = grid_zyx().astype(np.float32)
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [
                {"name": "z", "type": "space", "unit": "micrometer"},
                {"name": "y", "type": "space", "unit": "nanometer"},
                {"name": "x", "type": "space", "unit": "nanometer"},
            ],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [0.3, 0.5, 0.25]},
                        {"type": "translation", "translation": [1.0, 2.0, 3.0]},
                    ],
                }
            ],
        }
    ]
    return path


def _sff(folder: Path) -> Path:
    return write_sff_lattice(
        folder / "s.hff",
        grid_zyx().astype(np.uint32),
        {1: 1, 2: 2},
        transforms=("1.5 0 0 10 0 2.0 0 20 0 0 2.5 30",),
        transform_id=0,
    )


TRIANGLES = [(0.0, 0.0, 0.0), (100.0, 0.0, 0.0), (0.0, 50.0, 25.0), (10.0, 20.0, 30.0)]


def _mesh(folder: Path) -> Path:
    lines = [f"v {x} {y} {z}" for x, y, z in TRIANGLES] + ["f 1 2 3", "f 1 3 4"]
    (folder / "surface.obj").write_text("\n".join(lines) + "\n")
    return folder / "surface.obj"


def _geometric(folder: Path) -> Path:
    doc = {
        "segmentation_id": "spheres",
        "shape_primitives_input": {
            "0": [
                {
                    "kind": "sphere",
                    "parameters": {"id": 1, "center": [10, 20, 30], "radius": 5, "color": None},
                }
            ]
        },
    }
    (folder / "g.json").write_text(json.dumps(doc))
    return folder / "g.json"


def _star(folder: Path) -> Path:
    text = """
data_optics

loop_
_rlnOpticsGroup #1
_rlnImagePixelSize #2
1 2.0

data_particles

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2
_rlnCoordinateZ #3
_rlnOpticsGroup #4
10.0 20.0 30.0 1
1.0 2.0 3.0 1
"""
    (folder / "particles.star").write_text(text)
    return folder / "particles.star"


# --- what each reader must give -------------------------------------------------------------


def _grid(contents: Contents) -> Any:
    if contents.volume is not None:
        return contents.volume.frames[0][0]
    return contents.lattices[0].frames[0]


def _check_grid(contents: Contents) -> None:
    array = _grid(contents)
    assert tuple(array.shape) == (X, Y, Z)  # [x, y, z]
    np.testing.assert_array_equal(np.asarray(array[:, :, :]), grid_xyz())


def _geometry(voxel: tuple[float, ...], origin: tuple[float, ...]) -> Callable[[Any], None]:
    def check(item: Any) -> None:
        assert tuple(item.voxel_size) == voxel
        assert tuple(item.origin) == origin

    return check


def _volume(geometry: Callable[[Any], None]) -> Callable[[Contents], None]:
    def check(contents: Contents) -> None:
        _check_grid(contents)
        assert contents.volume is not None
        geometry(contents.volume)

    return check


def _lattice(geometry: Callable[[Any], None]) -> Callable[[Contents], None]:
    def check(contents: Contents) -> None:
        _check_grid(contents)
        assert contents.volume is None and len(contents.lattices) == 1
        geometry(contents.lattices[0])

    return check


def _sff_check(contents: Contents) -> None:
    _check_grid(contents)
    lattice = contents.lattices[0]
    # SFF places a lattice by its own index -> Angstrom transform: x, y, z columns, origin last
    assert lattice.transform is not None
    assert [list(row) for row in lattice.transform] == [
        [1.5, 0.0, 0.0, 10.0],
        [0.0, 2.0, 0.0, 20.0],
        [0.0, 0.0, 2.5, 30.0],
    ]


def _mesh_check(contents: Contents) -> None:
    assert contents.volume is None and len(contents.meshes) == 1
    (meshes,) = contents.meshes[0].frames[0].values()
    arrays = meshes[0].load()
    # coordinates are Angstrom as written (x, y, z per vertex); two triangles
    assert {tuple(v) for v in arrays.vertices.tolist()} == set(TRIANGLES)
    assert arrays.triangles.shape == (2, 3)


def _geometric_check(contents: Contents) -> None:
    (segmentation,) = contents.geometric
    (sphere,) = segmentation.frames[0]
    assert sphere["kind"] == "sphere"
    assert list(sphere["center"]) == [10.0, 20.0, 30.0] and sphere["radius"] == 5.0


def _star_check(contents: Contents) -> None:
    (segmentation,) = contents.geometric
    centres = [list(p["center"]) for p in segmentation.frames[0]]
    assert centres == [[20.0, 40.0, 60.0], [2.0, 4.0, 6.0]]  # pixels x 2 A, [x, y, z]


@dataclass(frozen=True)
class Case:
    write: Callable[[Path], Path]
    check: Callable[[Contents], None]
    voxels: bool = True  # holds a voxel payload (lazy and bounded reads apply)


_NIFTI_GEOMETRY = _geometry((5000.0, 2500.0, 1250.0), (10000.0, 20000.0, 30000.0))
_TIFF_GEOMETRY = _geometry((5.0, 2500.0, 3.0), (0.0, 0.0, 0.0))
_MRC_GEOMETRY = _geometry((1.5, 2.0, 2.5), (0.0, 0.0, 0.0))

CASES: dict[InputKind, Case] = {
    InputKind.MAP: Case(_map, _volume(_MRC_GEOMETRY)),
    InputKind.MASK: Case(_mask, _lattice(_MRC_GEOMETRY)),
    InputKind.SFF: Case(_sff, _sff_check),
    InputKind.OMEZARR: Case(
        _omezarr, _volume(_geometry((2.5, 5.0, 3000.0), (30.0, 20.0, 10000.0)))
    ),
    InputKind.NII_VOLUME: Case(lambda f: _nifti(f, "v.nii", np.float32), _volume(_NIFTI_GEOMETRY)),
    InputKind.NII_SEGMENTATION: Case(
        lambda f: _nifti(f, "s.nii", np.int32), _lattice(_NIFTI_GEOMETRY)
    ),
    InputKind.OMETIFF_IMAGE: Case(
        lambda f: _ometiff(f, "v.ome.tif", np.float32), _volume(_TIFF_GEOMETRY)
    ),
    InputKind.OMETIFF_SEGMENTATION: Case(
        lambda f: _ometiff(f, "s.ome.tif", np.uint32), _lattice(_TIFF_GEOMETRY)
    ),
    InputKind.APPLICATION_SPECIFIC_SEGMENTATION: Case(_mesh, _mesh_check, voxels=False),
    InputKind.GEOMETRIC_SEGMENTATION: Case(_geometric, _geometric_check, voxels=False),
    InputKind.STAR_FILE_GEOMETRIC_SEGMENTATION: Case(_star, _star_check, voxels=False),
}
ALL = sorted(READ_KINDS, key=lambda k: k.value)
VOXEL_KINDS = [k for k in ALL if k in CASES and CASES[k].voxels]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[InputKind, str], Path]:
    """The input of a kind, written once per module; ``copy`` names a second copy (a reader
    warmed up on it has imported its libraries, yet cached nothing about the first)."""
    made: dict[tuple[InputKind, str], Path] = {}

    def get(kind: InputKind, copy: str = "a") -> Path:
        if (kind, copy) not in made:
            folder = tmp_path_factory.mktemp(f"{kind.value}_{copy}")
            made[kind, copy] = CASES[kind].write(folder)
        return made[kind, copy]

    return get


def _read(kind: InputKind, path: Path, scratch: Path | None) -> Contents:
    return reader_of(kind)(path, scratch, None)


# --- bytes read, files opened ---------------------------------------------------------------


def _bytes_read() -> int:
    """Bytes this process has read through read()-like system calls so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_OPENS: list[tuple[str, Any, Any]] | None = None  # collecting when a list


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _OPENS is not None and isinstance(args[0], str | bytes | os.PathLike):
        _OPENS.append((os.fsdecode(args[0]), args[1], args[2]))


sys.addaudithook(_audit)  # Python-level opens: open(), io.open, os.open, pathlib


@contextmanager
def _opens_recorded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any, Any]]]:
    """Every file Python opens (with mode and flags), and every HDF5 file h5py opens (its
    library opens files in C)."""
    global _OPENS
    import h5py

    opened: list[tuple[str, Any, Any]] = []

    class RecordingFile(h5py.File):
        def __init__(self, name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> None:
            opened.append((os.fsdecode(name) if not hasattr(name, "read") else "", mode, 0))
            super().__init__(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", RecordingFile)
    _OPENS = opened
    try:
        yield opened
    finally:
        _OPENS = None


def _writable_fds(root: Path) -> list[str]:
    """Descriptors this process holds open for writing on files below ``root``."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            flags = Path(f"/proc/self/fdinfo/{fd}").read_text().split("flags:")[1].split()[0]
        except (OSError, IndexError):
            continue
        if target.startswith(str(root)) and int(flags, 8) & (os.O_WRONLY | os.O_RDWR):
            found.append(target)
    return found


def _size(path: Path) -> int:
    """Bytes of an input file, or of every file of an input folder."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files)


def _tree(path: Path) -> dict[str, tuple[str, int]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in files
    }


# --- the contract ---------------------------------------------------------------------------


def test_every_registered_reader_has_a_case() -> None:
    assert set(CASES) == set(READ_KINDS)


@pytest.mark.parametrize("kind", ALL, ids=lambda k: k.value)
def test_reader_returns_what_its_role_says(kind, inputs, tmp_path):
    contents = _read(kind, inputs(kind), tmp_path / "scratch")
    assert isinstance(contents, Contents)
    if kind.info.role is Role.VOLUME:
        assert contents.volume is not None
    else:
        assert contents.volume is None
        assert contents.lattices or contents.meshes or contents.geometric


@pytest.mark.parametrize("kind", ALL, ids=lambda k: k.value)
def test_reader_gives_xyz_order_and_angstrom(kind, inputs, tmp_path):
    CASES[kind].check(_read(kind, inputs(kind), tmp_path / "scratch"))


@pytest.mark.parametrize("scratch", [True, False], ids=["scratch", "headers-only"])
@pytest.mark.parametrize("kind", ALL, ids=lambda k: k.value)
def test_reader_never_opens_its_input_for_writing(kind, scratch, inputs, tmp_path, monkeypatch):
    path = inputs(kind)
    before = _tree(path)
    with _opens_recorded(monkeypatch) as opened:
        contents = _read(kind, path, tmp_path / "scratch" if scratch else None)
        if scratch and CASES[kind].voxels:  # reading data opens the input too
            np.asarray(_grid(contents)[:4, :4, :4])
        held = _writable_fds(path)
    mine = [o for o in opened if o[0].startswith(str(path))]
    assert mine, "the recording saw the input opened"
    for name, mode, flags in mine:
        assert not (isinstance(mode, str) and set(mode) & set("wax+")), (name, mode)
        assert not (isinstance(flags, int) and flags & _WRITE_FLAGS), (name, flags)
    assert held == []
    assert _tree(path) == before


@pytest.mark.parametrize("kind", VOXEL_KINDS, ids=lambda k: k.value)
def test_reader_reads_no_voxel_payload(kind, inputs, tmp_path):
    """Opening reads headers only: under a 16th of the input's bytes (1.5 to 3 MB), with a
    scratch folder (except the kinds that decode into it on purpose) and without one."""
    _read(kind, inputs(kind, "warm-up"), tmp_path / "warm")  # imports, first-call caches
    path = inputs(kind)
    scratches = [None] if kind in DECODED_KINDS else [None, tmp_path / "scratch"]
    for scratch in scratches:
        start = _bytes_read()
        _read(kind, path, scratch)
        assert _bytes_read() - start < _size(path) / 16, scratch


@pytest.mark.parametrize("kind", VOXEL_KINDS, ids=lambda k: k.value)
def test_a_block_read_reads_a_bounded_amount(kind, inputs, tmp_path):
    """A 3 x 2 x 2 block reads what holds it (a few rows, planes or chunks), not the input."""
    warm = _grid(_read(kind, inputs(kind, "warm-up"), tmp_path / "warm"))
    np.asarray(warm[1:2, 1:2, 1:2])
    path = inputs(kind)
    array = _grid(_read(kind, path, tmp_path / "scratch"))
    start = _bytes_read()
    block = np.asarray(array[70:73, 40:42, 30:32])
    assert _bytes_read() - start < _size(path) / 16
    np.testing.assert_array_equal(block, grid_xyz()[70:73, 40:42, 30:32])


@pytest.mark.parametrize("kind", [k for k in ALL if k in CASES and not CASES[k].voxels])
def test_documents_are_read_once(kind, inputs, tmp_path):
    """Inputs without a voxel payload (JSON, STAR, mesh files) are small and read whole, once."""
    _read(kind, inputs(kind, "warm-up"), tmp_path / "warm")
    path = inputs(kind)
    start = _bytes_read()
    _read(kind, path, tmp_path / "scratch")
    assert _bytes_read() - start <= 2 * path.stat().st_size + 65536


# extra data names lattices and their segments the same way whatever the reader
_LATTICE_KINDS = [InputKind.MASK, InputKind.NII_SEGMENTATION, InputKind.OMETIFF_SEGMENTATION]


@pytest.mark.parametrize("kind", _LATTICE_KINDS, ids=lambda k: k.value)
def test_extra_data_renames_lattices_and_names_segments_alike(kind, inputs):
    path = inputs(kind)
    stem = path.name.split(".")[0]
    extra = ExtraData(
        segmentation_ids_mapping={stem: "cells"},
        segment_names={"cells": {"12": "twelve", "-1": "minus one", "3": "three", "x": "no id"}},
    )
    (lattice,) = reader_of(kind)(path, None, extra).lattices
    assert lattice.lattice_id == "cells"
    assert [(s.id, s.name) for s in lattice.segments] == [
        (-1, "minus one"),
        (3, "three"),
        (12, "twelve"),
    ]


# real files (../shared/test-data): opened read-only; binary ones without reading their payload
REAL = [
    (InputKind.MAP, "preprocessor/sample_volumes/emdb/EMD-1832.map", True),
    (InputKind.MAP, "real/mrc_map/EMD-3001.map", True),
    (InputKind.MAP, "real/mrc_map/emd_3197.map.gz", False),
    (InputKind.MASK, "real/mrc_mask/test_unfixable_mask.map", True),
    # small HDF5 strings are read from global heap collections, again for each: the metadata
    # of this 239 kB file add up to more than its lattice (the generated SFF above is checked)
    (InputKind.SFF, "preprocessor/sample_segmentations/emdb_sff/emd_1832.hff", False),
    (InputKind.SFF, "real/sff/emd_1832.sff", False),  # XML: parsed whole
    (InputKind.NII_VOLUME, "real/nifti/anatomical.nii", True),
    (InputKind.NII_VOLUME, "real/nifti/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz", True),
    (InputKind.OMEZARR, "real/ome_zarr/czi_RUN1_tomogram.zarr", True),
    (InputKind.STAR_FILE_GEOMETRIC_SEGMENTATION, "real/relion_star/czi_relion_3_star.star", False),
    (
        InputKind.GEOMETRIC_SEGMENTATION,
        "preprocessor/sample_segmentations/geometric_segmentations/geometric_segmentation_1.json",
        False,
    ),
]


@pytest.mark.parametrize(("kind", "name", "lazy"), REAL, ids=[n for _, n, _ in REAL])
def test_real_inputs_are_opened_read_only_and_lazily(
    kind, name, lazy, shared_data, tmp_path, monkeypatch
):
    path = shared_data / name
    if not path.exists():
        pytest.skip(f"{name} is not in {shared_data}")
    before = _tree(path)
    extra = None
    if kind is InputKind.STAR_FILE_GEOMETRIC_SEGMENTATION:  # three tomograms: choose one
        from pipeline.inputs.star import StarOptions

        extra = ExtraData(star_files={path.stem: StarOptions(tomo_name="tomo_1.tomostar")})
    reader = reader_of(kind)
    reader(path, None, extra)  # imports; nothing is cached by path (see the warm-ups above)
    with _opens_recorded(monkeypatch) as opened:
        start = _bytes_read()
        reader(path, None, extra)
        read = _bytes_read() - start
        held = _writable_fds(path)
    for name_, mode, flags in (o for o in opened if o[0].startswith(str(path))):
        assert not (isinstance(mode, str) and set(mode) & set("wax+")), (name_, mode)
        assert not (isinstance(flags, int) and flags & _WRITE_FLAGS), (name_, flags)
    assert held == [] and _tree(path) == before
    if lazy:
        assert read < _size(path) / 4
