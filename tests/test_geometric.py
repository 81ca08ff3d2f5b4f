"""Geometric segmentations (JSON): the seed's examples, every primitive kind, invalid primitives,
extend, clashes, removal and validate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import assert_one_line_error, preprocess_args, sha256, tree_digest, write_mrc

from pipeline.db.layout import EntryLocation
from pipeline.db.validate import validate_entry

GEOMETRIC = "preprocessor/sample_segmentations/geometric_segmentations"
EMPIAR = "preprocessor/sample_segmentations/empiar/empiar-11756"
PALETTE_0 = [0.902, 0.624, 0.0, 1.0]  # pipeline.db.metadata.PALETTE, repeated as data
PALETTE_1 = [0.337, 0.706, 0.914, 1.0]


def _entry(tmp_path, entry="emd-1832"):
    folder = tmp_path / "db" / "emdb" / entry
    docs = [
        json.loads((folder / name).read_text()) for name in ("metadata.json", "annotations.json")
    ]
    geometric = folder / "geometric_segmentation.json"
    return (*docs, json.loads(geometric.read_text()) if geometric.exists() else None)


def _valid(tmp_path, entry="emd-1832"):
    return validate_entry(EntryLocation(tmp_path / "db", "emdb", entry))


def _expected(input_doc):
    """The stored form of an input document, computed here from the input: id, kind and
    the parameters without colour and label, per frame."""
    return {
        t: [
            {"id": p["parameters"]["id"], "kind": p["kind"]}
            | {k: v for k, v in p["parameters"].items() if k not in ("id", "color", "label")}
            for p in items
        ]
        for t, items in input_doc["shape_primitives_input"].items()
    }


def _stored(item):
    return {t: f["shape_primitive_list"] for t, f in item["primitives"].items()}


def _colours(annotations, segmentation_id):
    return {
        a["segment_id"]: a["color"]
        for a in annotations["segment_annotations"]
        if a["segment_kind"] == "primitive" and a["segmentation_id"] == segmentation_id
    }


@pytest.fixture
def small_map(tmp_path):
    data = np.random.default_rng(1).normal(size=(8, 10, 12)).astype(np.float32)
    (tmp_path / "in").mkdir(exist_ok=True)
    return write_mrc(tmp_path / "in" / "small.mrc", data, voxel_size=4.0)


def _write(tmp_path, name, doc):
    path = tmp_path / "in" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_seed_example_emd1832_with_two_geometric_segmentations(run_cli, tmp_path, shared_data):
    volume = shared_data / "preprocessor/sample_volumes/emdb/EMD-1832.map"
    inputs = [shared_data / GEOMETRIC / f"geometric_segmentation_{n}.json" for n in (1, 2)]
    args = [(volume, "map")] + [(p, "geometric_segmentation") for p in inputs]
    entry = "emd-1832-geometric-segmentation"
    result = run_cli(*preprocess_args(args, tmp_path, entry=entry))
    assert result.exit_code == 0, result.output
    metadata, annotations, geometric = _entry(tmp_path, entry)
    sources = [json.loads(p.read_text()) for p in inputs]
    assert metadata["geometric_segmentation"]["segmentation_ids"] == ["1", "2"]
    for sid in ("1", "2"):
        assert metadata["geometric_segmentation"]["time_info"][sid] == {
            "kind": "range",
            "start": 0,
            "end": 0,
            "units": "millisecond",
        }
    assert [item["segmentation_id"] for item in geometric] == ["1", "2"]
    for item, source in zip(geometric, sources, strict=True):
        assert _stored(item) == _expected(source)
        colours = {
            p["parameters"]["id"]: p["parameters"]["color"]
            for p in source["shape_primitives_input"]["0"]
        }
        assert _colours(annotations, item["segmentation_id"]) == colours
    # the kinds of the seed files: sphere, cylinder, cone (radius_top 0), box, pyramid, ellipsoid
    kinds = {p["kind"] for p in geometric[0]["primitives"]["0"]["shape_primitive_list"]}
    assert kinds == {"sphere", "cylinder", "box", "pyramid", "ellipsoid"}
    cone = next(p for p in _stored(geometric[0])["0"] if p["id"] == 6)
    assert cone["radius_top"] == 0 and cone["radius_bottom"] == 20
    names = {
        (d["target_id"]["segmentation_id"], d["target_id"]["segment_id"]): d["name"]
        for d in annotations["descriptions"].values()
        if d["target_kind"] == "primitive"
    }
    assert names[("1", 111)] == "sphere 111" and names[("2", 1)] == "cylinder 1"
    assert len(names) == 8
    assert _valid(tmp_path, entry) == []


def test_empiar_11756_inputs_with_a_map_of_its_voxel_size(run_cli, tmp_path, shared_data):
    """The seed's EMPIAR-11756 example: extra data (voxel 7.84 A), a tomogram whose header
    says voxel size 0 (a small synthetic one here), and the two sphere files."""
    extra = shared_data / "preprocessor/extra_data/empiar/empiar-11756/extra_data_empiar_11756.json"
    (tmp_path / "in").mkdir()
    tomogram = write_mrc(
        tmp_path / "in" / "tomogram.mrc",
        np.random.default_rng(2).normal(size=(16, 20, 24)).astype(np.float32),
        voxel_size=0.0,
    )
    inputs = [shared_data / EMPIAR / f"geometric_segmentation_input_{n}.json" for n in (1, 2)]
    args = [(extra, "extra_data"), (tomogram, "map")]
    args += [(p, "geometric_segmentation") for p in inputs]
    result = run_cli(*preprocess_args(args, tmp_path, entry="empiar-11756"))
    assert result.exit_code == 0, result.output
    metadata, annotations, geometric = _entry(tmp_path, "empiar-11756")
    box = metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
    assert box["voxel_size"] == [7.84, 7.84, 7.84]
    assert metadata["geometric_segmentation"]["segmentation_ids"] == ["ribosomes", "nucleosomes"]
    sources = [json.loads(p.read_text()) for p in inputs]
    counts = [len(s["shape_primitives_input"]["0"]) for s in sources]
    assert counts == [45, 1119]
    for item, source, colour in zip(
        geometric, sources, ([1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0]), strict=True
    ):
        stored = _stored(item)["0"]
        assert stored == _expected(source)["0"]
        assert {p["radius"] for p in stored} == {100.0}
        assert set(map(tuple, _colours(annotations, item["segmentation_id"]).values())) == {
            tuple(colour)
        }
    primitive_annotations = [
        a for a in annotations["segment_annotations"] if a["segment_kind"] == "primitive"
    ]
    assert len(primitive_annotations) == 45 + 1119
    assert len({a["id"] for a in primitive_annotations}) == 45 + 1119
    assert _valid(tmp_path, "empiar-11756") == []


ALL_KINDS = {
    "segmentation_id": "shapes",
    "time_units": "second",
    "shape_primitives_input": {
        "0": [
            {
                "kind": "sphere",
                "parameters": {
                    "id": 1,
                    "center": [1.5, -2, 3],
                    "radius": 4.25,
                    "color": [1, 0, 0],
                    "label": "a ball",
                },
            },
            {
                "kind": "cylinder",
                "parameters": {
                    "id": 2,
                    "start": [0, 0, 0],
                    "end": [0, 0, 7.5],
                    "radius_bottom": 2,
                    "radius_top": 2,
                },
            },
            {
                "kind": "cylinder",
                "parameters": {
                    "id": 3,
                    "start": [1, 1, 1],
                    "end": [2, 3, 4],
                    "radius_bottom": 5,
                    "radius_top": 0,
                },
            },
            {
                "kind": "box",
                "parameters": {
                    "id": 4,
                    "translation": [-1, -2, -3],
                    "scaling": [1, 2, 3.5],
                    "rotation": {"axis": [0, 0, 1], "radians": 1.25},
                },
            },
            {
                "kind": "pyramid",
                "parameters": {
                    "id": 5,
                    "translation": [9, 8, 7],
                    "scaling": [4, 4, 6],
                    "rotation": {"axis": [1, 0, 0], "radians": -0.5},
                },
            },
            {
                "kind": "ellipsoid",
                "parameters": {
                    "id": 6,
                    "center": [3, 3, 3],
                    "dir_major": [1, 0, 0],
                    "dir_minor": [0, 1, 0],
                    "radius_scale": [5, 3, 2],
                    "color": [0, 0, 1, 0.5],
                },
            },
        ],
        "1": [
            {
                "kind": "sphere",
                "parameters": {"id": 1, "center": [2.5, -2, 3], "radius": 4.25, "color": [0, 1, 0]},
            },
            {"kind": "sphere", "parameters": {"id": 7, "center": [0, 0, 0], "radius": 0}},
        ],
    },
}


def test_every_primitive_kind_round_trips_in_angstrom(run_cli, tmp_path, small_map):
    shapes = _write(tmp_path, "shapes.json", ALL_KINDS)
    result = run_cli(
        *preprocess_args([(small_map, "map"), (shapes, "geometric_segmentation")], tmp_path)
    )
    assert result.exit_code == 0, result.output
    metadata, annotations, geometric = _entry(tmp_path)
    assert len(geometric) == 1 and geometric[0]["segmentation_id"] == "shapes"
    assert _stored(geometric[0]) == _expected(ALL_KINDS)
    for frame in _stored(geometric[0]).values():  # every number stored as a float
        for p in frame:
            for key, value in p.items():
                if key not in ("id", "kind"):
                    if key == "rotation":
                        value = [*value["axis"], value["radians"]]
                    assert all(
                        type(v) is float for v in (value if type(value) is list else [value])
                    )
    assert metadata["geometric_segmentation"]["time_info"]["shapes"] == {
        "kind": "range",
        "start": 0,
        "end": 1,
        "units": "second",
    }
    annotated = {
        a["segment_id"]: (a["color"], a["time"])
        for a in annotations["segment_annotations"]
        if a["segment_kind"] == "primitive"
    }
    # one annotation per primitive id: the first frame's colour, the frames it appears in;
    # no colour given -> the segmentation's palette colour (its index in the entry: 0)
    assert annotated[1] == ([1.0, 0.0, 0.0, 1.0], [0, 1])
    assert annotated[6] == ([0.0, 0.0, 1.0, 0.5], 0)
    assert annotated[2] == (PALETTE_0, 0)
    assert annotated[7] == (PALETTE_0, 1)
    names = {
        d["target_id"]["segment_id"]: d["name"]
        for d in annotations["descriptions"].values()
        if d["target_kind"] == "primitive"
    }
    assert names == {
        1: "a ball",
        2: "cylinder 2",
        3: "cylinder 3",
        4: "box 4",
        5: "pyramid 5",
        6: "ellipsoid 6",
        7: "sphere 7",
    }
    assert _valid(tmp_path) == []


def test_same_inputs_give_identical_documents(run_cli, tmp_path, small_map):
    shapes = _write(tmp_path, "shapes.json", ALL_KINDS)
    outputs = []
    for n in range(2):
        base = tmp_path / f"run{n}"
        result = run_cli(
            *preprocess_args([(small_map, "map"), (shapes, "geometric_segmentation")], base)
        )
        assert result.exit_code == 0, result.output
        folder = base / "db" / "emdb" / "emd-1832"
        outputs.append(
            [sha256(folder / n) for n in ("geometric_segmentation.json", "annotations.json")]
        )
    assert outputs[0] == outputs[1]


def _one_primitive(kind, **parameters):
    return {
        "shape_primitives_input": {
            "0": [
                {"kind": "sphere", "parameters": {"id": 0, "center": [0, 0, 0], "radius": 1}},
                {"kind": kind, "parameters": {"id": 1, **parameters}},
            ]
        }
    }


ROTATION = {"axis": [0, 0, 1], "radians": 0.5}
INVALID = [
    (_one_primitive("sphere", center=[0, 0, 0], radius=-1), "[1].parameters: radius must be >= 0"),
    (
        _one_primitive("sphere", center=[0, 0], radius=1),
        "[1].parameters: center must be a list of three",
    ),
    (_one_primitive("sphere", center=[0, "a", 0], radius=1), "center must be a finite number"),
    (_one_primitive("sphere", center=[0, math.nan, 0], radius=1), "finite number"),
    (_one_primitive("sphere", center=[0, 0, 0], radius=1e999), "radius must be a finite"),
    (_one_primitive("sphere", center=[0, 0, 0]), "[1].parameters: missing parameter(s) radius"),
    (_one_primitive("sphere", center=[0, 0, 0], radius=1, radias=2), "unknown parameter(s) radias"),
    (_one_primitive("cube", center=[0, 0, 0]), "[1].kind: unknown kind 'cube'"),
    (
        _one_primitive("cylinder", start=[0, 0, 0], end=[1, 1, 1], radius_bottom=1, radius_top=-2),
        "[1].parameters: radius_top must be >= 0",
    ),
    (
        _one_primitive("box", translation=[0, 0, 0], scaling=[1, 0, 1], rotation=ROTATION),
        "[1].parameters: scaling must be three numbers > 0",
    ),
    (
        _one_primitive(
            "pyramid",
            translation=[0, 0, 0],
            scaling=[1, 1, 1],
            rotation={"axis": [0, 0, 0], "radians": 1},
        ),
        "[1].parameters: rotation.axis must not be the zero vector",
    ),
    (
        _one_primitive(
            "box", translation=[0, 0, 0], scaling=[1, 1, 1], rotation={"axis": [1, 0, 0]}
        ),
        "[1].parameters: rotation must be an object",
    ),
    (
        _one_primitive(
            "ellipsoid",
            center=[0, 0, 0],
            dir_major=[1, 0, 0],
            dir_minor=[2, 0, 0],
            radius_scale=[1, 1, 1],
        ),
        "[1].parameters: dir_major and dir_minor must not be",
    ),
    (
        _one_primitive(
            "ellipsoid",
            center=[0, 0, 0],
            dir_major=[1, 0, 0],
            dir_minor=[0, 1, 0],
            radius_scale=[1, -1, 1],
        ),
        "[1].parameters: radius_scale must be >= 0",
    ),
    (
        _one_primitive("sphere", center=[0, 0, 0], radius=1, color=[1, 2, 0]),
        "[1].parameters.color[1]: must be less than or equal to 1 (got 2)",
    ),
    (
        _one_primitive("sphere", center=[0, 0, 0], radius=1, label=3),
        "[1].parameters.label: must be a string (got 3)",
    ),
    (
        {
            "shape_primitives_input": {
                "0": [
                    {"kind": "sphere", "parameters": {"id": 0, "center": [0, 0, 0], "radius": 1}},
                    {"kind": "sphere", "parameters": {"id": 0, "center": [1, 0, 0], "radius": 1}},
                ]
            }
        },
        ": id 0 of [1] is already used by [0]",
    ),
    (
        {
            "shape_primitives_input": {
                "0": [
                    {"kind": "sphere", "parameters": {"id": 0, "center": [0, 0, 0], "radius": 1}},
                    {
                        "kind": "sphere",
                        "parameters": {"id": True, "center": [1, 0, 0], "radius": 1},
                    },
                ]
            }
        },
        "[1].parameters.id: must be an integer (got true)",
    ),
    (
        {
            "shape_primitives_input": {
                "0": [
                    {"kind": "sphere", "parameters": {"id": 0, "center": [0, 0, 0], "radius": 1}},
                    {"kind": "sphere", "id": 1, "center": [0, 0, 0], "radius": 1},
                ]
            }
        },
        "[1]: unknown key(s) center, id, radius (expected: kind, parameters)",
    ),
]


@pytest.mark.parametrize("doc, fragment", INVALID)
def test_an_invalid_primitive_is_one_error_naming_file_and_index(
    run_cli, tmp_path, small_map, doc, fragment
):
    bad = tmp_path / "in" / "bad.json"
    bad.write_text(json.dumps(doc))  # NaN and infinity are written as the JSON extensions
    result = run_cli(
        *preprocess_args([(small_map, "map"), (bad, "geometric_segmentation")], tmp_path)
    )
    assert_one_line_error(result, f'error: {bad}: $.shape_primitives_input["0"]', fragment)
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ([], "$: must be a JSON object"),
        ({"shape_primitives_input": {}}, "$.shape_primitives_input: must have at least 1 item"),
        (
            {"shape_primitives_input": {"a": []}},
            "$.shape_primitives_input.a: the key: 'a' is not a time index",
        ),
        ({"shape_primitives_input": {"0": {}}}, '$.shape_primitives_input["0"]: must be a list'),
        (
            {"shape_primitives_input": {"0": []}, "segmentation_id": 1.5},
            "$.segmentation_id: must be a string (got 1.5)",
        ),
        ({"shape_primitives_input": {"0": []}, "segmentation_id": "../x"}, "not a valid name"),
        ({"shape_primitives_input": {"0": []}, "colour": 1}, "$: unknown key(s) colour"),
        ({"shape_primitives_input": {"0": []}, "time_units": 5}, "$.time_units: must be a string"),
    ],
)
def test_a_malformed_document_is_one_error(run_cli, tmp_path, small_map, doc, fragment):
    bad = _write(tmp_path, "bad.json", doc)
    result = run_cli(
        *preprocess_args([(small_map, "map"), (bad, "geometric_segmentation")], tmp_path)
    )
    assert_one_line_error(result, str(bad), fragment)
    assert not (tmp_path / "db").exists()


def test_dry_run_checks_the_primitives(run_cli, tmp_path, small_map):
    bad = _write(tmp_path, "bad.json", INVALID[0][0])
    args = preprocess_args(
        [(small_map, "map"), (bad, "geometric_segmentation")], tmp_path, extra=("--dry-run",)
    )
    assert_one_line_error(run_cli(*args), '$.shape_primitives_input["0"][1].parameters: radius')


def test_segmentation_ids_mapping_renames_and_default_id_is_the_stem(run_cli, tmp_path, small_map):
    doc = dict(ALL_KINDS)
    doc.pop("segmentation_id")
    stem = _write(tmp_path, "my_shapes.json", doc)
    named = _write(tmp_path, "named.json", ALL_KINDS)
    extra = _write(
        tmp_path, "extra.json", {"segmentation": {"segmentation_ids_mapping": {"shapes": "cells"}}}
    )
    args = [(extra, "extra_data"), (small_map, "map"), (stem, "geometric_segmentation")]
    args.append((named, "geometric_segmentation"))
    result = run_cli(*preprocess_args(args, tmp_path))
    assert result.exit_code == 0, result.output
    metadata, annotations, _ = _entry(tmp_path)
    assert metadata["geometric_segmentation"]["segmentation_ids"] == ["my_shapes", "cells"]
    # primitives without a colour: one palette colour per segmentation (its index in the entry)
    assert _colours(annotations, "my_shapes")[2] == PALETTE_0
    assert _colours(annotations, "cells")[2] == PALETTE_1


def test_two_inputs_with_one_id_are_refused(run_cli, tmp_path, small_map):
    one = _write(tmp_path, "one.json", ALL_KINDS)
    two = _write(tmp_path, "two.json", ALL_KINDS)
    args = [(small_map, "map"), (one, "geometric_segmentation"), (two, "geometric_segmentation")]
    assert_one_line_error(
        run_cli(*preprocess_args(args, tmp_path)), "'shapes' given twice", str(one), str(two)
    )
    assert not (tmp_path / "db").exists()


def test_a_geometric_segmentation_alone_is_not_an_entry(run_cli, tmp_path):
    shapes = _write(tmp_path, "shapes.json", ALL_KINDS)
    result = run_cli(*preprocess_args([(shapes, "geometric_segmentation")], tmp_path))
    assert_one_line_error(result, "an entry needs a volume input")


@pytest.fixture
def map_and_mask_entry(run_cli, tmp_path, small_map):
    labels = np.zeros((8, 10, 12), dtype=np.int16)
    labels[2:5, 3:7, 4:9] = 3
    mask = write_mrc(tmp_path / "in" / "mask.mrc", labels, voxel_size=4.0)
    result = run_cli(*preprocess_args([(small_map, "map"), (mask, "mask")], tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path / "db" / "emdb" / "emd-1832"


def test_extend_adds_geometric_segmentations_and_refuses_a_clash(
    run_cli, tmp_path, map_and_mask_entry, shared_data
):
    folder = map_and_mask_entry
    before_zip = sha256(folder / "data.zip")
    _, before_annotations, _ = _entry(tmp_path)
    inputs = [shared_data / GEOMETRIC / f"geometric_segmentation_{n}.json" for n in (1, 2)]
    for path in inputs:
        args = preprocess_args([(path, "geometric_segmentation")], tmp_path, mode="extend")
        result = run_cli(*args)
        assert result.exit_code == 0, result.output
    metadata, annotations, geometric = _entry(tmp_path)
    assert sha256(folder / "data.zip") == before_zip  # the archive is untouched
    assert metadata["segmentation_lattices"]["segmentation_ids"] == ["mask"]
    assert metadata["geometric_segmentation"]["segmentation_ids"] == ["1", "2"]
    assert [item["segmentation_id"] for item in geometric] == ["1", "2"]
    for item, path in zip(geometric, inputs, strict=True):
        assert _stored(item) == _expected(json.loads(path.read_text()))
    lattice = [a for a in annotations["segment_annotations"] if a["segment_kind"] == "lattice"]
    assert lattice == before_annotations["segment_annotations"]
    assert len(annotations["segment_annotations"]) == len(lattice) + 8
    assert _valid(tmp_path) == []

    # the same id again: refused, entry unchanged
    digest = tree_digest(tmp_path / "db")
    args = preprocess_args([(inputs[0], "geometric_segmentation")], tmp_path, mode="extend")
    assert_one_line_error(run_cli(*args), "geometric segmentation id(s) 1 already in entry")
    assert tree_digest(tmp_path / "db") == digest
    # an invalid primitive in extend: refused, entry unchanged
    bad = _write(tmp_path, "bad.json", INVALID[0][0])
    args = preprocess_args([(bad, "geometric_segmentation")], tmp_path, mode="extend")
    assert_one_line_error(run_cli(*args), str(bad), '$.shape_primitives_input["0"][1].parameters')
    assert tree_digest(tmp_path / "db") == digest


def test_extend_with_a_lattice_keeps_the_geometric_file(run_cli, tmp_path, small_map):
    shapes = _write(tmp_path, "shapes.json", ALL_KINDS)
    result = run_cli(
        *preprocess_args([(small_map, "map"), (shapes, "geometric_segmentation")], tmp_path)
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "db" / "emdb" / "emd-1832"
    before = sha256(folder / "geometric_segmentation.json")
    mask = write_mrc(tmp_path / "in" / "mask.mrc", np.ones((8, 10, 12), np.int8), voxel_size=4.0)
    result = run_cli(*preprocess_args([(mask, "mask")], tmp_path, mode="extend"))
    assert result.exit_code == 0, result.output
    assert sha256(folder / "geometric_segmentation.json") == before
    assert _valid(tmp_path) == []


def test_remove_segmentation_kind_geometric(run_cli, tmp_path, small_map, shared_data):
    inputs = [shared_data / GEOMETRIC / f"geometric_segmentation_{n}.json" for n in (1, 2)]
    args = [(small_map, "map")] + [(p, "geometric_segmentation") for p in inputs]
    assert run_cli(*preprocess_args(args, tmp_path)).exit_code == 0
    common = ["--db-path", tmp_path / "db", "--source-db", "emdb", "--entry-id", "emd-1832"]
    folder = tmp_path / "db" / "emdb" / "emd-1832"
    digest = tree_digest(tmp_path / "db")
    result = run_cli("remove-segmentation", *common, "--id", "3", "--kind", "geometric")
    assert_one_line_error(result, "no geometric segmentation 3", "it has: 1, 2")
    assert tree_digest(tmp_path / "db") == digest

    result = run_cli("remove-segmentation", *common, "--id", "1", "--kind", "geometric")
    assert result.exit_code == 0, result.output
    metadata, annotations, geometric = _entry(tmp_path)
    assert metadata["geometric_segmentation"]["segmentation_ids"] == ["2"]
    assert list(metadata["geometric_segmentation"]["time_info"]) == ["2"]
    assert [item["segmentation_id"] for item in geometric] == ["2"]
    assert _stored(geometric[0]) == _expected(json.loads(inputs[1].read_text()))
    assert {a["segmentation_id"] for a in annotations["segment_annotations"]} == {"2"}
    assert {d["target_id"]["segmentation_id"] for d in annotations["descriptions"].values()} == {
        "2"
    }
    assert _valid(tmp_path) == []

    result = run_cli(
        "remove-segmentation", *common, "--id", "2", "--kind", "geometric_segmentation"
    )
    assert result.exit_code == 0, result.output
    metadata, annotations, geometric = _entry(tmp_path)
    assert geometric is None and not (folder / "geometric_segmentation.json").exists()
    assert metadata["geometric_segmentation"]["segmentation_ids"] == []
    assert annotations["segment_annotations"] == [] and annotations["descriptions"] == {}
    assert _valid(tmp_path) == []


def test_validate_reports_geometric_problems(run_cli, tmp_path, small_map):
    shapes = _write(tmp_path, "shapes.json", ALL_KINDS)
    args = preprocess_args([(small_map, "map"), (shapes, "geometric_segmentation")], tmp_path)
    assert run_cli(*args).exit_code == 0
    path = tmp_path / "db" / "emdb" / "emd-1832" / "geometric_segmentation.json"
    good = path.read_text()
    doc = json.loads(good)
    frame = doc[0]["primitives"]["0"]["shape_primitive_list"]
    frame[0]["radius"] = -1  # primitive 0 (sphere 1) invalid
    path.write_text(json.dumps(doc))
    problems = _valid(tmp_path)
    assert problems == [
        'geometric_segmentation.json: $[0].primitives["0"]: shape_primitive_list[0] (sphere): '
        "radius must be >= 0, got -1"
    ]
    frame[0]["radius"] = 1
    frame.pop(1)  # cylinder 2 gone, its annotations remain
    path.write_text(json.dumps(doc))
    problems = _valid(tmp_path)
    assert any("primitive 2 is not in geometric segmentation 'shapes'" in p for p in problems)
    result = run_cli("validate", "--db-path", tmp_path / "db")
    assert result.exit_code == 1

    path.write_text("[{")
    assert any("not valid JSON" in p for p in _valid(tmp_path))
    path.unlink()
    assert any("geometric_segmentation.json is missing" in p for p in _valid(tmp_path))
    path.write_text(good.replace('"shapes"', '"other"'))
    assert any("metadata.json lists ['shapes']" in p for p in _valid(tmp_path))
