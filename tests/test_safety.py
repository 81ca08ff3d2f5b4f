"""File-system safety (issue 11): symlinks below --db-path, size bombs, honest outcomes after
the commit, no leftovers, one line on stderr, batch --skip-existing."""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import assert_one_line_error, preprocess_args, tree_digest, write_mrc

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.update(extra)
    return env


def _cli(*args, env=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env or _env(),
        timeout=300,
        **kw,
    )


def _one_line(proc: subprocess.CompletedProcess | tuple[int, str], *fragments: str) -> str:
    _, err = (proc.returncode, proc.stderr) if not isinstance(proc, tuple) else proc
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def _map(tmp_path: Path, name: str = "m.mrc", shape=(8, 8, 8)) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    return write_mrc(tmp_path / "in" / name, rng.normal(size=shape).astype(np.float32), 2.0)


def _add(run_cli, tmp_path: Path, entry: str = "emd-1832") -> Path:
    result = run_cli(*preprocess_args([(_map(tmp_path), "map")], tmp_path, entry=entry))
    assert result.exit_code == 0, result.output
    return tmp_path / "db" / "emdb" / entry


def _descriptions(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "descriptions.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": "d1",
                    "target_kind": "entry",
                    "target_id": None,
                    "name": "entry",
                    "external_references": None,
                    "is_hidden": None,
                    "time": None,
                    "details": None,
                    "metadata": None,
                }
            ]
        )
    )
    return path


def _manage(tmp_path: Path, command: str, *extra: str) -> list[str]:
    return [
        command,
        "--db-path",
        str(tmp_path / "db"),
        "--source-db",
        "emdb",
        "--entry-id",
        "emd-1832",
        *extra,
    ]


# --- 1. no writer reaches outside --db-path through a symlink --------------------------------


def test_symlinked_lock_file_is_refused_and_the_user_file_untouched(run_cli, tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("my thesis\n")
    locks = tmp_path / "db" / "_locks"
    locks.mkdir(parents=True)
    (locks / "emdb@emd-1832.lock").symlink_to(victim)
    before = tree_digest(tmp_path / "db")
    result = run_cli(*preprocess_args([(_map(tmp_path), "map")], tmp_path))
    assert_one_line_error(result, str(locks / "emdb@emd-1832.lock"), "symlink")
    assert victim.read_text() == "my thesis\n"
    assert tree_digest(tmp_path / "db") == before
    # edit-descriptions on an existing entry: the same refusal
    (locks / "emdb@emd-1832.lock").unlink()
    _add(run_cli, tmp_path)
    locks.mkdir(exist_ok=True)
    (locks / "emdb@emd-1832.lock").symlink_to(victim)
    result = run_cli(
        *_manage(tmp_path, "edit-descriptions", "--data-json-path", str(_descriptions(tmp_path)))
    )
    assert_one_line_error(result, "emdb@emd-1832.lock", "symlink")
    assert victim.read_text() == "my thesis\n"


def test_symlinked_staging_is_refused_and_its_target_untouched(run_cli, tmp_path):
    outside = tmp_path / "users-folder"
    (outside / "emdb@emd-1832@keep").mkdir(parents=True)
    (outside / "emdb@emd-1832@keep" / "data.txt").write_text("keep me")
    (outside / "other@x@deleted").mkdir()
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "_staging").symlink_to(outside)
    result = run_cli(*preprocess_args([(_map(tmp_path), "map")], tmp_path))
    assert_one_line_error(result, str(tmp_path / "db" / "_staging"), "symlink")
    assert (outside / "emdb@emd-1832@keep" / "data.txt").read_text() == "keep me"
    assert (outside / "other@x@deleted").is_dir()
    assert not (tmp_path / "db" / "emdb" / "emd-1832").exists()
    assert not (tmp_path / "db" / "_locks").exists()


def test_symlinked_source_folder_delete_refused(run_cli, tmp_path):
    _add(run_cli, tmp_path)
    outside = tmp_path / "outside"
    shutil.move(tmp_path / "db" / "emdb", outside)
    (tmp_path / "db" / "emdb").symlink_to(outside)
    before = tree_digest(outside)
    result = run_cli(*_manage(tmp_path, "delete"))
    assert_one_line_error(result, str(tmp_path / "db" / "emdb"), "symlink")
    assert tree_digest(outside) == before
    assert not (tmp_path / "db" / "_staging").exists()
    # add into a symlinked source folder is refused too (the entry would land outside)
    result = run_cli(*preprocess_args([(_map(tmp_path), "map")], tmp_path, entry="e2"))
    assert_one_line_error(result, str(tmp_path / "db" / "emdb"), "symlink")
    assert not (outside / "e2").exists()


def test_symlinked_entry_folder_and_entry_file(run_cli, tmp_path):
    entry = _add(run_cli, tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text('[{"secret": true}]')
    (entry / "geometric_segmentation.json").symlink_to(secret)
    descriptions = _descriptions(tmp_path)
    before = tree_digest(tmp_path / "db")
    result = run_cli(
        *_manage(tmp_path, "edit-descriptions", "--data-json-path", str(descriptions))
    )
    assert_one_line_error(result, str(entry / "geometric_segmentation.json"), "symlink")
    assert tree_digest(tmp_path / "db") == before
    validate = run_cli("validate", "--db-path", tmp_path / "db")
    assert validate.exit_code == 1
    assert "geometric_segmentation.json: a symlink" in validate.stdout
    (entry / "geometric_segmentation.json").unlink()
    # a stray file is reported by validate and not carried by a rewrite
    (entry / "notes.txt").write_text("stray")
    validate = run_cli("validate", "--db-path", tmp_path / "db")
    assert "emdb/emd-1832: notes.txt: not a file of the entry" in validate.stdout
    result = run_cli(
        *_manage(tmp_path, "edit-descriptions", "--data-json-path", str(descriptions))
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in entry.iterdir()) == [
        "annotations.json",
        "data.zip",
        "metadata.json",
    ]
    assert "d1" in json.loads((entry / "annotations.json").read_text())["descriptions"]
    # the entry folder itself a symlink: extend refused
    shutil.move(entry, tmp_path / "moved")
    entry.symlink_to(tmp_path / "moved")
    result = run_cli(
        *_manage(tmp_path, "edit-descriptions", "--data-json-path", str(descriptions))
    )
    assert_one_line_error(result, str(entry), "symlink")


@pytest.mark.parametrize("command", ["edit-descriptions", "extend", "remove-volume"])
def test_entry_file_swapped_for_a_symlink_after_the_check_is_not_read(
    run_cli, tmp_path, monkeypatch, command
):
    """Review of issue 11: data.zip becomes a symlink just after the writer's checks (symlink
    check under the lock, then the entry's documents read); the rewrite reads and links it
    through the entry's descriptor (O_NOFOLLOW), so it is refused, naming it, and the outside
    file is neither read into nor linked into the entry."""
    import pipeline.db.validate as validate

    entry = _add(run_cli, tmp_path)
    outside = tmp_path / "outside.zip"
    shutil.copy(entry / "data.zip", outside)
    checked = validate.checked_documents

    def check_then_swap(*args, **kw):
        documents = checked(*args, **kw)
        (entry / "data.zip").unlink()
        (entry / "data.zip").symlink_to(outside)
        return documents

    monkeypatch.setattr(validate, "checked_documents", check_then_swap)
    if command == "edit-descriptions":
        args = _manage(tmp_path, command, "--data-json-path", str(_descriptions(tmp_path)))
    elif command == "remove-volume":
        args = _manage(tmp_path, command)
    else:
        mask = write_mrc(tmp_path / "in" / "mask.mrc", np.ones((8, 8, 8), np.int8), 2.0)
        args = preprocess_args([(mask, "mask")], tmp_path, mode="extend")
    before = outside.stat()
    result = run_cli(*args)
    assert_one_line_error(result, str(entry / "data.zip"), "symlink")
    assert outside.stat().st_nlink == 1 and outside.stat().st_mtime == before.st_mtime
    assert (entry / "data.zip").is_symlink()  # what the swap left; nothing else changed
    assert sorted(p.name for p in entry.iterdir()) == [
        "annotations.json",
        "data.zip",
        "metadata.json",
    ]


def test_database_root_may_be_a_symlink(run_cli, tmp_path):
    (tmp_path / "real-db").mkdir()
    (tmp_path / "db").symlink_to(tmp_path / "real-db")
    _add(run_cli, tmp_path)
    assert (tmp_path / "real-db" / "emdb" / "emd-1832" / "data.zip").is_file()
    assert sorted(p.name for p in (tmp_path / "real-db").iterdir()) == ["emdb"]


# --- 2. sizes are checked before bytes are read ------------------------------------------------


def _small_map_bytes(tmp_path: Path) -> bytes:
    path = write_mrc(tmp_path / "small.mrc", np.arange(64, dtype=np.float32).reshape(4, 4, 4))
    return path.read_bytes()


# runs the command line as its only child and writes that child's peak RSS (bytes) to a file
_MEASURE = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss "
    "* 1024)); sys.exit(rc)"
)


def _cli_rss(tmp_path: Path, *args) -> tuple[subprocess.CompletedProcess, int]:
    """``_cli`` and the peak resident memory of that one run."""
    report = tmp_path / "peak-rss.txt"
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, report, sys.executable, "-m", "cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    return proc, int(report.read_text())


@pytest.mark.parametrize("kind", ["gzip", "bzip2"])
def test_compressed_map_with_trailing_zeros_is_refused(tmp_path, kind):
    """A valid 4x4x4 map followed by 256 MiB of zeros: refused while decompressing, without
    writing the zeros into the working folder."""
    (tmp_path / "in").mkdir()
    suffix = ".gz" if kind == "gzip" else ".bz2"
    bomb = tmp_path / "in" / f"bomb.mrc{suffix}"
    opener = gzip.open if kind == "gzip" else bz2.open
    with opener(bomb, "wb") as f:
        f.write(_small_map_bytes(tmp_path))
        zeros = bytes(16 * 2**20)
        for _ in range(16):
            f.write(zeros)
    assert bomb.stat().st_size < 2**20
    started = time.monotonic()
    proc, rss = _cli_rss(tmp_path, *preprocess_args([(bomb, "map")], tmp_path))
    assert proc.returncode == 2, proc.stderr
    _one_line(proc, str(bomb), "decompresses to more than its header declares")
    assert time.monotonic() - started < 60
    assert not (tmp_path / "db").exists()
    assert _empty(tmp_path / "work")
    assert rss < 2**30


def test_sff_lattice_declaring_a_huge_grid_is_refused_before_decoding(tmp_path):
    """A few MB of SFF declaring a 1024^3 uint32 lattice of zlib'd zeros (4 GiB): refused by
    its grid, in seconds and well within the 1 GiB memory bound."""
    volume = _map(tmp_path, shape=(8, 8, 8))
    sff = tmp_path / "in" / "bomb.hff"
    inflater = zlib.compressobj(9)
    chunk = bytes(64 * 2**20)
    payload = b"".join(inflater.compress(chunk) for _ in range(64)) + inflater.flush()
    with h5py.File(sff, "w") as f:
        f["version"], f["name"], f["details"] = "0.8.0.dev1", "bomb", "test"
        f["primary_descriptor"] = "three_d_volume"
        g = f.create_group("lattice_list/0")
        g["id"], g["mode"], g["endianness"] = 0, "uint32", "little"
        for key in ("sections", "rows", "cols"):
            g[f"size/{key}"] = 1024
        g["data"] = np.bytes_(base64.b64encode(payload))
        s = f.create_group("segment_list/1")
        s["id"], s["parent_id"] = 1, 0
        s["three_d_volume/lattice_id"], s["three_d_volume/value"] = 0, 1
    assert sff.stat().st_size < 16 * 2**20
    started = time.monotonic()
    proc, rss = _cli_rss(tmp_path, *preprocess_args([(volume, "map"), (sff, "sff")], tmp_path))
    assert proc.returncode == 2, proc.stderr
    _one_line(proc, str(sff), "1024")
    assert time.monotonic() - started < 30
    assert rss < 2**30
    assert not (tmp_path / "db").exists()


def test_sff_lattice_payload_larger_than_declared_stops_at_the_declared_size(tmp_path):
    volume = _map(tmp_path, shape=(8, 8, 8))
    sff = tmp_path / "in" / "long.hff"
    payload = zlib.compress(bytes(4 * 2**20), 9)  # 8^3 uint8 declared, 4 MiB inside
    with h5py.File(sff, "w") as f:
        f["version"], f["name"], f["details"] = "0.8.0.dev1", "long", "test"
        g = f.create_group("lattice_list/0")
        g["id"], g["mode"], g["endianness"] = 0, "uint8", "little"
        for key in ("sections", "rows", "cols"):
            g[f"size/{key}"] = 8
        g["data"] = np.bytes_(base64.b64encode(payload))
    proc = _cli(*preprocess_args([(volume, "map"), (sff, "sff")], tmp_path))
    assert proc.returncode == 2, proc.stderr
    _one_line(proc, str(sff), "decompresses to more than the 512 bytes")
    assert not (tmp_path / "db").exists()


def test_sff_with_a_huge_compressed_details_dataset(tmp_path):
    """``details`` a chunked, compressed, never-written 4 GiB dataset (a 10 KB file):
    one line from preprocess and from inspect, no MemoryError."""
    volume = _map(tmp_path, shape=(8, 8, 8))
    sff = tmp_path / "in" / "details.hff"
    labels = np.zeros((8, 8, 8), np.uint8)
    with h5py.File(sff, "w") as f:
        f["version"], f["name"] = "0.8.0.dev1", "details bomb"
        f.create_dataset(
            "details", shape=(4 * 2**30,), dtype="u1", chunks=(2**20,), compression="gzip"
        )
        g = f.create_group("lattice_list/0")
        g["id"], g["mode"], g["endianness"] = 0, "uint8", "little"
        for key in ("sections", "rows", "cols"):
            g[f"size/{key}"] = 8
        g["data"] = base64.b64encode(zlib.compress(labels.tobytes()))
    assert sff.stat().st_size < 2**20
    proc, rss = _cli_rss(tmp_path, *preprocess_args([(volume, "map"), (sff, "sff")], tmp_path))
    assert proc.returncode == 2, proc.stderr
    _one_line(proc, str(sff), "/details", "more than")
    assert rss < 2**30
    proc = _cli("inspect", sff)
    assert proc.returncode == 2, proc.stderr
    _one_line(proc, str(sff), "/details")


def _metadata_only_zarr(root: Path, n: int) -> Path:
    (root / "0").mkdir(parents=True)
    (root / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    axes = [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"]
    scale = [{"type": "scale", "scale": [1, 1, 1]}]
    multiscales = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": scale}],
        }
    ]
    (root / ".zattrs").write_text(json.dumps({"multiscales": multiscales}))
    zarray = {
        "zarr_format": 2,
        "shape": [n, n, n],
        "chunks": [256, 256, 256],
        "dtype": "|u1",
        "compressor": None,
        "fill_value": 0,
        "order": "C",
        "filters": None,
        "dimension_separator": "/",
    }
    (root / "0" / ".zarray").write_text(json.dumps(zarray))
    return root


def test_metadata_only_omezarr_declaring_20000_cubed(tmp_path):
    zarr_path = _metadata_only_zarr(tmp_path / "in" / "huge.zarr", 20000)
    needed = (10000**3 + 5000**3) / 1e9
    if shutil.disk_usage(tmp_path).free > needed * 1e9:
        pytest.skip("the temporary folder has room for the declared scratch")
    started = time.monotonic()
    proc, rss = _cli_rss(tmp_path, *preprocess_args([(zarr_path, "omezarr")], tmp_path))
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc, f"needs {needed:.1f} GB in {tmp_path / 'work'}", "GB free")
    assert "MemoryError" not in line
    assert time.monotonic() - started < 60
    assert rss < 2**30
    assert not (tmp_path / "db").exists()
    assert _empty(tmp_path / "work")


# --- 3. honest outcomes: a signal after the commit rename ------------------------------------


def _signal_after_commit(args: list[str], appears: Path, gone: bool = False, sig=signal.SIGTERM):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(CELLSTAR_TEST_DELAY_AFTER_COMMIT="60"),
    )
    deadline = time.monotonic() + 120
    while appears.exists() == gone and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert appears.exists() != gone, proc.communicate()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_sigterm_after_the_commit_rename_reports_the_commit(run_cli, tmp_path):
    entry = tmp_path / "db" / "emdb" / "emd-1832"
    args = preprocess_args([(_map(tmp_path), "map")], tmp_path)
    rc, _, err = _signal_after_commit(args, entry / "metadata.json")
    assert rc == 143, err
    assert _one_line((rc, err)) == "error: committed emdb/emd-1832 before SIGTERM"
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 0
    assert not (tmp_path / "db" / "_staging").exists()
    assert not (tmp_path / "db" / "_locks").exists()
    # an edit: the new annotations are in the entry
    args = _manage(tmp_path, "edit-descriptions", "--data-json-path", str(_descriptions(tmp_path)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=_env(CELLSTAR_TEST_DELAY_AFTER_COMMIT="60"),
    )
    deadline = time.monotonic() + 60
    while "d1" not in (entry / "annotations.json").read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert _one_line((proc.returncode, err)) == "error: committed emdb/emd-1832 before SIGINT"
    # delete: the entry is gone, and said so
    rc, _, err = _signal_after_commit(_manage(tmp_path, "delete"), entry, gone=True)
    assert rc == 143, err
    assert _one_line((rc, err)) == "error: committed emdb/emd-1832 before SIGTERM"
    assert not entry.exists()


def _batch_args(tmp_path: Path, entries: int) -> list:
    """``batch`` over a JSON list of ``entries`` one-map entries e0, e1, ... of source emdb."""
    rows = [
        {"entry_id": f"e{i}", "source_db": "emdb", "inputs": [[str(_map(tmp_path)), "map"]]}
        for i in range(entries)
    ]
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps(rows))
    return ["batch", listing, "--working-folder", tmp_path / "work", "--db-path", tmp_path / "db"]


def test_batch_sigterm_lists_what_it_committed(tmp_path):
    args = _batch_args(tmp_path, 2)
    rc, _, err = _signal_after_commit(args, tmp_path / "db" / "emdb" / "e0")
    assert rc == 143, err
    assert _one_line((rc, err)) == "error: committed emdb/e0 before SIGTERM"
    assert not (tmp_path / "db" / "emdb" / "e1").exists()


# --- 4. no leftovers ------------------------------------------------------------------------------


def test_killed_delete_is_listed_by_validate_and_removed_by_the_next_writer(run_cli, tmp_path):
    entry = _add(run_cli, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *_manage(tmp_path, "delete")],
        env=_env(CELLSTAR_TEST_DELAY_AFTER_COMMIT="60"),
    )
    deadline = time.monotonic() + 60
    while entry.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    staging = tmp_path / "db" / "_staging"
    left = list(staging.iterdir())
    assert len(left) == 1 and left[0].name.startswith("emdb@emd-1832@")
    assert (left[0] / "data.zip").is_file()
    validate = run_cli("validate", "--db-path", tmp_path / "db")
    assert f"_staging/{left[0].name}: staging folder" in validate.stdout
    assert "(left by a writer that is gone" in validate.stdout
    assert validate.exit_code == 0  # listed; the entries themselves are fine
    # the next writer of the database (another entry) removes it
    _add(run_cli, tmp_path, entry="other")
    assert not staging.exists()
    assert run_cli("validate", "--db-path", tmp_path / "db").exit_code == 0


def test_live_writers_staging_is_not_removed(tmp_path):
    """A staging folder whose writer still runs (this process) is left alone."""
    from pipeline.db.commit import staged_entry
    from pipeline.db.layout import EntryLocation
    from pipeline.db.safefs import dead_staging

    with staged_entry(EntryLocation(tmp_path / "db", "emdb", "a")) as first:
        with staged_entry(EntryLocation(tmp_path / "db", "emdb", "b")) as second:
            assert first.folder.is_dir() and second.folder.is_dir()
            assert dead_staging(tmp_path / "db") == []
        assert first.folder.is_dir()
    assert not (tmp_path / "db").exists() or not any((tmp_path / "db").iterdir())


def test_failed_run_leaves_the_database_exactly_as_it_was(run_cli, tmp_path):
    _add(run_cli, tmp_path)
    (tmp_path / "db" / "_staging").mkdir()
    before = tree_digest(tmp_path / "db")
    bad = tmp_path / "in" / "bad.mrc"
    bad.write_bytes(b"not a map" * 200)
    result = run_cli(*preprocess_args([(bad, "mask")], tmp_path, mode="extend"))
    assert result.exit_code == 2
    assert tree_digest(tmp_path / "db") == before


def test_existing_empty_locks_and_staging_stay_after_failed_and_refused_runs(run_cli, tmp_path):
    """Review of issue 11: an empty ``_locks`` / ``_staging`` that was there before a run is
    part of 'the database as it was' (only what the run created is removed)."""
    _add(run_cli, tmp_path)
    (tmp_path / "db" / "_staging").mkdir()
    (tmp_path / "db" / "_locks").mkdir()
    before = tree_digest(tmp_path / "db")
    assert before["_locks"] == "<dir>" and before["_staging"] == "<dir>"
    bad = tmp_path / "in" / "bad.mrc"
    bad.write_bytes(b"not a map" * 200)
    result = run_cli(*preprocess_args([(bad, "mask")], tmp_path, mode="extend"))
    assert result.exit_code == 2
    assert tree_digest(tmp_path / "db") == before
    result = run_cli(*preprocess_args([(_map(tmp_path), "map")], tmp_path))  # exists already
    assert_one_line_error(result, "already exists")
    assert tree_digest(tmp_path / "db") == before
    result = run_cli(*[a.replace("emd-1832", "emd-9") for a in _manage(tmp_path, "delete")])
    assert_one_line_error(result, "does not exist")
    assert tree_digest(tmp_path / "db") == before
    # a run that creates them removes them again
    shutil.rmtree(tmp_path / "db" / "_locks")
    shutil.rmtree(tmp_path / "db" / "_staging")
    result = run_cli(*preprocess_args([(bad, "mask")], tmp_path, mode="extend"))
    assert result.exit_code == 2
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["emdb"]
    # a run that commits tidies up empty ones it found (a killed writer's, typically)
    (tmp_path / "db" / "_staging").mkdir()
    (tmp_path / "db" / "_locks").mkdir()
    _add(run_cli, tmp_path, entry="emd-2")
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["emdb"]


def test_failed_run_keeps_a_concurrent_runs_new_folders(tmp_path):
    """A run on a new database that fails removes only the folders it found missing, each
    only when empty: a concurrent run's new source folder stays."""
    from pipeline.workspace import tidy

    db = tmp_path / "db"
    with tidy(tmp_path / "work", db):
        (db / "emdb").mkdir(parents=True)  # what a concurrent run creates meanwhile
    assert (db / "emdb").is_dir()
    with tidy(tmp_path / "work2", tmp_path / "db2"):
        (tmp_path / "db2").mkdir()
    assert not (tmp_path / "db2").exists()


def test_two_writers_on_a_new_database(tmp_path):
    """A failing and a valid run started together on a database that does not exist yet:
    the valid one commits, the failing one fails alone, nothing else is left."""
    good = _map(tmp_path)
    bad = tmp_path / "in" / "bad.mrc"
    bad.write_bytes(b"x" * 100)
    for attempt in range(3):
        db = tmp_path / f"db{attempt}"
        runs = []
        for path, entry in ((bad, "bad"), (good, "good")):
            args = [
                a.replace(str(tmp_path / "db"), str(db))
                for a in map(str, preprocess_args([(path, "map")], tmp_path, entry=entry))
            ]
            runs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "cli", *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=_env(),
                )
            )
        (bad_rc, _), (good_rc, good_err) = [
            (p.wait(timeout=120), p.communicate()[1]) for p in runs
        ]
        assert bad_rc == 2
        assert good_rc == 0, good_err
        assert sorted(p.name for p in db.iterdir()) == ["emdb"]
        assert sorted(p.name for p in (db / "emdb").iterdir()) == ["good"]


# --- 5. one line on stderr ---------------------------------------------------------------------


def test_control_characters_in_file_names_cannot_split_the_line(tmp_path):
    weird = tmp_path / "a\nb\x1b[31m\u2028c.mrc"
    proc = _cli(*preprocess_args([(weird, "map")], tmp_path))
    assert proc.returncode == 2
    line = _one_line(proc, "no such file")
    assert "a\\nb\\x1b[31m\\u2028c.mrc" in line


def test_nan_map_gives_one_line_without_numpy_warnings(tmp_path):
    data = np.ones((8, 8, 8), np.float32)
    data[2, 2, 2] = np.inf  # numpy warns "invalid value encountered in subtract"
    (tmp_path / "in").mkdir()
    with warnings.catch_warnings():  # mrcfile warns about the NaN it writes
        warnings.simplefilter("ignore")
        path = write_mrc(tmp_path / "in" / "nan.mrc", data)
    proc = _cli(*preprocess_args([(path, "map")], tmp_path))
    assert proc.returncode == 2
    _one_line(proc, str(path), "NaN or infinite")
    assert "Warning" not in proc.stderr
    verbose = _cli(*preprocess_args([(path, "map")], tmp_path), "--verbose")
    assert "RuntimeWarning" in verbose.stderr  # shown with --verbose


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler: the command line's start-up handler is in
    place (a signal during the interpreter's own start-up, before any code of ours, is out
    of reach)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.5, 1.2])
def test_ctrl_c_at_any_moment_including_start_up(tmp_path, delay):
    args = preprocess_args([(_map(tmp_path, shape=(64, 64, 64)), "map")], tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 30
    while not _catches_sigterm(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:  # finished before the signal
        return
    assert proc.returncode == 130, err
    line = _one_line((proc.returncode, err))
    assert "interrupted (SIGINT)" in line or "committed emdb/emd-1832 before SIGINT" in line
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


@pytest.mark.parametrize("entry_point", ["-m cli", "console script"])
def test_ctrl_c_at_fixed_delays_after_spawning(tmp_path, entry_point):
    """Review of issue 11: SIGINT 0.01-1.0 s after spawning, without waiting for anything,
    gives at most one line and no traceback, except while the interpreter itself is starting
    (site and the .pth files of the installation: Python's own KeyboardInterrupt report,
    before any code of the project can run; tens of ms here, an editable install's finder
    included)."""
    args = [
        str(a) for a in preprocess_args([(_map(tmp_path, shape=(96, 96, 96)), "map")], tmp_path)
    ]
    if entry_point == "-m cli":
        command = [sys.executable, "-m", "cli", *args]
    else:  # what pip generates for [project.scripts] cli.main:main
        script = tmp_path / "cellstar-preprocessor"
        script.write_text(
            "import re\nimport sys\nfrom cli.main import main\n"
            "if __name__ == '__main__':\n"
            "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
            "    sys.exit(main())\n"
        )
        command = [sys.executable, str(script), *args]
    for delay in (0.01, 0.03, 0.1, 0.2, 0.4, 0.7, 1.0):
        shutil.rmtree(tmp_path / "db", ignore_errors=True)
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env()
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if "Traceback" in err:
            # Python's own start-up (site, runpy) before the first line of the package: no
            # frame of this project's code, and early
            assert "/cli/" not in err and "/pipeline/" not in err, (delay, err)
            assert delay < 0.4, (delay, err)
            continue
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) <= 1, (delay, err)
        if proc.returncode != 0:
            assert proc.returncode in (130, -signal.SIGINT), (delay, proc.returncode, err)
        if proc.returncode == 130:
            assert lines and (
                "interrupted (SIGINT)" in lines[0] or "before SIGINT" in lines[0]
            ), (delay, err)
        if not (tmp_path / "db" / "emdb" / "emd-1832").exists():
            assert _empty(tmp_path / "db"), (delay, err)


def test_file_too_large_names_the_folder_and_its_free_space(tmp_path):
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))

    data = np.random.default_rng(1).normal(size=(128, 128, 128)).astype(np.float32)
    (tmp_path / "in").mkdir()
    path = write_mrc(tmp_path / "in" / "big.mrc", data)
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *map(str, preprocess_args([(path, "map")], tmp_path))],
        capture_output=True,
        text=True,
        env=_env(),
        preexec_fn=limit,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    line = _one_line(proc, "file too large", "GB free")
    assert str(tmp_path) in line
    assert not (tmp_path / "db" / "emdb").exists()


def test_working_folder_creation_names_the_folder(run_cli, tmp_path):
    (tmp_path / "file").write_text("")
    args = preprocess_args([(_map(tmp_path), "map")], tmp_path)
    args[args.index("--working-folder") + 1] = str(tmp_path / "file" / "work")
    result = run_cli(*args)
    assert_one_line_error(result, str(tmp_path / "file" / "work"), "working folder")


# --- 6. batch --skip-existing --------------------------------------------------------------------


def test_batch_skip_existing_completes_a_killed_batch(tmp_path):
    args = _batch_args(tmp_path, 3)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *map(str, args)],
        stdout=subprocess.DEVNULL,
        env=_env(CELLSTAR_TEST_DELAY_AFTER_COMMIT="60"),
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "db" / "emdb" / "e0").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=30)
    assert sorted(p.name for p in (tmp_path / "db" / "emdb").iterdir()) == ["e0"]
    done = _cli(*args, "--skip-existing")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "skip    emdb/e0 (already in the database)" in lines
    assert any(line.startswith("ok      emdb/e1") for line in lines)
    assert any(line.startswith("ok      emdb/e2") for line in lines)
    assert "batch: 2 of 3 entries done, 1 skipped, 0 failed" in done.stdout
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["emdb"]
    assert _empty(tmp_path / "work")


def test_library_warnings_and_log_records_stay_off_stderr():
    """What nibabel (its own stream handler), other loggers (logging's last resort) and the
    warnings module print is kept off stderr unless --verbose."""
    import io
    import logging

    from cli.main import _quiet_libraries

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("nibabel.global")
    logger.addHandler(handler)
    try:
        with _quiet_libraries(verbose=False), warnings.catch_warnings(record=True) as caught:
            logger.warning("pixdim[0] (qfac) should be 1 (default) or -1")
            warnings.warn("numpy says something", RuntimeWarning, stacklevel=1)
        assert stream.getvalue() == ""
        assert caught == []
        with _quiet_libraries(verbose=True):
            logger.warning("shown with --verbose")
        assert "shown with --verbose" in stream.getvalue()
    finally:
        logger.removeHandler(handler)


def test_errors_say_what_is_really_wrong(tmp_path):
    import mrcfile
    import nibabel as nib
    import tifffile

    (tmp_path / "in").mkdir()
    negative = write_mrc(tmp_path / "in" / "neg.mrc", np.ones((8, 8, 8), np.float32))
    with mrcfile.open(negative, "r+") as m:
        m.header.cella.x = -8.0
    proc = _cli(*preprocess_args([(negative, "map")], tmp_path))
    _one_line(proc, str(negative), "CELLA X is negative")
    mmcif = tmp_path / "in" / "model.star"
    mmcif.write_text("data_1ABC\n_entry.id 1ABC\nloop_\n_atom_site.id\n_atom_site.Cartn_x\n1 2.0\n")
    proc = _cli("star-to-geometric", "--star-file-path", mmcif,
                "--geometric-segmentation-input-file-path", tmp_path / "out.json")
    _one_line(proc, str(mmcif), "an mmCIF file")
    cifti = tmp_path / "in" / "data.dscalar.nii"
    image = nib.Nifti2Image(np.ones((1, 1, 1, 1, 1, 10), np.float32), np.eye(4))
    image.header["intent_code"] = 3006
    nib.save(image, cifti)
    proc = _cli(*preprocess_args([(cifti, "nii_volume")], tmp_path))
    _one_line(proc, str(cifti), "CIFTI-2")
    binary_only = tmp_path / "in" / "part.ome.tif"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
        'Schemas/OME/2016-06" UUID="urn:uuid:1"><BinaryOnly MetadataFile="set.companion.ome" '
        'UUID="urn:uuid:2"/></OME>'
    )
    tifffile.imwrite(binary_only, np.zeros((4, 4), np.uint8), description=xml, metadata=None)
    proc = _cli(*preprocess_args([(binary_only, "ometiff_image")], tmp_path))
    _one_line(proc, str(binary_only), "companion file 'set.companion.ome'")
    assert not (tmp_path / "db").exists()


def test_refused_management_command_on_a_new_database_leaves_nothing(run_cli, tmp_path):
    result = run_cli(*_manage(tmp_path, "delete"))
    assert_one_line_error(result, "entry emdb/emd-1832 does not exist")
    assert not (tmp_path / "db").exists()


def test_staged_files_go_to_the_opened_folder_when_staging_is_swapped_for_a_symlink(tmp_path):
    """Files written into a staged entry by path reach the folder that was opened, even when
    ``_staging`` is replaced by a symlink to a user's folder after it was opened."""
    from pipeline.db.commit import staged_entry
    from pipeline.db.layout import EntryLocation
    from pipeline.db.safefs import shown_path

    db = tmp_path / "db"
    db.mkdir()
    user = tmp_path / "user"
    user.mkdir()
    location = EntryLocation(db, "emdb", "e-1")
    with staged_entry(location) as staged:
        os.rename(db / "_staging", db / "moved")
        (db / "_staging").symlink_to(user)
        staged.write_json("metadata.json", {"a": 1})
        (staged.folder / "data.zip").write_bytes(b"zip")
        assert os.listdir(user) == []
        [name] = os.listdir(db / "moved")
        assert json.loads((db / "moved" / name / "metadata.json").read_text()) == {"a": 1}
        assert (db / "moved" / name / "data.zip").read_bytes() == b"zip"
        # messages name the folder as the user knows it
        assert shown_path(staged.folder / "data.zip") == db / "_staging" / name / "data.zip"
    assert os.listdir(user) == []
    assert os.listdir(db / "moved") == []


def test_a_signal_after_the_run_cannot_kill_the_interpreter_while_it_shuts_down():
    """Once the run's outcome is printed, SIGINT/SIGTERM are ignored (Python resets its own
    handlers to the default while it shuts down, so a late signal killed the process silently
    with -2 after a committed run)."""
    code = (
        "import atexit, os, signal, sys\n"
        "atexit.register(lambda: os.write(1, ' '.join(repr(signal.getsignal(s) == signal.SIG_IGN)"
        " for s in (signal.SIGINT, signal.SIGTERM)).encode()))\n"
        "sys.argv = ['cellstar-preprocessor', '--version']\n"
        "from cli.main import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("True True"), done.stdout
