"""``custom_annotations``: merged into annotations.json, in add and in extend; validated."""

from __future__ import annotations

import json
import re

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


def _sample_on_one_frame(sample_annotations, folder):
    """The sample, its items moved to frame 0 (it names frames 0..17 of lattice "0")."""
    source = json.loads(sample_annotations.read_text())
    for item in [*source["descriptions"].values(), *source["segment_annotations"]]:
        item["time"] = 0
    path = folder / "annotations_one_frame.json"
    path.write_text(json.dumps(source, indent=4))
    return source, path


def _lattice_0(folder):
    """A volume and a lattice "0" holding segment 2371559, which the sample annotates."""
    volume = write_mrc(folder / "m.map", np.ones((6, 6, 6), np.float32))
    labels = np.zeros((6, 6, 6), np.float32)  # integral floats: MRC has no uint32 mode
    labels[1:3, 2:4, 0:5] = 2371559
    return volume, write_mrc(folder / "0.mrc", labels)


def test_sample_merged_in_add_and_in_extend(run_cli, tmp_path, sample_annotations):
    source, custom = _sample_on_one_frame(sample_annotations, tmp_path)
    volume, mask = _lattice_0(tmp_path)
    result = run_cli(
        *preprocess_args([(volume, "map"), (mask, "mask"), (custom, "custom_annotations")],
                         tmp_path / "a")
    )
    assert result.exit_code == 0, result.output
    entry_folder = tmp_path / "a" / "db" / "emdb" / "emd-1832"
    with open_entry(tmp_path / "a" / "db", "emdb", "emd-1832") as entry:
        ann = entry.annotations
        for key, item in source["descriptions"].items():
            assert ann["descriptions"][key] == item
        sample_ids = {a["id"] for a in source["segment_annotations"]}
        assert [a for a in ann["segment_annotations"] if a["id"] in sample_ids] == source[
            "segment_annotations"
        ]
        # the custom channel annotation replaces the default one of channel "0"
        assert ann["volume_channels_annotations"] == source["volume_channels_annotations"]
        assert ann["entry_id"] == {"source_db_name": "emdb", "source_db_id": "emd-1832"}
    # merged items keep the file's keys in the file's order (alphabetical in the sample)
    stored = (entry_folder / "annotations.json").read_text()
    item = json.dumps(source["segment_annotations"][0], indent=4).replace("\n", "\n        ")
    assert item in stored
    # the same through extend, on an entry added without it
    assert run_cli(
        *preprocess_args([(volume, "map"), (mask, "mask")], tmp_path / "b")
    ).exit_code == 0
    result = run_cli(
        *preprocess_args([(custom, "custom_annotations")], tmp_path / "b", mode="extend")
    )
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "b" / "db", "emdb", "emd-1832") as entry:
        for key, item in source["descriptions"].items():
            assert entry.annotations["descriptions"][key] == item
        assert entry.annotations["volume_channels_annotations"][0]["label"] == "cy 1"
    assert run_cli("validate", "--db-path", tmp_path / "b" / "db").exit_code == 0


def test_sample_naming_missing_frames_or_lattices_is_refused(
    run_cli, tmp_path, sample_annotations
):
    volume, mask = _lattice_0(tmp_path)
    # the sample names frames 0..17 of lattice "0": this lattice has one frame
    args = [(volume, "map"), (mask, "mask"), (sample_annotations, "custom_annotations")]
    result = run_cli(*preprocess_args(args, tmp_path / "a"))
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and str(sample_annotations) in line
    assert "41ac3f33-03dd-498a-9bfa-0b27d3885f0f" in line and "time [1, 2, 3, 4, 5]" in line
    assert not (tmp_path / "a" / "db" / "emdb").exists()
    # without the lattice: the reference names a lattice the entry does not have (extend)
    assert run_cli(*preprocess_args([(volume, "map")], tmp_path / "b")).exit_code == 0
    before = tree_digest(tmp_path / "b" / "db" / "emdb")
    _, one_frame = _sample_on_one_frame(sample_annotations, tmp_path)
    result = run_cli(
        *preprocess_args([(one_frame, "custom_annotations")], tmp_path / "b", mode="extend")
    )
    assert result.exit_code == 2
    assert "names lattice '0', which the entry does not have" in result.stderr
    assert tree_digest(tmp_path / "b" / "db" / "emdb") == before


@pytest.mark.parametrize(
    "document, message",
    [
        ({"descriptions": []}, "$.descriptions: must be a JSON object"),
        (
            {"descriptions": {"a": {"id": "b", "target_kind": "lattice"}}},
            "$.descriptions: item 'a': id 'b' differs from its key",
        ),
        (
            {"descriptions": {"a": {"id": "a", "target_kind": "cube"}}},
            "$.descriptions.a.target_kind: must be 'lattice'",
        ),
        ({"segment_annotations": [{"id": "x"}]}, "$.segment_annotations[0].segment_kind: missing"),
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
            "$.segment_annotations[0].color: must have at least 4 items, not 3",
        ),
        ({"colour": 1}, "$: unknown key(s) colour"),
    ],
)
def test_invalid_documents(tmp_path, document, message):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(document))
    with pytest.raises(InputFormatError, match=re.escape(f"{path}: {message}")):
        read_custom_annotations(path)


def test_invalid_annotations_leave_the_entry_unchanged(run_cli, tmp_path):
    volume = write_mrc(tmp_path / "m.map", np.ones((6, 6, 6), np.float32))
    assert run_cli(*preprocess_args([(volume, "map")], tmp_path)).exit_code == 0
    before = tree_digest(tmp_path / "db")
    bad = tmp_path / "bad.json"
    bad.write_text("{broken")
    result = run_cli(*preprocess_args([(bad, "custom_annotations")], tmp_path, mode="extend"))
    assert result.exit_code == 2 and "not valid JSON" in result.stderr and str(bad) in result.stderr
    assert tree_digest(tmp_path / "db") == before
