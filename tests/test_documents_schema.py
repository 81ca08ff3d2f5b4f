"""The typed entry documents' schema checks (pipeline/db/documents.py): strict types, bounds,
required and unknown keys, key order as read, and that the module needs no pydantic."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.db.documents import (
    Annotations,
    Description,
    DocumentError,
    EntryDocuments,
    Metadata,
    TimeInfo,
    parse_geometric,
)


def _metadata() -> dict:
    box = {"origin": [-64, -64, -64], "voxel_size": [2.0, 2.0, 2.0], "grid_dimensions": [64] * 3}
    return {
        "entry_id": {"source_db_name": "custom", "source_db_id": "e"},
        "volumes": {
            "channel_ids": ["0"],
            "time_info": {"kind": "range", "start": 0, "end": 0, "units": "millisecond"},
            "volume_sampling_info": {
                "spatial_downsampling_levels": [{"level": 1, "available": True}],
                "boxes": {"1": box},
                "descriptive_statistics": {
                    "1": {"0": {"0": {"mean": 0.5, "std": 1.0, "min": 0, "max": 2.25}}}
                },
                "time_transformations": [],
                "source_axes_units": {},
                "original_axis_order": [0, 1, 2],
            },
        },
        "segmentation_lattices": {
            "segmentation_ids": [],
            "segmentation_sampling_info": {},
            "time_info": {},
        },
        "segmentation_meshes": {
            "segmentation_ids": [],
            "segmentation_metadata": {},
            "time_info": {},
        },
        "geometric_segmentation": {"segmentation_ids": [], "time_info": {}},
    }


def _problem(document: dict) -> str:
    with pytest.raises(DocumentError) as info:
        Metadata.from_json(json.dumps(document))
    return str(info.value)


def test_a_document_reads_back_to_the_same_bytes_and_values():
    text = json.dumps(_metadata(), indent=4) + "\n"
    parsed = Metadata.from_json(text)
    assert parsed.to_json() == text.encode()
    box = parsed.volumes.volume_sampling_info.boxes["1"]
    assert box.origin == [-64, -64, -64] and type(box.origin[0]) is int
    assert box.voxel_size == [2.0, 2.0, 2.0] and type(box.voxel_size[0]) is float
    assert parsed.volumes.time_info.frames == range(0, 1)


@pytest.mark.parametrize(
    "edit, where",
    [
        # bool is not an integer, a string not a number, an integer beyond int64 not a float
        (lambda d: d["volumes"]["time_info"].update(end=True), "$.volumes.time_info.end"),
        (
            lambda d: d["volumes"]["volume_sampling_info"]["boxes"]["1"]["origin"].__setitem__(
                0, "1"
            ),
            '$.volumes.volume_sampling_info.boxes["1"].origin[0]',
        ),
        (
            lambda d: d["volumes"]["volume_sampling_info"]["boxes"]["1"]["voxel_size"].__setitem__(
                2, 10**30
            ),
            '$.volumes.volume_sampling_info.boxes["1"].voxel_size[2]',
        ),
        (
            lambda d: d["volumes"]["volume_sampling_info"]["boxes"]["1"].update(
                grid_dimensions=[64, 64]
            ),
            '$.volumes.volume_sampling_info.boxes["1"].grid_dimensions: List should have at',
        ),
        (
            lambda d: d["volumes"]["volume_sampling_info"]["spatial_downsampling_levels"][0].update(
                level=0
            ),
            "$.volumes.volume_sampling_info.spatial_downsampling_levels[0].level: Input should be "
            "greater than or equal to 1 (got 0)",
        ),
        (lambda d: d["volumes"]["time_info"].update(kind="list"), "$.volumes.time_info.kind"),
        (lambda d: d["volumes"].pop("channel_ids"), "$.volumes.channel_ids: Field required"),
        (
            lambda d: d["segmentation_meshes"].update(colour=1),
            "$.segmentation_meshes.colour: Extra inputs are not permitted",
        ),
        (lambda d: d.update(volumes=[]), "$.volumes"),
        (lambda d: d["volumes"].update(channel_ids=[]), "$.volumes.channel_ids"),
        (
            lambda d: d["volumes"]["time_info"].update(start=3, end=2),
            "$.volumes.time_info: end 2 before start 3",
        ),
    ],
)
def test_values_outside_the_schema_are_problems_naming_their_path(edit, where):
    document = _metadata()
    edit(document)
    assert _problem(document).startswith(f"metadata.json: {where}")


def test_documents_made_in_code_are_checked_too():
    with pytest.raises(ValueError, match=r"\$.end: Input should be a valid integer"):
        TimeInfo(kind="range", start=0, end="1", units="ms")
    with pytest.raises(ValueError, match=r"\$.start: Field required"):
        TimeInfo(kind="range", end=1, units="ms")
    stats = _metadata()
    stats["volumes"]["volume_sampling_info"]["descriptive_statistics"]["1"]["0"]["0"]["std"] = (
        float("nan")
    )
    with pytest.raises(ValueError, match=r"\.std: Input should be a finite number"):
        Metadata.validate(stats)


def test_items_keep_unknown_keys_and_the_order_they_were_read_in():
    documents = EntryDocuments.new("custom", "e")
    item = {
        "target_kind": "entry",
        "colour": "blue",  # a key this version does not know: kept, in its place
        "id": "d1",
        "name": "whole entry",
    }
    documents.merge({"descriptions": {"d1": item}})
    written = json.loads(documents.annotations.to_json())
    assert list(written["descriptions"]["d1"].items()) == list(item.items())
    # made in code: every field, in the schema's order
    documents.add_description({"id": "d2", "target_kind": "entry"})
    assert list(json.loads(documents.annotations.to_json())["descriptions"]["d2"]) == [
        "id",
        "target_kind",
        "target_id",
        "name",
        "external_references",
        "is_hidden",
        "time",
        "details",
        "metadata",
    ]
    with pytest.raises(DocumentError, match=r"source: \$.descriptions\[\"d3\"\].target_kind"):
        documents.merge({"descriptions": {"d3": {"id": "d3", "target_kind": 1}}}, "source")


def test_fields_set_after_reading_follow_the_keys_read():
    document = _metadata()
    parsed = Metadata.from_json(json.dumps(document))
    assert "entry_metadata" not in json.loads(parsed.to_json())
    documents = EntryDocuments(parsed, Annotations.empty("custom", "e"))
    documents.set_entry_metadata("a map", None)
    written = json.loads(parsed.to_json())
    assert list(written) == [*document, "entry_metadata"]
    assert written["entry_metadata"] == {"description": "a map", "url": None}
    description = Description.validate({"target_kind": "entry", "id": "x"}, as_read=True)
    description.name = "named later"
    assert list(description.dump()) == ["target_kind", "id", "name"]


def test_geometric_items_are_checked():
    good = [
        {
            "segmentation_id": "g",
            "primitives": {
                "0": {
                    "shape_primitive_list": [
                        {"id": 1, "kind": "sphere", "center": [0, 0, 0], "radius": 2.0}
                    ]
                }
            },
        }
    ]
    text = json.dumps(good, indent=4) + "\n"
    try:
        items = parse_geometric(text)
    except DocumentError as exc:  # the primitive's parameters are the model's to judge
        pytest.fail(str(exc))
    assert items[0].primitive_frames() == {1: {0}}
    bad = json.loads(text)
    bad[0]["primitives"]["x"] = bad[0]["primitives"]["0"]
    with pytest.raises(DocumentError, match=r"\$\[0\]: primitives: frame 'x'"):
        parse_geometric(json.dumps(bad))


def test_the_documents_module_imports_no_pydantic():
    code = (
        "import sys, pipeline.db.documents as d; "
        "d.EntryDocuments.new('a', 'b').files(); "
        "print(sorted(m for m in ('pydantic', 'pydantic_core') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
