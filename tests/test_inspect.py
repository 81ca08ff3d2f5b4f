"""``inspect``: what a reader sees, printed without reading voxels."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import write_mrc


def _info(run_cli, *args):
    result = run_cli("inspect", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_map_header_values(run_cli, tmp_path):
    data = np.zeros((5, 6, 7), np.int16)  # z, y, x
    path = write_mrc(tmp_path / "t.mrc", data, voxel_size=(1.5, 2.0, 2.5), nxstart=4)
    info = _info(run_cli, path)
    assert info["kind"] == "map"
    v = info["volume"]
    assert v["shape_xyz"] == [7, 6, 5] and v["dtype"] == "int16"
    assert v["voxel_size_angstrom"] == [1.5, 2.0, 2.5]
    assert v["origin_angstrom"] == [6.0, 0.0, 0.0]  # nxstart 4 x 1.5 A
    assert v["channel_ids"] == ["0"] and v["time_points"] == 1
    text = run_cli("inspect", path).stdout
    assert "7 x 6 x 5  int16" in text and "1.5 x 2 x 2.5" in text


def test_mask_kind_lists_segments_named_in_extra_data(run_cli, tmp_path):
    labels = np.zeros((4, 4, 4), np.uint8)
    path = write_mrc(tmp_path / "cells.mrc", labels)
    extra = tmp_path / "extra.json"
    names = {"cells": {"1": "nucleus", "2": "membrane"}}
    extra.write_text(json.dumps({"segmentation": {"segment_ids_to_segment_names_mapping": names}}))
    info = _info(run_cli, path, "--input-kind", "mask", "--extra-data", extra)
    assert "volume" not in info
    (lattice,) = info["lattices"]
    assert lattice["id"] == "cells" and lattice["shape_xyz"] == [4, 4, 4]
    assert [(s["id"], s["name"]) for s in lattice["segments"]] == [(1, "nucleus"), (2, "membrane")]


def test_nifti_4d_time_points_and_units(run_cli, tmp_path):
    img = nib.Nifti1Image(np.zeros((3, 4, 5, 6), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, tmp_path / "run.nii.gz")
    v = _info(run_cli, tmp_path / "run.nii.gz")["volume"]
    assert v["shape_xyz"] == [3, 4, 5] and v["time_points"] == 6 and v["time_units"] == "second"
    assert v["voxel_size_angstrom"] == [5e6, 5e6, 2e7]  # mm -> 1e7 A


def test_real_samples(run_cli, shared_data):
    emd = shared_data / "preprocessor/sample_volumes/emdb/EMD-1832.map"
    v = _info(run_cli, emd)["volume"]
    assert v["shape_xyz"] == [64, 64, 64] and v["voxel_size_angstrom"] == [5.7, 5.7, 5.7]
    assert v["origin_angstrom"] == [-182.4, -182.4, -182.4]
    sff = _info(run_cli, shared_data / "preprocessor/sample_segmentations/emdb_sff/emd_1832.hff")
    assert [s["id"] for s in sff["lattices"][0]["segments"]] == [85, 93, 97, 101, 103, 104]
    star = _info(run_cli, shared_data / "real/relion_star/sfftk_test_data10.star")
    assert star["geometric"][0]["primitives"] == {"sphere": 256}


def test_compressed_map_is_described_from_its_header_only(run_cli, tmp_path):
    import gzip

    path = write_mrc(tmp_path / "t.mrc", np.ones((3, 4, 5), np.float32), voxel_size=2.0)
    packed = tmp_path / "t.mrc.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert _info(run_cli, packed)["volume"]["shape_xyz"] == [5, 4, 3]
    assert not any(p.name.startswith("t.mrc.") and p != packed for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("data.xyz", (), "cannot tell the input kind from the name; give --input-kind"),
        ("missing.mrc", (), "no such file or directory"),
        ("extra.json", ("--input-kind", "extra_data"), "inspect reads inputs that hold data"),
    ],
)
def test_errors_are_one_line(run_cli, tmp_path, name, args, message):
    path = tmp_path / name
    if name != "missing.mrc":
        path.write_text("{}")
    result = run_cli("inspect", path, *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert str(path) in lines[0]


def test_mesh_sff_lists_its_mesh_set(run_cli, shared_data):
    info = _info(run_cli, shared_data / "real/sff/emd_3791.sff")
    (mesh,) = info["meshes"]
    assert mesh["id"] == "emd_3791" and mesh["time_points"] == 1
    assert len(mesh["segments"]) == 4  # MANIFEST: Nucleus, Cytoplasm, Lamella and one unnamed
    assert {"Nucleus", "Cytoplasm", "Lamella"} <= set(mesh["named"].values())
    assert info["lattices"] == [] and "volume" not in info


def test_ometiff_dimensions_as_stored(run_cli, tmp_path):
    """The general form of the seed's check_ometiff_dimensions.py: OME-XML and TIFF layout."""
    import tifffile

    data = np.zeros((3, 4, 2, 16, 12), np.uint16)  # T, Z, C, Y, X
    path = tmp_path / "cells.ome.tif"
    meta = {"axes": "TZCYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 0.5}
    tifffile.imwrite(path, data, ome=True, metadata={**meta, "Channel": {"Name": ["dna", "mem"]}})
    info = _info(run_cli, path)
    facts = info["file"]
    assert facts["format"] == "OME-TIFF" and facts["pages"] == 3 * 4 * 2
    assert facts["declared_sizes"] == {"X": 12, "Y": 16, "Z": 4, "C": 2, "T": 3}
    assert facts["tiff_series_axes"] == "TZCYX" and facts["tiff_series_shape"] == [3, 4, 2, 16, 12]
    assert facts["channel_names"] == ["dna", "mem"]
    v = info["volume"]
    assert v["shape_xyz"] == [12, 16, 4] and v["time_points"] == 3
    assert v["voxel_size_angstrom"] == [2000.0, 2500.0, 5000.0]
    assert v["channel_labels"] == ["dna", "mem"]


def test_omezarr_and_nifti_headers_as_stored(run_cli, tmp_path, shared_data):
    facts = _info(run_cli, shared_data / "real/ome_zarr/czi_RUN1_tomogram.zarr")["file"]
    assert facts["format"].startswith("OME-NGFF 0.4") and facts["level_0_shape"] == [4, 4, 4]
    assert facts["axes"] == ["x[no unit]", "y[no unit]", "z[no unit]"]  # MANIFEST: x,y,z order
    img = nib.Nifti2Image(np.zeros((3, 4, 5), np.int16), np.diag([-1.0, 2.0, 3.0, 1.0]))
    nib.save(img, tmp_path / "n2.nii")
    facts = _info(run_cli, tmp_path / "n2.nii")["file"]
    assert facts["format"] == "NIfTI-2" and facts["dim"] == [3, 4, 5]
    assert facts["pixdim"] == [1.0, 2.0, 3.0] and facts["flipped_i_j_k"] == [True, False, False]
