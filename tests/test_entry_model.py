"""One entry model (issue 10): typed documents, referential integrity, validate, refusals, list."""

from __future__ import annotations

import json
import shutil
import threading
import time
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import preprocess_args, tree_digest, write_mrc

from cli.main import cli
from pipeline.db.documents import Annotations, DocumentError, Metadata, parse_geometric
from pipeline.db.layout import EntryLocation
from pipeline.db.validate import validate_entry

ENTRY = "emdb/emd-1832"

SHAPES = {
    "segmentation_id": "shapes",
    "shape_primitives_input": {
        "0": [
            {"kind": "sphere", "parameters": {"id": 1, "center": [1, 2, 3], "radius": 2}},
            {"kind": "sphere", "parameters": {"id": 2, "center": [4, 2, 3], "radius": 1}},
        ]
    },
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 10x12x14 map, a mask "labels" with segments 1, 2 and 5, and two spheres."""
    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(7)
    density = rng.normal(size=(14, 12, 10)).astype(np.float32)
    labels = np.zeros(density.shape, np.int16)
    labels[1:4, 2:5, 3:6] = 1
    labels[6:9, 5:8, 1:3] = 2
    labels[10:12, 1:3, 6:9] = 5
    shapes = folder / "shapes.json"
    shapes.write_text(json.dumps(SHAPES))
    return {
        "map": write_mrc(folder / "map.mrc", density, voxel_size=2.0),
        "mask": write_mrc(folder / "labels.mrc", labels, voxel_size=2.0),
        "shapes": shapes,
    }


def _add(run_cli, tmp_path, tiny, *more):
    inputs = [
        (tiny["map"], "map"),
        (tiny["mask"], "mask"),
        (tiny["shapes"], "geometric_segmentation"),
    ]
    result = run_cli(*preprocess_args([*inputs, *more], tmp_path))
    assert result.exit_code == 0, result.output
    return tmp_path / "db" / "emdb" / "emd-1832"


def _annotations(folder):
    return json.loads((folder / "annotations.json").read_text())


def _write_json(path, document):
    path.write_text(json.dumps(document))
    return path


def _edit(run_cli, tmp_path, command, path):
    """``edit-descriptions`` / ``edit-segment-annotations`` of the test entry with ``path``."""
    return run_cli(
        command,
        "--db-path",
        tmp_path / "db",
        "--source-db",
        "emdb",
        "--entry-id",
        "emd-1832",
        "--data-json-path",
        path,
    )


# --- 1. typed documents -------------------------------------------------------------------


def test_documents_round_trip_to_the_same_bytes(run_cli, tmp_path, tiny):
    folder = _add(run_cli, tmp_path, tiny)
    metadata = (folder / "metadata.json").read_bytes()
    annotations = (folder / "annotations.json").read_bytes()
    geometric = (folder / "geometric_segmentation.json").read_bytes()
    assert Metadata.from_json(metadata).to_json() == metadata
    assert Annotations.from_json(annotations).to_json() == annotations
    from pipeline.db.documents import geometric_json

    assert geometric_json(parse_geometric(geometric)) == geometric
    parsed = Metadata.from_json(metadata)
    assert parsed.segmentation_lattices.segmentation_ids == ["labels"]
    assert parsed.volumes is not None
    assert parsed.volumes.volume_sampling_info.boxes["1"].grid_dimensions == [10, 12, 14]


@pytest.mark.parametrize(
    "text, where",
    [
        ("[]", "metadata.json: $: not a JSON object (a list)"),
        ("null", "metadata.json: $: not a JSON object (null)"),
        ("{", "metadata.json: not valid JSON"),
        ("[" * 100000, "metadata.json: not valid JSON: nested too deeply"),
    ],
)
def test_malformed_json_is_a_problem_naming_the_file(text, where):
    with pytest.raises(DocumentError) as info:
        Metadata.from_json(text)
    assert str(info.value).startswith(where)


def test_malformed_values_name_their_json_path(run_cli, tmp_path, tiny):
    folder = _add(run_cli, tmp_path, tiny)
    good = json.loads((folder / "metadata.json").read_text())

    def problem(edit):
        document = json.loads(json.dumps(good))
        edit(document)
        with pytest.raises(DocumentError) as info:
            Metadata.from_json(json.dumps(document))
        return str(info.value)

    def huge_end(d):
        d["volumes"]["time_info"]["end"] = 10**9

    def big_int(d):
        d["volumes"]["volume_sampling_info"]["boxes"]["1"]["grid_dimensions"][0] = 10**30

    def string_voxel(d):
        d["volumes"]["volume_sampling_info"]["boxes"]["2"]["voxel_size"][1] = "4"

    def lattice_without_info(d):
        d["segmentation_lattices"]["segmentation_ids"].append("ghost")

    assert "$.volumes.time_info: 1000000001 time frames" in problem(huge_end)
    assert '$.volumes.volume_sampling_info.boxes["1"].grid_dimensions[0]' in problem(big_int)
    assert '$.volumes.volume_sampling_info.boxes["2"].voxel_size[1]' in problem(string_voxel)
    assert "segmentation_sampling_info: ids" in problem(lattice_without_info)
    with pytest.raises(DocumentError, match=r"not a number"):
        Metadata.from_json((folder / "metadata.json").read_text().replace("2.0", "NaN", 1))
    with pytest.raises(DocumentError, match=r"annotations.json: \$.segment_annotations\[0\].color"):
        doc = _annotations(folder)
        doc["segment_annotations"][0]["color"] = [1, 0, 0]
        Annotations.from_json(json.dumps(doc))


def test_no_module_outside_db_spells_zip_or_document_keys():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spelled = (
        '"volume_data/',
        '"lattice_segmentation_data/',
        '"mesh_segmentation_data/',
        'f"volume_data',
        'f"lattice_segmentation_data',
        'f"mesh_segmentation_data',
        '["segmentation_lattices"]',
        '["segmentation_meshes"]',
        '["geometric_segmentation"]',
        '["segment_annotations"]',
        '["descriptions"]',
        '["volumes"]',
        '["segmentation_ids"]',
        '["volume_sampling_info"]',
        '"metadata.json"',
        '"annotations.json"',
        '"geometric_segmentation.json"',
        '"detail_lvls"',
        '"mesh_timeframes"',
        '"shape_primitive_list"',
        '"quantization_data_dict"',
        '"spatial_downsampling_levels"',
        '"segment_kind"',
        '"target_kind"',
        '"num_steps"',
        '"to_remove_negatives"',
        '"descriptive_statistics"',
    )
    offenders = [
        f"{path.relative_to(root)}: {word}"
        for path in [*root.glob("pipeline/**/*.py"), *root.glob("cli/*.py")]
        if not {"db", "inputs"} & set(path.relative_to(root).parts)  # inputs: input formats
        for word in spelled
        if word in path.read_text()
    ]
    assert offenders == []


# --- 2. referential integrity ---------------------------------------------------------------


def _description(ident, kind, segmentation, segment, time=0):
    return {
        "id": ident,
        "target_kind": kind,
        "target_id": {"segmentation_id": segmentation, "segment_id": segment},
        "name": "edited",
        "external_references": [],
        "is_hidden": None,
        "time": time,
        "details": None,
        "metadata": None,
    }


@pytest.mark.parametrize(
    "item, message",
    [
        (_description("d1", "lattice", "nope", 1), "description d1 names lattice 'nope'"),
        (
            _description("d2", "lattice", "labels", 4242),
            "description d2: segment 4242 is not in lattice 'labels'",
        ),
        (
            _description("d3", "lattice", "labels", 1, [0, 3]),
            "description d3: time [3] outside lattice 'labels'",
        ),
        (
            _description("d4", "primitive", "shapes", 9),
            "description d4: primitive 9 is not in geometric segmentation 'shapes'",
        ),
        (_description("d5", "mesh", "labels", 1), "description d5 names mesh set 'labels'"),
    ],
)
def test_edits_naming_what_is_not_there_are_refused(run_cli, tmp_path, tiny, item, message):
    folder = _add(run_cli, tmp_path, tiny)
    before = tree_digest(tmp_path / "db")
    path = _write_json(tmp_path / "edit.json", [item])
    result = _edit(run_cli, tmp_path, "edit-descriptions", path)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert tree_digest(tmp_path / "db") == before
    assert folder.is_dir()


def test_edits_name_only_frames_where_the_segment_occurs(run_cli, tmp_path, tiny):
    """Primitive 1 at frames 0 and 1, primitive 2 only at frame 1: an edit naming primitive 2
    at frame 0 is refused (the viewer would draw it there), at frame 1 accepted."""
    shapes = {
        "segmentation_id": "moving",
        "shape_primitives_input": {
            "0": [{"kind": "sphere", "parameters": {"id": 1, "center": [1, 2, 3], "radius": 2}}],
            "1": [
                {"kind": "sphere", "parameters": {"id": 1, "center": [2, 2, 3], "radius": 2}},
                {"kind": "sphere", "parameters": {"id": 2, "center": [5, 2, 3], "radius": 1}},
            ],
        },
    }
    path = _write_json(tmp_path / "moving.json", shapes)
    inputs = [(tiny["map"], "map"), (path, "geometric_segmentation")]
    assert run_cli(*preprocess_args(inputs, tmp_path)).exit_code == 0
    before = tree_digest(tmp_path / "db")
    db = ("--db-path", tmp_path / "db", "--source-db", "emdb", "--entry-id", "emd-1832")
    edit = _write_json(tmp_path / "e.json", [_description("d", "primitive", "moving", 2, [0, 1])])
    result = run_cli("edit-descriptions", *db, "--data-json-path", edit)
    assert result.exit_code == 2
    assert "primitive 2 of geometric segmentation 'moving' does not occur at time [0]" in (
        result.stderr
    )
    assert tree_digest(tmp_path / "db") == before
    _write_json(edit, [_description("d", "primitive", "moving", 2, 1)])
    assert run_cli("edit-descriptions", *db, "--data-json-path", edit).exit_code == 0
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 0
    # validate holds stored annotations to the same rule
    folder = tmp_path / "db" / "emdb" / "emd-1832"
    annotations = _annotations(folder)
    annotations["descriptions"]["d"]["time"] = [0, 1]
    (folder / "annotations.json").write_text(json.dumps(annotations, indent=4) + "\n")
    result = run_cli("validate", "--db-path", tmp_path / "db")
    assert result.exit_code == 1
    assert "description d: primitive 2 of geometric segmentation 'moving' does not occur at " in (
        result.stdout
    )


def test_segment_annotation_for_a_missing_segment_is_refused(run_cli, tmp_path, tiny):
    _add(run_cli, tmp_path, tiny)
    before = tree_digest(tmp_path / "db")
    item = {
        "id": "a1",
        "segment_kind": "lattice",
        "segment_id": 4242,
        "segmentation_id": "labels",
        "color": [1, 0, 0, 1],
        "time": 0,
    }
    path = _write_json(tmp_path / "sa.json", [item])
    result = _edit(run_cli, tmp_path, "edit-segment-annotations", path)
    assert result.exit_code == 2 and "segment annotation a1: segment 4242" in result.stderr
    assert tree_digest(tmp_path / "db") == before
    item["segment_id"] = 5  # an existing segment: accepted, and the entry stays valid
    _write_json(path, [item])
    result = _edit(run_cli, tmp_path, "edit-segment-annotations", path)
    assert result.exit_code == 0, result.output
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 0


def test_extra_data_names_for_absent_labels_are_a_warning(run_cli, tmp_path, tiny):
    extra = _write_json(
        tmp_path / "extra.json",
        {
            "segmentation": {
                "segment_ids_to_segment_names_mapping": {
                    "labels": {"1": "one", "3": "three", "7": "seven"}
                }
            }
        },
    )
    folder = _add(run_cli, tmp_path, tiny, (extra, "extra_data"))
    # the run's warning names the absent ones
    annotations = _annotations(folder)
    names = {
        d["target_id"]["segment_id"]: d["name"]
        for d in annotations["descriptions"].values()
        if d["target_kind"] == "lattice"
    }
    assert names == {1: "one", 2: "segment 2", 5: "segment 5"}
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 0


def test_extra_data_warning_text(run_cli, tmp_path, tiny):
    extra = _write_json(
        tmp_path / "extra.json",
        {
            "segmentation": {
                "segment_ids_to_segment_names_mapping": {"labels": {"3": "three", "7": "seven"}}
            }
        },
    )
    inputs = [(tiny["map"], "map"), (tiny["mask"], "mask"), (extra, "extra_data")]
    result = run_cli(*preprocess_args(inputs, tmp_path))
    assert result.exit_code == 0
    assert "lattice labels: no voxels of segment(s) 3, 7 named in the inputs" in result.stderr


# --- 3. validate ----------------------------------------------------------------------------


def _flip_member_byte(zip_path, member):
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo(member)
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
        size = info.compress_size
    with open(zip_path, "r+b") as f:
        f.seek(offset + size // 2)
        byte = f.read(1)
        f.seek(offset + size // 2)
        f.write(bytes([byte[0] ^ 0x40]))


def test_a_flipped_byte_in_a_volume_chunk_is_found(run_cli, tmp_path, tiny):
    folder = _add(run_cli, tmp_path, tiny)
    _flip_member_byte(folder / "data.zip", "volume_data/1/0/0/0.0.0")
    result = run_cli("validate", "--db-path", tmp_path / "db")
    assert result.exit_code == 1
    assert f"{ENTRY}: volume_data/1/0/0: unreadable chunk (Bad CRC-32" in result.stdout
    assert run_cli("validate", "--quick", "--db-path", tmp_path / "db").exit_code == 0


DAMAGES = {
    "metadata []": lambda f: (f / "metadata.json").write_text("[]"),
    "annotations null": lambda f: (f / "annotations.json").write_text("null"),
    "truncated zip": lambda f: (f / "data.zip").write_bytes((f / "data.zip").read_bytes()[:3000]),
    "flipped metadata": lambda f: (f / "metadata.json").write_bytes(
        (f / "metadata.json").read_bytes().replace(b'"volumes"', b'"volumeS"')
    ),
    "huge time": lambda f: (f / "metadata.json").write_text(
        (f / "metadata.json").read_text().replace('"end": 0', '"end": 1000000000', 1)
    ),
    "no annotations": lambda f: (f / "annotations.json").unlink(),
    "geometric garbage": lambda f: (f / "geometric_segmentation.json").write_bytes(b"\xff\x00"),
}


def test_validate_reports_every_entry_and_foreign_folders(run_cli, tmp_path, tiny):
    folder = _add(run_cli, tmp_path, tiny)
    for n, name in enumerate(DAMAGES):
        copy = folder.parent / f"bad-{n}"
        shutil.copytree(folder, copy)
        DAMAGES[name](copy)
    (folder.parent / "my entry").mkdir()
    (tmp_path / "db" / "README").write_text("hello")
    result = run_cli("validate", "--db-path", tmp_path / "db")
    assert result.exit_code == 1
    out = result.stdout
    assert f"{ENTRY}: ok" in out
    for n in range(len(DAMAGES)):
        assert f"emdb/bad-{n}: " in out and f"emdb/bad-{n}: ok" not in out
    assert "emdb/my entry: not a valid entry id" in out
    assert "README: not a source database folder" in out
    assert "1000000001 time frames" in out
    listing = run_cli("list", "--db-path", tmp_path / "db")
    assert listing.exit_code == 0
    assert "emdb/bad-0\tdamaged: metadata.json: $: not a JSON object (a list)" in listing.stdout


def test_validate_and_list_of_a_path_that_is_not_a_database(run_cli, tmp_path):
    for command in ("validate", "list"):
        result = run_cli(command, "--db-path", tmp_path / "missing")
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ") and "not a database" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "file").write_text("x")
    assert run_cli("validate", "--db-path", tmp_path / "file").exit_code == 2
    (tmp_path / "other" / "photos").mkdir(parents=True)
    (tmp_path / "other" / "a.txt").write_text("x")
    assert run_cli("validate", "--db-path", tmp_path / "other").exit_code == 2


def test_a_folder_tree_without_entry_files_is_not_a_database(run_cli, tmp_path, tiny):
    """/etc or a source checkout have <folder>/<folder> pairs but no entry's files: one line,
    exit 2 (not thousands of 'metadata.json: missing' lines)."""
    (tmp_path / "tree" / "X11" / "xkb").mkdir(parents=True)
    (tmp_path / "tree" / "docs" / "a.md").parent.mkdir()
    (tmp_path / "tree" / "docs" / "a.md").write_text("x")
    for command in ("validate", "list"):
        result = run_cli(command, "--db-path", tmp_path / "tree")
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.strip().splitlines() == [
            f"error: {tmp_path / 'tree'}: not a database (no <source-db>/<entry-id> folder "
            "holds an entry's files; e.g. X11/xkb)"
        ]
    # a database with one entry whose files are all gone is still a database
    folder = _add(run_cli, tmp_path, tiny)
    (folder.parent / "gutted").mkdir()
    result = run_cli("validate", "--quick", "--db-path", tmp_path / "db")
    assert result.exit_code == 1
    assert "emdb/gutted: metadata.json: missing" in result.stdout
    assert f"{ENTRY}: ok" in result.stdout


def test_a_document_or_archive_that_is_a_folder_is_a_problem_of_that_entry(
    run_cli, tmp_path, tiny
):
    folder = _add(run_cli, tmp_path, tiny)
    other = folder.parent / "other"
    shutil.copytree(folder, other)
    (folder / "metadata.json").unlink()
    (folder / "metadata.json").mkdir()
    (other / "data.zip").unlink()
    (other / "data.zip").mkdir()
    for command in (("validate",), ("validate", "--quick"), ("list",)):
        result = run_cli(*command, "--db-path", tmp_path / "db")
        assert "Traceback" not in result.output and result.stderr == "", result.output
        assert result.exit_code == (0 if command == ("list",) else 1)
        assert "emdb/emd-1832" in result.stdout and "metadata.json: not a file" in result.stdout
        assert "emdb/other" in result.stdout and "data.zip: not a file" in result.stdout


def _rewrite_member(zip_path, member, change):
    with zipfile.ZipFile(zip_path) as zf:
        items = [(i.filename, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name, data in items:
            zf.writestr(name, change(data) if name == member else data)


@pytest.mark.parametrize(
    "member", ["volume_data/1/0/0/.zarray", "lattice_segmentation_data/labels/1/0/grid/.zarray"]
)
def test_an_array_of_objects_where_numbers_belong_is_a_problem(run_cli, tmp_path, tiny, member):
    folder = _add(run_cli, tmp_path, tiny)
    meta = json.loads(zipfile.ZipFile(folder / "data.zip").read(member))
    stored = meta["dtype"]
    old = f'"{stored}"'.encode()
    _rewrite_member(folder / "data.zip", member, lambda b: b.replace(old, b'"|O"'))
    for quick in ((), ("--quick",)):
        result = run_cli("validate", *quick, "--db-path", tmp_path / "db")
        assert result.exit_code == 1, result.output
        path = member[: -len("/.zarray")]
        assert f"{ENTRY}: {path}: dtype |O is not a" in result.stdout


def test_staging_leftovers_are_listed_with_their_size(run_cli, tmp_path, tiny):
    _add(run_cli, tmp_path, tiny)
    left = tmp_path / "db" / "_staging" / "emdb@emd-1832@dead"
    left.mkdir(parents=True)
    (left / "data.zip").write_bytes(b"x" * 1234)
    result = run_cli("validate", "--db-path", tmp_path / "db")
    assert result.exit_code == 0
    assert "_staging/emdb@emd-1832@dead: staging folder, 1234 bytes" in result.stdout


def test_validate_during_commits_sees_one_version(run_cli, tmp_path, tiny):
    """Commits alternate between two versions whose documents do not mix (the second has no
    geometric segmentation, its metadata, annotations and geometric_segmentation.json all
    differ); a validate overlapping them must see one version or the other, never a mix."""
    import os

    from pipeline.db.commit import staged_entry
    from pipeline.db.lock import entry_lock

    folder = _add(run_cli, tmp_path, tiny)
    versions = [tmp_path / "with", tmp_path / "without"]
    shutil.copytree(folder, versions[0])
    db = ("--db-path", tmp_path / "db", "--source-db", "emdb", "--entry-id", "emd-1832")
    removed = run_cli("remove-segmentation", *db, "--kind", "geometric", "--id", "shapes")
    assert removed.exit_code == 0
    shutil.copytree(folder, versions[1])
    location = EntryLocation(tmp_path / "db", "emdb", "emd-1832")
    stop = threading.Event()
    commits = [0]
    errors = []

    def commit_loop():
        while not stop.is_set():
            source = versions[commits[0] % 2]
            try:
                with entry_lock(location), staged_entry(location) as staged:
                    names = sorted(p.name for p in source.iterdir())
                    for name in names:
                        os.link(source / name, staged.folder / name)
                    staged.replace_existing(names)
                commits[0] += 1
            except Exception as exc:  # the lock is ours alone: nothing may fail
                errors.append(exc)
                return

    thread = threading.Thread(target=commit_loop)
    thread.start()
    try:
        rounds, deadline = 0, time.monotonic() + 90
        while (commits[0] < 40 or rounds < 40) and time.monotonic() < deadline:
            assert validate_entry(location, quick=rounds % 2 == 0) == []
            rounds += 1
    finally:
        stop.set()
        thread.join()
    assert not errors and commits[0] >= 40 and rounds >= 40, (errors, commits, rounds)


# --- 4. writers refuse damaged entries ------------------------------------------------------


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_writers_refuse_a_damaged_entry(run_cli, tmp_path, tiny, damage):
    folder = _add(run_cli, tmp_path, tiny)
    DAMAGES[damage](folder)
    before = tree_digest(tmp_path / "db")
    desc = _write_json(tmp_path / "d.json", [_description("d1", "lattice", "labels", 1)])
    db = ("--db-path", tmp_path / "db", "--source-db", "emdb", "--entry-id", "emd-1832")
    commands = [
        preprocess_args([(tiny["shapes"], "geometric_segmentation")], tmp_path, mode="extend"),
        ["remove-segmentation", *db, "--kind", "lattice", "--id", "labels"],
        ["remove-segmentation", *db, "--kind", "geometric", "--id", "shapes"],
        ["remove-volume", *db],
        ["edit-descriptions", *db, "--data-json-path", desc],
        ["edit-segment-annotations", *db, "--data-json-path", desc],
        ["remove-descriptions", *db, "--id", "x"],
        ["remove-segment-annotations", *db, "--id", "x"],
    ]
    for args in commands:
        result = run_cli(*args)
        assert result.exit_code == 2, (args[0], result.output)
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in result.output
        if args[0] not in ("edit-segment-annotations",):  # its file is checked first
            assert line.startswith(f"error: {ENTRY}: damaged: ") and line.endswith("; run validate")
        assert tree_digest(tmp_path / "db") == before
    assert run_cli("list", "--db-path", tmp_path / "db").exit_code == 0
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 1
    assert run_cli("delete", *db).exit_code == 0
    assert not folder.exists()


def test_removing_annotations_repairs_dangling_references(run_cli, tmp_path, tiny):
    folder = _add(run_cli, tmp_path, tiny)
    annotations = _annotations(folder)
    annotations["descriptions"]["dangling"] = _description("dangling", "lattice", "gone", 1)
    (folder / "annotations.json").write_text(json.dumps(annotations, indent=4) + "\n")
    db = ("--db-path", tmp_path / "db", "--source-db", "emdb", "--entry-id", "emd-1832")
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 1
    assert run_cli("remove-volume", *db).exit_code == 2
    assert run_cli("remove-descriptions", *db, "--id", "dangling").exit_code == 0
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 0


# --- 5. list ------------------------------------------------------------------------------


def test_list_shows_every_segmentation_kind(run_cli, tmp_path, tiny):
    _add(run_cli, tmp_path, tiny)
    result = run_cli("list", "--db-path", tmp_path / "db")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"{ENTRY}\tlevels 1,2\tlattices labels\tmeshes -\tgeometric shapes"
    ]


# --- no traceback for any state of an entry (a little fuzzing) -----------------------------


@pytest.mark.parametrize("seed", range(6))
def test_flipped_bytes_never_end_in_a_traceback(run_cli, tmp_path, tiny, seed):
    folder = _add(run_cli, tmp_path, tiny)
    rng = np.random.default_rng(seed)
    for name in ("metadata.json", "annotations.json", "geometric_segmentation.json", "data.zip"):
        data = bytearray((folder / name).read_bytes())
        for _ in range(int(rng.integers(1, 4))):
            where = int(rng.integers(0, len(data)))
            data[where] ^= 1 << int(rng.integers(0, 8))
        if rng.random() < 0.3:
            data = data[: int(rng.integers(0, len(data)))]
        (folder / name).write_bytes(bytes(data))
    desc = _write_json(tmp_path / "d.json", [_description("d1", "lattice", "labels", 1)])
    db = ("--db-path", tmp_path / "db", "--source-db", "emdb", "--entry-id", "emd-1832")
    commands = [
        ["validate", "--db-path", tmp_path / "db"],
        ["validate", "--quick", "--db-path", tmp_path / "db"],
        ["list", "--db-path", tmp_path / "db"],
        preprocess_args([(tiny["shapes"], "geometric_segmentation")], tmp_path, mode="extend"),
        ["remove-segmentation", *db, "--kind", "lattice", "--id", "labels"],
        ["edit-descriptions", *db, "--data-json-path", desc],
        ["remove-descriptions", *db, "--id", "x"],
        ["remove-volume", *db],
        ["delete", *db],
    ]
    for args in commands:
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert isinstance(result.exception, SystemExit | None), (args, result.exception)
        assert result.exit_code in (0, 1, 2), (args, result.output)
        assert "Traceback" not in result.output


def test_validate_is_bounded_whatever_the_metadata_claims(run_cli, tmp_path, tiny):
    folder = _add(run_cli, tmp_path, tiny)
    good = (folder / "metadata.json").read_text()
    metadata = json.loads(good)
    metadata["volumes"]["time_info"]["end"] = 999_999  # a million frames, within the bound
    metadata["volumes"]["channel_ids"] = [str(c) for c in range(1000)]
    (folder / "metadata.json").write_text(json.dumps(metadata))
    started = time.perf_counter()
    problems = validate_entry(EntryLocation(tmp_path / "db", "emdb", "emd-1832"))
    assert time.perf_counter() - started < 10
    assert any("claims 2000000000 volume arrays" in p for p in problems)
    # an array claiming chunks of a terabyte is a problem, not an allocation
    with zipfile.ZipFile(folder / "data.zip") as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    meta = json.loads(members["volume_data/2/0/0/.zarray"])
    meta["chunks"] = [100000, 100000, 100000]
    members["volume_data/2/0/0/.zarray"] = json.dumps(meta).encode()
    with zipfile.ZipFile(folder / "data.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    # a Blosc chunk whose header states 2 GB is a problem before anything is allocated
    chunk = bytearray(members["volume_data/1/0/0/0.0.0"])
    chunk[4:8] = (2_000_000_000).to_bytes(4, "little")
    members["volume_data/1/0/0/0.0.0"] = bytes(chunk)
    with zipfile.ZipFile(folder / "data.zip", "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    (folder / "metadata.json").write_text(good)
    problems = validate_entry(EntryLocation(tmp_path / "db", "emdb", "emd-1832"))
    assert any("volume_data/2/0/0/.zarray: unreadable (chunks" in p for p in problems), problems
    assert any(
        "volume_data/1/0/0: unreadable chunk (chunk header states 2000000000 bytes" in p
        for p in problems
    ), problems
