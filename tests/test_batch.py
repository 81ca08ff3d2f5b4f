"""``batch``: many entries from a CSV or JSON list, failures reported per entry."""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest

from pipeline.batch import read_batch
from pipeline.db.entry import open_entry
from pipeline.errors import InputFormatError
from tests.conftest import tree_digest, write_mrc


@pytest.fixture
def maps(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "lists"
    folder.mkdir()
    a = rng.normal(size=(12, 10, 8)).astype(np.float32)
    b = rng.normal(size=(6, 9, 7)).astype(np.float32)
    labels = (np.arange(a.size).reshape(a.shape) % 4).astype(np.uint8)
    write_mrc(folder / "a.mrc", a, voxel_size=2.0)
    write_mrc(folder / "a_mask.mrc", labels, voxel_size=2.0)
    write_mrc(folder / "b.mrc", b, voxel_size=1.5)
    return folder, a, b


def _batch(run_cli, tmp_path, listing, *extra):
    return run_cli(
        "batch",
        listing,
        "--working-folder",
        tmp_path / "work",
        "--db-path",
        tmp_path / "db",
        *extra,
    )


def test_csv_list_goes_on_after_a_failed_entry(run_cli, tmp_path, maps):
    folder, a, _ = maps
    (folder / "list.csv").write_text(
        "entry_id,source_db,source_db_name,inputs,quantize_dtype_str\n"
        "a,custom,Custom,map:a.mrc;mask:a_mask.mrc,\n"
        "broken,custom,,map:nothing-here.mrc,\n"
        "b,custom,,map:b.mrc,u1\n"
    )
    result = _batch(run_cli, tmp_path, folder / "list.csv")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stdout.splitlines() if line.split()[0] in ("ok", "failed")]
    assert [line.split()[:2] for line in lines] == [
        ["ok", "custom/a"],
        ["failed", "custom/broken"],
        ["ok", "custom/b"],
    ]
    assert "row 3" in lines[1] and "nothing-here.mrc: no such file" in lines[1]
    assert "batch: 2 of 3 entries done, 1 failed" in result.stdout
    assert "Traceback" not in result.output
    db = tmp_path / "db"
    assert sorted(p.name for p in (db / "custom").iterdir()) == ["a", "b"]
    entry = open_entry(db, "custom", "a")
    np.testing.assert_array_equal(entry.read_volume(1, 0, "0"), a.transpose(2, 1, 0))
    assert json.loads((db / "custom/a/metadata.json").read_text())["entry_id"] == {
        "source_db_name": "Custom",
        "source_db_id": "a",
    }
    # per-row options: b was quantized to one byte
    with zipfile.ZipFile(db / "custom/b/data.zip") as zf:
        zarray = json.loads(zf.read("volume_data/1/0/0/.zarray"))
    assert zarray["dtype"] == "|u1"


def test_json_list_with_both_input_forms(run_cli, tmp_path, maps):
    folder, _, b = maps
    listing = [
        {
            "entry_id": "a",
            "source_db": "emdb",
            "source_db_id": "EMD-0001",
            "inputs": [{"path": str(folder / "a.mrc"), "kind": "map"}, ["a_mask.mrc", "mask"]],
            "min_size_per_downsampling_lvl_mb": 0.0001,
        },
        {"entry_id": "b", "source_db": "emdb", "inputs": [["b.mrc", "map"]]},
    ]
    (folder / "list.json").write_text(json.dumps(listing))
    result = _batch(run_cli, tmp_path, folder / "list.json")
    assert result.exit_code == 0, result.output
    assert "batch: 2 of 2 entries done, 0 failed" in result.stdout
    meta = json.loads((tmp_path / "db/emdb/a/metadata.json").read_text())
    assert meta["segmentation_lattices"]["segmentation_ids"] == ["a_mask"]
    assert meta["entry_id"]["source_db_id"] == "EMD-0001"
    entry = open_entry(tmp_path / "db", "emdb", "b")
    np.testing.assert_array_equal(entry.read_volume(1, 0, "0"), b.transpose(2, 1, 0))


def test_an_entry_already_in_the_database_fails_alone(run_cli, tmp_path, maps):
    folder, _, _ = maps
    (folder / "list.csv").write_text("entry_id,source_db,inputs\na,x,map:a.mrc\nb,x,map:b.mrc\n")
    assert _batch(run_cli, tmp_path, folder / "list.csv").exit_code == 0
    before = tree_digest(tmp_path / "db")
    again = _batch(run_cli, tmp_path, folder / "list.csv")
    assert again.exit_code == 1
    assert again.stdout.count("already exists") == 2, again.stdout
    assert tree_digest(tmp_path / "db") == before


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("[{]", ".json", "not valid JSON"),
        ('{"entry_id": "a"}', ".json", "list of objects"),
        (
            '[{"entry_id": "a", "inputs": [["a.mrc", "map"]]}]',
            ".json",
            "$[0].source_db: missing",
        ),
        (
            "entry_id,source_db,inputs\na,x,a.mrc\n",
            ".csv",
            "row 2: inputs: input 'a.mrc' is not kind:path",
        ),
        (
            "entry_id,source_db,inputs,colour\na,x,map:a.mrc,red\n",
            ".csv",
            "unknown key(s) colour",
        ),
        ("entry_id,source_db,inputs\na,x,map:a.mrc\na,x,map:b.mrc\n", ".csv", "already listed"),
        ("entry_id,source_db,inputs\n", ".csv", "no entries"),
        ("entry_id,source_db,inputs\na,x,map:a.mrc,mask:b.mrc\n", ".csv", "more cells than"),
        (
            '[{"entry_id": 5, "source_db": "x", "inputs": [["a", "map"]]}]',
            ".json",
            "$[0].entry_id: must be a string (got 5)",
        ),
        (
            '[{"entry_id": "a", "source_db": "x", "inputs": [["a", "map"]], '
            '"min_downsampling_level": 2.5}]',
            ".json",
            "$[0].min_downsampling_level: must be an integer (got 2.5)",
        ),
        (  # kinds and names are checked when the list is read, not when the row runs
            "entry_id,source_db,inputs\na,x,blob:a.mrc\n",
            ".csv",
            "row 2: inputs: unknown input kind 'blob'",
        ),
        (
            '[{"entry_id": "e 1", "source_db": "x", "inputs": [["a.mrc", "map"]]}]',
            ".json",
            "$[0].entry_id: 'e 1' is not a valid name",
        ),
        (
            "entry_id,source_db,inputs\na,../x,map:a.mrc\n",
            ".csv",
            "row 2: source_db: '../x' is not a valid name",
        ),
    ],
)
def test_invalid_lists_are_one_line_errors(run_cli, tmp_path, maps, text, suffix, message):
    folder, _, _ = maps
    listing = folder / f"list{suffix}"
    listing.write_text(text)
    with pytest.raises(InputFormatError, match=re.escape(message)):
        read_batch(listing)
    result = _batch(run_cli, tmp_path, listing)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {listing}: ")
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--max-memory", "lots"), "--max-memory: not a size: 'lots'"),
        (("--workers", "0"), "--workers must be at least 1"),
        (("--workers", "2", "--scheduler", "tcp://127.0.0.1:9"), "exclude each other"),
        (("--max-memory", "10MB"), "is below the least"),
    ],
)
def test_shared_run_options_are_checked_once(run_cli, tmp_path, maps, extra, message):
    folder, _, _ = maps
    (folder / "list.csv").write_text("entry_id,source_db,inputs\na,x,map:a.mrc\nb,x,map:b.mrc\n")
    result = _batch(run_cli, tmp_path, folder / "list.csv", *extra)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "ok " not in result.stdout and "failed " not in result.stdout


def test_utf8_byte_order_mark_of_a_spreadsheet_export(run_cli, tmp_path, maps):
    folder, _, _ = maps
    (folder / "list.csv").write_bytes(b"\xef\xbb\xbfentry_id,source_db,inputs\na,x,map:a.mrc\n")
    result = _batch(run_cli, tmp_path, folder / "list.csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "db" / "x" / "a" / "data.zip").exists()
