"""extra_data validation: the real samples, the accepted aliases, one clear error per problem."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import InputFormatError, InputNotFoundError
from pipeline.inputs.extra_data import read_extra_data


def _write(tmp_path, document, name="extra.json"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def test_real_samples(shared_data):
    folder = shared_data / "preprocessor/extra_data/empiar"
    assert read_extra_data(
        folder / "empiar-10070/extra_data_empiar_10070.json"
    ).volume_voxel_size == (9.0, 9.0, 15.0)
    assert read_extra_data(
        folder / "empiar-11756/extra_data_empiar_11756.json"
    ).volume_voxel_size == (7.84, 7.84, 7.84)
    names = read_extra_data(folder / "empiar-10988/extra_data_empiar_10988.json").segment_names
    assert names["TS_026.labels"]["2"] == "mitochondria"
    assert names["TS_026.labels"]["13"] == "not identified compartment"
    assert len(names["TS_026.labels"]) == 12


def test_full_document_and_alias(tmp_path):
    extra = read_extra_data(
        _write(
            tmp_path,
            {
                "volume": {
                    "voxel_size": [1, 2, 3],
                    "channel_ids_mapping": {"0": "dna"},
                    "dataset_specific_data": {"ometiff": {"missing_dimensions": ["T"]}},
                },
                "segmentation": {
                    "segmentation_ids_mapping": {"mask_a": "membranes"},
                    "custom_segment_ids_mapping": {"membranes": {"1": "outer"}},
                    "segment_ids_to_segment_names_mapping": {"membranes": {"2": "inner"}},
                },
                "entry_metadata": {"description": "a cell", "url": None},
            },
        )
    )
    assert extra.volume_voxel_size == (1.0, 2.0, 3.0)
    assert extra.channel_ids_mapping == {"0": "dna"}
    assert extra.volume_dataset_specific["ometiff"]["missing_dimensions"] == ["T"]
    assert extra.segmentation_ids_mapping == {"mask_a": "membranes"}
    assert extra.segment_names == {"membranes": {"1": "outer", "2": "inner"}}
    assert extra.entry_metadata == {"description": "a cell", "url": None}


@pytest.mark.parametrize(
    "document, message",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "$: must be a JSON object"),
        (
            {"volume": {"voxel_size": [1, 2]}},
            "$.volume.voxel_size: must have at least 3 items, not 2",
        ),
        ({"volume": {"voxel_size": [1, 0, 2]}}, "$.volume.voxel_size[1]: must be greater than 0"),
        (
            {"volume": {"voxel_size": [1, "2", 3]}},
            '$.volume.voxel_size[1]: must be a number (got "2")',
        ),
        ({"volume": {"voxelsize": [1, 2, 3]}}, "$.volume: unknown key(s) voxelsize"),
        (
            {"segmentation": {"segmentation_ids_mapping": {"a": 3}}},
            "$.segmentation.segmentation_ids_mapping.a: must be a string (got 3)",
        ),
        (
            {"segmentation": {"segmentation_ids_mapping": {"a": ""}}},
            "$.segmentation.segmentation_ids_mapping.a: must not be empty",
        ),
        ({"entry_metadata": {"url": 5}}, "$.entry_metadata.url: must be a string"),
        ({"extras": {}}, "$: unknown key(s) extras"),
    ],
)
def test_invalid_documents_name_the_file_and_the_problem(tmp_path, document, message):
    path = _write(tmp_path, document)
    with pytest.raises(InputFormatError) as info:
        read_extra_data(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such file"):
        read_extra_data(tmp_path / "none.json")
