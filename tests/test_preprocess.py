"""End to end: ``preprocess --mode add`` on real and generated maps, checked through the db API,
zipfile and zarr, against independent numpy/scipy computations."""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import zarr
from conftest import ROOT, binomial_reference, preprocess_args, sha256, write_mrc
from zarr.storage import ZipStore

from pipeline.db import open_entry
from pipeline.db.metadata import quantization_params
from pipeline.options import InputKind, InputSpec, LevelOptions, Mode, PreprocessOptions
from pipeline.preprocess import preprocess


def _map_xyz(path: Path) -> np.ndarray:
    with mrcfile.open(path, permissive=True) as mrc:
        return np.asarray(mrc.data).transpose(2, 1, 0).copy()


def _stats(entry, level: int, time: int = 0, channel: str = "0") -> dict:
    info = entry.metadata["volumes"]["volume_sampling_info"]
    return info["descriptive_statistics"][str(level)][str(time)][channel]


def _assert_stats(stats: dict, values: np.ndarray, rtol: float = 1e-5) -> None:
    v = values.astype(np.float64)
    assert stats["min"] == pytest.approx(v.min(), rel=1e-6, abs=1e-6)
    assert stats["max"] == pytest.approx(v.max(), rel=1e-6, abs=1e-6)
    assert stats["mean"] == pytest.approx(v.mean(), rel=rtol, abs=rtol * v.std())
    assert stats["std"] == pytest.approx(v.std(), rel=rtol)


def test_seed_example_emd1832_quantized(run_cli, tmp_path, emd1832_map):
    """The seed's first example verbatim (paths into ../shared), with --quantize-dtype-str u1."""
    before = sha256(emd1832_map)
    result = run_cli(
        "preprocess",
        "--mode",
        "add",
        "--input-path",
        emd1832_map,
        "--input-kind",
        "map",
        "--entry-id",
        "emd-1832",
        "--source-db",
        "emdb",
        "--source-db-id",
        "emd-1832",
        "--source-db-name",
        "emdb",
        "--working-folder",
        tmp_path / "temp_working_folder",
        "--db-path",
        tmp_path / "test_db",
        "--quantize-dtype-str",
        "u1",
    )
    assert result.exit_code == 0, result.output
    assert sha256(emd1832_map) == before
    original = _map_xyz(emd1832_map)
    with open_entry(tmp_path / "test_db", "emdb", "emd-1832") as entry:
        info = entry.metadata["volumes"]["volume_sampling_info"]
        assert entry.volume_levels == [1, 2]
        assert info["boxes"]["1"] == {
            "origin": [-182.4] * 3,
            "voxel_size": [5.7] * 3,
            "grid_dimensions": [64] * 3,
        }
        assert info["boxes"]["2"] == {
            "origin": [-182.4] * 3,
            "voxel_size": [11.4] * 3,
            "grid_dimensions": [32] * 3,
        }
        assert entry.metadata["entry_id"] == {"source_db_name": "emdb", "source_db_id": "emd-1832"}
        assert entry.metadata["volumes"]["channel_ids"] == ["0"]
        assert entry.metadata["volumes"]["time_info"] == {
            "kind": "range",
            "start": 0,
            "end": 0,
            "units": "millisecond",
        }
        # statistics are of the data before quantization
        _assert_stats(_stats(entry, 1), original)
        _assert_stats(_stats(entry, 2), binomial_reference(original), rtol=1e-4)
        for level, values in ((1, original), (2, binomial_reference(original))):
            arr = entry.volume_array(level)
            assert arr.dtype == np.uint8
            params = quantization_params(arr.attrs["quantization_data_dict"])
            assert params.num_steps == 255 and params.src_type == "<f4"
            assert params.to_remove_negatives == pytest.approx(values.min(), abs=1e-6)
            decoded = entry.read_volume(level)
            assert decoded.dtype == np.float32
            bound = (values - values.min() + 1) * (np.exp(params.delta / 2) - 1) + 1e-5
            assert np.all(np.abs(decoded - values) <= bound)
        assert entry.annotations["volume_channels_annotations"] == [
            {"channel_id": "0", "color": [1.0, 1.0, 1.0, 1.0], "label": None}
        ]


def test_unquantized_entry_layout_values_and_statistics(run_cli, tmp_path, emd1832_map):
    result = run_cli(*preprocess_args([(emd1832_map, "map")], tmp_path))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "db" / "emdb" / "emd-1832"
    assert sorted(p.name for p in folder.iterdir()) == [
        "annotations.json",
        "data.zip",
        "metadata.json",
    ]
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["emdb"]  # no staging left
    original = _map_xyz(emd1832_map)
    with zipfile.ZipFile(folder / "data.zip") as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert "volume_data/1/0/0/.zarray" in names and "volume_data/2/0/0/.zarray" in names
    root = zarr.open_group(store=ZipStore(folder / "data.zip", mode="r"), mode="r", zarr_format=2)
    level1 = root["volume_data/1/0/0"][:]
    level2 = root["volume_data/2/0/0"][:]
    np.testing.assert_array_equal(level1, original)
    np.testing.assert_allclose(level2, binomial_reference(original), rtol=1e-5, atol=1e-6)
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        _assert_stats(_stats(entry, 1), level1)
        _assert_stats(_stats(entry, 2), level2)
        box = entry.read_volume(2, box=((3, 9), (0, 32), (31, 32)))
        np.testing.assert_array_equal(box, level2[3:9, :, 31:32])


@pytest.mark.parametrize(
    "shape_zyx, dtype",
    [
        ((131, 7, 260), np.float32),
        ((1, 40, 33), np.float32),
        ((67, 66, 65), np.int16),
        ((20, 21, 22), np.uint8),
        ((19, 20, 21), np.int8),
    ],
)
def test_pyramid_through_the_pipeline_matches_reference(run_cli, tmp_path, shape_zyx, dtype):
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        data = rng.normal(size=shape_zyx).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(
            max(info.min, -1000), min(info.max, 1000), size=shape_zyx, endpoint=True
        )
        data = data.astype(dtype)
    path = write_mrc(tmp_path / "map.mrc", data.view(np.int8) if dtype == np.uint8 else data)
    if dtype == np.uint8:
        with mrcfile.open(path, mode="r+") as mrc:
            mrc.header.dmin, mrc.header.dmax = 0, 255
    extra = ("--min-size-per-downsampling-lvl-mb", "0.00005", "--max-downsampling-level", "4")
    result = run_cli(*preprocess_args([(path, "map")], tmp_path, extra=extra))
    assert result.exit_code == 0, result.output
    xyz = data.transpose(2, 1, 0)
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        assert entry.volume_levels == [1, 2, 4]
        level1 = entry.read_volume(1)
        assert level1.dtype == dtype
        np.testing.assert_array_equal(level1, xyz)
        expected2 = binomial_reference(xyz)
        expected4 = binomial_reference(expected2)
        for level, expected in ((2, expected2), (4, expected4)):
            got = entry.read_volume(level)
            assert got.shape == tuple(-(-n // level) for n in xyz.shape)
            if np.dtype(dtype).kind == "f":
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
            else:  # level 4 is filtered from the rounded level 2, as stored
                ref = binomial_reference(entry.read_volume(level // 2)) if level > 2 else expected
                diff = np.abs(got.astype(np.float64) - np.rint(ref))
                # exact but for .5 ties that float accumulation may round the other way
                assert diff.max() <= 1 and np.count_nonzero(diff) <= max(1, diff.size // 1000)
            _assert_stats(_stats(entry, level), got)


def test_extra_data_voxel_size_override_keeps_inputs_identical(run_cli, tmp_path):
    path = write_mrc(tmp_path / "zero.mrc", np.ones((8, 8, 8), np.float32), voxel_size=0.0)
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.nxstart = mrc.header.nystart = mrc.header.nzstart = -4
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"volume": {"voxel_size": [7.84, 7.84, 15.0]}}))
    before = (sha256(path), sha256(extra))
    failed = run_cli(*preprocess_args([(path, "map")], tmp_path))
    assert failed.exit_code == 2 and "extra_data" in failed.stderr
    # extra data may come after the map on the command line
    result = run_cli(*preprocess_args([(path, "map"), (extra, "extra_data")], tmp_path))
    assert result.exit_code == 0, result.output
    assert (sha256(path), sha256(extra)) == before
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        box = entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
        assert box["voxel_size"] == [7.84, 7.84, 15.0]
        assert box["origin"] == [-4 * 7.84, -4 * 7.84, -60.0]


def test_options_change_levels_dtype_and_quantized_levels(run_cli, tmp_path):
    data = np.random.default_rng(2).normal(size=(40, 40, 40)).astype(np.float32)
    path = write_mrc(tmp_path / "m.mrc", data)
    extra = (
        "--min-size-per-downsampling-lvl-mb",
        "0.001",
        "--remove-original-resolution",
        "--force-volume-dtype",
        "f8",
        "--quantize-dtype-str",
        "u2",
        "--quantize-downsampling-levels",
        "4",
    )
    result = run_cli(*preprocess_args([(path, "map")], tmp_path, extra=extra))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        levels = entry.metadata["volumes"]["volume_sampling_info"]["spatial_downsampling_levels"]
        assert levels[0] == {"level": 1, "available": False}
        assert entry.volume_levels == [2, 4, 8]
        assert "volume_data/1/0/0" not in entry.root
        assert entry.volume_array(2).dtype == np.float64
        assert "quantization_data_dict" not in entry.volume_array(2).attrs
        assert entry.volume_array(4).dtype == np.uint16
        assert entry.volume_array(8).dtype == np.float64
        ref2 = binomial_reference(data.transpose(2, 1, 0).astype(np.float64))
        np.testing.assert_allclose(entry.read_volume(2), ref2, rtol=1e-10, atol=1e-12)
        # level 1 statistics are still reported (of the data that was not stored)
        _assert_stats(_stats(entry, 1), data)


def test_quantizing_a_one_byte_map_warns_and_stores_it_as_is(run_cli, tmp_path):
    data = np.arange(-64, 61, dtype=np.int8).reshape(5, 5, 5)
    path = write_mrc(tmp_path / "b.mrc", data)
    result = run_cli(
        *preprocess_args([(path, "map")], tmp_path, extra=("--quantize-dtype-str", "u1"))
    )
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "without quantization" in result.stderr
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        np.testing.assert_array_equal(entry.read_volume(1), data.transpose(2, 1, 0))


def test_same_inputs_give_byte_identical_entries(tmp_path):
    data = np.random.default_rng(4).normal(size=(61, 50, 37)).astype(np.float32)
    path = write_mrc(tmp_path / "m.mrc", data)
    digests = []
    for name in ("a", "b", "c"):
        # small blocks: ~100 tasks per pass finishing in varying order
        options = PreprocessOptions(
            mode=Mode.ADD,
            inputs=(InputSpec(path, InputKind.MAP),),
            entry_id="e",
            source_db="emdb",
            source_db_id="e",
            source_db_name="emdb",
            working_folder=tmp_path / name / "work",
            db_path=tmp_path / name / "db",
            block_size=16,
            chunk_size=8,
            levels=LevelOptions(min_size_mb=0.01),
        )
        preprocess(options)
        folder = tmp_path / name / "db" / "emdb" / "e"
        digests.append(
            [sha256(folder / f) for f in ("data.zip", "metadata.json", "annotations.json")]
        )
    assert digests[0] == digests[1] == digests[2]
    with open_entry(tmp_path / "a" / "db", "emdb", "e") as entry:
        assert entry.volume_array(1).chunks == (8, 8, 8)
        np.testing.assert_array_equal(entry.read_volume(1), data.transpose(2, 1, 0))
        np.testing.assert_allclose(
            entry.read_volume(2),
            binomial_reference(data.transpose(2, 1, 0)),
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.slow
def test_bundled_sample_generator_and_readme_command(tmp_path):
    import subprocess

    out = tmp_path / "generated"
    subprocess.run([sys.executable, str(ROOT / "test-data" / "generate.py"), str(out)], check=True)
    density = _map_xyz(out / "sample_map.mrc")
    labels = _map_xyz(out / "sample_mask.mrc")
    assert density.shape == labels.shape == (64, 64, 64)
    # the analytic shape: the blob centres are the maxima, labels cover them
    assert np.unravel_index(np.argmax(density), density.shape) == (20, 32, 32)
    assert density[20, 32, 32] == pytest.approx(2.0 + np.exp(-(24**2 + 2**2 + 4**2) / 32), rel=1e-5)
    assert labels[20, 32, 32] == 1 and labels[44, 30, 36] == 2 and labels[0, 0, 0] == 0
    assert set(np.unique(labels)) == {0, 1, 2}
    proc = subprocess.run(
        [
            "cellstar-preprocessor",
            *preprocess_args([(out / "sample_map.mrc", "map")], tmp_path, entry="sample"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    with open_entry(tmp_path / "db", "emdb", "sample") as entry:
        box = entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
        assert box == {"origin": [-64.0] * 3, "voxel_size": [2.0] * 3, "grid_dimensions": [64] * 3}
        np.testing.assert_array_equal(entry.read_volume(1), density)


def test_statistics_only_for_stored_levels_and_clipping_dtype(run_cli, tmp_path):
    data = (np.random.default_rng(8).normal(size=(32, 32, 32)) * 200).astype(np.float32)
    path = write_mrc(tmp_path / "m.mrc", data)
    extra = (
        "--min-downsampling-level",
        "4",
        "--force-volume-dtype",
        "u1",
    )
    result = run_cli(*preprocess_args([(path, "map")], tmp_path, extra=extra))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        info = entry.metadata["volumes"]["volume_sampling_info"]
        assert entry.volume_levels == [1, 4]
        assert sorted(info["boxes"]) == sorted(info["descriptive_statistics"]) == ["1", "4"]
        level1 = entry.read_volume(1)
        assert level1.dtype == np.uint8
        # rounded and clipped to 0..255, never wrapped
        expected = np.clip(np.rint(data.transpose(2, 1, 0)), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(level1, expected)


def test_quantizing_a_level_that_is_not_stored_is_an_error(run_cli, tmp_path):
    path = write_mrc(tmp_path / "m.mrc", np.ones((32, 32, 32), np.float32))
    extra = ("--quantize-dtype-str", "u1", "--quantize-downsampling-levels", "1 16")
    result = run_cli(*preprocess_args([(path, "map")], tmp_path, extra=extra))
    assert result.exit_code == 2
    assert "level(s) 16 not stored (stored: 1, 2)" in result.stderr
    assert not (tmp_path / "db").exists()
