"""dask.distributed: a real ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1.

The same entry built on the cluster and on the threaded scheduler must be the same bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, preprocess_args, stop_processes, tree_digest, write_mrc

_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

pytestmark = pytest.mark.slow  # every test starts dask.distributed processes


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory) -> Iterator[str]:
    """The address of a scheduler with two single-threaded workers, all on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("cluster")
    spec = folder / "scheduler.json"
    procs: list[subprocess.Popen] = []
    with contextlib.ExitStack() as logs:

        def start(name: str, *args: str) -> None:
            log = logs.enter_context(open(folder / f"{name}.log", "wb"))
            command = [sys.executable, "-m", "dask", *args, "--no-dashboard"]
            procs.append(subprocess.Popen(command, stdout=log, stderr=log, env=_ENV))

        try:
            start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", "0",
                  "--scheduler-file", str(spec))  # fmt: skip
            deadline = time.monotonic() + 60
            while not spec.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert spec.exists(), (folder / "scheduler.log").read_text()
            bounded = ["--nthreads", "1", "--nworkers", "1", "--memory-limit", "1GiB"]
            for i in range(2):
                start(f"worker{i}", "worker", "--scheduler-file", str(spec), *bounded,
                      "--host", "127.0.0.1", "--death-timeout", "60",
                      "--local-directory", str(folder / f"w{i}"))  # fmt: skip
            address = json.loads(spec.read_text())["address"]
            from distributed import Client

            with Client(address, timeout="30s") as client:
                client.wait_for_workers(2, timeout=60)
                assert len(client.nthreads()) == 2
            yield address
        finally:
            stop_processes(procs)


@pytest.fixture
def inputs(tmp_path) -> list[tuple[Path, str]]:
    """A map large enough for several blocks per level, and a mask on its grid."""
    rng = np.random.default_rng(7)
    shape = (140, 260, 300)  # z, y, x: blocks of 300x128x128 -> 3 x 2 per level-1 pass
    data = rng.normal(size=shape).astype(np.float32)
    (tmp_path / "in").mkdir()
    volume = write_mrc(tmp_path / "in" / "tomo.mrc", data, voxel_size=4.0)
    z, y, x = np.indices(shape, sparse=True)
    labels = ((x // 40 + y // 50 + z // 30) % 6).astype(np.uint8)
    mask = write_mrc(tmp_path / "in" / "tomo_mask.mrc", labels, voxel_size=4.0)
    return [(volume, "map"), (mask, "mask")]


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=_ENV,
        timeout=300,
    )


def _args(inputs, tmp_path: Path, db: str = "db", extra: tuple[str, ...] = ()) -> list[str]:
    args = preprocess_args(inputs, tmp_path, extra=extra)
    args[args.index("--db-path") + 1] = str(tmp_path / db)
    return args


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_cluster_run_gives_the_threaded_run_byte_for_byte(scheduler, inputs, tmp_path):
    threaded = _cli(*_args(inputs, tmp_path, db="db_threads"))
    assert threaded.returncode == 0, threaded.stderr
    on_cluster = _cli(*_args(inputs, tmp_path, db="db_cluster", extra=("--scheduler", scheduler)))
    assert on_cluster.returncode == 0, on_cluster.stderr
    entry = Path("emdb/emd-1832")
    a = _members(tmp_path / "db_threads" / entry / "data.zip")
    b = _members(tmp_path / "db_cluster" / entry / "data.zip")
    assert list(a) == list(b)  # same members in the same order
    arrays = [name for name in a if name.split("/")[-1].replace(".", "").isdigit()]
    assert len([n for n in arrays if n.startswith("volume_data/1/")]) == 5 * 5 * 3
    assert any(n.startswith("lattice_segmentation_data/tomo_mask/2/0/grid/") for n in arrays)
    for name in a:
        assert a[name] == b[name], name
    for doc in ("metadata.json", "annotations.json"):
        assert (tmp_path / "db_threads" / entry / doc).read_bytes() == (
            tmp_path / "db_cluster" / entry / doc
        ).read_bytes()
    # the workers' part files are gone with the working folder
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_input_error_raised_on_a_worker_is_one_line_and_leaves_the_db(scheduler, inputs, tmp_path):
    bad = np.full((140, 260, 300), 0.5, np.float32)  # not whole numbers: fails in the label pass
    inputs[1] = (write_mrc(tmp_path / "in" / "soft.mrc", bad, voxel_size=4.0), "mask")
    db = tmp_path / "db"
    db.mkdir()
    before = tree_digest(db)
    result = _cli(*preprocess_args(inputs, tmp_path, extra=("--scheduler", scheduler)))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "soft.mrc" in lines[0]
    assert "whole numbers" in lines[0]
    assert tree_digest(db) == before


def test_local_cluster_of_worker_processes(inputs, tmp_path):
    threaded = _cli(*_args(inputs[:1], tmp_path, db="db_threads"))
    local = _cli(*_args(inputs[:1], tmp_path, db="db_local", extra=("--workers", "2")))
    assert threaded.returncode == 0 and local.returncode == 0, local.stderr
    entry = Path("emdb/emd-1832/data.zip")
    assert (tmp_path / "db_threads" / entry).read_bytes() == (
        tmp_path / "db_local" / entry
    ).read_bytes()
    # an input error raised in a worker process: one line, no worker log or traceback
    bad = np.full((140, 260, 300), 0.5, np.float32)
    soft = write_mrc(tmp_path / "in" / "soft.mrc", bad, voxel_size=4.0)
    failed = _cli(
        *_args([inputs[0], (soft, "mask")], tmp_path, db="db_bad", extra=("--workers", "2"))
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines() == [
        f"error: {soft}: not a label volume: values are not whole numbers"
    ], failed.stderr


def test_unreachable_scheduler_is_one_line(inputs, tmp_path):
    result = _cli(
        *preprocess_args(inputs[:1], tmp_path, extra=("--scheduler", "tcp://127.0.0.1:9"))
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the dask scheduler" in lines[0], result.stderr
    assert not (tmp_path / "db" / "emdb").exists()


def test_batch_on_the_cluster_reports_each_entry(scheduler, inputs, tmp_path):
    (volume, _), (mask, _) = inputs
    listing = tmp_path / "list.csv"
    listing.write_text(
        "entry_id,source_db,inputs\n"
        f"tomo,cryoet,map:{volume};mask:{mask}\n"
        "gone,cryoet,map:missing.mrc\n"
        f"plain,cryoet,map:{volume}\n"
    )
    folders = ("--working-folder", tmp_path / "work")
    batch = _cli("batch", listing, *folders, "--db-path", tmp_path / "db", "--scheduler", scheduler)
    assert batch.returncode == 1, batch.stderr
    assert "ok      cryoet/tomo" in batch.stdout and "ok      cryoet/plain" in batch.stdout
    assert "failed  cryoet/gone (row 3): " in batch.stdout
    single = _cli(*_args(inputs, tmp_path, db="db_single"))
    assert single.returncode == 0, single.stderr
    a = _members(tmp_path / "db/cryoet/tomo/data.zip")
    b = _members(tmp_path / "db_single/emdb/emd-1832/data.zip")
    assert a == b


def test_compressed_nifti_and_its_segmentation_on_the_cluster(scheduler, tmp_path):
    """Other readers' lazy arrays travel to the workers too (here a .nii.gz spooled into the
    working folder and a NIfTI label volume)."""
    import nibabel as nib

    rng = np.random.default_rng(5)
    volume = rng.normal(size=(150, 140, 70)).astype(np.float32)  # i, j, k
    labels = (np.indices(volume.shape).sum(axis=0) // 45 % 4).astype(np.uint8)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    (tmp_path / "in").mkdir()
    nib.save(nib.Nifti1Image(volume, affine), tmp_path / "in" / "vol.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "in" / "seg.nii")
    inputs = [
        (tmp_path / "in" / "vol.nii.gz", "nii_volume"),
        (tmp_path / "in" / "seg.nii", "nii_segmentation"),
    ]
    threaded = _cli(*_args(inputs, tmp_path, db="db_threads"))
    assert threaded.returncode == 0, threaded.stderr
    cluster = _cli(*_args(inputs, tmp_path, db="db_cluster", extra=("--scheduler", scheduler)))
    assert cluster.returncode == 0, cluster.stderr
    a = _members(tmp_path / "db_threads/emdb/emd-1832/data.zip")
    b = _members(tmp_path / "db_cluster/emdb/emd-1832/data.zip")
    assert a == b and any(name.startswith("lattice_segmentation_data/seg/1/0/grid/") for name in a)
