"""``export --format ome-zarr`` (issue 14): entries built with the real CLI, exported, and read
back with ome-zarr-py's reader, zarr and ome-zarr-models; values compared with the entry's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.format import FormatV05
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from ome_zarr.writer import write_image, write_labels
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel
from ome_zarr_models.v05.labels import Labels

from pipeline.db import open_entry
from pipeline.db.layout import EntryLocation
from pipeline.export.labels import label_of_set
from tests.conftest import ROOT, assert_one_line_error, preprocess_args, tree_digest, write_mrc
from tests.test_distributed import scheduler  # noqa: F401  (the real cluster, for one test)

SMALL_LEVELS = ("--min-size-per-downsampling-lvl-mb", "0.001")


# --- building entries ----------------------------------------------------------------------


def _add(run_cli, tmp_path: Path, inputs, entry: str, extra=SMALL_LEVELS, db="db") -> Path:
    args = preprocess_args(inputs, tmp_path, entry=entry, extra=extra)
    args[args.index("--db-path") + 1] = str(tmp_path / db)
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return tmp_path / db


def _export(run_cli, db: Path, entry: str, out: Path, *extra: str):
    return run_cli(
        "export", "--db-path", db, "--source-db", "emdb", "--entry-id", entry,
        "--format", "ome-zarr", "--output", out, *extra,
    )  # fmt: skip


_HEADER = {"voxel_size": 2.0, "nxstart": -3, "nystart": 5, "nzstart": 2}


def _map_and_mask(folder: Path) -> tuple[list[tuple[Path, str]], np.ndarray, np.ndarray]:
    """A float32 map (z, y, x = 70, 130, 100; voxel 2 Å; origin from N*START) and a uint16
    mask on its grid with touching and overlapping segments 3, 7 and 12."""
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    data = rng.normal(size=(70, 130, 100)).astype(np.float32)
    z, y, x = np.indices(data.shape)
    labels = np.zeros(data.shape, np.uint16)
    labels[(x - 40) ** 2 + (y - 60) ** 2 + (z - 30) ** 2 < 25**2] = 3
    labels[10:40, 60:120, 50:95] = 7  # overlaps segment 3's ball: sets {3, 7} and {0, 3, 7}
    labels[50:, :20, :] = 12
    labels[0, 0, 0] = 12
    inputs = [
        (write_mrc(folder / "map.mrc", data, **_HEADER), "map"),
        (write_mrc(folder / "cells.mrc", labels, **_HEADER), "mask"),
    ]
    return inputs, data, labels


def _tczyx_omezarr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An OME-Zarr 0.5 image: 2 frames x 2 channels of 12 x 20 x 16 uint16 (micrometres), with a
    2-frame label image ``cells``."""
    rng = np.random.default_rng(9)
    data = rng.integers(0, 3000, size=(2, 2, 12, 20, 16), dtype=np.uint16)
    cells = np.zeros((2, 12, 20, 16), np.uint8)
    cells[0, 2:6, 3:11, 4:9] = 1
    cells[1, 5:12, 8:20, 0:7] = 2
    cells[1, 3:7, 3:8, 4:9] = 5
    group = zarr.open_group(path, mode="w", zarr_format=3)
    window = {"min": 0, "max": 3000, "start": 0, "end": 3000}
    units = {"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"}
    write_image(
        data, group, fmt=FormatV05(), axes=["t", "c", "z", "y", "x"],
        scale={"t": 1.0, "c": 1.0, "z": 0.5, "y": 0.25, "x": 0.25}, axes_units=units,
        scale_factors=[], method="nearest",
        omero={"channels": [{"label": "DAPI", "color": "0000FF", "window": window},
                            {"label": "GFP", "color": "00FF00", "window": window}]},
    )  # fmt: skip
    write_labels(
        cells, group, name="cells", scaler=None, fmt=FormatV05(), axes=["t", "z", "y", "x"],
        scale={"t": 1.0, "z": 0.5, "y": 0.25, "x": 0.25}, axes_units=units, scale_factors=[],
        label_metadata={"colors": [{"label-value": 1, "rgba": [255, 0, 0, 255]}],
                        "properties": [{"label-value": 1, "class": "nucleus"}]},
    )  # fmt: skip
    return data, cells


# --- an independent reading of the output --------------------------------------------------


def _hex(color) -> str:
    return "".join(f"{round(v * 255):02X}" for v in color[:3])


def _labels_reference(grid: np.ndarray, table: dict[int, list[int]]) -> np.ndarray:
    """docs/export.md's rule: the smallest non-zero segment of the set, else 0."""
    lut = {c: min((s for s in members if s != 0), default=0) for c, members in table.items()}
    keys = np.array(sorted(lut), dtype=np.int64)
    values = np.array([lut[k] for k in keys], dtype=np.int64)
    return values[np.searchsorted(keys, grid.astype(np.int64))]


def _transforms(datasets: list[dict], i: int) -> tuple[list[float], list[float]]:
    ct = datasets[i]["coordinateTransformations"]
    scale = next(t["scale"] for t in ct if t["type"] == "scale")
    shift = next(t["translation"] for t in ct if t["type"] == "translation")
    return scale, shift


def _frame_index(ndim: int, time: bool, t: int, c: int | None) -> tuple[int, ...]:
    return ((t,) if time else ()) + ((c,) if c is not None else ())


def check_export(out: Path, entry) -> None:
    """Everything issue 14 promises about ``out``, checked against the entry."""
    metadata, annotations = entry.metadata, entry.annotations
    volumes = metadata["volumes"]
    info = volumes["volume_sampling_info"]
    levels = entry.volume_levels
    channels = volumes["channel_ids"]
    frames = list(range(volumes["time_info"]["start"], volumes["time_info"]["end"] + 1))
    has_t, has_c = len(frames) > 1, len(channels) > 1

    # ome-zarr-py's reader: levels, axes, units, scales
    nodes = list(Reader(parse_url(str(out)))())
    image = nodes[0]
    assert image.load(Multiscales) is not None
    assert len(image.data) == len(levels)
    axes = image.metadata["axes"]
    assert [a["name"] for a in axes] == ["t"] * has_t + ["c"] * has_c + ["z", "y", "x"]
    assert [a.get("unit") for a in axes[-3:]] == ["angstrom"] * 3
    for i, level in enumerate(levels):
        box = info["boxes"][str(level)]
        scale, shift = _transforms(
            [
                {"coordinateTransformations": ct}
                for ct in image.metadata["coordinateTransformations"]
            ],
            i,
        )
        assert scale[-3:] == box["voxel_size"][::-1]
        assert shift[-3:] == box["origin"][::-1]
        array = np.asarray(image.data[i])
        assert array.shape[-3:] == tuple(box["grid_dimensions"][::-1])
        for ti, t in enumerate(frames):
            for ci, c in enumerate(channels):
                expected = entry.read_volume(level, t, c)
                got = array[_frame_index(array.ndim, has_t, ti, ci if has_c else None)]
                assert got.dtype == expected.dtype
                np.testing.assert_array_equal(got.transpose(2, 1, 0), expected)

    root = zarr.open_group(out, mode="r")
    Image.from_zarr(root)  # ome-zarr-models: valid NGFF 0.5 image metadata
    ome = root.attrs["ome"]
    assert ome["version"] == "0.5"
    by_channel = {a["channel_id"]: a for a in annotations["volume_channels_annotations"]}
    for c, channel in zip(channels, ome["omero"]["channels"], strict=True):
        assert channel["label"] == (by_channel[c]["label"] or c)
        assert channel["color"] == _hex(by_channel[c]["color"])
    for i in range(len(levels)):
        array = root[str(i)]
        assert array.metadata.zarr_format == 3
        assert array.shards is not None and array.metadata.dimension_names == tuple(
            a["name"] for a in axes
        )

    # labels: one label image per lattice, values by the documented rule at every level
    lattices = metadata["segmentation_lattices"]
    if not lattices["segmentation_ids"]:
        assert "labels" not in root
        return
    assert root["labels"].attrs["ome"]["labels"] == lattices["segmentation_ids"]
    Labels.from_zarr(root["labels"])
    for lattice in lattices["segmentation_ids"]:
        group = root["labels"][lattice]
        ImageLabel.from_zarr(group)
        sampling = lattices["segmentation_sampling_info"][lattice]
        lattice_levels = [
            lv["level"] for lv in sampling["spatial_downsampling_levels"] if lv["available"]
        ]
        time_info = lattices["time_info"][lattice]
        lattice_frames = list(range(time_info["start"], time_info["end"] + 1))
        label_nodes = list(Reader(parse_url(str(out / "labels" / lattice)))())
        node = next(n for n in label_nodes if n.load(Label) is not None)
        assert len(node.data) == len(lattice_levels)
        assert [a.get("unit") for a in node.metadata["axes"][-3:]] == ["angstrom"] * 3
        label_datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
        for i, level in enumerate(lattice_levels):
            box = info["boxes"][str(level)]  # on the volume's grid (DESIGN 7.2)
            scale, shift = _transforms(label_datasets, i)
            assert scale[-3:] == box["voxel_size"][::-1]
            assert shift[-3:] == box["origin"][::-1]
            array = np.asarray(node.data[i])
            assert array.dtype.kind == "u"
            for ti, t in enumerate(lattice_frames):
                grid, table = entry.read_lattice(lattice, level, t)
                got = array[(ti,) if len(lattice_frames) > 1 else ()]
                np.testing.assert_array_equal(
                    got.transpose(2, 1, 0), _labels_reference(grid, table)
                )
                if level == 1:  # every set has one member: the label is the segment id
                    assert all(len(m) == 1 for m in table.values())
        segments = [
            a for a in annotations["segment_annotations"]
            if a["segment_kind"] == "lattice" and a["segmentation_id"] == lattice
        ]  # fmt: skip
        described = {
            d["target_id"]["segment_id"]: d
            for d in annotations["descriptions"].values()
            if d["target_kind"] == "lattice" and d["target_id"]["segmentation_id"] == lattice
        }
        names = {sid: d["name"] for sid, d in described.items()}
        image_label = group.attrs["ome"]["image-label"]
        colors = {c["label-value"]: c["rgba"] for c in image_label["colors"]}
        props = {p["label-value"]: p for p in image_label["properties"]}
        for segment in segments:
            sid = segment["segment_id"]
            assert colors[sid] == [round(v * 255) for v in segment["color"]]
            assert props[sid]["color"] == segment["color"]
            assert props[sid].get("name") == names.get(sid)
            references = (described.get(sid) or {}).get("external_references") or []
            assert [(r["resource"], r["accession"]) for r in props[sid].get("references", [])] == [
                (r["resource"], r["accession"]) for r in references
            ]


# --- the label rule -------------------------------------------------------------------------


def test_label_of_a_set_is_its_smallest_non_zero_segment():
    assert label_of_set([0]) == 0
    assert label_of_set([5]) == 5
    assert label_of_set([0, 9, 4]) == 4
    assert label_of_set([12, 7]) == 7


# --- generated entries -----------------------------------------------------------------------


def test_map_mask_quantized_levels_many_shards(run_cli, tmp_path):
    inputs, data, labels = _map_and_mask(tmp_path / "in")
    extra = (*SMALL_LEVELS, "--quantize-dtype-str", "u1", "--quantize-downsampling-levels", "2")
    db = _add(run_cli, tmp_path, inputs, "mm", extra=extra)
    out = tmp_path / "out" / "mm.ome.zarr"
    # a small memory budget: 64^3 shards, so every level-1 array has several, ragged at the edges
    result = _export(run_cli, db, "mm", out, "--max-memory", "40MiB")
    assert result.exit_code == 0, result.output
    assert "levels 1, 2, 4" in result.stdout and "lattices cells" in result.stdout
    assert "export        volume level 1" in result.stdout  # progress as in preprocess
    with open_entry(db, "emdb", "mm") as entry:
        check_export(out, entry)
        # the quantized level is exported dequantized, as float32
        assert "quantization_data_dict" in dict(entry.volume_array(2).attrs)
    root = zarr.open_group(out, mode="r")
    assert root["1"].dtype == np.float32
    assert root["0"].shards == (64, 64, 64) and root["0"].chunks == (64, 64, 64)
    # level 1 is the input itself, labels are the mask's values
    np.testing.assert_array_equal(root["0"][...], data)
    np.testing.assert_array_equal(root["labels/cells/0"][...], labels)
    # level 2 holds voxels whose window meets two segments: the smaller id wins
    assert 3 in np.unique(root["labels/cells/1"][...])
    assert [p.name for p in out.parent.iterdir()] == ["mm.ome.zarr"]  # no temporary folder left
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nor scratch files inside


def test_entry_without_level_1_starts_at_level_2(run_cli, tmp_path):
    inputs, _, _ = _map_and_mask(tmp_path / "in")
    db = _add(run_cli, tmp_path, inputs, "r", extra=(*SMALL_LEVELS, "--remove-original-resolution"))
    out = tmp_path / "r.ome.zarr"
    assert _export(run_cli, db, "r", out).exit_code == 0
    with open_entry(db, "emdb", "r") as entry:
        levels = entry.volume_levels
        check_export(out, entry)
    assert levels[0] == 2
    multiscale = zarr.open_group(out, mode="r").attrs["ome"]["multiscales"][0]
    assert multiscale["metadata"]["downsampling_ratios"] == levels
    assert zarr.open_group(out, mode="r")["0"].shape == (35, 65, 50)


def test_coarse_levels_sit_where_the_entry_puts_them(run_cli, tmp_path):
    """No half-voxel shift: a point at level-1 voxel (z, y, x) = (8, 16, 24) is, at every
    level, where NGFF's scale and translation place it (the pyramid keeps sample 0, DESIGN
    7.1). Block-averaging writers shift level r by (r - 1) / 2 voxels; that would fail here."""
    data = np.zeros((40, 40, 40), np.float32)
    data[8, 16, 24] = 100.0
    header = {"voxel_size": 2.5, "nxstart": -3, "nystart": 5, "nzstart": 2}
    (tmp_path / "in").mkdir()
    path = write_mrc(tmp_path / "in" / "point.mrc", data, **header)
    db = _add(run_cli, tmp_path, [(path, "map")], "p")
    out = tmp_path / "p.ome.zarr"
    assert _export(run_cli, db, "p", out).exit_code == 0
    root = zarr.open_group(out, mode="r")
    datasets = root.attrs["ome"]["multiscales"][0]["datasets"]
    ratios = root.attrs["ome"]["multiscales"][0]["metadata"]["downsampling_ratios"]
    assert ratios[:3] == [1, 2, 4]
    # the point in Å, z, y, x: origin = start * voxel, centre of voxel (8, 16, 24)
    expected = np.array([(2 + 8) * 2.5, (5 + 16) * 2.5, (-3 + 24) * 2.5])
    for i, ratio in enumerate(ratios):
        if 8 % ratio:
            break
        array = root[str(i)][...]
        index = np.array(np.unravel_index(np.argmax(array), array.shape))
        scale, shift = _transforms(datasets, i)
        np.testing.assert_allclose(index * np.array(scale) + np.array(shift), expected)
        assert scale == [2.5 * ratio] * 3


def test_time_and_channels_from_omezarr(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    data, cells = _tczyx_omezarr(tmp_path / "in" / "img.ome.zarr")
    db = _add(run_cli, tmp_path, [(tmp_path / "in" / "img.ome.zarr", "omezarr")], "tc")
    out = tmp_path / "tc.ome.zarr"
    result = _export(run_cli, db, "tc", out, "--compressor", "zstd")
    assert result.exit_code == 0, result.output
    with open_entry(db, "emdb", "tc") as entry:
        check_export(out, entry)
    root = zarr.open_group(out, mode="r")
    assert root["0"].metadata.to_dict()["codecs"][0]["configuration"]["codecs"][1] == {
        "name": "blosc",
        "configuration": {
            "typesize": 2, "cname": "zstd", "clevel": 5, "shuffle": "shuffle", "blocksize": 0
        },
    }  # fmt: skip
    assert [c["label"] for c in root.attrs["ome"]["omero"]["channels"]] == ["DAPI", "GFP"]
    assert [c["color"] for c in root.attrs["ome"]["omero"]["channels"]] == ["0000FF", "00FF00"]
    # micrometres became Angstrom in the entry, and stay Angstrom in the export
    ds = root.attrs["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert ds[0]["scale"] == [1.0, 1.0, 5000.0, 2500.0, 2500.0]
    np.testing.assert_array_equal(root["0"][...], data)
    np.testing.assert_array_equal(root["labels/cells/0"][...], cells)


def test_nifti_time_series(run_cli, tmp_path):
    """nibabel's real 4-D example (int16, 2 frames, mm voxels): a t axis in the entry's unit."""
    from nibabel.testing import data_path

    path = Path(data_path) / "example4d.nii.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    db = _add(run_cli, tmp_path, [(path, "nii_volume")], "n4")
    out = tmp_path / "n4.ome.zarr"
    assert _export(run_cli, db, "n4", out).exit_code == 0
    with open_entry(db, "emdb", "n4") as entry:
        check_export(out, entry)
        units = entry.metadata["volumes"]["time_info"]["units"]
    root = zarr.open_group(out, mode="r")
    assert root["0"].shape == (2, 24, 96, 128) and root["0"].dtype == np.int16
    assert root.attrs["ome"]["multiscales"][0]["axes"][0] == {
        "name": "t", "type": "time", "unit": units
    }  # fmt: skip


def test_round_trip_through_preprocess_omezarr(run_cli, tmp_path):
    """export -> preprocess --input-kind omezarr: the same volume and lattice at every level."""
    inputs, _, _ = _map_and_mask(tmp_path / "in")
    db = _add(run_cli, tmp_path, inputs, "a")
    out = tmp_path / "a.ome.zarr"
    assert _export(run_cli, db, "a", out).exit_code == 0
    db2 = _add(run_cli, tmp_path, [(out, "omezarr")], "b", db="db2")
    with open_entry(db, "emdb", "a") as a, open_entry(db2, "emdb", "b") as b:
        assert a.volume_levels == b.volume_levels
        boxes_a = a.metadata["volumes"]["volume_sampling_info"]["boxes"]
        boxes_b = b.metadata["volumes"]["volume_sampling_info"]["boxes"]
        for level in a.volume_levels:
            box_a, box_b = boxes_a[str(level)], boxes_b[str(level)]
            assert box_a["grid_dimensions"] == box_b["grid_dimensions"]
            np.testing.assert_allclose(box_a["voxel_size"], box_b["voxel_size"])
            np.testing.assert_allclose(box_a["origin"], box_b["origin"])
            np.testing.assert_array_equal(a.read_volume(level), b.read_volume(level))
        assert b.metadata["segmentation_lattices"]["segmentation_ids"] == ["cells"]
        for level in a.volume_levels:
            grid_a, table_a = a.read_lattice("cells", level)
            grid_b, table_b = b.read_lattice("cells", level)
            # category ids may differ; the set of segments of every voxel may not
            sets_a = {c: frozenset(m) for c, m in table_a.items()}
            sets_b = {c: frozenset(m) for c, m in table_b.items()}
            pairs = set(zip(grid_a.ravel().tolist(), grid_b.ravel().tolist(), strict=True))
            assert all(sets_a[x] == sets_b[y] for x, y in pairs)
            assert len({x for x, _ in pairs}) == len(pairs) == len({y for _, y in pairs})


def test_round_trip_with_time_and_channels(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    _tczyx_omezarr(tmp_path / "in" / "img.ome.zarr")
    db = _add(run_cli, tmp_path, [(tmp_path / "in" / "img.ome.zarr", "omezarr")], "tc")
    out = tmp_path / "tc.ome.zarr"
    assert _export(run_cli, db, "tc", out).exit_code == 0
    db2 = _add(run_cli, tmp_path, [(out, "omezarr")], "tc2", db="db2")
    with open_entry(db, "emdb", "tc") as a, open_entry(db2, "emdb", "tc2") as b:
        assert b.metadata["volumes"]["channel_ids"] == ["DAPI", "GFP"]
        assert a.metadata["volumes"]["channel_ids"] == ["DAPI", "GFP"]
        for level in a.volume_levels:
            for t in (0, 1):
                for c in ("DAPI", "GFP"):
                    np.testing.assert_array_equal(
                        a.read_volume(level, t, c), b.read_volume(level, t, c)
                    )
                grid_a, table_a = a.read_lattice("cells", level, t)
                grid_b, table_b = b.read_lattice("cells", level, t)
                np.testing.assert_array_equal(
                    _labels_reference(grid_a, table_a), _labels_reference(grid_b, table_b)
                )


def test_mesh_sets_become_ply_files_with_an_index(run_cli, tmp_path):
    import trimesh

    from tests.test_meshes import TRANSFORM, _two_segments, write_mesh_hff

    (tmp_path / "in").mkdir()
    data = np.random.default_rng(3).random((20, 24, 28), dtype=np.float32)
    volume = write_mrc(tmp_path / "in" / "volume.map", data, voxel_size=2.0)
    sff = write_mesh_hff(tmp_path / "in" / "cell.hff", _two_segments(), transform=TRANSFORM)
    db = _add(run_cli, tmp_path, [(volume, "map"), (sff, "sff")], "me")
    out = tmp_path / "me.ome.zarr"
    result = _export(run_cli, db, "me", out)
    assert result.exit_code == 0, result.output
    assert "2 mesh files" in result.stdout
    index = json.loads((out / "meshes" / "index.json").read_text())
    assert index["units"] == "angstrom"
    (mesh_set,) = index["mesh_sets"]
    assert mesh_set["segmentation_id"] == "cell"
    items = {item["segment_id"]: item for item in mesh_set["frames"]["0"]}
    assert set(items) == {7, 9}
    assert items[7]["name"] == "sphere" and items[9]["name"] == "box"
    with open_entry(db, "emdb", "me") as entry:
        check_export(out, entry)
        for segment, mesh_id in ((7, 3), (9, 0)):
            base = f"mesh_segmentation_data/cell/0/{segment}/1/{mesh_id}"
            vertices = np.asarray(entry.root[f"{base}/vertices"][...])
            triangles = np.asarray(entry.root[f"{base}/triangles"][...])
            mesh = trimesh.load(out / "meshes" / items[segment]["file"], process=False)
            np.testing.assert_array_equal(np.asarray(mesh.vertices, np.float32), vertices)
            np.testing.assert_array_equal(mesh.faces, triangles)
            assert items[segment]["triangles"] == len(triangles)
        colour = np.round(np.array(_two_segments()[9]["colour"]) * 255)
        mesh = trimesh.load(out / "meshes" / items[9]["file"], process=False)
        np.testing.assert_array_equal(mesh.visual.vertex_colors[0], colour)


# --- real samples -----------------------------------------------------------------------------


def test_real_emd_1832_with_sff_and_geometric(run_cli, tmp_path, shared_data, emd1832_map):
    hff = shared_data / "preprocessor/sample_segmentations/emdb_sff/emd_1832.hff"
    geometric = (
        shared_data / "preprocessor/sample_segmentations/geometric_segmentations"
        / "geometric_segmentation_1.json"
    )  # fmt: skip
    if not hff.is_file() or not geometric.is_file():
        pytest.skip(f"{hff} or {geometric} not found")
    inputs = [(emd1832_map, "map"), (hff, "sff"), (geometric, "geometric_segmentation")]
    db = _add(run_cli, tmp_path, inputs, "emd-1832")
    out = tmp_path / "emd-1832.ome.zarr"
    result = _export(run_cli, db, "emd-1832", out)
    assert result.exit_code == 0, result.output
    with open_entry(db, "emdb", "emd-1832") as entry:
        check_export(out, entry)
        geometric_id = entry.metadata["geometric_segmentation"]["segmentation_ids"][0]
        stored = json.loads((db / "emdb" / "emd-1832" / "geometric_segmentation.json").read_text())
    sidecar = json.loads((out / "geometric" / f"{geometric_id}.json").read_text())
    assert sidecar["primitives"] == stored[0]["primitives"]
    assert sidecar["units"] == "angstrom"
    assert {s["segment_id"] for s in sidecar["segments"]} == {
        p["id"] for p in stored[0]["primitives"]["0"]["shape_primitive_list"]
    }
    # segment names and references of the SFF travel as image-label properties
    props = zarr.open_group(out, mode="r")["labels/0"].attrs["ome"]["image-label"]["properties"]
    by_value = {p["label-value"]: p for p in props}
    assert by_value[85]["name"] == "DNA replication licensing factor MCM2"
    assert any(r["resource"] == "go" for r in by_value[85]["references"])


# --- existing output, overwrite, failures --------------------------------------------------


@pytest.fixture
def small_entry(run_cli, tmp_path) -> Path:
    (tmp_path / "in").mkdir()
    data = np.random.default_rng(1).normal(size=(10, 12, 14)).astype(np.float32)
    return _add(run_cli, tmp_path, [(write_mrc(tmp_path / "in" / "m.mrc", data), "map")], "s")


def test_existing_output_is_an_error_unless_overwrite(run_cli, tmp_path, small_entry):
    out = tmp_path / "s.ome.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _export(run_cli, small_entry, "s", out)
    assert_one_line_error(result, str(out), "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    # --overwrite replaces only an earlier export or an empty folder, never other things
    result = _export(run_cli, small_entry, "s", out, "--overwrite")
    assert_one_line_error(result, str(out), "replaces only an earlier export")
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    for _ in range(2):  # into the empty folder, then over the earlier export
        result = _export(run_cli, small_entry, "s", out, "--overwrite")
        assert result.exit_code == 0, result.output
        with open_entry(small_entry, "emdb", "s") as entry:
            check_export(out, entry)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # a file is not replaced, nor the working directory given as `--output .`
    afile = tmp_path / "f.ome.zarr"
    afile.write_text("mine")
    result = _export(run_cli, small_entry, "s", afile, "--overwrite")
    assert_one_line_error(result, str(afile), "replaces only an earlier export")
    assert afile.read_text() == "mine"
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "cli", "export", "--db-path", str(small_entry), "--source-db",
         "emdb", "--entry-id", "s", "--output", ".", "--overwrite"],
        cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "replaces only an earlier export" in result.stderr
    assert [p.name for p in work.iterdir()] == ["sub"]
    # a file where a parent folder should be
    result = _export(run_cli, small_entry, "s", afile / "x.ome.zarr")
    assert_one_line_error(result, str(afile), "a part of its path is a file")


def _remove_path(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def test_bad_states_are_one_line_errors(run_cli, tmp_path, small_entry):
    result = _export(run_cli, small_entry, "nope", tmp_path / "x.ome.zarr")
    assert_one_line_error(result, "nope", "does not exist")
    for inside in (small_entry / "emdb" / "s" / "x.ome.zarr", small_entry / "emdb" / "x.ome.zarr"):
        result = _export(run_cli, small_entry, "s", inside)
        assert_one_line_error(result, "--output must lie outside the database folder")
        assert not inside.exists()
    result = _export(run_cli, small_entry, "s", tmp_path, "--overwrite")
    assert_one_line_error(result, "--output must lie outside the database folder")
    # a symbolic link does not smuggle the output into the database; one elsewhere is fine
    (tmp_path / "into-db").symlink_to(small_entry / "emdb")
    result = _export(run_cli, small_entry, "s", tmp_path / "into-db" / "x.ome.zarr")
    assert_one_line_error(result, "--output must lie outside the database folder")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "to-elsewhere").symlink_to(tmp_path / "elsewhere")
    result = _export(run_cli, small_entry, "s", tmp_path / "to-elsewhere" / "x.ome.zarr")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["x.ome.zarr"]
    for name in ("into-db", "to-elsewhere", "elsewhere"):
        _remove_path(tmp_path / name)
    result = run_cli(
        "export", "--db-path", small_entry, "--source-db", "emdb", "--entry-id", "s",
        "--format", "tiff", "--output", tmp_path / "x",
    )  # fmt: skip
    assert_one_line_error(result, "--format")
    result = _export(run_cli, small_entry, "s", tmp_path / "x.ome.zarr", "--max-memory", "1MiB")
    assert_one_line_error(result, "--max-memory 1 MiB is below the least")
    assert not (tmp_path / "x.ome.zarr").exists() and not (tmp_path / "x").exists()
    # an entry whose volume was removed has no image to export
    args = ("--db-path", small_entry, "--source-db", "emdb", "--entry-id", "s")
    assert run_cli("remove-volume", *args).exit_code == 0
    result = _export(run_cli, small_entry, "s", tmp_path / "x.ome.zarr")
    assert_one_line_error(result, "emdb/s", "no stored volume level")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db", "in"]


def test_damaged_entry_fails_without_leaving_a_temporary_folder(run_cli, tmp_path, small_entry):
    archive = small_entry / "emdb" / "s" / "data.zip"
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("volume_data/1/0/0/0.0.0")
        offset = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw = bytearray(archive.read_bytes())
    raw[offset : offset + 16] = b"\xff" * 16  # the chunk's blosc header
    archive.write_bytes(bytes(raw))
    before = tree_digest(small_entry)
    # the folders the export creates for its output go again too
    result = _export(run_cli, small_entry, "s", tmp_path / "new" / "deeper" / "s.ome.zarr")
    assert_one_line_error(result, "data.zip", "cannot read channel 0 level 1")
    assert not (tmp_path / "new").exists()
    out = tmp_path / "out" / "s.ome.zarr"
    (tmp_path / "out").mkdir()
    result = _export(run_cli, small_entry, "s", out)
    assert_one_line_error(result, "data.zip", "cannot read channel 0 level 1")
    assert not out.exists()
    assert list((tmp_path / "out").iterdir()) == []  # the temporary folder was removed
    assert tree_digest(small_entry) == before
    # a failed --overwrite leaves the previous output as it was
    zarr.open_group(out, mode="w", zarr_format=3)  # an earlier export, as far as it matters
    (out / "previous.txt").write_text("old")
    result = _export(run_cli, small_entry, "s", out, "--overwrite")
    assert_one_line_error(result, "data.zip")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["s.ome.zarr"]
    assert (out / "previous.txt").read_text() == "old"


# --- dask.distributed and memory -------------------------------------------------------------


@pytest.mark.slow
def test_distributed_export_equals_threaded(run_cli, tmp_path, scheduler):  # noqa: F811
    inputs, _, _ = _map_and_mask(tmp_path / "in")
    db = _add(run_cli, tmp_path, inputs, "d")
    threaded = tmp_path / "threaded.ome.zarr"
    cluster = tmp_path / "cluster.ome.zarr"
    assert _export(run_cli, db, "d", threaded, "--max-memory", "40MiB").exit_code == 0
    result = _export(run_cli, db, "d", cluster, "--scheduler", scheduler, "--max-memory", "40MiB")
    assert result.exit_code == 0, result.output
    a, b = zarr.open_group(threaded, mode="r"), zarr.open_group(cluster, mode="r")
    assert dict(a.attrs) == dict(b.attrs)
    for name in ("0", "1", "2", "labels/cells/0", "labels/cells/1", "labels/cells/2"):
        np.testing.assert_array_equal(a[name][...], b[name][...])
    assert not (cluster / ".parts").exists()


def _peak_rss_mib(args: list[str]) -> float:
    """Peak RSS (VmHWM: ru_maxrss would carry the parent's peak over exec) of a CLI run in a
    fresh process."""
    code = (
        "import atexit, sys\n"
        "def peak():\n"
        "    hwm = [s for s in open('/proc/self/status') if s.startswith('VmHWM')][0]\n"
        "    print('PEAK', hwm.split()[1], file=sys.stderr)\n"
        "atexit.register(peak)\n"
        "from cli.main import main\n"
        "sys.argv = ['cellstar-preprocessor', *sys.argv[1:]]\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    line = next(s for s in proc.stderr.splitlines() if s.startswith("PEAK"))
    return int(line.split()[1]) / 1024


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_does_not_grow_with_the_entry(run_cli, tmp_path):
    """A 256 MiB level 1 exports within a small fixed overhead over a 1 MiB one."""
    (tmp_path / "in").mkdir()
    big = np.random.default_rng(2).normal(size=(256, 512, 512)).astype(np.float32)
    db = _add(run_cli, tmp_path, [(write_mrc(tmp_path / "in" / "big.mrc", big), "map")], "big",
              extra=())  # fmt: skip
    del big
    small = np.ones((64, 64, 64), np.float32)
    _add(run_cli, tmp_path, [(write_mrc(tmp_path / "in" / "small.mrc", small), "map")], "small",
         extra=())  # fmt: skip

    def args(entry: str) -> list[str]:
        out = str(tmp_path / f"{entry}.ome.zarr")
        return ["export", "--db-path", str(db), "--source-db", "emdb", "--entry-id", entry,
                "--output", out, "--max-memory", "64MiB"]  # fmt: skip

    small_peak = _peak_rss_mib(args("small"))
    big_peak = _peak_rss_mib(args("big"))
    print(f"peak RSS: small entry {small_peak:.0f} MiB, 256 MiB entry {big_peak:.0f} MiB")
    assert big_peak - small_peak < 96, (small_peak, big_peak)
    out = zarr.open_group(tmp_path / "big.ome.zarr", mode="r")
    assert out["0"].shape == (256, 512, 512)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_export_leaves_nothing(run_cli, tmp_path, sig, status):
    """Ctrl-C or SIGTERM once shards are being written: a one-line error, no output, no
    temporary folder, and an earlier export at the output's place kept as it was. (The map is
    large enough that the export runs for seconds after its first shard, so that the signal
    lands during the export even on a loaded machine.)"""
    (tmp_path / "in").mkdir()
    data = np.random.default_rng(3).normal(size=(256, 256, 512)).astype(np.float32)
    db = _add(run_cli, tmp_path, [(write_mrc(tmp_path / "in" / "m.mrc", data), "map")], "m",
              extra=())  # fmt: skip
    del data
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / "m.ome.zarr"
    zarr.open_group(out, mode="w", zarr_format=3).attrs["mine"] = 1  # an earlier export
    args = [sys.executable, "-m", "cli", "export", "--db-path", str(db), "--source-db", "emdb",
            "--entry-id", "m", "--output", str(out), "--overwrite",
            "--max-memory", "16MiB"]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(folder.glob(".m.ome.zarr.partial-*/0/c/*")):  # shards being written
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert [p.name for p in folder.iterdir()] == ["m.ome.zarr"]
    assert zarr.open_group(out, mode="r").attrs["mine"] == 1


def test_the_command_line_does_not_import_the_export_or_trimesh():
    code = (
        "import sys, cli.main\n"
        "print(sorted(m for m in ('pipeline.export', 'trimesh', 'ome_zarr_models') "
        "if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _volume_job(location: EntryLocation, target: Path, stamp: tuple[int, int]):
    """The job copying level 1 of ``small_entry``'s channel 0 (14 x 12 x 10) into ``target``."""
    from pipeline.export.blocks import ArraySpec, ExportJob

    return ExportJob(
        source=ArraySpec((14, 12, 10), np.dtype(np.float32)), location=location, level=1, time=0,
        channel="0", lattice=None, lut=None, target=str(target), index=(), dtype="float32",
        stamp=stamp,
    )  # fmt: skip


def test_an_entry_replaced_during_the_export_is_an_error(tmp_path, small_entry):
    """A block task that finds another data.zip than the one the export started with (an
    ``extend`` committed meanwhile) fails instead of mixing two versions of the entry."""
    from pipeline.errors import InputFormatError
    from pipeline.export.blocks import data_stamp, export_block

    location = EntryLocation(small_entry, "emdb", "s")
    ino, mtime = data_stamp(location)
    target = tmp_path / "out" / "0"
    zarr.create_array(target, shape=(10, 12, 14), dtype="float32", zarr_format=3)
    job = _volume_job(location, target, (ino, mtime - 1))
    with pytest.raises(InputFormatError, match="the entry changed during the export"):
        export_block(job, (0, 0, 0), (14, 12, 10), 0)


def test_stopping_waits_for_other_threads_tasks_only(tmp_path):
    """A signal's exception strikes an export task running in the main thread wherever it
    is, also between the task's count and its ``try``: stopping the export (in that thread)
    does not wait for that count, only for the tasks other threads still run."""
    from pipeline.export import blocks

    def count(n):
        with blocks._CHANGED:
            blocks._RUNNING[threading.get_ident()] += n
            blocks._CHANGED.notify_all()

    count(1)  # left behind by a task of this thread that an exception cut short
    started = time.monotonic()
    blocks.stop_writing(tmp_path / "a", timeout=30)
    assert time.monotonic() - started < 10
    release, counted = threading.Event(), threading.Event()

    def task():  # a task of another thread, running until released
        count(1)
        counted.set()
        release.wait(30)
        count(-1)

    worker = threading.Thread(target=task)
    worker.start()
    counted.wait(30)
    threading.Timer(0.5, release.set).start()
    started = time.monotonic()
    blocks.stop_writing(tmp_path / "b", timeout=30)
    waited = time.monotonic() - started
    worker.join()
    assert 0.4 < waited < 10, waited
    assert not +blocks._RUNNING


def test_no_block_is_written_once_an_export_is_stopped(tmp_path, small_entry):
    """After a failure or an interrupt the client stops its export's tasks before removing the
    temporary folder: a task that starts then writes nothing (nor recreates a removed one)."""
    from pipeline.export.blocks import (
        close_entries,
        data_stamp,
        export_block,
        stop_writing,
    )  # fmt: skip

    location = EntryLocation(small_entry, "emdb", "s")
    jobs = {}
    for name in ("kept", "stopped", "removed"):
        target = tmp_path / name / "0"
        zarr.create_array(target, shape=(10, 12, 14), dtype="float32", zarr_format=3)
        jobs[name] = _volume_job(location, target, data_stamp(location))
    stop_writing(tmp_path / "stopped")
    shutil.rmtree(tmp_path / "removed")
    try:
        for job in jobs.values():
            export_block(job, (0, 0, 0), (14, 12, 10), 0)
    finally:
        close_entries()
    with open_entry(small_entry, "emdb", "s") as entry:
        expected = entry.read_volume(1, 0, "0").transpose(2, 1, 0)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "kept" / "0")[...], expected)
    assert not list((tmp_path / "stopped" / "0").rglob("c/*"))  # no chunk written
    assert not (tmp_path / "removed").exists()
