"""``custom_annotations``: merged into annotations.json, in add and in extend; validated."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import preprocess_args, tree_digest, write_mrc

from pipeline.db import open_entry
from pipeline.errors import InputFormatError
from pipeline.inputs.annotations import read_custom_annotations


@pytest.fixture
def sample_annotations(shared_data):
    path = shared_data / "preprocessor/sample_annotations/annotations_example.json"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_sample_merged_in_add_and_in_extend(run_cli, tmp_path, sample_annotations):
    source = json.loads(sample_annotations.read_text())
    volume = write_mrc(tmp_path / "m.map", np.ones((6, 6, 6), np.float32))
    result = run_cli(
        *preprocess_args(
            [(volume, "map"), (sample_annotations, "custom_annotations")], tmp_path / "a"
        )
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "a" / "db", "emdb", "emd-1832") as entry:
        ann = entry.annotations
        assert ann["descriptions"] == source["descriptions"]
        assert ann["segment_annotations"] == source["segment_annotations"]
        # the custom channel annotation replaces the default one of channel "0"
        assert ann["volume_channels_annotations"] == source["volume_channels_annotations"]
        assert ann["entry_id"] == {"source_db_name": "emdb", "source_db_id": "emd-1832"}
    # the same through extend, on an entry added without it
    assert run_cli(*preprocess_args([(volume, "map")], tmp_path / "b")).exit_code == 0
    result = run_cli(
        *preprocess_args(
            [(sample_annotations, "custom_annotations")], tmp_path / "b", mode="extend"
        )
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "b" / "db", "emdb", "emd-1832") as entry:
        assert entry.annotations["descriptions"] == source["descriptions"]
        assert entry.annotations["volume_channels_annotations"][0]["label"] == "cy 1"


@pytest.mark.parametrize(
    "document, message",
    [
        ({"descriptions": []}, "descriptions must be an object"),
        ({"descriptions": {"a": {"id": "b", "target_kind": "lattice"}}}, "differs from its key"),
        ({"descriptions": {"a": {"id": "a", "target_kind": "cube"}}}, "unknown target_kind"),
        ({"segment_annotations": [{"id": "x"}]}, "missing segment_kind"),
        (
            {
                "segment_annotations": [
                    {
                        "id": "x",
                        "segment_kind": "lattice",
                        "segment_id": 1,
                        "segmentation_id": "0",
                        "color": [1, 1, 1],
                    }
                ]
            },
            "color must be four numbers",
        ),
        ({"colour": 1}, "unknown key(s) colour"),
    ],
)
def test_invalid_documents(tmp_path, document, message):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InputFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_custom_annotations(path)


def test_invalid_annotations_leave_the_entry_unchanged(run_cli, tmp_path):
    volume = write_mrc(tmp_path / "m.map", np.ones((6, 6, 6), np.float32))
    assert run_cli(*preprocess_args([(volume, "map")], tmp_path)).exit_code == 0
    before = tree_digest(tmp_path / "db")
    bad = tmp_path / "bad.json"
    bad.write_text("{broken")
    result = run_cli(*preprocess_args([(bad, "custom_annotations")], tmp_path, mode="extend"))
    assert result.exit_code == 2 and "invalid JSON" in result.stderr and str(bad) in result.stderr
    assert tree_digest(tmp_path / "db") == before
