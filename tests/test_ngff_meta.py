"""NGFF metadata of OME-Zarr inputs (issue 13): validated with ome-zarr-models, NGFF 0.1-0.3
through the shim, bad metadata as one line naming the attributes file and the JSON path.

Images here are written with zarr-python and hand-written attributes, as the NGFF
specifications give them (ome-zarr writes only 0.4 and 0.5)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from conftest import assert_one_line_error, preprocess_args

from pipeline.inputs.ngff_meta import as_v04
from pipeline.inputs.omezarr import omezarr_facts, read_omezarr

ROOT = Path(__file__).resolve().parents[1]
WINDOW = {"min": 0, "max": 255, "start": 0, "end": 255}


def _scale(*values: float) -> list[dict[str, Any]]:
    return [{"type": "scale", "scale": list(values)}]


def _multiscale_04(unit: str | None = "micrometer") -> dict[str, Any]:
    """z, y, x with 0.5 x 0.25 x 0.2 um voxels and a translation."""
    space = {"type": "space", **({"unit": unit} if unit else {})}
    return {
        "version": "0.4",
        "axes": [{"name": n, **space} for n in ("z", "y", "x")],
        "datasets": [
            {
                "path": "0",
                "coordinateTransformations": [
                    *_scale(0.5, 0.25, 0.2),
                    {"type": "translation", "translation": [1.0, 2.0, 3.0]},
                ],
            }
        ],
    }


def _write(
    path: Path, data: np.ndarray, attrs: dict[str, Any], zarr_format: int = 2
) -> zarr.Group:
    """An image group: array ``0`` and ``attrs`` (under ``ome`` with version 0.5 in zarr v3)."""
    group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    group.create_array("0", data=data, chunks=data.shape)
    if zarr_format == 3:
        ome = copy.deepcopy(attrs)
        for ms in ome.get("multiscales", []):
            ms.pop("version", None)
        group.attrs["ome"] = {"version": "0.5", **ome}
    else:
        group.attrs.update(attrs)
    return group


# --- the shim --------------------------------------------------------------------------------


def test_shim_gives_old_multiscales_the_0_4_shape():
    from ome_zarr_models.v04.multiscales import Multiscale

    implicit = as_v04({"version": "0.1", "datasets": [{"path": "0"}]}, 5)
    named = as_v04({"version": "0.3", "axes": ["c", "y", "x"], "datasets": [{"path": "0"}]}, 3)
    for shimmed, names in ((implicit, "tczyx"), (named, "cyx")):
        model = Multiscale.model_validate(shimmed)
        assert [a.name for a in model.axes] == list(names)
        assert model.datasets[0].coordinateTransformations[0].scale == [1.0] * len(names)
    assert [a["type"] for a in implicit["axes"]] == ["time", "channel", "space", "space", "space"]
    assert as_v04({"datasets": [{"path": "0"}]}, 2)["axes"] == [
        {"name": "y", "type": "space"},
        {"name": "x", "type": "space"},
    ]
    kept = {"version": "0.3", "axes": ["y", "x"], "datasets": [{"path": "0"}]}
    as_v04(kept, 2)
    assert kept == {"version": "0.3", "axes": ["y", "x"], "datasets": [{"path": "0"}]}


def test_ngff_0_3_image_with_named_axes_omero_and_labels(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(0, 200, size=(2, 3, 4, 5), dtype=np.uint8)  # c, z, y, x
    path = tmp_path / "v03.zarr"
    group = _write(
        path,
        data,
        {
            "multiscales": [{"version": "0.3", "axes": ["c", "z", "y", "x"], "datasets": [
                {"path": "0"}
            ]}],
            "omero": {"channels": [
                {"label": "dna", "color": "0000FF", "window": WINDOW},
                {"label": "actin", "color": "FF0000", "window": WINDOW},
            ]},
        },
    )
    labels = rng.integers(0, 3, size=(3, 4, 5), dtype=np.uint16)
    label_group = group.create_group("labels")
    label_group.attrs["labels"] = ["cells"]
    _write(
        path / "labels" / "cells",
        labels,
        {
            "multiscales": [{"version": "0.3", "axes": ["z", "y", "x"], "datasets": [
                {"path": "0"}
            ]}],
            "image-label": {
                "version": "0.3",
                "colors": [{"label-value": 2, "rgba": [0, 255, 0, 51]}],
                "properties": [{"label-value": 2, "class": "cell"}],
            },
        },
    )
    contents = read_omezarr(path, None, None)
    volume, lattices = contents.volume, contents.lattices
    assert volume.channel_ids == ("dna", "actin")
    assert volume.channel_colors == ((0.0, 0.0, 1.0, 1.0), (1.0, 0.0, 0.0, 1.0))
    assert volume.voxel_size == (1.0, 1.0, 1.0) and volume.origin == (0.0, 0.0, 0.0)
    for c in range(2):
        np.testing.assert_array_equal(volume.frames[0][c][:, :, :], data[c].transpose(2, 1, 0))
    (cells,) = lattices
    assert cells.lattice_id == "cells"
    np.testing.assert_array_equal(cells.frames[0][:, :, :], labels.transpose(2, 1, 0))
    (segment,) = cells.segments
    assert (segment.id, segment.name) == (2, "cell")
    assert segment.color == (0.0, 1.0, 0.0, 0.2)
    facts = omezarr_facts(path)
    assert facts["format"] == "OME-NGFF 0.3 (zarr v2)" and facts["datasets"] == ["0"]
    assert facts["axes"] == ["c[no unit]", "z[no unit]", "y[no unit]", "x[no unit]"]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_geometry_with_integer_dataset_paths_and_untyped_axes(tmp_path, zarr_format):
    ms = _multiscale_04("nanometer")
    ms["datasets"][0]["path"] = 0  # as ez-zarr writes it
    for axis in ms["axes"]:
        del axis["type"]  # typed by name, as 0.3 axes are
    ms["coordinateTransformations"] = _scale(2.0, 2.0, 2.0)
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = tmp_path / "img.zarr"
    _write(path, data, {"multiscales": [ms]}, zarr_format)
    volume = read_omezarr(path, None, None).volume
    # scale (x, y, z) 0.2, 0.25, 0.5 nm times 2; translation 3, 2, 1 nm times 2
    assert volume.voxel_size == (4.0, 5.0, 10.0)
    assert volume.origin == (60.0, 40.0, 20.0)
    assert volume.source_axes_units == {"z": "nanometer", "y": "nanometer", "x": "nanometer"}
    np.testing.assert_array_equal(volume.frames[0][0][:, :, :], data.transpose(2, 1, 0))


def test_bad_omero_is_ignored_with_a_warning(run_cli, tmp_path):
    path = tmp_path / "img.zarr"
    omero = {"channels": [{"label": "dna", "window": WINDOW}]}  # no color
    _write(path, np.ones((4, 5, 6), np.uint8), {"multiscales": [_multiscale_04()], "omero": omero})
    result = run_cli(*preprocess_args([(path, "omezarr")], tmp_path, entry="emd-1"))
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if str(path) in line]
    assert warnings == [
        f"warning: {path / '.zattrs'}: $.omero.channels[0].color: missing (a required key): "
        "the omero metadata is ignored"
    ]


# --- bad metadata: one line, the attributes file and the JSON path ---------------------------


def _set(*keys: Any, value: Any) -> Any:
    def edit(ms: dict[str, Any]) -> None:
        node = ms
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


BAD = {
    "unit_number": (
        _set("axes", 2, "unit", value=5),
        "$.multiscales[0].axes[2].unit: must be a string (got 5)",
    ),
    "unknown_unit": (
        _set("axes", 1, "unit", value="furlong"),
        "$.multiscales[0].axes[1].unit: unknown length unit 'furlong'",
    ),
    "scale_string": (
        _set("datasets", 0, "coordinateTransformations", 0, "scale", 1, value="a"),
        "$.multiscales[0].datasets[0].coordinateTransformations[0].scale[1]: must be a "
        'number (got "a")',
    ),
    "identity": (
        _set("datasets", 0, "coordinateTransformations", value=[{"type": "identity"}]),
        "$.multiscales[0].datasets[0].coordinateTransformations: Expected a scale or (scale, "
        "translation) transform",
    ),
    "no_transformations": (
        _set("datasets", 0, "coordinateTransformations", value=None),
        "$.multiscales[0].datasets[0].coordinateTransformations: missing (a required key)",
    ),
    "scale_in_a_file": (
        _set("datasets", 0, "coordinateTransformations", value=[{"type": "scale", "path": "s"}]),
        "$.multiscales[0].datasets[0].coordinateTransformations[0]: scale stored in a file",
    ),
    "axis_names_twice": (
        _set("axes", 0, "name", value="x"),
        "$.multiscales[0].axes: Axis names must be unique",
    ),
    "time_axis_last": (
        _set("axes", 2, value={"name": "t", "type": "time"}),
        "$.multiscales[0].axes: All space axes must be at the end of the axes list",
    ),
    "no_datasets": (
        _set("datasets", value=[]),
        "$.multiscales[0].datasets: must be a non-empty list of objects",
    ),
    "no_dataset_path": (
        lambda ms: ms["datasets"][0].pop("path"),
        "$.multiscales[0].datasets[0].path: missing (a required key)",
    ),
    "dataset_path_list": (
        _set("datasets", 0, "path", value=["0"]),
        "$.multiscales[0].datasets[0].path: must be a string",
    ),
}


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_metadata_is_one_line_with_its_json_path(run_cli, tmp_path, case, zarr_format):
    edit, fragment = BAD[case]
    ms = _multiscale_04()
    edit(ms)
    if ms["datasets"] and ms["datasets"][0].get("coordinateTransformations", 0) is None:
        del ms["datasets"][0]["coordinateTransformations"]
    path = tmp_path / "bad.zarr"
    _write(path, np.zeros((4, 5, 6), np.uint8), {"multiscales": [ms]}, zarr_format)
    result = run_cli(*preprocess_args([(path, "omezarr")], tmp_path))
    # zarr v3: the OME attributes are "attributes": {"ome": {...}} of zarr.json
    file, root = (".zattrs", "$") if zarr_format == 2 else ("zarr.json", "$.attributes.ome")
    assert_one_line_error(result, f"error: {path / file}: {fragment.replace('$', root, 1)}")
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_metadata_that_is_not_json_names_its_file(run_cli, tmp_path, zarr_format):
    path = tmp_path / "bad.zarr"
    _write(path, np.zeros((4, 5, 6), np.uint8), {"multiscales": [_multiscale_04()]}, zarr_format)
    file = path / (".zattrs" if zarr_format == 2 else "zarr.json")
    file.write_text('{"multiscales": [')
    result = run_cli(*preprocess_args([(path, "omezarr")], tmp_path))
    assert_one_line_error(result, f"error: {file}: not valid JSON: ")
    assert not (tmp_path / "db").exists()


def _label_image(root: zarr.Group, name: str, image_label: Any) -> None:
    attrs = {"multiscales": [_multiscale_04(unit=None)], "image-label": image_label}
    attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"] = _scale(1, 1, 1)
    _write(Path(root.store.root) / "labels" / name, np.zeros((4, 5, 6), np.uint8), attrs)


@pytest.mark.parametrize(
    ("image_label", "labels", "fragment"),
    [
        (
            {"colors": [{"label-value": 1, "rgba": [255, 0, 0, 300]}]},
            ["cells"],
            'labels/cells/.zattrs: $["image-label"].colors[0].rgba[3]: must be less than or '
            "equal to 255 (got 300)",
        ),
        (
            {"colors": [{"label-value": 1, "rgba": [255, 0, 0, 255]}], "properties": [
                {"label-value": 2}
            ]},
            ["cells"],
            'labels/cells/.zattrs: $["image-label"]: Inconsistent `label_value` attributes',
        ),
        ({}, [3], "labels/.zattrs: $.labels[0]: must be a string (got 3)"),
    ],
)
def test_bad_label_metadata_is_one_line(run_cli, tmp_path, image_label, labels, fragment):
    path = tmp_path / "bad.zarr"
    unitless = _multiscale_04(unit=None)
    unitless["datasets"][0]["coordinateTransformations"] = _scale(1, 1, 1)
    group = _write(path, np.zeros((4, 5, 6), np.uint8), {"multiscales": [unitless]})
    group.create_group("labels").attrs["labels"] = labels
    _label_image(group, "cells", image_label)
    result = run_cli(*preprocess_args([(path, "omezarr")], tmp_path))
    assert_one_line_error(result, f"error: {path}/{fragment}")


# --- start-up ---------------------------------------------------------------------------------


def test_the_cli_and_the_view_module_do_not_import_the_models():
    """``import cli.main`` and the module workers unpickle views from stay free of
    ome_zarr_models (its import costs about as much as zarr's)."""
    code = (
        "import sys, json, cli.main, pipeline.inputs.omezarr, pipeline.inputs.ngff_meta\n"
        "print(json.dumps(sorted(m for m in ('ome_zarr_models', 'pydantic_zarr') "
        "if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
