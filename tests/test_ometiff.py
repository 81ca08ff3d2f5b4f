"""``ometiff_image`` / ``ometiff_segmentation`` end to end on OME-TIFFs written with tifffile."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import binomial_reference, preprocess_args, tree_digest

from pipeline.db import open_entry
from pipeline.inputs.ometiff import read_ometiff_image

# the seed's hiPSC example (PREPROCESS.md): voxel size, channel and segmentation ids
HIPSC_CHANNELS = ["dna", "membrane", "structure"]
HIPSC_LATTICES = [
    "dna_segmentation",
    "membrane_segmentation",
    "membrane_segmentation_roof",
    "struct_segmentation",
    "struct_segmentation_roof",
]
HIPSC_VOXEL = 1083.33  # 0.108333 um in Angstrom


def _hipsc_extra(path: Path) -> Path:
    ometiff = {"cell_stage": "M4M5", "missing_dimensions": ["T"]}
    voxel = [HIPSC_VOXEL] * 3
    path.write_text(
        json.dumps(
            {
                "volume": {
                    "voxel_size": voxel,
                    "channel_ids_mapping": {str(i): c for i, c in enumerate(HIPSC_CHANNELS)},
                    "dataset_specific_data": {"ometiff": ometiff},
                },
                "segmentation": {
                    "voxel_size": voxel,
                    "segmentation_ids_mapping": {str(i): s for i, s in enumerate(HIPSC_LATTICES)},
                    "segment_ids_to_segment_names_mapping": {"dna_segmentation": {"255": "DNA"}},
                    "dataset_specific_data": {"ometiff": ometiff},
                },
            }
        )
    )
    return path


def _hipsc_files(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A 3-channel uint16 image and a 5-channel uint8 segmentation, stored Z, C, Y, X: the
    OME-XML says DimensionOrder XYCZT (TZCYX) with SizeT=1, the planes have no T."""
    rng = np.random.default_rng(7)
    z, y, x = 13, 22, 37
    image = rng.integers(0, 4000, size=(z, 3, y, x), dtype=np.uint16)
    seg = np.zeros((z, 5, y, x), np.uint8)
    seg[3:9, 0, 4:15, 5:30] = 255
    seg[:, 1, 2:20, 2:35] = 1
    seg[:, 2, 0, :] = 2
    seg[5, 3, 10:12, 10:12] = 4
    seg[6, 3, 11:14, 20:25] = 9
    # channel 4 stays empty (background only)
    # the file's own sizes (0.2 um) differ from the extra data's: the extra data must win
    meta = {"axes": "ZCYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.2}
    img_path = folder / "hipsc_230741_volume.ome.tif"
    seg_path = folder / "hipsc_230741_segmentation.ome.tif"
    tifffile.imwrite(
        img_path,
        image,
        ome=True,
        rowsperstrip=5,
        metadata={**meta, "Channel": {"Name": HIPSC_CHANNELS}},
    )
    tifffile.imwrite(seg_path, seg, ome=True, compression="zlib", metadata=meta)
    with tifffile.TiffFile(img_path) as tif:  # the layout the seed's example describes
        assert 'DimensionOrder="XYCZT"' in tif.ome_metadata and 'SizeT="1"' in tif.ome_metadata
        assert tif.series[0].axes == "ZCYX"
    return img_path, seg_path, image, seg


def _stats(values: np.ndarray) -> dict[str, float]:
    v = values.astype(np.float64)
    return {"mean": v.mean(), "std": v.std(), "min": v.min(), "max": v.max()}


def _check_statistics(entry, level: int, t: int, channel: str, reference: np.ndarray) -> None:
    got = entry.metadata["volumes"]["volume_sampling_info"]["descriptive_statistics"]
    got = got[str(level)][str(t)][channel]
    want = _stats(reference)
    for key, value in want.items():  # float32 blocks are summed in float32 (DESIGN 7.1)
        tol = 1e-5 * want["std"] if key == "mean" else 1e-5 * abs(value)
        assert got[key] == pytest.approx(value, rel=1e-5, abs=tol), (level, t, channel, key)


def _check_levels(entry, t: int, channel: str, xyz: np.ndarray) -> None:
    """Level 1 equals the input; level 2 is the binomial pyramid of it; statistics of both."""
    np.testing.assert_array_equal(entry.read_volume(1, t, channel), xyz)
    _check_statistics(entry, 1, t, channel, xyz)
    level2 = entry.read_volume(2, t, channel)
    if xyz.dtype.kind in "iu":
        info = np.iinfo(xyz.dtype)
        ref = np.clip(np.rint(binomial_reference(xyz)), info.min, info.max)
        assert np.abs(level2.astype(np.int64) - ref.astype(np.int64)).max() <= 1  # .5 ties
    else:
        np.testing.assert_allclose(level2, binomial_reference(xyz), rtol=1e-5, atol=1e-5)
    _check_statistics(entry, 2, t, channel, level2)


SMALL_LEVELS = ("--min-size-per-downsampling-lvl-mb", "0.001")


def test_seed_hipsc_example_flow(run_cli, tmp_path):
    img_path, seg_path, image, seg = _hipsc_files(tmp_path)
    extra = _hipsc_extra(tmp_path / "extra_data.json")
    args = preprocess_args(
        [(extra, "extra_data"), (img_path, "ometiff_image"), (seg_path, "ometiff_segmentation")],
        tmp_path,
        entry="custom-hipsc_230741",
        extra=SMALL_LEVELS,
    )
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "custom-hipsc_230741") as entry:
        volumes = entry.metadata["volumes"]
        assert volumes["channel_ids"] == HIPSC_CHANNELS
        assert volumes["time_info"] == {
            "kind": "range",
            "start": 0,
            "end": 0,
            "units": "millisecond",
        }
        boxes = volumes["volume_sampling_info"]["boxes"]
        assert boxes["1"]["voxel_size"] == [HIPSC_VOXEL] * 3
        assert boxes["1"]["grid_dimensions"] == [37, 22, 13]
        assert entry.volume_levels == [1, 2]
        for c, channel in enumerate(HIPSC_CHANNELS):
            _check_levels(entry, 0, channel, image[:, c].transpose(2, 1, 0))
        labels = {
            a["channel_id"]: a["label"] for a in entry.annotations["volume_channels_annotations"]
        }
        assert labels == dict(zip(HIPSC_CHANNELS, HIPSC_CHANNELS, strict=True))
        lattices = entry.metadata["segmentation_lattices"]
        assert lattices["segmentation_ids"] == HIPSC_LATTICES
        for c, lattice_id in enumerate(HIPSC_LATTICES):
            grid, table = entry.read_lattice(lattice_id, 1)
            np.testing.assert_array_equal(grid, seg[:, c].transpose(2, 1, 0))
            assert table == {int(v): [int(v)] for v in np.unique(seg[:, c])}
            assert lattices["segmentation_sampling_info"][lattice_id]["boxes"] == boxes
        by_lattice: dict[str, list[int]] = {}
        for a in entry.annotations["segment_annotations"]:
            by_lattice.setdefault(a["segmentation_id"], []).append(a["segment_id"])
        assert by_lattice == {
            "dna_segmentation": [255],
            "membrane_segmentation": [1],
            "membrane_segmentation_roof": [2],
            "struct_segmentation": [4, 9],
        }
        names = {
            (d["target_id"]["segmentation_id"], d["target_id"]["segment_id"]): d["name"]
            for d in entry.annotations["descriptions"].values()
        }
        assert names[("dna_segmentation", 255)] == "DNA"
        assert names[("struct_segmentation", 9)] == "segment 9"
    result = run_cli("validate", "--db-path", tmp_path / "db")
    assert result.exit_code == 0, result.output


def test_voxel_size_from_ome_units_czyx_float_big_endian(run_cli, tmp_path):
    """CZYX (DimensionOrder XYZCT), big-endian float32 in tiles; physical sizes in nm, in
    the default unit (um) and in Angstrom; no extra data: ids are channel indices."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(2, 9, 40, 35)).astype(np.float32)  # C, Z, Y, X
    path = tmp_path / "czyx.ome.tiff"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        byteorder=">",
        tile=(16, 16),
        metadata={
            "axes": "CZYX",
            "PhysicalSizeX": 2.5,
            "PhysicalSizeXUnit": "nm",
            "PhysicalSizeY": 0.003,
            "PhysicalSizeZ": 40.0,
            "PhysicalSizeZUnit": "\u00c5",
            "Channel": {"Name": ["GFP", "RFP"]},
        },
    )
    with tifffile.TiffFile(path) as tif:
        assert 'DimensionOrder="XYZCT"' in tif.ome_metadata and tif.pages[0].is_tiled
    result = run_cli(*preprocess_args([(path, "ometiff_image")], tmp_path, extra=SMALL_LEVELS))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        volumes = entry.metadata["volumes"]
        assert volumes["channel_ids"] == ["0", "1"]
        info = volumes["volume_sampling_info"]
        assert info["boxes"]["1"]["voxel_size"] == pytest.approx([25.0, 30.0, 40.0])
        assert info["source_axes_units"] == {"x": "nm", "y": "\u00b5m", "z": "\u00c5"}
        labels = [a["label"] for a in entry.annotations["volume_channels_annotations"]]
        assert labels == ["GFP", "RFP"]
        for c in range(2):
            _check_levels(entry, 0, str(c), data[c].transpose(2, 1, 0))


def test_multi_time_tczyx_image_and_segmentation(run_cli, tmp_path):
    rng = np.random.default_rng(5)
    t, c, z, y, x = 3, 2, 6, 18, 21
    image = rng.integers(-500, 500, size=(t, c, z, y, x), dtype=np.int16)
    seg = rng.integers(0, 4, size=(t, 1, z, y, x)).astype(np.uint16)
    meta = {
        "axes": "TCZYX",
        "PhysicalSizeX": 0.5,
        "PhysicalSizeY": 0.5,
        "PhysicalSizeZ": 1.0,
        "TimeIncrement": 2.5,
        "TimeIncrementUnit": "ms",
    }
    img_path = tmp_path / "movie.ome.tif"
    seg_path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(img_path, image, ome=True, metadata=meta)
    tifffile.imwrite(seg_path, seg, ome=True, metadata=meta)
    result = run_cli(
        *preprocess_args(
            [(img_path, "ometiff_image"), (seg_path, "ometiff_segmentation")],
            tmp_path,
            extra=SMALL_LEVELS,
        )
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        volumes = entry.metadata["volumes"]
        assert volumes["time_info"] == {
            "kind": "range",
            "start": 0,
            "end": 2,
            "units": "millisecond",
        }
        assert volumes["volume_sampling_info"]["boxes"]["1"]["voxel_size"] == [5000.0] * 2 + [1e4]
        stats = volumes["volume_sampling_info"]["descriptive_statistics"]
        assert sorted(stats) == ["1", "2"] and all(
            sorted(stats[k]) == ["0", "1", "2"] for k in stats
        )
        for frame in range(t):
            for channel in range(c):
                _check_levels(entry, frame, str(channel), image[frame, channel].transpose(2, 1, 0))
        # one channel: the lattice id is the file name without .ome.tif, one grid per frame
        lattices = entry.metadata["segmentation_lattices"]
        assert lattices["segmentation_ids"] == ["cells"]
        assert lattices["time_info"]["cells"]["end"] == 2
        for frame in range(t):
            grid, table = entry.read_lattice("cells", 1, time=frame)
            np.testing.assert_array_equal(grid, seg[frame, 0].transpose(2, 1, 0))
            assert table == {v: [v] for v in range(4)}
        times = {a["segment_id"]: a["time"] for a in entry.annotations["segment_annotations"]}
        assert times == {1: [0, 1, 2], 2: [0, 1, 2], 3: [0, 1, 2]}


def _declared_but_missing(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """OME-XML with DimensionOrder XYZTC and SizeT=2, but planes for Z and C only (ordered
    z fastest, then c): T is declared and missing from the pixel data."""
    data = np.random.default_rng(11).integers(0, 255, size=(2, 4, 10, 12), dtype=np.uint8)
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
        '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZTC" Type="uint8" '
        'SizeX="12" SizeY="10" SizeZ="4" SizeC="2" SizeT="2" PhysicalSizeX="3" '
        'PhysicalSizeY="3" PhysicalSizeZ="3" PhysicalSizeXUnit="nm" PhysicalSizeYUnit="nm" '
        'PhysicalSizeZUnit="nm">'
        '<Channel ID="Channel:0:0" SamplesPerPixel="1" Name="a"/>'
        '<Channel ID="Channel:0:1" SamplesPerPixel="1" Name="b"/>'
        '<TiffData IFD="0" PlaneCount="8"/></Pixels></Image></OME>'
    )
    path = tmp_path / "declared.ome.tif"
    tifffile.imwrite(path, data.reshape(8, 10, 12), description=xml.encode(), metadata=None)
    return path, data


def test_missing_dimensions_from_extra_data(run_cli, tmp_path):
    path, data = _declared_but_missing(tmp_path)
    result = run_cli(*preprocess_args([(path, "ometiff_image")], tmp_path, entry="a"))
    assert result.exit_code == 2
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert f"error: {path}:" in result.stderr and "missing_dimensions" in result.stderr
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "volume": {
                    "channel_ids_mapping": {"b": "second"},  # keyed by the OME channel name
                    "dataset_specific_data": {"ometiff": {"missing_dimensions": ["t"]}},
                }
            }
        )
    )
    args = [(extra, "extra_data"), (path, "ometiff_image")]
    result = run_cli(*preprocess_args(args, tmp_path, entry="b"))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "b") as entry:
        assert entry.metadata["volumes"]["channel_ids"] == ["0", "second"]
        assert entry.metadata["volumes"]["time_info"]["end"] == 0
        assert (
            entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]["voxel_size"]
            == [30.0] * 3
        )
        for c, channel in enumerate(["0", "second"]):
            np.testing.assert_array_equal(
                entry.read_volume(1, 0, channel), data[c].transpose(2, 1, 0)
            )


def test_missing_z_gives_single_plane_frames(run_cli, tmp_path):
    """C, Y, X planes whose OME-XML declares SizeZ=3: Z named missing is a length-1 axis."""
    data = np.arange(2 * 8 * 10, dtype=np.uint16).reshape(2, 8, 10)
    path = tmp_path / "planes.ome.tif"
    tifffile.imwrite(
        path, data, ome=True, metadata={"axes": "CYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1}
    )
    with tifffile.TiffFile(path) as tif:
        xml = tif.ome_metadata
    tifffile.tiffcomment(path, xml.replace('SizeZ="1"', 'SizeZ="3"').encode())
    extra = tmp_path / "extra.json"
    missing = {"dataset_specific_data": {"ometiff": {"missing_dimensions": ["Z"]}}}
    extra.write_text(json.dumps({"volume": missing}))
    args = [(path, "ometiff_image"), (extra, "extra_data")]
    result = run_cli(*preprocess_args(args, tmp_path))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        for c in range(2):
            got = entry.read_volume(1, 0, str(c))
            assert got.shape == (10, 8, 1)
            np.testing.assert_array_equal(got[:, :, 0], data[c].T)


def test_extend_with_a_segmentation_and_lattice_id_by_name(run_cli, tmp_path):
    img_path, seg_path, _, seg = _hipsc_files(tmp_path)
    result = run_cli(*preprocess_args([(img_path, "ometiff_image")], tmp_path))
    assert result.exit_code == 0, result.output
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {"segmentation": {"segmentation_ids_mapping": {"hipsc_230741_segmentation_3": "s"}}}
        )
    )
    args = [(extra, "extra_data"), (seg_path, "ometiff_segmentation")]
    result = run_cli(*preprocess_args(args, tmp_path, mode="extend"))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        assert entry.metadata["volumes"]["channel_ids"] == ["0", "1", "2"]
        ids = entry.metadata["segmentation_lattices"]["segmentation_ids"]
        assert ids == [f"hipsc_230741_segmentation_{i}" for i in (0, 1, 2)] + [
            "s",
            "hipsc_230741_segmentation_4",
        ]
        grid, _ = entry.read_lattice("s", 2)
        assert grid.shape == (19, 11, 7)
        grid, _ = entry.read_lattice("s", 1)
        np.testing.assert_array_equal(grid, seg[:, 3].transpose(2, 1, 0))


def test_rgb_samples_are_channels_and_reads_are_regions(tmp_path, capsys):
    """Interleaved RGB samples (SizeC=3, SamplesPerPixel=3) become three channels; a region
    read returns exactly that region, also from a pickled copy (a worker process)."""
    rgb = np.random.default_rng(2).integers(0, 255, size=(5, 16, 24, 3), dtype=np.uint8)
    path = tmp_path / "rgb.ome.tif"
    tifffile.imwrite(path, rgb, ome=True, photometric="rgb", metadata={"axes": "ZYXS"})
    # no PhysicalSize at all: read at 1 A per pixel, with a warning (issue 10)
    assert read_ometiff_image(path, None).volume.voxel_size == (1.0, 1.0, 1.0)
    assert "no PhysicalSizeX/Y/Z" in capsys.readouterr().err
    tifffile.imwrite(
        path,
        rgb,
        ome=True,
        photometric="rgb",
        metadata={"axes": "ZYXS", "PhysicalSizeX": 1, "PhysicalSizeY": 1, "PhysicalSizeZ": 1},
    )
    volume = read_ometiff_image(path, None).volume
    assert volume.channel_ids == ("0", "1", "2") and volume.memory_order == "F"
    assert volume.shape == (24, 16, 5) and volume.voxel_size == (1e4, 1e4, 1e4)
    region = (slice(3, 20), slice(2, 9), slice(1, 4))
    for c in range(3):
        expected = rgb[..., c].transpose(2, 1, 0)[region]
        np.testing.assert_array_equal(volume.frames[0][c][region], expected)
        copy = pickle.loads(pickle.dumps(volume.frames[0][c]))
        np.testing.assert_array_equal(copy[region], expected)


def _bad_cases(folder: Path) -> list[tuple[list[tuple[Path, str]], str, str]]:
    img_path, _, _, _ = _hipsc_files(folder)
    text = folder / "not_a_tiff.ome.tif"
    text.write_text("this is not a TIFF file\n")
    plain = folder / "plain.tif"
    tifffile.imwrite(plain, np.zeros((5, 8, 8), np.uint16), photometric="minisblack")
    truncated = folder / "truncated.ome.tif"
    truncated.write_bytes(img_path.read_bytes()[:-5000])
    beyond = folder / "beyond.ome.tif"  # OME-XML and IFDs intact, a strip past the end
    data = np.arange(4 * 30 * 40, dtype=np.uint16).reshape(4, 30, 40)
    tifffile.imwrite(beyond, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 1})
    with tifffile.TiffFile(beyond) as tif:
        tag = tif.pages[2].tags["StripOffsets"]
        assert tag.count == 1 and tag.dtype_name == "LONG" and tif.byteorder == "<"
        position = tag.valueoffset
    raw = bytearray(beyond.read_bytes())
    raw[position : position + 4] = np.array([len(raw) + 64], dtype="<u4").tobytes()
    beyond.write_bytes(bytes(raw))
    bad_unit = folder / "unit.ome.tif"
    tifffile.imwrite(
        bad_unit,
        np.zeros((2, 6, 5), np.uint8),
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 1, "PhysicalSizeXUnit": "pixel"},
    )
    multi = folder / "multi.ome.tif"  # its planes are said to be in another file
    xml = (
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint8" SizeX="5" SizeY="6" '
        'SizeZ="2" SizeC="1" SizeT="1"><TiffData IFD="0" PlaneCount="2">'
        '<UUID FileName="other.ome.tif">urn:uuid:0</UUID></TiffData></Pixels></Image></OME>'
    )
    tifffile.imwrite(multi, np.zeros((2, 6, 5), np.uint8), description=xml.encode(), metadata=None)
    extra = folder / "bad_extra.json"
    extra.write_text(
        json.dumps(
            {"volume": {"dataset_specific_data": {"ometiff": {"missing_dimensions": ["X"]}}}}
        )
    )
    same = folder / "same_ids.json"
    same.write_text(json.dumps({"volume": {"channel_ids_mapping": {"0": "a", "1": "a"}}}))
    img = (img_path, "ometiff_image")
    return [
        ([(text, "ometiff_image")], str(text), "not a readable TIFF"),
        ([(plain, "ometiff_image")], str(plain), "not an OME-TIFF"),
        ([(truncated, "ometiff_image")], str(truncated), "truncated"),
        ([(beyond, "ometiff_image")], str(beyond), "truncated"),
        ([(multi, "ometiff_image")], str(multi), "multi-file OME-TIFF"),
        ([(bad_unit, "ometiff_image")], str(bad_unit), "'pixel' cannot be converted"),
        ([img, (text, "ometiff_segmentation")], str(text), "not a readable TIFF"),
        ([(extra, "extra_data"), img], str(extra), "missing_dimensions"),
        ([(same, "extra_data"), img], str(same), "not unique"),
    ]


def test_bad_inputs_exit_2_with_one_line(run_cli, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for n, (specs, where, what) in enumerate(_bad_cases(inputs)):
        result = run_cli(*preprocess_args(specs, tmp_path, entry=f"bad-{n}"))
        assert result.exit_code == 2, (n, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {where}:"), (n, lines)
        assert what in lines[0], (n, lines)
        assert "Traceback" not in result.output
    assert tree_digest(tmp_path / "db") == {}
