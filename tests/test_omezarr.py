"""``omezarr`` inputs: OME-NGFF 0.4 (zarr v2) and 0.5 (zarr v3) images written with ome-zarr,
and the real 0.1/0.2/0.4 fixtures of ../shared, end to end through ``preprocess``."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import zarr
from conftest import preprocess_args, tree_digest
from ome_zarr.classes import OMEZarrImage, OMEZarrMultiscale
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image, write_labels
from ome_zarr_models.v05.coordinate_transformations import VectorScale, VectorTranslation

from pipeline.db import open_entry
from pipeline.db.layout import EntryLocation
from pipeline.db.validate import validate_entry
from pipeline.errors import InputFormatError
from pipeline.inputs.omezarr import read_omezarr

FORMATS = {"0.4": FormatV04(), "0.5": FormatV05()}
SMALL_LEVELS = ("--min-size-per-downsampling-lvl-mb", "0.0001")
WINDOW = {"min": 0, "max": 1000, "start": 0, "end": 1000}


def _group(path, version):
    return zarr.open_group(path, mode="w", zarr_format=FORMATS[version].zarr_format)


def _xyz(a):
    """numpy reference of our [x, y, z] from an NGFF (z, y, x) array."""
    return np.asarray(a).transpose(2, 1, 0)


def _labels(grid, table):
    """Level-1 category grid -> label values (each level-1 category holds one segment)."""
    lut = np.zeros(max(table) + 1, np.int64)
    for category, members in table.items():
        assert len(members) == 1
        lut[category] = members[0]
    return lut[grid]


def _run(run_cli, tmp_path, inputs, entry="img", extra=SMALL_LEVELS):
    result = run_cli(*preprocess_args(inputs, tmp_path, entry=entry, extra=extra))
    assert result.exit_code == 0, result.output
    location = EntryLocation(tmp_path / "db", "emdb", entry)
    assert validate_entry(location) == []
    return open_entry(tmp_path / "db", "emdb", entry)


def _check_statistics(entry, t, channel, reference):
    stats = entry.metadata["volumes"]["volume_sampling_info"]["descriptive_statistics"]
    st = stats["1"][str(t)][channel]
    ref = reference.astype(np.float64)
    assert st["mean"] == pytest.approx(ref.mean(), rel=1e-5, abs=1e-5 * ref.std())
    assert st["std"] == pytest.approx(ref.std(), rel=1e-5)
    assert st["min"] == ref.min() and st["max"] == ref.max()


def _check_every_level(entry, frames, channels):
    """volume_data/<level>/<t>/<c> and its statistics for every stored level, frame, channel."""
    stats = entry.metadata["volumes"]["volume_sampling_info"]["descriptive_statistics"]
    assert len(entry.volume_levels) >= 2
    for level in entry.volume_levels:
        for t in range(frames):
            for c in channels:
                stored = entry.read_volume(level, t, c).astype(np.float64)
                st = stats[str(level)][str(t)][c]
                assert st["min"] == stored.min() and st["max"] == stored.max()
                assert st["mean"] == pytest.approx(stored.mean(), rel=1e-6)


@pytest.fixture(params=["0.4", "0.5"])
def tczyx(request, tmp_path):
    """2 frames x 3 channels, 9 x 14 x 11 (z, y, x) uint16, micrometer, with two label images."""
    version = request.param
    rng = np.random.default_rng(7)
    data = rng.integers(0, 1000, size=(2, 3, 9, 14, 11), dtype=np.uint16)
    cells = np.zeros((2, 9, 14, 11), np.uint8)
    cells[0, 1:5, 2:9, 3:8] = 1
    cells[1, 4:9, 6:14, 0:6] = 2
    cells[1, 0, 0, 0] = 7
    nuclei = (rng.random((9, 14, 11)) > 0.7).astype(np.uint16) * 3
    path = tmp_path / f"image_{version}.zarr"
    group = _group(path, version)
    scale = {"t": 1.5, "c": 1.0, "z": 0.5, "y": 0.25, "x": 0.2}
    write_image(
        data,
        group,
        fmt=FORMATS[version],
        axes=["t", "c", "z", "y", "x"],
        scale=scale,
        axes_units={"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"},
        scale_factors=[2],
        method="nearest",
        omero={
            "channels": [
                {"label": "DAPI", "color": "0000FF", "window": WINDOW},
                {"label": "GFP", "color": "00FF00", "window": WINDOW},
                {"label": "mCherry", "color": "FF8000", "window": WINDOW},
            ]
        },
    )
    write_labels(
        cells,
        group,
        name="cells",
        scaler=None,
        fmt=FORMATS[version],
        axes=["t", "z", "y", "x"],
        scale={"t": 1.5, "z": 0.5, "y": 0.25, "x": 0.2},
        axes_units={"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"},
        scale_factors=[2],
        label_metadata={
            "colors": [
                {"label-value": 1, "rgba": [255, 0, 0, 255]},
                {"label-value": 2, "rgba": [0, 0, 255, 128]},
            ],
            "properties": [
                {"label-value": 1, "class": "nucleus", "area": 140},
                {"label-value": 2, "class": "vacuole"},
            ],
        },
    )
    # written like most tools do: no units, scale 1 (on the image's grid by shape)
    write_labels(
        nuclei,
        group,
        name="nuclei",
        scaler=None,
        fmt=FORMATS[version],
        axes=["z", "y", "x"],
        scale_factors=[],
    )
    return version, path, data, cells, nuclei


def test_tczyx_channels_frames_and_labels(run_cli, tmp_path, tczyx):
    _, path, data, cells, nuclei = tczyx
    before = tree_digest(path)
    with _run(run_cli, tmp_path, [(path, "omezarr")]) as entry:
        vol = entry.metadata["volumes"]
        assert vol["channel_ids"] == ["DAPI", "GFP", "mCherry"]
        assert vol["time_info"] == {"kind": "range", "start": 0, "end": 1, "units": "second"}
        box = vol["volume_sampling_info"]["boxes"]["1"]
        assert box["grid_dimensions"] == [11, 14, 9]
        assert box["voxel_size"] == [2000.0, 2500.0, 5000.0]  # 0.2, 0.25, 0.5 um in A
        assert box["origin"] == [0.0, 0.0, 0.0]
        units = vol["volume_sampling_info"]["source_axes_units"]
        assert units == {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}
        for t in range(2):
            for c, channel in enumerate(vol["channel_ids"]):
                np.testing.assert_array_equal(entry.read_volume(1, t, channel), _xyz(data[t, c]))
                _check_statistics(entry, t, channel, data[t, c])
        _check_every_level(entry, 2, vol["channel_ids"])
        channels = entry.annotations["volume_channels_annotations"]
        assert [(a["channel_id"], a["label"]) for a in channels] == [
            ("DAPI", "DAPI"),
            ("GFP", "GFP"),
            ("mCherry", "mCherry"),
        ]
        assert [a["color"] for a in channels] == [
            [0.0, 0.0, 1.0, 1.0],
            [0.0, 1.0, 0.0, 1.0],
            [1.0, 128 / 255, 0.0, 1.0],
        ]
        lattices = entry.metadata["segmentation_lattices"]
        assert lattices["segmentation_ids"] == ["cells", "nuclei"]
        assert lattices["time_info"]["cells"]["end"] == 1
        # a one-frame label over a two-frame image is stored at both frames (issue 10)
        assert lattices["time_info"]["nuclei"]["end"] == 1
        for t in range(2):
            grid, table = entry.read_lattice("cells", 1, t)
            np.testing.assert_array_equal(_labels(grid, table), _xyz(cells[t]))
            grid, table = entry.read_lattice("nuclei", 1, t)
            np.testing.assert_array_equal(_labels(grid, table), _xyz(nuclei))
        colours = {
            (a["segmentation_id"], a["segment_id"]): a["color"]
            for a in entry.annotations["segment_annotations"]
        }
        assert colours[("cells", 1)] == [1.0, 0.0, 0.0, 1.0]
        assert colours[("cells", 2)] == [0.0, 0.0, 1.0, 128 / 255]
        assert set(colours) == {("cells", 1), ("cells", 2), ("cells", 7), ("nuclei", 3)}
        names = {
            (d["target_id"]["segmentation_id"], d["target_id"]["segment_id"]): d
            for d in entry.annotations["descriptions"].values()
        }
        assert names[("cells", 1)]["name"] == "nucleus"
        assert names[("cells", 1)]["details"]["text"] == "class: nucleus; area: 140"
        assert names[("cells", 2)]["name"] == "vacuole"
        assert names[("cells", 7)]["name"] == "segment 7"
        # time lists the frames where a segment occurs (issue 10: the viewer crashes on a
        # segment annotated at a frame where it has no voxels)
        assert names[("cells", 1)]["time"] == [0]
        assert names[("cells", 2)]["time"] == [1] and names[("cells", 7)]["time"] == [1]
        assert names[("nuclei", 3)]["time"] == [0, 1]  # one frame, stored at both
        times = {
            (a["segmentation_id"], a["segment_id"]): a["time"]
            for a in entry.annotations["segment_annotations"]
        }
        assert times == {
            ("cells", 1): [0],
            ("cells", 2): [1],
            ("cells", 7): [1],
            ("nuclei", 3): [0, 1],
        }
    assert tree_digest(path) == before  # read-only


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_global_transformations_nanometres_and_channel_mapping(run_cli, tmp_path, version):
    data = np.random.default_rng(3).normal(size=(3, 6, 7, 5)).astype(np.float32)  # c, z, y, x
    image = OMEZarrImage(
        data=data,
        axes="czyx",
        scale={"c": 1.0, "z": 0.5, "y": 0.25, "x": 0.125},
        axes_units={"z": "nanometer", "y": "nanometer", "x": "nanometer"},
        name="img",
    )
    multiscale = OMEZarrMultiscale(
        image=image,
        scale_factors=[],
        method="nearest",
        coordinateTransformations=[
            VectorScale(type="scale", scale=[1, 2, 2, 2]),
            VectorTranslation(type="translation", translation=[0, 10, -20, 30]),
        ],
        channel_names=["DAPI", "GFP", "RFP"],
        channel_colors=["0000FF", "00FF00", "FF0000"],
    )
    path = tmp_path / "global.zarr"
    multiscale.to_ome_zarr(_group(path, version), version=version, overwrite=True)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"volume": {"channel_ids_mapping": {"0": "dna", "GFP": "gfp"}}}))
    with _run(run_cli, tmp_path, [(path, "omezarr"), (extra, "extra_data")]) as entry:
        vol = entry.metadata["volumes"]
        assert vol["channel_ids"] == ["dna", "gfp", "RFP"]
        box = vol["volume_sampling_info"]["boxes"]["1"]
        # scale (x, y, z) 0.125, 0.25, 0.5 nm times the global 2; translation 30, -20, 10 nm
        assert box["voxel_size"] == [2.5, 5.0, 10.0]
        assert box["origin"] == [300.0, -200.0, 100.0]
        assert vol["time_info"]["end"] == 0 and vol["time_info"]["units"] == "millisecond"
        for c, channel in enumerate(vol["channel_ids"]):
            np.testing.assert_array_equal(entry.read_volume(1, 0, channel), _xyz(data[c]))
            _check_statistics(entry, 0, channel, data[c])
        labels = [a["label"] for a in entry.annotations["volume_channels_annotations"]]
        assert labels == ["DAPI", "GFP", "RFP"]
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == []


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_two_dimensional_big_endian_image(run_cli, tmp_path, version):
    data = (np.arange(12 * 17, dtype=np.int16).reshape(12, 17) - 50).astype(">i2")
    path = tmp_path / "plane.zarr"
    write_image(
        data,
        _group(path, version),
        fmt=FORMATS[version],
        axes=["y", "x"],
        scale={"y": 0.3, "x": 0.57},
        axes_units={"y": "micrometer", "x": "micrometer"},
        scale_factors=[],
    )
    with _run(run_cli, tmp_path, [(path, "omezarr")]) as entry:
        box = entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
        assert box["grid_dimensions"] == [17, 12, 1]
        assert box["voxel_size"] == [5700.0, 3000.0, 5700.0]  # a plane is as thick as wide
        np.testing.assert_array_equal(entry.read_volume(1, 0, "0")[:, :, 0], data.T)
        assert entry.volume_array(1).dtype == np.dtype("<i2")  # stored native
        assert entry.metadata["volumes"]["channel_ids"] == ["0"]


def test_label_channels_ids_and_names_from_extra_data(run_cli, tmp_path):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 255, size=(5, 6, 7), dtype=np.uint8)
    labels = rng.integers(0, 3, size=(2, 5, 6, 7), dtype=np.uint16)  # c, z, y, x
    path = tmp_path / "multi.zarr"
    group = _group(path, "0.5")
    write_image(data, group, fmt=FormatV05(), axes="zyx", scale_factors=[])
    write_labels(
        labels, group, name="multi", scaler=None, fmt=FormatV05(), axes="czyx", scale_factors=[]
    )
    extra = tmp_path / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "segmentation": {
                    "segmentation_ids_mapping": {"multi_c1": "second"},
                    "segment_ids_to_segment_names_mapping": {"second": {"2": "two"}},
                }
            }
        )
    )
    with _run(run_cli, tmp_path, [(extra, "extra_data"), (path, "omezarr")]) as entry:
        lattices = entry.metadata["segmentation_lattices"]["segmentation_ids"]
        assert lattices == ["multi_c0", "second"]
        for lattice, c in zip(lattices, range(2), strict=True):
            np.testing.assert_array_equal(_labels(*entry.read_lattice(lattice, 1)), _xyz(labels[c]))
        names = {
            (d["target_id"]["segmentation_id"], d["target_id"]["segment_id"]): d["name"]
            for d in entry.annotations["descriptions"].values()
        }
        assert names == {
            ("multi_c0", 1): "segment 1",
            ("multi_c0", 2): "segment 2",
            ("second", 1): "segment 1",
            ("second", 2): "two",
        }


def test_bioformats2raw_layout_with_one_image(run_cli, tmp_path):
    data = np.random.default_rng(1).integers(0, 9, size=(3, 4, 5), dtype=np.uint8)
    path = tmp_path / "converted.zarr"
    root = _group(path, "0.4")
    root.attrs["bioformats2raw.layout"] = 3
    write_image(data, root.create_group("0"), fmt=FormatV04(), axes="zyx", scale_factors=[])
    result = run_cli(*preprocess_args([(path, "omezarr")], tmp_path, extra=("--dry-run",)))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "db").exists()
    with _run(run_cli, tmp_path, [(path, "omezarr")]) as entry:
        np.testing.assert_array_equal(entry.read_volume(1), _xyz(data))


def test_reader_is_lazy_and_reports_corrupt_chunks(tmp_path):
    data = np.arange(4 * 20 * 30, dtype=np.float32).reshape(4, 20, 30)
    path = tmp_path / "lazy.zarr"
    write_image(
        data,
        _group(path, "0.4"),
        fmt=FormatV04(),
        axes=["z", "y", "x"],
        scale_factors=[],
        storage_options={"chunks": (2, 10, 10)},
    )
    contents = read_omezarr(path, None, None)
    volume, lattices = contents.volume, contents.lattices
    view = volume.frames[0][0]
    assert view.shape == (30, 20, 4) and volume.memory_order == "F" and lattices == ()
    block = view[5:17, 3:11, 1:3]
    np.testing.assert_array_equal(block, data[1:3, 3:11, 5:17].transpose(2, 1, 0))
    copy = pickle.loads(pickle.dumps(view))  # what a dask.distributed worker receives
    np.testing.assert_array_equal(copy[0:4, 0:4, 0:1], data[0:1, 0:4, 0:4].transpose(2, 1, 0))
    chunks = sorted(
        p for p in (path / "s0").rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    assert len(chunks) == 2 * 2 * 3
    for chunk in chunks:
        chunk.write_bytes(b"not a blosc chunk")
    volume = read_omezarr(path, None, None).volume  # opening decodes no chunk
    with pytest.raises(InputFormatError, match="cannot read chunks"):
        volume.frames[0][0][0:4, 0:4, 0:1]


# --- real fixtures (../shared/test-data/real/ome_zarr) ------------------------------------


@pytest.fixture(scope="module")
def real(shared_data):
    folder = shared_data / "real" / "ome_zarr"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.mark.parametrize("name", ["ome-zarr-py_v0.1.zarr", "ome-zarr-py_v0.2.zarr"])
def test_real_implicit_tczyx(run_cli, tmp_path, real, name):
    path = real / name
    reference = zarr.open_array(path / "0", mode="r")[...]  # (t, c, z, y, x) = (1, 2, 1, 16, 16)
    with _run(run_cli, tmp_path, [(path, "omezarr")]) as entry:
        vol = entry.metadata["volumes"]
        assert vol["channel_ids"] == ["0", "1"]
        assert vol["volume_sampling_info"]["boxes"]["1"]["voxel_size"] == [1.0, 1.0, 1.0]
        for c in range(2):
            np.testing.assert_array_equal(entry.read_volume(1, 0, str(c)), _xyz(reference[0, c]))
            _check_statistics(entry, 0, str(c), reference[0, c])


def test_real_xyz_axes_and_oversized_chunks(run_cli, tmp_path, real):
    path = real / "czi_RUN1_tomogram.zarr"
    reference = zarr.open_array(path / "0", mode="r")[...]  # stored x, y, z
    with _run(run_cli, tmp_path, [(path, "omezarr")], extra=()) as entry:
        box = entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
        assert box["voxel_size"] == [14.08, 14.08, 14.08]  # no unit: taken as Angstrom
        np.testing.assert_array_equal(entry.read_volume(1), reference)
        info = entry.metadata["volumes"]["volume_sampling_info"]
        assert info["original_axis_order"] == [2, 1, 0]
        _check_statistics(entry, 0, "0", reference)


def test_real_hcs_image_with_integer_paths_and_bare_labels(run_cli, tmp_path, real):
    path = real / "ezzarr_plate_ones_mip.zarr" / "B" / "03" / "0"
    image = zarr.open_array(path / "0", mode="r")[...]  # c, z, y, x
    labels = zarr.open_array(path / "labels" / "organoids" / "0", mode="r")[...]  # z, y, x
    with _run(run_cli, tmp_path, [(path, "omezarr")], extra=()) as entry:
        vol = entry.metadata["volumes"]
        assert vol["channel_ids"] == ["some-label-1", "some-label-2"]
        box = vol["volume_sampling_info"]["boxes"]["1"]
        assert box["voxel_size"] == [1625.0, 1625.0, 10000.0]
        assert box["grid_dimensions"] == [1280, 1080, 1]
        for c, channel in enumerate(vol["channel_ids"]):
            np.testing.assert_array_equal(entry.read_volume(1, 0, channel), _xyz(image[c]))
            _check_statistics(entry, 0, channel, image[c])
        colours = [a["color"] for a in entry.annotations["volume_channels_annotations"]]
        assert colours == [[0.0, 1.0, 1.0, 1.0]] * 2
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == ["organoids"]
        np.testing.assert_array_equal(_labels(*entry.read_lattice("organoids", 1)), _xyz(labels))
        present = sorted(int(v) for v in np.unique(labels) if v)
        segs = entry.annotations["segment_annotations"]
        assert sorted(a["segment_id"] for a in segs) == present


def test_real_metadata_only_arrays(run_cli, tmp_path, real):
    path = real / "ngio_test_image_czyx_metaonly.zarr"
    with _run(run_cli, tmp_path, [(path, "omezarr")]) as entry:
        vol = entry.metadata["volumes"]
        assert vol["channel_ids"] == ["channel1", "channel2"]
        box = vol["volume_sampling_info"]["boxes"]["1"]
        assert box["voxel_size"] == [5000.0, 5000.0, 20000.0]
        assert box["grid_dimensions"] == [64, 64, 3]
        for channel in vol["channel_ids"]:  # no chunk files: the fill value 0
            assert not entry.read_volume(1, 0, channel).any()
            _check_statistics(entry, 0, channel, np.zeros(3))
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == ["label"]
        grid, table = entry.read_lattice("label", 1)
        assert grid.shape == (64, 64, 3) and table == {0: [0]}


# --- bad input ------------------------------------------------------------------------------


def _assert_one_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_real_plate_is_refused_with_its_first_image(run_cli, tmp_path, real):
    path = real / "ezzarr_plate_ones_mip.zarr"
    result = run_cli(*preprocess_args([(path, "omezarr")], tmp_path))
    _assert_one_error(result, str(path), "HCS plate", str(path / "B/03/0"))
    assert not (tmp_path / "db").exists()


def _unknown_unit(path):
    with pytest.warns(UserWarning, match="not a known spatial unit"):
        write_image(
            np.zeros((4, 5, 6), np.uint8),
            _group(path, "0.4"),
            fmt=FormatV04(),
            axes=["z", "y", "x"],
            axes_units={"z": "furlong", "y": "furlong", "x": "furlong"},
            scale_factors=[],
        )
    return "unknown length unit 'furlong'"


def _no_multiscales(path):
    group = _group(path, "0.5")
    group.attrs["ome"] = {"version": "0.5"}
    return "no 'multiscales'"


def _not_zarr(path):
    path.mkdir()
    (path / "readme.txt").write_text("hello")
    return "not a zarr group"


def _corrupt_chunk(path):
    write_image(
        np.ones((4, 5, 6), np.float32),
        _group(path, "0.5"),
        fmt=FormatV05(),
        axes=["z", "y", "x"],
        scale_factors=[],
    )
    for chunk in (path / "s0" / "c").rglob("*"):
        if chunk.is_file():
            chunk.write_bytes(b"\x00garbage")
    return "cannot read chunks"


def _label_off_grid(path):
    group = _group(path, "0.4")
    write_image(np.zeros((4, 5, 6), np.uint8), group, fmt=FormatV04(), axes="zyx", scale_factors=[])
    write_labels(
        np.zeros((4, 5, 7), np.uint8),
        group,
        name="wide",
        scaler=None,
        fmt=FormatV04(),
        axes="zyx",
        scale_factors=[],
    )
    return "does not match the volume grid"


def _label_other_voxels(path):
    group = _group(path, "0.5")
    units = {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
    scale = {"z": 1.0, "y": 0.5, "x": 0.5}
    write_image(
        np.zeros((4, 5, 6), np.uint8),
        group,
        fmt=FormatV05(),
        axes="zyx",
        scale=scale,
        axes_units=units,
        scale_factors=[],
    )
    write_labels(
        np.zeros((4, 5, 6), np.uint8),
        group,
        name="coarse",
        scaler=None,
        fmt=FormatV05(),
        axes="zyx",
        scale={**scale, "x": 1.0},
        axes_units=units,
        scale_factors=[],
    )
    return "does not match the volume's"


def _unknown_time_unit(path):
    with pytest.warns(UserWarning, match="not a known temporal unit"):
        write_image(
            np.zeros((2, 4, 5, 6), np.uint8),
            _group(path, "0.4"),
            fmt=FormatV04(),
            axes="tzyx",
            axes_units={"t": "fortnight"},
            scale_factors=[],
        )
    return "unknown time unit 'fortnight'"


@pytest.mark.parametrize(
    "make",
    [
        _unknown_unit,
        _unknown_time_unit,
        _no_multiscales,
        _not_zarr,
        _corrupt_chunk,
        _label_off_grid,
        _label_other_voxels,
    ],
)
def test_bad_input_is_one_line(run_cli, tmp_path, make):
    path = tmp_path / "bad.zarr"
    fragment = make(path)
    result = run_cli(*preprocess_args([(path, "omezarr")], tmp_path))
    _assert_one_error(result, str(path), fragment)
    assert not (tmp_path / "db").exists()
