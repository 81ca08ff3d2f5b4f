"""SFF lattices and ``--mode extend``: the seed's EMD-1832 examples, atomic failure, errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from conftest import preprocess_args, sha256, tree_digest, write_mrc, write_sff_lattice

from pipeline.db import open_entry

SFF_SEGMENTS = {85, 93, 97, 101, 103, 104}


@pytest.fixture(scope="module")
def emd1832(shared_data):
    root = shared_data / "preprocessor"
    volume = root / "sample_volumes/emdb/EMD-1832.map"
    sff = root / "sample_segmentations/emdb_sff/emd_1832.hff"
    if not (volume.is_file() and sff.is_file()):
        pytest.skip("EMD-1832 samples not found")
    return volume, sff


def _sff_names(path) -> dict[int, str]:
    with h5py.File(path, "r") as f:
        return {
            int(k): f["segment_list"][k]["biological_annotation"]["name"][()].decode()
            for k in f["segment_list"]
        }


def _check_emd1832_lattice(entry, sff_path) -> None:
    lat = entry.metadata["segmentation_lattices"]
    assert lat["segmentation_ids"] == ["0"]
    info = lat["segmentation_sampling_info"]["0"]
    assert [lv["level"] for lv in info["spatial_downsampling_levels"]] == [1, 2]
    assert info["boxes"] == entry.metadata["volumes"]["volume_sampling_info"]["boxes"]
    for level in (1, 2):
        grid, table = entry.read_lattice("0", level)
        assert grid.shape == (64 // level,) * 3
        assert set(np.unique(grid).tolist()) == set(table)  # every grid value is covered
        members = set().union(*map(set, table.values()))
        assert members == SFF_SEGMENTS | {0}
    _grid1, table1 = entry.read_lattice("0", 1)
    assert table1 == {v: [v] for v in SFF_SEGMENTS | {0}}
    names = {
        d["target_id"]["segment_id"]: d["name"]
        for d in entry.annotations["descriptions"].values()
        if d["target_kind"] == "lattice"
    }
    assert names == _sff_names(sff_path)
    assert {a["segment_id"] for a in entry.annotations["segment_annotations"]} == SFF_SEGMENTS
    refs = [d["external_references"] for d in entry.annotations["descriptions"].values()]
    assert all(refs) and all(r["url"] for rs in refs for r in rs)
    with h5py.File(sff_path, "r") as f:
        colour = f["segment_list"]["85"]["colour"][()]
    ann = next(a for a in entry.annotations["segment_annotations"] if a["segment_id"] == 85)
    np.testing.assert_allclose(ann["color"], colour)


def test_seed_example_map_and_sff_in_one_run(run_cli, tmp_path, emd1832):
    volume, sff = emd1832
    result = run_cli(
        *preprocess_args(
            [(volume, "map"), (sff, "sff")], tmp_path, extra=("--quantize-dtype-str", "u1")
        )
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        _check_emd1832_lattice(entry, sff)
        assert entry.annotations["name"].startswith("Segmentation of Drosophila")


def test_two_step_add_then_extend_gives_the_same_entry(run_cli, tmp_path, emd1832):
    volume, sff = emd1832
    one = tmp_path / "one"
    result = run_cli(
        *preprocess_args([(volume, "map"), (sff, "sff")], one, extra=("--quantize-dtype-str", "u1"))
    )
    assert result.exit_code == 0, result.output
    two = tmp_path / "two"
    result = run_cli(*preprocess_args([(volume, "map")], two, extra=("--quantize-dtype-str", "u1")))
    assert result.exit_code == 0, result.output
    with open_entry(two / "db", "emdb", "emd-1832") as entry:
        volume_before = entry.volume_array(1)[:]
    before = sha256(sff)
    result = run_cli(*preprocess_args([(sff, "sff")], two, mode="extend"))
    assert result.exit_code == 0, result.output
    assert sha256(sff) == before
    assert sorted(p.name for p in (two / "db").iterdir()) == ["emdb"]  # no staging left
    with (
        open_entry(one / "db", "emdb", "emd-1832") as a,
        open_entry(two / "db", "emdb", "emd-1832") as b,
    ):
        _check_emd1832_lattice(b, sff)
        np.testing.assert_array_equal(b.volume_array(1)[:], volume_before)
        for level in (1, 2):
            ga, ta = a.read_lattice("0", level)
            gb, tb = b.read_lattice("0", level)
            np.testing.assert_array_equal(ga, gb)
            assert ta == tb
        assert a.metadata == b.metadata
        assert a.annotations == b.annotations


def test_extend_with_an_existing_lattice_id_fails_and_keeps_the_entry(run_cli, tmp_path, emd1832):
    volume, sff = emd1832
    assert run_cli(*preprocess_args([(volume, "map"), (sff, "sff")], tmp_path)).exit_code == 0
    before = tree_digest(tmp_path / "db")
    result = run_cli(*preprocess_args([(sff, "sff")], tmp_path, mode="extend"))
    assert result.exit_code == 2
    assert "lattice id(s) 0 already in entry emdb/emd-1832" in result.stderr
    assert tree_digest(tmp_path / "db") == before
    # under another id it is accepted and both are kept
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"segmentation": {"segmentation_ids_mapping": {"0": "copy"}}}))
    result = run_cli(
        *preprocess_args([(sff, "sff"), (extra, "extra_data")], tmp_path, mode="extend")
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == ["0", "copy"]
        np.testing.assert_array_equal(
            entry.read_lattice("0", 2)[0], entry.read_lattice("copy", 2)[0]
        )


def test_extend_errors(run_cli, tmp_path, emd1832):
    volume, sff = emd1832
    result = run_cli(*preprocess_args([(sff, "sff")], tmp_path, mode="extend"))
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert run_cli(*preprocess_args([(volume, "map")], tmp_path)).exit_code == 0
    before = tree_digest(tmp_path / "db")
    result = run_cli(*preprocess_args([(volume, "map")], tmp_path, mode="extend"))
    assert result.exit_code == 2 and "already has a volume" in result.stderr
    small = write_mrc(tmp_path / "small.map", np.zeros((8, 8, 8), np.int8), voxel_size=5.7)
    result = run_cli(*preprocess_args([(small, "mask")], tmp_path, mode="extend"))
    assert result.exit_code == 2 and "does not match the volume grid" in result.stderr
    # a failure in the middle of writing (after the old archive was copied)
    labels = np.zeros((64, 64, 64), np.int8)
    labels[40:, 40:, 40:] = -3
    negative = write_mrc(tmp_path / "negative.map", labels, voxel_size=5.7)
    result = run_cli(*preprocess_args([(negative, "mask")], tmp_path, mode="extend"))
    assert result.exit_code == 2 and "label values" in result.stderr
    assert tree_digest(tmp_path / "db") == before


def test_sff_variants_are_refused_clearly(run_cli, tmp_path, shared_data, emd1832):
    volume, _ = emd1832
    real = shared_data / "real/sff"
    cases = [
        (real / "emd_1832_v0.7.hff", "v0.7 layout"),
        (real / "annotated_emd_6338.hff", "no lattice or mesh segmentation"),
        (real / "shapes_v0.7.sff", "v0.7.0.dev0 XML layout is not supported"),
    ]
    broken = tmp_path / "broken.hff"
    broken.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    cases.append((broken, "not an HDF5"))
    for path, message in cases:
        result = run_cli(*preprocess_args([(volume, "map"), (path, "sff")], tmp_path))
        assert result.exit_code == 2, (path, result.output)
        assert message in result.stderr and str(path) in result.stderr
    assert tree_digest(tmp_path / "db") == {}


def test_real_sff_copy_matches_the_preprocessor_sample(tmp_path, shared_data, emd1832):
    from pipeline.inputs.sff import read_sff

    _, sff = emd1832
    a = read_sff(sff, tmp_path / "a").lattices[0]
    b = read_sff(shared_data / "real/sff/emd_1832.hff", tmp_path / "b").lattices[0]
    np.testing.assert_array_equal(a.frames[0][:, :, :], b.frames[0][:, :, :])
    assert {s.id for s in b.segments} == SFF_SEGMENTS
    assert set(np.unique(a.frames[0][:, :, :]).tolist()) == SFF_SEGMENTS | {0}


def _write_hff(path, lattice: np.ndarray, compress: bool, segments: dict[int, int]) -> None:
    """A minimal EMDB-SFF 0.8 file with named, coloured segments."""
    write_sff_lattice(path, lattice, segments, compress=compress, annotated=True)


@pytest.mark.parametrize("compress", [True, False])
def test_generated_sff_raw_or_zlib_and_values_other_than_ids(run_cli, tmp_path, compress):
    lattice = np.zeros((6, 7, 8), np.uint8)
    lattice[0, 0, 0] = 120  # 0x78: the first byte of raw data looks like a zlib header
    lattice[3:, 3:, 3:] = 7
    hff = tmp_path / "gen.hff"
    _write_hff(hff, lattice, compress, {1200: 120, 7: 7})
    volume = write_mrc(tmp_path / "v.map", np.ones((6, 7, 8), np.float32))
    result = run_cli(*preprocess_args([(volume, "map"), (hff, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        grid, table = entry.read_lattice("0", 1)
        np.testing.assert_array_equal(grid, lattice.transpose(2, 1, 0))
        assert table == {0: [0], 7: [7], 120: [1200]}
        names = {
            d["target_id"]["segment_id"]: d["name"]
            for d in entry.annotations["descriptions"].values()
        }
        assert names == {1200: "seg 1200", 7: "seg 7"}


def test_sff_lattice_without_data_and_bad_mapping(run_cli, tmp_path):
    lattice = np.zeros((4, 4, 4), np.uint8)
    hff = tmp_path / "nodata.hff"
    _write_hff(hff, lattice, True, {})
    with h5py.File(hff, "a") as f:
        del f["lattice_list/0/data"]
    volume = write_mrc(tmp_path / "v.map", np.ones((4, 4, 4), np.float32))
    result = run_cli(*preprocess_args([(volume, "map"), (hff, "sff")], tmp_path))
    assert result.exit_code == 2 and "no data" in result.stderr
    good = tmp_path / "good.hff"
    _write_hff(good, lattice, True, {})
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"segmentation": {"segmentation_ids_mapping": {"0": "a/b"}}}))
    result = run_cli(
        *preprocess_args([(volume, "map"), (good, "sff"), (extra, "extra_data")], tmp_path)
    )
    assert result.exit_code == 2 and "lattice id" in result.stderr and str(good) in result.stderr
