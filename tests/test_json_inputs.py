"""Every JSON input kind: a wrong type deep in a document is one line
``error: <file>: <json path>: <problem>``, exit 2, and the database is left as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import preprocess_args, tree_digest, write_mrc

SPHERE = {"kind": "sphere", "parameters": {"id": 1, "center": [1, 2, 3], "radius": 2}}


@pytest.fixture
def entry(run_cli, tmp_path):
    """An entry emdb/emd-1832 (a map and a geometric segmentation) in tmp_path/db."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    volume = write_mrc(inputs / "m.map", np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8))
    shapes = _write(inputs / "shapes.json", {"shape_primitives_input": {"0": [SPHERE]}})
    result = run_cli(
        *preprocess_args([(volume, "map"), (shapes, "geometric_segmentation")], tmp_path)
    )
    assert result.exit_code == 0, result.output
    return volume


def _write(path, document):
    path.write_text(json.dumps(document))
    return path


def _one_error_line(result, expected):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [expected]


def _refused(run_cli, tmp_path, args, expected):
    before = tree_digest(tmp_path / "db")
    assert before  # the entry is there
    _one_error_line(run_cli(*args), expected)
    assert tree_digest(tmp_path / "db") == before


def _db(tmp_path):
    return ["--db-path", tmp_path / "db", "--source-db", "emdb", "--entry-id", "emd-1832"]


def test_extra_data(run_cli, tmp_path, entry):
    names = {"labels": {"1": "one", "2": ["two"]}}
    bad = _write(
        tmp_path / "in" / "extra.json",
        {"segmentation": {"segment_ids_to_segment_names_mapping": names}},
    )
    args = preprocess_args([(bad, "extra_data"), (entry, "map")], tmp_path, entry="other")
    expected = (
        f'error: {bad}: $.segmentation.segment_ids_to_segment_names_mapping.labels["2"]: '
        "must be a string"
    )
    _refused(run_cli, tmp_path, args, expected)


def test_star_options_in_extra_data(run_cli, tmp_path, entry):
    options = {"sphere_radius": 10, "tomogram_size": [4, 5, "6"]}
    bad = _write(tmp_path / "in" / "extra.json", {"segmentation": {"star_files": {"p": options}}})
    args = preprocess_args([(bad, "extra_data"), (entry, "map")], tmp_path, entry="other")
    expected = (
        f"error: {bad}: $.segmentation.star_files.p.tomogram_size[2]: "
        'must be an integer (got "6")'
    )
    _refused(run_cli, tmp_path, args, expected)


def test_custom_annotations(run_cli, tmp_path, entry):
    channel = {"channel_id": "0", "color": [0, 0.5, 1, True]}
    bad = _write(tmp_path / "in" / "ann.json", {"volume_channels_annotations": [channel]})
    args = preprocess_args([(bad, "custom_annotations")], tmp_path, mode="extend")
    expected = (
        f"error: {bad}: $.volume_channels_annotations[0].color[3]: must be a number (got true)"
    )
    _refused(run_cli, tmp_path, args, expected)


def test_geometric_segmentation(run_cli, tmp_path, entry):
    second = {"kind": "box", "parameters": {"id": 2, "label": 7}}
    bad = _write(
        tmp_path / "in" / "more.json",
        {"segmentation_id": "more", "shape_primitives_input": {"0": [SPHERE, second]}},
    )
    args = preprocess_args([(bad, "geometric_segmentation")], tmp_path, mode="extend")
    expected = (
        f'error: {bad}: $.shape_primitives_input["0"][1].parameters.label: '
        "must be a string (got 7)"
    )
    _refused(run_cli, tmp_path, args, expected)


def test_batch_rows(run_cli, tmp_path, entry):
    rows = [
        {"entry_id": "a", "source_db": "x", "inputs": [{"path": str(entry), "kind": "map"}]},
        {
            "entry_id": "b",
            "source_db": "x",
            "inputs": [[str(entry), "map"]],
            "min_size_per_downsampling_lvl_mb": [5],
        },
    ]
    bad = _write(tmp_path / "in" / "list.json", rows)
    args = ["batch", bad, "--working-folder", tmp_path / "work", "--db-path", tmp_path / "db"]
    expected = f"error: {bad}: $[1].min_size_per_downsampling_lvl_mb: must be a number"
    _refused(run_cli, tmp_path, args, expected)


def test_edit_descriptions(run_cli, tmp_path, entry):
    items = {
        "d1": {"id": "d1", "target_kind": "entry"},
        "d2": {"id": "d2", "target_kind": "entry", "name": "x", "details": None},
    }
    items["d2"]["target_kind"] = ["entry"]
    bad = _write(tmp_path / "in" / "edit.json", {"descriptions": items})
    args = ["edit-descriptions", *_db(tmp_path), "--data-json-path", bad]
    expected = (
        f"error: {bad}: $.descriptions.d2.target_kind: must be 'lattice', 'mesh', 'primitive' "
        "or 'entry'"
    )
    _refused(run_cli, tmp_path, args, expected)


def test_edit_segment_annotations(run_cli, tmp_path, entry):
    good = {
        "id": "a1",
        "segment_kind": "primitive",
        "segment_id": 1,
        "segmentation_id": "shapes",
        "color": [1, 0, 0, 1],
    }
    bad_item = {**good, "id": "a2", "color": [1, 0, "red", 1]}
    bad = _write(tmp_path / "in" / "edit.json", [good, bad_item])
    args = ["edit-segment-annotations", *_db(tmp_path), "--data-json-path", bad]
    expected = f'error: {bad}: $[1].color[2]: must be a number (got "red")'
    _refused(run_cli, tmp_path, args, expected)
    # the same items accepted once corrected (the document form is what the check expects)
    _write(bad, [good, {**bad_item, "color": [1, 0, 0.5, 1]}])
    assert run_cli(*args).exit_code == 0


@pytest.mark.parametrize("kind", ["extra_data", "custom_annotations", "geometric_segmentation"])
def test_malformed_json_names_the_file_line_and_column(run_cli, tmp_path, entry, kind):
    bad = tmp_path / "in" / "broken.json"
    bad.write_text('{\n  "a": [1, 2,\n}\n')
    if kind == "extra_data":  # read before anything else, for a new entry
        args = preprocess_args([(bad, kind), (entry, "map")], tmp_path, entry="other")
    else:
        args = preprocess_args([(bad, kind)], tmp_path, mode="extend")
    before = tree_digest(tmp_path / "db")
    result = run_cli(*args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: not valid JSON: ")
    assert "line 3 column 1" in lines[0]
    assert tree_digest(tmp_path / "db") == before


def test_the_json_path_form():
    from pipeline.json_errors import json_path

    assert json_path([]) == "$"
    assert json_path(["segments", 3, "color"]) == "$.segments[3].color"
    assert json_path(["shape_primitives_input", "0", 1]) == '$.shape_primitives_input["0"][1]'
    assert json_path(["star_files", "my file"]) == '$.star_files["my file"]'


def test_first_problem_the_count_of_the_others_and_problems_in_keys():
    from pydantic import ValidationError

    from pipeline.inputs.json_models import GeometricInput, SegmentAnnotationInput
    from pipeline.json_errors import validation_problem

    item = {"id": "a", "segment_kind": "cube", "segment_id": 2**63, "segmentation_id": 3}
    with pytest.raises(ValidationError) as info:
        SegmentAnnotationInput.model_validate(item)
    assert validation_problem(info.value, item) == (
        "$.segment_kind: must be 'lattice', 'mesh' or 'primitive' (got \"cube\") "
        "(3 more problems)"
    )
    doc = {"shape_primitives_input": {"-1": []}}
    with pytest.raises(ValidationError) as info:
        GeometricInput.model_validate(doc)
    assert validation_problem(info.value, doc) == (
        "$.shape_primitives_input[\"-1\"]: the key: '-1' is not a time index (0, 1, ...)"
    )
