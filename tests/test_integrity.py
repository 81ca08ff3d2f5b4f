"""Database integrity: locks, crashes at random moments (SIGKILL), validate, management."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from conftest import preprocess_args, tree_digest, write_mrc

from pipeline.db import open_entry
from pipeline.db.layout import EntryLocation
from pipeline.db.lock import entry_lock
from pipeline.db.validate import validate_entry


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(3)
    density = rng.normal(size=(150, 160, 170)).astype(np.float32)  # a run of about a second
    labels = np.zeros(density.shape, np.uint16)
    for value in range(1, 30):
        z, y, x = rng.integers(0, 140, size=3)
        labels[z : z + 12, y : y + 15, x : x + 20] = value
    return (
        write_mrc(folder / "map.mrc", density, voxel_size=3.0),
        write_mrc(folder / "mask.mrc", labels, voxel_size=3.0),
    )


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "cli", *map(str, args)]


def _validate(db) -> subprocess.CompletedProcess:
    return subprocess.run(_cli("validate", "--db-path", db), capture_output=True, text=True)


def test_a_second_writer_fails_fast_with_a_clear_message(run_cli, tmp_path, inputs):
    map_path, _ = inputs
    location = EntryLocation(tmp_path / "db", "emdb", "emd-1832")
    with entry_lock(location):
        result = run_cli(*preprocess_args([(map_path, "map")], tmp_path))
    assert result.exit_code == 2
    assert "is being written by pid" in result.stderr and str(os.getpid()) in result.stderr
    assert not location.exists()
    # the lock file of a killed holder is no lock: the next writer goes ahead
    lock = tmp_path / "db" / "_locks" / "emdb@emd-1832.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("pid 999999 on nowhere since 00:00:00")
    result = run_cli(*preprocess_args([(map_path, "map")], tmp_path))
    assert result.exit_code == 0, result.output
    assert not lock.exists()


@pytest.mark.slow
def test_two_concurrent_adds_one_wins(tmp_path, inputs):
    map_path, mask_path = inputs
    args = [str(a) for a in preprocess_args([(map_path, "map"), (mask_path, "mask")], tmp_path)]
    lock = tmp_path / "db" / "_locks" / "emdb@emd-1832.lock"
    # the second writer is started and imported first, then released the moment the first
    # holds the lock: the race is decided by the lock, not by process start-up times
    waiting = (
        "import sys\n"
        "from cli.main import cli\n"
        "sys.stdin.readline()\n"
        "cli(args=sys.argv[1:], prog_name='cellstar-preprocessor')\n"
    )
    second = subprocess.Popen(
        [sys.executable, "-c", waiting, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = subprocess.Popen(_cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60

    def held() -> bool:  # the holder's stamp is written only after its flock succeeded
        try:
            return lock.stat().st_size > 0
        except FileNotFoundError:
            return False

    while not held() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    assert held(), "the first writer never took the lock"
    _, second_err = second.communicate("go\n", timeout=120)
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 2, second_err
    assert second_err.startswith("error: ") and len(second_err.strip().splitlines()) == 1
    # released while the first holds the lock, the second finds it held; on a loaded machine
    # it may get its turn only after the first committed: then the entry exists. Either way
    # exactly one writer wins and the other stops cleanly (lock contention itself is tested
    # deterministically in test_a_second_writer_fails_fast_with_a_clear_message)
    assert "is being written by pid" in second_err or "already exists" in second_err
    assert _validate(tmp_path / "db").returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["add", "extend"])
def test_sigkill_at_random_moments_leaves_the_database_consistent(tmp_path, inputs, mode):
    map_path, mask_path = inputs
    db = tmp_path / "db"
    if mode == "add":
        args = preprocess_args([(map_path, "map"), (mask_path, "mask")], tmp_path)
    else:
        first = preprocess_args([(map_path, "map")], tmp_path)
        assert subprocess.run(_cli(*first), capture_output=True).returncode == 0
        args = preprocess_args([(mask_path, "mask")], tmp_path, mode="extend")
    before = tree_digest(db / "emdb")
    started = time.perf_counter()
    assert subprocess.run(_cli(*args), capture_output=True).returncode == 0  # how long a run takes
    duration = time.perf_counter() - started
    after = tree_digest(db / "emdb")
    rng = random.Random(7)
    outcomes = set()
    for _ in range(8):
        # back to the state before the run
        if mode == "add":
            subprocess.run(
                _cli("delete", "--db-path", db, "--source-db", "emdb", "--entry-id", "emd-1832"),
                check=True,
                capture_output=True,
            )
        else:
            subprocess.run(
                _cli(
                    "remove-segmentation",
                    "--db-path",
                    db,
                    "--source-db",
                    "emdb",
                    "--entry-id",
                    "emd-1832",
                    "--id",
                    "mask",
                    "--kind",
                    "lattice",
                ),
                check=True,
                capture_output=True,
            )
        state = tree_digest(db / "emdb")
        if mode == "add":
            assert state == before == {}
        proc = subprocess.Popen(_cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = tree_digest(db / "emdb")
        # all or nothing: the entry as before the run, or complete
        with_entry = (db / "emdb" / "emd-1832").is_dir()
        if mode == "add":
            if with_entry:
                outcomes.add("done")
                assert _validate(db).returncode == 0
            else:
                outcomes.add("absent")
                assert now == {} or now == before
        else:
            assert _validate(db).returncode == 0, _validate(db).stdout
            with open_entry(db, "emdb", "emd-1832") as entry:
                lattices = entry.metadata["segmentation_lattices"]["segmentation_ids"]
            outcomes.add("done" if lattices == ["mask"] else "before")
            if lattices != ["mask"]:
                assert now == state
        # a rerun (when nothing was committed) succeeds, after a killed run too
        committed = with_entry if mode == "add" else lattices == ["mask"]
        if not committed:
            rerun = subprocess.run(_cli(*args), capture_output=True, text=True)
            assert rerun.returncode == 0, rerun.stderr
            assert _validate(db).returncode == 0
    assert tree_digest(db / "emdb").keys() == after.keys()
    # the kills fell before the commit at least once (the commit is the run's last moment)
    assert "absent" in outcomes or "before" in outcomes


@pytest.mark.slow
def test_validate_reports_problems(tmp_path, inputs):
    map_path, mask_path = inputs
    args = preprocess_args([(map_path, "map"), (mask_path, "mask")], tmp_path)
    assert subprocess.run(_cli(*args), capture_output=True).returncode == 0
    db = tmp_path / "db"
    location = EntryLocation(db, "emdb", "emd-1832")
    assert validate_entry(location) == []
    ok = _validate(db)
    assert ok.returncode == 0 and "emdb/emd-1832: ok" in ok.stdout
    # break the entry in three ways
    metadata = json.loads((location.folder / "metadata.json").read_text())
    metadata["volumes"]["volume_sampling_info"]["boxes"]["2"]["grid_dimensions"] = [1, 2, 3]
    del metadata["volumes"]["volume_sampling_info"]["descriptive_statistics"]["1"]
    (location.folder / "metadata.json").write_text(json.dumps(metadata))
    annotations = json.loads((location.folder / "annotations.json").read_text())
    annotations["segment_annotations"][0]["segment_id"] = 4242
    (location.folder / "annotations.json").write_text(json.dumps(annotations))
    problems = validate_entry(location)
    assert any("shape" in p and "[1, 2, 3]" in p for p in problems)
    assert any("no statistics for level 1" in p for p in problems)
    assert any("segment 4242 is not in lattice 'mask'" in p for p in problems)
    bad = _validate(db)
    assert bad.returncode == 1 and "emdb/emd-1832:" in bad.stdout
    # a set table that misses a grid value, and a corrupted chunk
    from pipeline.db.sinks import ZipSink

    key = "lattice_segmentation_data/mask/2/0/set_table/0"
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(location.folder / "data.zip") as zf:
        sink = ZipSink(broken)
        for info in zf.infolist():
            data = zf.read(info)
            if info.filename == key:
                table = json.loads(data)
                table[0].pop(next(iter(table[0])))
                data = json.dumps(table).encode()
            sink.put(info.filename, data)
        sink.close()
    os.replace(broken, location.folder / "data.zip")
    problems = validate_entry(location)
    assert any("grid: values" in p and "not in the set table" in p for p in problems)
    raw = bytearray((location.folder / "data.zip").read_bytes())
    with zipfile.ZipFile(location.folder / "data.zip") as zf:
        info = zf.getinfo("lattice_segmentation_data/mask/1/0/grid/0.0.0")
        start = info.header_offset + 30 + len(info.filename) + 20  # our local header size
    raw[start + 40] ^= 0xFF
    (location.folder / "data.zip").write_bytes(bytes(raw))
    problems = validate_entry(location)
    assert any("unreadable chunk" in p for p in problems)


@pytest.mark.slow
def test_management_commands_keep_entries_valid(run_cli, tmp_path, inputs):
    map_path, mask_path = inputs
    db = tmp_path / "db"
    assert (
        run_cli(*preprocess_args([(map_path, "map"), (mask_path, "mask")], tmp_path)).exit_code == 0
    )
    common = ["--db-path", db, "--source-db", "emdb", "--entry-id", "emd-1832"]
    listing = run_cli("list", "--db-path", db)
    assert listing.exit_code == 0 and "emdb/emd-1832\tlevels 1,2\tlattices mask" in listing.stdout
    with open_entry(db, "emdb", "emd-1832") as entry:
        description_id = next(iter(entry.annotations["descriptions"]))
        annotation_id = entry.annotations["segment_annotations"][0]["id"]
        volume_before = entry.volume_array(1)[:]
    edit = tmp_path / "edit.json"
    edit.write_text(
        json.dumps(
            [
                {
                    "id": description_id,
                    "target_kind": "lattice",
                    "name": "renamed",
                    "target_id": {"segmentation_id": "mask", "segment_id": 1},
                }
            ]
        )
    )
    assert run_cli("edit-descriptions", *common, "--data-json-path", edit).exit_code == 0
    assert run_cli("remove-segment-annotations", *common, "--id", annotation_id).exit_code == 0
    missing = run_cli("remove-descriptions", *common, "--id", "nope")
    assert missing.exit_code == 2 and "no descriptions with id nope" in missing.stderr
    with open_entry(db, "emdb", "emd-1832") as entry:
        assert entry.annotations["descriptions"][description_id]["name"] == "renamed"
        assert annotation_id not in {a["id"] for a in entry.annotations["segment_annotations"]}
    assert _validate(db).returncode == 0
    refused = run_cli("remove-volume", *common)
    assert refused.exit_code == 2 and "remove them first" in refused.stderr
    assert (
        run_cli("remove-segmentation", *common, "--id", "mask", "--kind", "lattice").exit_code == 0
    )
    with open_entry(db, "emdb", "emd-1832") as entry:
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == []
        np.testing.assert_array_equal(entry.volume_array(1)[:], volume_before)
        assert all(
            d["target_kind"] != "lattice" for d in entry.annotations["descriptions"].values()
        )
    with zipfile.ZipFile(db / "emdb" / "emd-1832" / "data.zip") as zf:
        assert not [n for n in zf.namelist() if n.startswith("lattice_segmentation_data/mask/")]
    assert _validate(db).returncode == 0
    assert run_cli("delete", *common).exit_code == 0
    assert not (db / "emdb" / "emd-1832").exists()
    gone = run_cli("delete", *common)
    assert gone.exit_code == 2 and "does not exist" in gone.stderr


@pytest.mark.slow
def test_sigterm_unwinds_like_ctrl_c(tmp_path):
    """A batch system's time limit sends SIGTERM: the run stops with one line, exit 143, and
    leaves neither the entry, nor staging, nor its working folder; a killed run's (SIGKILL)
    working folder is removed by the next run."""
    rng = np.random.default_rng(8)
    (tmp_path / "in").mkdir()
    big = write_mrc(
        tmp_path / "in" / "big.mrc", rng.normal(size=(320, 320, 320)).astype(np.float32)
    )
    args = [str(a) for a in preprocess_args([(big, "map")], tmp_path)]
    lock = tmp_path / "db" / "_locks" / "emdb@emd-1832.lock"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *args[0:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (lock.exists() and lock.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip().splitlines() == ["error: terminated (SIGTERM); the database is as it was"]
    assert not (tmp_path / "db" / "emdb").exists()
    assert not any((tmp_path / "db" / "_staging").glob("*"))
    assert not any((tmp_path / "work").glob(".cellstar-*"))
    # a SIGKILLed run leaves its working folder; the next run on this host removes it
    proc = subprocess.Popen([sys.executable, "-m", "cli", *args], stdout=subprocess.DEVNULL)
    while not any((tmp_path / "work").glob(".cellstar-*")) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.kill()
    proc.wait(timeout=30)
    assert any((tmp_path / "work").glob(".cellstar-*"))
    small = write_mrc(tmp_path / "in" / "small.mrc", np.ones((4, 4, 4), np.float32))
    again = [str(a) for a in preprocess_args([(small, "map")], tmp_path, entry="other")]
    done = subprocess.run([sys.executable, "-m", "cli", *again], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert not any((tmp_path / "work").glob(".cellstar-*"))
