"""``mask`` inputs end to end: lattices on the volume's levels, names, errors."""

from __future__ import annotations

import json

import mrcfile
import numpy as np
import pytest
from conftest import preprocess_args, tree_digest, write_mrc
from scipy.ndimage import maximum_filter

from pipeline.db import open_entry


@pytest.fixture
def sample(tmp_path):
    rng = np.random.default_rng(0)
    density = rng.normal(size=(21, 30, 40)).astype(np.float32)  # z, y, x
    labels = np.zeros(density.shape, np.uint16)
    labels[2:10, 5:20, 3:30] = 4
    labels[12:21, 10:30, 20:40] = 9
    labels[-1, -1, -1] = 11
    m = write_mrc(tmp_path / "map.mrc", density, voxel_size=2.5)
    k = write_mrc(tmp_path / "labels.map", labels, voxel_size=2.5)
    return m, k, labels.transpose(2, 1, 0)


def test_map_and_mask_in_one_run(run_cli, tmp_path, sample):
    map_path, mask_path, labels = sample
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "segmentation": {
                    "segmentation_ids_mapping": {"labels": "organelles"},
                    "segment_ids_to_segment_names_mapping": {
                        "organelles": {"4": "nucleus", "9": "ER"}
                    },
                }
            }
        )
    )
    args = preprocess_args(
        [(extra, "extra_data"), (map_path, "map"), (mask_path, "mask")],
        tmp_path,
        extra=("--min-size-per-downsampling-lvl-mb", "0.001"),
    )
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        lat = entry.metadata["segmentation_lattices"]
        assert lat["segmentation_ids"] == ["organelles"]
        info = lat["segmentation_sampling_info"]["organelles"]
        vol = entry.metadata["volumes"]["volume_sampling_info"]
        assert info["boxes"] == vol["boxes"]  # the lattice sits on the volume's grid
        assert info["spatial_downsampling_levels"] == vol["spatial_downsampling_levels"]
        assert entry.volume_levels == [1, 2, 4]
        grid, table = entry.read_lattice("organelles", 1)
        np.testing.assert_array_equal(grid, labels)
        assert table == {0: [0], 4: [4], 9: [9], 11: [11]}
        for level in (2, 4):
            grid2, table2 = entry.read_lattice("organelles", level)
            prev, prev_table = entry.read_lattice("organelles", level // 2)
            assert grid2.shape == tuple(-(-n // level) for n in labels.shape)
            for s in (4, 9, 11):
                mask = np.isin(prev, [c for c, v in prev_table.items() if s in v])
                want = maximum_filter(mask, size=3, mode="nearest")[::2, ::2, ::2]
                got = np.isin(grid2, [c for c, v in table2.items() if s in v])
                np.testing.assert_array_equal(got, want)
        names = {
            d["target_id"]["segment_id"]: d["name"]
            for d in entry.annotations["descriptions"].values()
        }
        assert names == {4: "nucleus", 9: "ER", 11: "segment 11"}
        segs = entry.annotations["segment_annotations"]
        assert sorted(a["segment_id"] for a in segs) == [4, 9, 11]
        assert all(a["segmentation_id"] == "organelles" and len(a["color"]) == 4 for a in segs)


def test_mask_grid_mismatches_name_both_files(run_cli, tmp_path, sample):
    map_path, _, _ = sample
    small = write_mrc(tmp_path / "small.map", np.zeros((21, 30, 39), np.int8), voxel_size=2.5)
    result = run_cli(*preprocess_args([(map_path, "map"), (small, "mask")], tmp_path))
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith(f"error: {small}") and str(map_path) in line
    assert "39x30x21" in line and "40x30x21" in line
    coarse = write_mrc(tmp_path / "coarse.map", np.zeros((21, 30, 40), np.int8), voxel_size=5.0)
    result = run_cli(*preprocess_args([(map_path, "map"), (coarse, "mask")], tmp_path))
    assert (
        result.exit_code == 2 and "voxel size" in result.stderr and str(map_path) in result.stderr
    )
    assert tree_digest(tmp_path / "db") == {}


def test_non_label_masks_are_rejected(run_cli, tmp_path, sample):
    map_path, _, _ = sample
    soft = write_mrc(tmp_path / "soft.map", np.full((21, 30, 40), 0.5, np.float32), voxel_size=2.5)
    result = run_cli(*preprocess_args([(map_path, "map"), (soft, "mask")], tmp_path))
    assert result.exit_code == 2 and "not whole numbers" in result.stderr
    negative = write_mrc(tmp_path / "neg.map", np.full((21, 30, 40), -1, np.int8), voxel_size=2.5)
    result = run_cli(*preprocess_args([(map_path, "map"), (negative, "mask")], tmp_path))
    assert result.exit_code == 2 and "label values" in result.stderr
    assert tree_digest(tmp_path / "db") == {}


def test_two_masks_with_one_id_are_rejected(run_cli, tmp_path, sample):
    map_path, mask_path, _ = sample
    copy = tmp_path / "other"
    copy.mkdir()
    (copy / "labels.map").write_bytes(mask_path.read_bytes())
    result = run_cli(
        *preprocess_args(
            [(map_path, "map"), (mask_path, "mask"), (copy / "labels.map", "mask")], tmp_path
        )
    )
    assert result.exit_code == 2 and "given twice" in result.stderr


def test_real_masks(run_cli, tmp_path, shared_data):
    real = shared_data / "real/mrc_mask"
    with mrcfile.open(real / "merged_mask.mrc", permissive=True) as mrc:
        shape = mrc.data.shape
        voxel = float(mrc.voxel_size.x)
    map_path = write_mrc(tmp_path / "m.map", np.ones(shape, np.float32), voxel_size=voxel)
    result = run_cli(
        *preprocess_args(
            [
                (map_path, "map"),
                (real / "merged_mask.mrc", "mask"),
                (real / "unmergeable_1.map", "mask"),
            ],
            tmp_path,
        )
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == [
            "merged_mask",
            "unmergeable_1",
        ]
        grid, table = entry.read_lattice("merged_mask", 1)
        with mrcfile.open(real / "merged_mask.mrc", permissive=True) as mrc:
            np.testing.assert_array_equal(grid, np.asarray(mrc.data).transpose(2, 1, 0))
        assert sorted(table) == list(range(8))
    unfixable = real / "test_unfixable_mask.map"
    with mrcfile.open(unfixable, permissive=True) as mrc:
        shape, voxel = mrc.data.shape, float(mrc.voxel_size.x)
    map2 = write_mrc(tmp_path / "m2.map", np.ones(shape, np.float32), voxel_size=voxel)
    result = run_cli(*preprocess_args([(map2, "map"), (unfixable, "mask")], tmp_path / "b"))
    assert result.exit_code == 2 and "not whole numbers" in result.stderr
