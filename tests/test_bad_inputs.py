"""The bad-input matrix: every case exits 2 with one ``error:`` line naming the file and the
problem, no traceback, and leaves the database exactly as it was (hash of the whole tree)."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import preprocess_args, tree_digest, write_mrc

GRID = (12, 10, 8)  # z, y, x of every generated input


def _map(folder: Path, name: str = "map.mrc", **kw) -> Path:
    data = np.random.default_rng(0).normal(size=GRID).astype(np.float32)
    return write_mrc(folder / name, data, voxel_size=kw.get("voxel", 2.0))


def _write(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _case_truncated(f):
    full = _map(f, "full.mrc").read_bytes()
    p = _write(f, "trunc.mrc", full[:-100])
    return [(p, "map")], "add", "x", (), str(p), "truncated"


def _case_zero_byte(f):
    p = _write(f, "zero.mrc", b"")
    return [(p, "map")], "add", "x", (), str(p), "truncated"


def _case_wrong_mode(f):
    raw = bytearray(_map(f, "m4.mrc").read_bytes())
    raw[12:16] = np.int32(4).tobytes()
    p = _write(f, "mode4.mrc", bytes(raw))
    return [(p, "map")], "add", "x", (), str(p), "unsupported MRC mode 4"


def _case_nan_map(f):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = write_mrc(f / "nan.mrc", np.full(GRID, np.nan, np.float32), voxel_size=2.0)
    return [(p, "map")], "add", "x", (), str(p), "NaN"


def _case_garbage_map(f):
    p = _write(f, "garbage.map", b"\xff" * 4096)
    return [(p, "map")], "add", "x", (), str(p), "not an MRC/CCP4 map"


def _case_corrupt_gzip(f):
    packed = bytearray(gzip.compress(_map(f, "g.mrc").read_bytes()))
    for i in range(60, 200):
        packed[i] ^= 0x55
    p = _write(f, "bad.mrc.gz", bytes(packed))
    return [(p, "map")], "add", "x", (), str(p), "cannot decompress gzip"


def _case_zero_voxel(f):
    p = write_mrc(f / "v0.mrc", np.ones(GRID, np.float32), voxel_size=0.0)
    return [(p, "map")], "add", "x", (), str(p), "voxel size"


def _case_corrupt_hdf5(f):
    p = _write(f, "bad.hff", b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    return [(_map(f), "map"), (p, "sff")], "add", "x", (), str(p), "not an HDF5"


def _case_sff_without_lattices(f):
    import h5py

    p = f / "nolattice.hff"
    with h5py.File(p, "w") as h:
        h["version"] = "0.8.0.dev1"
        h.create_group("segment_list").create_group("1")["id"] = 1
    return [(_map(f), "map"), (p, "sff")], "add", "x", (), str(p), "no lattice"


def _case_malformed_extra(f):
    p = _write(f, "extra.json", "{not json")
    return [(_map(f), "map"), (p, "extra_data")], "add", "x", (), str(p), "not valid JSON"


def _case_deeply_nested_geometric_json(f):
    p = _write(f, "deep.json", "[" * 100_000 + "]" * 100_000)
    kinds = [(_map(f), "map"), (p, "geometric_segmentation")]
    return kinds, "add", "x", (), str(p), "nested too deeply"


def _case_invalid_extra(f):
    p = _write(f, "extra2.json", json.dumps({"volume": {"voxel_size": [1, -1, 1]}}))
    return [(_map(f), "map"), (p, "extra_data")], "add", "x", (), str(p), "voxel_size"


def _case_malformed_annotations(f):
    p = _write(f, "ann.json", "[1, 2")
    return [(_map(f), "map"), (p, "custom_annotations")], "add", "x", (), str(p), "not valid JSON"


def _case_invalid_annotations(f):
    p = _write(f, "ann2.json", json.dumps({"segment_annotations": [{"id": "a"}]}))
    return [(_map(f), "map"), (p, "custom_annotations")], "add", "x", (), str(p), "missing"


def _case_unknown_kind(f):
    return [(_map(f), "volume")], "add", "x", (), "--input-kind", "unknown --input-kind"


def _case_missing_path(f):
    p = f / "nowhere.mrc"
    return [(p, "map")], "add", "x", (), str(p), "no such file"


def _case_directory(f):
    return [(f, "map")], "add", "x", (), str(f), "must be a file"


def _case_mask_shape(f):
    m = write_mrc(f / "mask.map", np.zeros((12, 10, 9), np.int8), voxel_size=2.0)
    return [(_map(f), "map"), (m, "mask")], "add", "x", (), str(m), "does not match the volume"


def _case_mask_voxel(f):
    m = write_mrc(f / "mask2.map", np.zeros(GRID, np.int8), voxel_size=4.0)
    return [(_map(f), "map"), (m, "mask")], "add", "x", (), str(m), "voxel size"


def _case_soft_mask(f):
    m = write_mrc(f / "soft.map", np.full(GRID, 0.25, np.float32), voxel_size=2.0)
    return [(_map(f), "map"), (m, "mask")], "add", "x", (), str(m), "not whole numbers"


def _case_db_path_is_a_file(f):
    blocker = _write(f, "db-file", "not a folder")
    return (
        [(_map(f), "map")],
        "add",
        "x",
        ("--db-path", str(blocker)),
        str(blocker),
        "Not a directory",
    )


def _case_entry_with_slash(f):
    return [(_map(f), "map")], "add", "a/b", (), "--entry-id", "not a valid name"


def _case_entry_dotdot(f):
    return [(_map(f), "map")], "add", "..", (), "--entry-id", "not a valid name"


def _case_extend_missing(f):
    return [(_map(f), "mask")], "extend", "missing-entry", (), "missing-entry", "does not exist"


def _case_add_existing(f):
    return [(_map(f), "map")], "add", "existing", (), "existing", "already exists"


def _case_quantize_unstored_level(f):
    extra = ("--quantize-dtype-str", "u1", "--quantize-downsampling-levels", "8")
    return [(_map(f), "map")], "add", "x", extra, "--quantize-downsampling-levels", "not stored"


def _case_bad_dtype(f):
    extra = ("--force-volume-dtype", "int3")
    return [(_map(f), "map")], "add", "x", extra, "--force-volume-dtype", "int3"


def _case_unequal_pairs(f):
    extra = ("--input-kind", "map")
    return [(_map(f), "map")], "add", "x", extra, "--input-kind", "--input-path"


def _case_extend_existing_lattice(f):
    m = write_mrc(f / "seg.map", np.zeros(GRID, np.int8), voxel_size=2.0)  # lattice id "seg"
    return [(m, "mask")], "extend", "existing", (), "lattice id(s) seg", "already in entry"


CASES = {name[6:]: fn for name, fn in sorted(globals().items()) if name.startswith("_case_")}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """A database holding one entry (emdb/existing, with lattice 'seg') that must never change."""
    from click.testing import CliRunner

    from cli.main import cli

    root = tmp_path_factory.mktemp("matrix")
    volume = _map(root, "existing.mrc")
    mask = write_mrc(
        root / "seg.map",
        (np.arange(np.prod(GRID)) % 3).reshape(GRID).astype(np.int8),
        voxel_size=2.0,
    )
    args = preprocess_args([(volume, "map"), (mask, "mask")], root, entry="existing")
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root


def test_the_matrix_has_enough_cases():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(run_cli, tmp_path, database, case):
    inputs, mode, entry, extra, names, problem = CASES[case](tmp_path)
    before = tree_digest(database / "db")
    args = preprocess_args(inputs, database, entry=entry, mode=mode, extra=extra)
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert names in lines[0] and problem in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert tree_digest(database / "db") == before
