"""``nii_volume`` / ``nii_segmentation`` end to end: files written by nibabel and nibabel's (and
../shared's) real NIfTI files, through ``preprocess`` and read back from the entry."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import binomial_reference, preprocess_args, tree_digest
from nibabel.testing import data_path

from pipeline.algorithms.levels import LevelOptions
from pipeline.arrays import ShapeOnlyArray
from pipeline.db import open_entry
from pipeline.inputs.nifti import read_nifti_segmentation, read_nifti_volume
from pipeline.options import InputKind, InputSpec, Mode, PreprocessOptions
from pipeline.preprocess import preprocess

BUNDLED = Path(data_path)
ANGSTROM = {"mm": 1e7, "micron": 1e4, "meter": 1e10}
SMALL_LEVELS = ("--min-size-per-downsampling-lvl-mb", "0.0001")


def write_nifti(
    path: Path,
    data: np.ndarray,
    affine: np.ndarray,
    units: tuple[str, str] = ("mm", "sec"),
    time_step: float | None = None,
) -> Path:
    """Save ``data`` (indexed i, j, k[, t]) with nibabel; units as nibabel names them."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(*units)
    if time_step is not None:
        img.header.set_zooms((*img.header.get_zooms()[:3], time_step))
    nib.save(img, path)
    return path


def affine_of(columns: list[list[float]], translation: list[float]) -> np.ndarray:
    """A 4x4 affine whose voxel axes i, j, k are the given world vectors."""
    out = np.eye(4)
    out[:3, :3] = np.array(columns, dtype=float).T
    out[:3, 3] = translation
    return out


def run_ok(run_cli, tmp_path, inputs, entry="nii", extra=SMALL_LEVELS):
    result = run_cli(*preprocess_args(inputs, tmp_path, entry=entry, extra=extra))
    assert result.exit_code == 0, result.output
    return open_entry(tmp_path / "db", "emdb", entry)


def expect_error(run_cli, tmp_path, inputs, path, *words):
    """Exit 2, one ``error: <path>: …`` line holding ``words``, no traceback, db untouched."""
    result = run_cli(*preprocess_args(inputs, tmp_path, entry="bad"))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]
    assert tree_digest(tmp_path / "db") == {}
    return lines[0]


def level_statistics(entry, level: int, time: int) -> dict[str, float]:
    stats = entry.metadata["volumes"]["volume_sampling_info"]["descriptive_statistics"]
    return stats[str(level)][str(time)]["0"]


def assert_statistics(got: dict[str, float], values: np.ndarray) -> None:
    v = values.astype(np.float64)
    assert got["min"] == pytest.approx(v.min()) and got["max"] == pytest.approx(v.max())
    assert got["mean"] == pytest.approx(v.mean(), rel=1e-6, abs=1e-9)
    assert got["std"] == pytest.approx(v.std(), rel=1e-6, abs=1e-9)


def assert_box(entry, voxel, origin) -> None:
    box = entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
    np.testing.assert_allclose(box["voxel_size"], voxel, rtol=1e-6)
    np.testing.assert_allclose(box["origin"], origin, rtol=1e-6, atol=1e-3)


def canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """nibabel's own RAS+ reorientation: the data [x, y, z(, t)] (scaled, float64) and affine."""
    img = nib.as_closest_canonical(nib.load(path))
    return img.get_fdata(), img.affine


# --- files written by nibabel ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "units"), [("vol.nii", ("mm", "sec")), ("vol.nii.gz", ("micron", "msec"))]
)
def test_volume_values_voxel_size_and_origin(run_cli, tmp_path, name, units):
    rng = np.random.default_rng(1)
    data = rng.normal(5.0, 2.0, size=(23, 17, 9)).astype(np.float32)
    affine = affine_of([[0.5, 0, 0], [0, 1.5, 0], [0, 0, 2.0]], [10.0, -4.0, 3.25])
    path = write_nifti(tmp_path / name, data, affine, units)
    with run_ok(run_cli, tmp_path, [(path, "nii_volume")]) as entry:
        np.testing.assert_array_equal(entry.read_volume(1), data)  # RAS: i, j, k are x, y, z
        scale = ANGSTROM[units[0]]
        assert_box(
            entry, [0.5 * scale, 1.5 * scale, 2.0 * scale], [10 * scale, -4 * scale, 3.25 * scale]
        )
        info = entry.metadata["volumes"]["volume_sampling_info"]
        assert info["original_axis_order"] == [0, 1, 2]
        unit = {"mm": "millimeter", "micron": "micrometer"}[units[0]]
        assert info["source_axes_units"] == {"x": unit, "y": unit, "z": unit}
        assert entry.metadata["volumes"]["time_info"]["end"] == 0
        assert_statistics(level_statistics(entry, 1, 0), data)
        assert entry.volume_levels[:2] == [1, 2]
        assert entry.read_volume(2).shape == (12, 9, 5)


def test_4d_image_gives_one_frame_per_time_point(run_cli, tmp_path):
    rng = np.random.default_rng(2)
    data = rng.integers(-300, 3000, size=(14, 11, 7, 3)).astype(np.int16)
    affine = affine_of([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]], [0, 0, 0])
    path = write_nifti(tmp_path / "time.nii.gz", data, affine, ("mm", "msec"), 1500.0)
    with run_ok(run_cli, tmp_path, [(path, "nii_volume")]) as entry:
        volumes = entry.metadata["volumes"]
        assert volumes["time_info"] == {
            "kind": "range",
            "start": 0,
            "end": 2,
            "units": "millisecond",
        }
        assert volumes["volume_sampling_info"]["source_axes_units"]["t"] == "millisecond"
        levels = entry.volume_levels
        assert len(levels) >= 2
        for t in range(3):
            np.testing.assert_array_equal(entry.read_volume(1, time=t), data[..., t])
            assert_statistics(level_statistics(entry, 1, t), data[..., t])
            for level in levels:
                assert entry.read_volume(level, time=t).shape == tuple(
                    -(-n // level) for n in data.shape[:3]
                )
                assert set(level_statistics(entry, level, t)) == {"mean", "std", "min", "max"}
        assert "volume_data/1/3/0" not in entry.root


def test_permuted_flipped_big_endian_scaled_image(run_cli, tmp_path):
    """Array axes i, j, k run along -y, +z, -x: the entry is reordered to x, y, z (RAS+)."""
    raw = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4) * 7 - 100
    affine = affine_of([[0, -1.5, 0], [0, 0, 2.0], [-0.5, 0, 0]], [20.0, 30.0, -10.0])
    header = nib.Nifti1Header(endianness=">")
    img = nib.Nifti1Image(raw, affine, header)
    img.header.set_data_dtype(">i2")
    img.header.set_slope_inter(0.25, -3.0)
    img.header.set_xyzt_units("mm", "sec")
    path = tmp_path / "oriented.nii"
    nib.save(img, path)
    assert nib.load(path).header.endianness == ">"
    values = raw.astype(np.float64) * 0.25 - 3.0
    # by hand: x is array axis k reversed, y is i reversed, z is j
    expected = values[::-1, :, ::-1].transpose(2, 0, 1)
    reference, ref_affine = canonical(path)
    np.testing.assert_array_equal(reference, expected)
    with run_ok(run_cli, tmp_path, [(path, "nii_volume")]) as entry:
        got = entry.read_volume(1)
        assert got.dtype == np.float32 and got.shape == (4, 6, 5)
        np.testing.assert_array_equal(got, expected)
        # sample [0, 0, 0] is voxel (i, j, k) = (5, 0, 3); its world position from the affine
        corner = affine @ [5, 0, 3, 1]
        assert_box(entry, [0.5e7, 1.5e7, 2.0e7], corner[:3] * 1e7)
        np.testing.assert_allclose(ref_affine[:3, 3], corner[:3])
        info = entry.metadata["volumes"]["volume_sampling_info"]
        assert info["original_axis_order"] == [1, 2, 0]
        assert_statistics(level_statistics(entry, 1, 0), values)


def test_extra_data_voxel_size_overrides_the_header(run_cli, tmp_path):
    data = np.arange(8 * 6 * 4, dtype=np.uint8).reshape(8, 6, 4)
    affine = affine_of([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], [4.0, 2.0, -3.0])
    path = write_nifti(tmp_path / "plain.nii", data, affine, ("unknown", "unknown"))
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"volume": {"voxel_size": [3.0, 4.0, 5.0]}}))
    with run_ok(run_cli, tmp_path, [(path, "nii_volume"), (extra, "extra_data")]) as entry:
        # the origin keeps its position in voxels (4, 2, -3)
        assert_box(entry, [3.0, 4.0, 5.0], [12.0, 8.0, -15.0])
        np.testing.assert_array_equal(entry.read_volume(1), data)
        assert entry.metadata["volumes"]["time_info"]["units"] == "millisecond"


def test_segmentation_with_volume(run_cli, tmp_path):
    rng = np.random.default_rng(3)
    density = rng.normal(size=(20, 16, 12)).astype(np.float32)
    labels = np.zeros(density.shape, np.int16)
    labels[2:9, 3:12, 1:6] = 3
    labels[10:19, 0:8, 5:12] = 7
    labels[-1, -1, -1] = 12
    # LAS: x runs against i, as in radiological files
    affine = affine_of([[-0.8, 0, 0], [0, 0.8, 0], [0, 0, 0.8]], [5.0, -6.0, 7.0])
    vol = write_nifti(tmp_path / "brain.nii", density, affine)
    seg = write_nifti(tmp_path / "brain_labels.nii.gz", labels, affine)
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "segmentation": {
                    "segmentation_ids_mapping": {"brain_labels": "regions"},
                    "segment_ids_to_segment_names_mapping": {
                        "regions": {"3": "cortex", "7": "ventricle"}
                    },
                }
            }
        )
    )
    inputs = [(extra, "extra_data"), (seg, "nii_segmentation"), (vol, "nii_volume")]
    with run_ok(run_cli, tmp_path, inputs) as entry:
        np.testing.assert_array_equal(entry.read_volume(1), density[::-1])
        lattices = entry.metadata["segmentation_lattices"]
        assert lattices["segmentation_ids"] == ["regions"]
        info = lattices["segmentation_sampling_info"]["regions"]
        assert info["boxes"] == entry.metadata["volumes"]["volume_sampling_info"]["boxes"]
        grid, table = entry.read_lattice("regions", 1)
        np.testing.assert_array_equal(grid, labels[::-1])
        assert table == {0: [0], 3: [3], 7: [7], 12: [12]}
        _, table2 = entry.read_lattice("regions", 2)
        assert {s for segs in table2.values() for s in segs} == {0, 3, 7, 12}
        names = {
            d["target_id"]["segment_id"]: d["name"]
            for d in entry.annotations["descriptions"].values()
        }
        assert names == {3: "cortex", 7: "ventricle", 12: "segment 12"}
        assert sorted(a["segment_id"] for a in entry.annotations["segment_annotations"]) == [
            3,
            7,
            12,
        ]


def test_segmentation_lattice_id_is_the_stem_and_4d_gives_frames(run_cli, tmp_path):
    density = np.ones((9, 8, 7, 2), np.float32)  # two time points, like the segmentation
    labels = np.zeros((9, 8, 7, 2), np.uint8)
    labels[1:4, 2:6, 0:3, 0] = 1
    labels[5:9, 0:3, 3:7, 1] = 2
    affine = np.diag([1.2, 1.2, 1.2, 1.0])
    vol = write_nifti(tmp_path / "v.nii", density, affine)
    seg = write_nifti(tmp_path / "cells.mask.nii.gz", labels, affine)
    with run_ok(run_cli, tmp_path, [(vol, "nii_volume"), (seg, "nii_segmentation")]) as entry:
        lattices = entry.metadata["segmentation_lattices"]
        assert lattices["segmentation_ids"] == ["cells.mask"]
        assert lattices["time_info"]["cells.mask"]["end"] == 1
        for t in range(2):
            grid, table = entry.read_lattice("cells.mask", 1, time=t)
            np.testing.assert_array_equal(grid, labels[..., t])
            assert table == {0: [0], t + 1: [t + 1]}


def _oblique_4d(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 4-D image whose axes i, j, k run along about +z, -x, -y (rotated by 10 degrees)."""
    rng = np.random.default_rng(5)
    data = rng.normal(size=(21, 37, 29, 2)).astype(np.float32)
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    affine = affine_of(
        [[0, s * 1.1, c * 1.1], [-0.9, 0, 0], [0, -c * 1.3, s * 1.3]], [1.0, 2.0, 3.0]
    )
    return write_nifti(tmp_path / "obl.nii", data, affine), data


def test_regions_of_a_reoriented_image(tmp_path):
    """Every region read of the lazy [x, y, z] frames equals nibabel's RAS+ reorientation."""
    path, _ = _oblique_4d(tmp_path)
    reference, _ = canonical(path)
    volume = read_nifti_volume(path, tmp_path / "scratch").volume
    assert volume.shape == reference.shape[:3] == (37, 29, 21)
    assert volume.original_axis_order == (2, 0, 1) and volume.memory_order == "C"
    rng = np.random.default_rng(6)
    for _ in range(40):
        lo = [int(rng.integers(0, n)) for n in volume.shape]
        hi = [int(rng.integers(a + 1, n + 1)) for a, n in zip(lo, volume.shape, strict=True)]
        region = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        t = int(rng.integers(0, 2))
        got = volume.frames[t][0][region]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, reference[(*region, t)])


def test_small_blocks_on_a_reoriented_image(tmp_path):
    """Many block tasks with halos across flipped axes: level 1 and level 2 of every frame."""
    path, data = _oblique_4d(tmp_path)
    labels = (np.abs(data) * 3).astype(np.uint8)
    seg = write_nifti(tmp_path / "obl_labels.nii", labels, nib.load(path).affine)
    reference, _ = canonical(path)
    label_reference, _ = canonical(seg)
    options = PreprocessOptions(
        mode=Mode.ADD,
        inputs=(
            InputSpec(path, InputKind.NII_VOLUME),
            InputSpec(seg, InputKind.NII_SEGMENTATION),
        ),
        entry_id="obl",
        source_db="emdb",
        source_db_id="obl",
        source_db_name="emdb",
        working_folder=tmp_path / "work",
        db_path=tmp_path / "db",
        block_size=16,
        chunk_size=8,
        levels=LevelOptions(min_size_mb=0.001),
    )
    preprocess(options)
    with open_entry(tmp_path / "db", "emdb", "obl") as entry:
        for t in range(2):
            np.testing.assert_array_equal(entry.read_volume(1, time=t), reference[..., t])
            np.testing.assert_allclose(
                entry.read_volume(2, time=t),
                binomial_reference(reference[..., t]),
                rtol=1e-5,
                atol=1e-6,
            )
            grid, table = entry.read_lattice("obl_labels", 1, time=t)
            np.testing.assert_array_equal(grid, label_reference[..., t])
            assert set(table) == set(np.unique(label_reference[..., t]).astype(int))


def test_extend_an_entry_with_a_segmentation(run_cli, tmp_path):
    affine = np.diag([0.7, 0.7, 0.7, 1.0])
    labels = np.zeros((10, 9, 8), np.int32)
    labels[2:7, 1:5, 3:8] = 4
    vol = write_nifti(tmp_path / "v.nii", np.ones((10, 9, 8), np.float32), affine)
    seg = write_nifti(tmp_path / "later.nii.gz", labels, affine)
    run_ok(run_cli, tmp_path, [(vol, "nii_volume")]).close()
    result = run_cli(
        *preprocess_args([(seg, "nii_segmentation")], tmp_path, entry="nii", mode="extend")
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "nii") as entry:
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == ["later"]
        grid, table = entry.read_lattice("later", 1)
        np.testing.assert_array_equal(grid, labels)
        assert table == {0: [0], 4: [4]}
    assert read_nifti_segmentation(seg, None).lattices[0].lattice_id == "later"


def test_2d_image_and_misnamed_compression(run_cli, tmp_path):
    """A 2-D image is one z plane; a gzip file named .nii is read by its content."""
    data = np.arange(15 * 11, dtype=np.uint16).reshape(15, 11)
    plain = write_nifti(
        tmp_path / "plane.nii", data, np.diag([0.3, 0.3, 1.0, 1.0]), ("micron", "sec")
    )
    packed = tmp_path / "packed.nii"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with run_ok(run_cli, tmp_path, [(packed, "nii_volume")]) as entry:
        np.testing.assert_array_equal(entry.read_volume(1), data[:, :, None])
        assert_box(entry, [3e3, 3e3, 1e4], [0, 0, 0])
    fake = tmp_path / "fake.nii.gz"
    fake.write_bytes(plain.read_bytes())
    expect_error(run_cli, tmp_path / "b", [(fake, "nii_volume")], fake, "not compressed")


def test_dry_run_reads_only_the_header_of_a_gz(run_cli, tmp_path):
    data = np.zeros((10, 9, 8), np.float32)
    path = write_nifti(tmp_path / "d.nii.gz", data, np.diag([2.0, 2.0, 2.0, 1.0]))
    volume = read_nifti_volume(path, None).volume
    assert isinstance(volume.frames[0][0], ShapeOnlyArray)
    assert volume.shape == (10, 9, 8) and volume.voxel_size == (2e7, 2e7, 2e7)
    result = run_cli(*preprocess_args([(path, "nii_volume")], tmp_path, extra=("--dry-run",)))
    assert result.exit_code == 0, result.output
    assert "10x9x8" in result.output and not (tmp_path / "db").exists()


# --- nibabel's bundled real files ----------------------------------------------------------


def test_bundled_anatomical_big_endian_las(run_cli, tmp_path):
    path = BUNDLED / "anatomical.nii"
    img = nib.load(path)
    assert img.header.endianness == ">" and nib.aff2axcodes(img.affine) == ("L", "A", "S")
    raw = np.asanyarray(img.dataobj)
    with run_ok(run_cli, tmp_path, [(path, "nii_volume")]) as entry:
        got = entry.read_volume(1)
        assert got.dtype == np.int16
        np.testing.assert_array_equal(got, raw[::-1])  # x (R) runs against i (L)
        corner = img.affine @ [raw.shape[0] - 1, 0, 0, 1]
        assert_box(entry, [2e7, 2e7, 2e7], corner[:3] * 1e7)
        assert_statistics(level_statistics(entry, 1, 0), raw)


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz"])
def test_bundled_4d_oblique(run_cli, tmp_path, name):
    path = BUNDLED / name
    img = nib.load(path)
    assert img.ndim == 4
    frames = img.shape[3]
    reference, ref_affine = canonical(path)
    with run_ok(run_cli, tmp_path, [(path, "nii_volume")]) as entry:
        volumes = entry.metadata["volumes"]
        assert volumes["time_info"] == {
            "kind": "range",
            "start": 0,
            "end": frames - 1,
            "units": "second",
        }
        # oblique: the rotation is dropped; voxel sizes are the lengths of the affine's columns
        # and the origin is the true world position of sample [0, 0, 0]
        assert_box(entry, nib.affines.voxel_sizes(img.affine) * 1e7, ref_affine[:3, 3] * 1e7)
        for t in range(frames):
            got = entry.read_volume(1, time=t)
            np.testing.assert_array_equal(got, reference[..., t])
            assert_statistics(level_statistics(entry, 1, t), reference[..., t])
            for level in entry.volume_levels:
                assert f"volume_data/{level}/{t}/0" in entry.root
                assert (
                    str(t) in volumes["volume_sampling_info"]["descriptive_statistics"][str(level)]
                )


def test_bundled_functional_scaled_int16(run_cli, tmp_path):
    path = BUNDLED / "functional.nii"
    with open(path, "rb") as f:
        header = nib.Nifti1Header.from_fileobj(f)
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    assert (slope, inter) != (1.0, 0.0)
    img = nib.load(path)
    raw = np.asanyarray(img.dataobj.get_unscaled())
    values = raw.astype(np.float64) * slope + inter
    with run_ok(run_cli, tmp_path, [(path, "nii_volume")], extra=()) as entry:
        assert entry.metadata["volumes"]["time_info"]["end"] == raw.shape[3] - 1
        for t in (0, raw.shape[3] - 1):
            got = entry.read_volume(1, time=t)
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, values[::-1, :, :, t], rtol=1e-6)


# --- ../shared real files ----------------------------------------------------------------------


def test_real_standard_mask_unknown_units(run_cli, tmp_path, shared_data):
    """(4, 5, 7) uint8 {0, 255}, zooms (1, 3, 2), units unknown (read as mm), qform 0."""
    path = shared_data / "real/nifti/standard.nii.gz"
    img = nib.load(path)
    data = np.asanyarray(img.dataobj)
    inputs = [(path, "nii_volume"), (path, "nii_segmentation")]
    with run_ok(run_cli, tmp_path, inputs) as entry:
        np.testing.assert_array_equal(entry.read_volume(1), data)
        assert_box(entry, [1e7, 3e7, 2e7], img.affine[:3, 3] * 1e7)
        units = entry.metadata["volumes"]["volume_sampling_info"]["source_axes_units"]
        assert units == {"x": "unknown", "y": "unknown", "z": "unknown"}
        grid, table = entry.read_lattice("standard", 1)
        np.testing.assert_array_equal(grid, data)
        assert table == {0: [0], 255: [255]}


def test_real_files_in_shared(run_cli, tmp_path, shared_data):
    real = shared_data / "real/nifti"
    for name in ("anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz"):
        reference, _ = canonical(real / name)
        entry_id = name.split(".")[0].replace("_", "-")
        with run_ok(run_cli, tmp_path, [(real / name, "nii_volume")], entry=entry_id) as entry:
            last = reference.shape[3] - 1 if reference.ndim == 4 else 0
            expected = reference[..., last] if reference.ndim == 4 else reference
            np.testing.assert_array_equal(entry.read_volume(1, time=last), expected)


def test_nan_volumes_are_rejected(run_cli, tmp_path, shared_data):
    """NaN voxels have no statistics: the pipeline refuses them (the real file is 14 % NaN,
    out-of-field voxels of a resampling), all-NaN included."""
    path = shared_data / "real/nifti/resampled_anat_moved.nii"
    values = nib.load(path).get_fdata()
    assert 0 < np.isnan(values).mean() < 1
    expect_error(run_cli, tmp_path, [(path, "nii_volume")], path, "NaN")
    empty = write_nifti(tmp_path / "nan.nii", np.full((5, 4, 3), np.nan, np.float32), np.eye(4))
    expect_error(run_cli, tmp_path, [(empty, "nii_volume")], empty, "NaN")


# --- bad input ---------------------------------------------------------------------------------


def test_truncated_nii(run_cli, tmp_path):
    data = np.ones((10, 10, 10), np.float32)
    path = write_nifti(tmp_path / "t.nii", data, np.eye(4))
    cut = tmp_path / "cut.nii"
    cut.write_bytes(path.read_bytes()[:-100])
    expect_error(run_cli, tmp_path, [(cut, "nii_volume")], cut, "truncated", "4000 bytes")
    gz = tmp_path / "cut.nii.gz"
    gz.write_bytes(gzip.compress(path.read_bytes())[:-50])
    expect_error(run_cli, tmp_path, [(gz, "nii_volume")], gz, "cannot decompress")
    tiny = tmp_path / "tiny.nii"
    tiny.write_bytes(path.read_bytes()[:200])
    expect_error(run_cli, tmp_path, [(tiny, "nii_volume")], tiny, "truncated", "348-byte")


def test_not_nifti_and_unsupported_layouts(run_cli, tmp_path):
    junk = tmp_path / "junk.nii"
    junk.write_bytes(os.urandom(2000))
    expect_error(run_cli, tmp_path, [(junk, "nii_volume")], junk, "not a NIfTI file")
    five = write_nifti(tmp_path / "five.nii", np.zeros((4, 4, 4, 1, 3), np.float32), np.eye(4))
    expect_error(run_cli, tmp_path, [(five, "nii_volume")], five, "5-D", "not supported")
    cplx = write_nifti(tmp_path / "c.nii", np.zeros((4, 4, 4), np.complex64), np.eye(4))
    expect_error(run_cli, tmp_path, [(cplx, "nii_volume")], cplx, "datatype 32", "not supported")


def test_bad_segmentations(run_cli, tmp_path):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    vol = write_nifti(tmp_path / "v.nii", np.zeros((6, 5, 4), np.float32), affine)
    soft = write_nifti(tmp_path / "soft.nii", np.full((6, 5, 4), 0.5, np.float32), affine)
    expect_error(
        run_cli, tmp_path, [(vol, "nii_volume"), (soft, "nii_segmentation")], soft, "not whole"
    )
    small = write_nifti(tmp_path / "small.nii", np.zeros((6, 5, 3), np.uint8), affine)
    line = expect_error(
        run_cli, tmp_path, [(vol, "nii_volume"), (small, "nii_segmentation")], small, "6x5x3"
    )
    assert str(vol) in line
    coarse = write_nifti(
        tmp_path / "coarse.nii", np.zeros((6, 5, 4), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0])
    )
    expect_error(
        run_cli, tmp_path, [(vol, "nii_volume"), (coarse, "nii_segmentation")], coarse, "voxel size"
    )


def test_segmentation_must_start_where_the_volume_starts(run_cli, tmp_path):
    """NIfTI places data by its affine: a label image shifted against the volume is refused
    (the lattice would be stored on the volume's grid, shifted); within half a voxel is fine."""
    rng = np.random.default_rng(9)
    volume = rng.normal(size=(10, 12, 14)).astype(np.float32)
    labels = (np.indices(volume.shape).sum(axis=0) % 3).astype(np.uint8)
    base = affine_of([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]], [0, 0, 0])
    vol = write_nifti(tmp_path / "vol.nii", volume, base)
    shifted = write_nifti(
        tmp_path / "seg_shifted.nii",
        labels,
        affine_of([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]], [50, 60, 70]),
    )
    expect_error(
        run_cli, tmp_path, [(vol, "nii_volume"), (shifted, "nii_segmentation")], shifted,
        "does not match the volume's", "shifted by 25.0, 30.0, 35.0 voxels",
    )  # fmt: skip
    nudged = write_nifti(
        tmp_path / "seg.nii",
        labels,
        affine_of([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0]], [0.4, 0, 0]),
    )
    with run_ok(run_cli, tmp_path, [(vol, "nii_volume"), (nudged, "nii_segmentation")]) as entry:
        grid, _ = entry.read_lattice("seg", 1, 0)
        np.testing.assert_array_equal(grid, labels)  # i, j, k are x, y, z here


def test_time_units_of_a_4d_segmentation(run_cli, tmp_path):
    volume = np.random.default_rng(2).normal(size=(6, 5, 4, 3)).astype(np.float32)
    labels = (np.arange(volume.size).reshape(volume.shape) % 4).astype(np.uint8)
    affine = affine_of([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], [0, 0, 0])
    vol = write_nifti(tmp_path / "vol.nii", volume, affine, ("mm", "sec"))
    seg = write_nifti(tmp_path / "cells.nii", labels, affine, ("mm", "sec"))
    with run_ok(run_cli, tmp_path, [(vol, "nii_volume"), (seg, "nii_segmentation")]) as entry:
        lattices = entry.metadata["segmentation_lattices"]
        assert lattices["time_info"]["cells"] == {
            "kind": "range", "start": 0, "end": 2, "units": "second",
        }  # fmt: skip
        assert entry.metadata["volumes"]["time_info"]["units"] == "second"


def test_segmentation_with_more_frames_than_the_volume_is_refused(run_cli, tmp_path):
    affine = affine_of([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], [0, 0, 0])
    vol = write_nifti(tmp_path / "vol.nii", np.zeros((6, 5, 4), np.float32), affine)
    seg = write_nifti(tmp_path / "seg.nii", np.zeros((6, 5, 4, 3), np.uint8), affine)
    expect_error(
        run_cli, tmp_path, [(vol, "nii_volume"), (seg, "nii_segmentation")], seg,
        "3 time frames, but the volume of", "has 1",
    )  # fmt: skip
