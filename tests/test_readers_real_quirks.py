"""Issue 10, point 9: readers on quirks of real files.

Files are written with the formats' own libraries (tifffile, starfile, nibabel) and, where
present, taken from ../shared/test-data.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import starfile
import tifffile
from conftest import assert_one_line_error, preprocess_args

from pipeline.db import open_entry
from pipeline.inputs.nifti import read_nifti_layout
from pipeline.inputs.ometiff import read_ometiff_image
from pipeline.inputs.star import StarOptions, read_star

ENTRY = ("emdb", "emd-1832")


# --- OME-TIFF ---------------------------------------------------------------------------------


def _with_tiffdata_uuid(path: Path, file_name: str, uuid: str | None = None) -> None:
    """Rewrite the OME-XML (tifffile.tiffcomment) so that TiffData names ``file_name`` with
    ``uuid`` (default: the file's own UUID), as Bio-Formats writes single files."""
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    own = re.search(r'UUID="([^"]+)"', xml).group(1)
    changed = re.sub(
        r'<TiffData IFD="0" PlaneCount="(\d+)"/>',
        lambda m: (
            f'<TiffData IFD="0" PlaneCount="{m.group(1)}"><UUID FileName="{file_name}">'
            f"{uuid or own}</UUID></TiffData>"
        ),
        xml,
    )
    assert changed != xml
    tifffile.tiffcomment(path, changed.encode())


def test_renamed_single_file_ome_tiff_is_read(tmp_path):
    """viv's multi-channel.ome.tif renamed: TiffData names the old file name, but its UUID is
    the file's own, so the planes are in this file."""
    data = np.arange(2 * 3 * 8 * 10, dtype=np.uint16).reshape(2, 3, 8, 10)
    original = tmp_path / "multi-channel.ome.tif"
    tifffile.imwrite(original, data, ome=True, photometric="minisblack",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5,
                               "PhysicalSizeZ": 2.0})  # fmt: skip
    _with_tiffdata_uuid(original, "multi-channel.ome.tif")
    renamed = tmp_path / "renamed.ome.tif"
    os.rename(original, renamed)
    volume = read_ometiff_image(renamed, None).volume
    assert volume.channel_ids == ("0", "1") and volume.shape == (10, 8, 3)
    assert volume.voxel_size == (5000.0, 5000.0, 20000.0)
    for c in range(2):
        np.testing.assert_array_equal(volume.frames[0][c][:, :, :], data[c].transpose(2, 1, 0))
    # another file's UUID: a multi-file OME-TIFF, refused as before
    other = tmp_path / "part.ome.tif"
    tifffile.imwrite(other, data, ome=True, photometric="minisblack", metadata={"axes": "CZYX"})
    _with_tiffdata_uuid(other, "part_2.ome.tif", "urn:uuid:00000000-0000-0000-0000-000000000000")
    with pytest.raises(Exception, match="multi-file OME-TIFF"):
        read_ometiff_image(other, None)


def test_ome_tiff_without_physical_size(run_cli, tmp_path):
    image = tmp_path / "plain.ome.tif"
    data = np.arange(4 * 6 * 7, dtype=np.uint8).reshape(4, 6, 7)
    tifffile.imwrite(image, data, ome=True, metadata={"axes": "ZYX"})
    result = run_cli(*preprocess_args([(image, "ometiff_image")], tmp_path))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line]
    assert warnings == [
        f"warning: {image}: the OME-XML gives no PhysicalSizeX/Y/Z: taken as 1 A per pixel "
        "(give the voxel size in Angstrom as voxel_size in extra data)"
    ]
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        info = entry.metadata["volumes"]["volume_sampling_info"]
        assert info["boxes"]["1"]["voxel_size"] == [1.0, 1.0, 1.0]
        assert info["source_axes_units"] == {"x": "unknown", "y": "unknown", "z": "unknown"}
        np.testing.assert_array_equal(entry.read_volume(1), data.transpose(2, 1, 0))
    # extra data gives it: no warning (nothing is declared to override)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"volume": {"voxel_size": [3.0, 3.0, 4.0]}}))
    args = preprocess_args([(image, "ometiff_image"), (extra, "extra_data")], tmp_path, "e-1")
    result = run_cli(*args)
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    # only X given: Y and Z take it, with a warning naming them; the units say what is known
    partial = tmp_path / "partial.ome.tif"
    tifffile.imwrite(partial, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.2})
    volume = read_ometiff_image(partial, None).volume
    assert volume.voxel_size == (2000.0, 2000.0, 2000.0)
    assert volume.source_axes_units == {"x": "\u00b5m", "y": "unknown", "z": "unknown"}


def test_decimal_voxel_sizes_are_stored_as_meant(run_cli, tmp_path):
    """0.423 nm is stored as 4.23 A, not 4.2299999999999995."""
    image = tmp_path / "nm.ome.tif"
    tifffile.imwrite(image, np.ones((3, 6, 7), np.float32), ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.423, "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": 0.423, "PhysicalSizeYUnit": "nm",
        "PhysicalSizeZ": 0.0423, "PhysicalSizeZUnit": "\u00b5m",
    })  # fmt: skip
    result = run_cli(*preprocess_args([(image, "ometiff_image")], tmp_path))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "db" / "emdb" / "emd-1832" / "metadata.json").read_text()
    box = json.loads(text)["volumes"]["volume_sampling_info"]["boxes"]["1"]
    assert box["voxel_size"] == [4.23, 4.23, 423.0]
    assert "4.2299999999999995" not in text
    # NIfTI: float32 header values in micrometres
    affine = np.diag([0.423, 0.423, 2.8, 1.0])
    affine[:3, 3] = [-22.68, 0.1, 0.7]
    img = nib.Nifti1Image(np.ones((5, 6, 7), np.float32), affine)
    img.header.set_xyzt_units("micron", "sec")
    nifti = tmp_path / "v.nii"
    nib.save(img, nifti)
    layout = read_nifti_layout(nifti, None)
    assert layout.voxel_size == (4230.0, 4230.0, 28000.0)
    assert layout.origin == (-226800.0, 1000.0, 7000.0)
    # NIfTI-2 holds float64 fields: their digits are kept (not rounded to float32)
    affine = np.diag([0.123456789012, 0.1, 0.3, 1.0])
    affine[:3, 3] = [-1.23456789012, 0.7, 0.1]
    img = nib.Nifti2Image(np.ones((3, 4, 5), np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "v2.nii")
    layout = read_nifti_layout(tmp_path / "v2.nii", None)
    assert layout.voxel_size == (1234567.89012, 1000000.0, 3000000.0)
    assert layout.origin == (-12345678.9012, 7000000.0, 1000000.0)


def test_ignored_ome_tiff_images_warn(tmp_path, capsys):
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as w:
        w.write(np.zeros((2, 8, 8), np.uint8), photometric="minisblack",
                metadata={"axes": "ZYX", "Name": "cells"})  # fmt: skip
        w.write(np.ones((3, 4, 4), np.uint16), photometric="minisblack",
                metadata={"axes": "ZYX", "Name": "thumbnail"})  # fmt: skip
    volume = read_ometiff_image(path, None).volume
    assert volume.shape == (8, 8, 2)
    err = capsys.readouterr().err
    assert f"warning: {path}: 2 images in the OME-XML: only the first ('cells') is read; " in err
    assert "1 ignored ('thumbnail')" in err


# --- NIfTI ------------------------------------------------------------------------------------


def test_sheared_and_oblique_affines_warn(tmp_path, capsys):
    sheared = np.array([[1.0, 0.3, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    path = tmp_path / "sheared.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), sheared), path)
    read_nifti_layout(path, None)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"warning: {path}: sheared affine: voxel axes are 16.70 degrees off")
    c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    rotated = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    path = tmp_path / "oblique.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), rotated), path)
    read_nifti_layout(path, None)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"warning: {path}: oblique affine: voxel axes are rotated up to 10.00")
    plain = tmp_path / "plain.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.diag([2.0, -1, 3, 1])), plain)
    read_nifti_layout(plain, None)
    assert capsys.readouterr().err == ""


def test_real_oblique_example4d_warns(run_cli, tmp_path, shared_data):
    path = shared_data / "real/nifti/example4d.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    result = run_cli(*preprocess_args([(path, "nii_volume")], tmp_path, extra=("--dry-run",)))
    assert result.exit_code == 0, result.output
    assert f"warning: {path}: oblique affine" in result.stderr


# --- RELION STAR ------------------------------------------------------------------------------


def _particles() -> pd.DataFrame:
    return pd.DataFrame({
        "rlnCoordinateX": [10.0, 20.0, 30.0], "rlnCoordinateY": [1.0, 2.0, 3.0],
        "rlnCoordinateZ": [5.0, 6.0, 7.0], "rlnOpticsGroup": [1, 2, 1],
    })  # fmt: skip


def _optics() -> pd.DataFrame:
    return pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnImagePixelSize": [2.0, 4.0]})


def _centres(star: Path, **options) -> tuple[list[int], np.ndarray]:
    seg = read_star(star, StarOptions(**options))
    spheres = seg.frames[0]
    return [p["id"] for p in spheres], np.array([p["center"] for p in spheres])


def test_two_loops_in_one_data_block_are_two_tables(tmp_path):
    """starfile reads the rows of a block's second loop_ as more particles: the reader gives
    every table its own block, so 3 particles stay 3, and the second table (optics, found by
    its columns) gives the pixel sizes."""
    star = tmp_path / "merged.star"
    starfile.write({"particles": _particles(), "optics": _optics()}, star)
    text = star.read_text()
    assert text.count("data_") == 2
    star.write_text(text.replace("data_optics", "", 1))  # both loops in data_particles
    ids, centres = _centres(star)
    assert ids == [0, 1, 2]
    np.testing.assert_allclose(centres, [[20, 2, 10], [80, 8, 24], [60, 6, 14]])


def test_optics_table_is_found_by_its_columns(tmp_path):
    star = tmp_path / "renamed.star"
    starfile.write({"groups": _optics(), "picked": _particles()}, star)
    ids, centres = _centres(star)
    assert ids == [0, 1, 2]
    np.testing.assert_allclose(centres, [[20, 2, 10], [80, 8, 24], [60, 6, 14]])


def test_real_czi_file_with_a_second_loop_keeps_its_6_particles(run_cli, tmp_path, shared_data):
    real = shared_data / "real/relion_star/czi_relion_3_star.star"
    if not real.is_file():
        pytest.skip(f"{real} not found")
    star = tmp_path / "czi_with_optics.star"
    # a second table in the same (unnamed) block, as some exporters append the optics
    star.write_text(real.read_text().rstrip("\n") + "\n\nloop_\n_rlnOpticsGroup #1\n"
                    "_rlnImagePixelSize #2\n1 3.0\n")  # fmt: skip
    out = tmp_path / "g.json"
    args = ["star-to-geometric", "--star-file-path", star,
            "--geometric-segmentation-input-file-path", out, "--tomo-name", "tomo_2"]  # fmt: skip
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    spheres = doc["shape_primitives_input"]["0"]
    assert [s["parameters"]["id"] for s in spheres] == [2, 3, 4]  # rows of the 6 particles
    # (rlnCoordinate - rlnOrigin) x the optics table's 3.0 A (before rlnDetectorPixelSize)
    centres = [s["parameters"]["center"] for s in spheres]
    np.testing.assert_allclose(centres, [[21, 18, 15], [-9, 12, -3], [24, 3, 6]])
    result = run_cli(*args[:-2])  # every tomogram: 6 particles, a clear error about tomograms
    assert_one_line_error(result, "particles of 3 tomograms")


def test_star_sections_of_a_block_are_split():
    from pipeline.inputs.star import split_sections

    lines = [
        "data_job\n", "_rlnImagePixelSize 1.5\n", "\n", "loop_\n", "_rlnCoordinateX #1\n",
        "1\n", ";\n", "loop_\n", ";\n", "2\n", "_rlnTrailing 3\n", "data_other\n", "loop_\n",
        "_a #1\n", "4\n",
    ]  # fmt: skip
    out = split_sections(lines)
    assert out is not None
    headers = [line.strip() for line in out if line.startswith("data_")]
    # pairs, then a table (the "loop_" inside the ; text field is data), then pairs again
    assert headers == ["data_job", "data_job__2", "data_job__3", "data_other"]
    assert out.index("data_job__2\n") == out.index("loop_\n") - 1
    assert split_sections(["data_a\n", "loop_\n", "_x #1\n", "1\n", "data_b\n", "_y 2\n"]) is None


def test_ome_tiff_pixel_unit_with_extra_data_voxel_size(tmp_path, capsys):
    """PhysicalSizeXUnit="pixel" cannot be converted: extra data's voxel size is used, without
    an override warning (the file declares no length)."""
    from pipeline.model import ExtraData

    path = tmp_path / "pixels.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 4, 5), np.uint8), ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 1, "PhysicalSizeXUnit": "pixel",
        "PhysicalSizeY": 1, "PhysicalSizeYUnit": "pixel",
    })  # fmt: skip
    with pytest.raises(Exception, match="PhysicalSizeXUnit 'pixel' cannot be converted"):
        read_ometiff_image(path, None)
    volume = read_ometiff_image(path, None, ExtraData(volume_voxel_size=(2.0, 2.0, 3.0))).volume
    assert volume.voxel_size == (2.0, 2.0, 3.0)
    assert capsys.readouterr().err == ""
