"""Inputs given as URLs, against real servers on 127.0.0.1 started here: moto's S3 server and
small HTTP servers (with and without ``Range`` support, failing or denying on request).

Every entry built from URLs must be the same bytes as the one built from the same files on
disk; a missing object or a denied request is one line naming the URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    assert_one_line_error,
    preprocess_args,
    stop_processes,
    tree_digest,
    write_mrc,
)

BUCKET = "cellstar-inputs"
SMALL_LEVELS = ("--min-size-per-downsampling-lvl-mb", "0.01")


# --- servers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """moto's S3 server on a free port of 127.0.0.1, reached through AWS_ENDPOINT_URL; yields
    a boto3 client to put objects with."""
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def put(s3: Any, path: Path, key: str | None = None) -> str:
    """Upload a file (or every file below a folder) and return its s3:// URL."""
    key = key or path.name
    if path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            s3.upload_file(str(file), BUCKET, f"{key}/{file.relative_to(path).as_posix()}")
    else:
        s3.upload_file(str(path), BUCKET, key)
    return f"s3://{BUCKET}/{key}"


class _Http:
    """A threaded HTTP server over a folder; records every request."""

    def __init__(self, root: Path, ranges: bool) -> None:
        self.root = root
        self.ranges = ranges
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self.failures: dict[str, int] = {}  # path -> 503 answers still to give
        self.denied: set[str] = set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                outer.answer(self, body=False)

            def do_GET(self) -> None:
                outer.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        name = h.path.split("?")[0]
        self.requests.append((h.command, name, h.headers.get("Range")))
        if name in self.denied:
            h.send_error(403)
            return
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            h.send_error(503)
            return
        file = self.root / name.lstrip("/")
        if not file.is_file():
            h.send_error(404)
            return
        data = file.read_bytes()
        wanted = h.headers.get("Range")
        if self.ranges and wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start = int(first)
            stop = min(int(last) + 1 if last else len(data), len(data))
            if start >= len(data):
                h.send_error(416)
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
            data = data[start:stop]
        else:
            h.send_response(200)
        if self.ranges:
            h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("Content-Type", "application/octet-stream")
        h.end_headers()
        if body:
            h.wfile.write(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def http(tmp_path) -> Iterator[Any]:
    """``http(ranges)``: an HTTP server over ``tmp_path / "www"``, stopped afterwards."""
    servers: list[_Http] = []

    def start(ranges: bool = True) -> _Http:
        root = tmp_path / "www"
        root.mkdir(exist_ok=True)
        servers.append(_Http(root, ranges))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# --- helpers -----------------------------------------------------------------------------


def _entry_files(db: Path, entry: str) -> dict[str, bytes]:
    folder = db / "emdb" / entry
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _build(run_cli, tmp_path, inputs, db: str, entry: str = "e", extra=SMALL_LEVELS):
    args = preprocess_args(inputs, tmp_path, entry=entry, extra=tuple(extra))
    args[args.index("--db-path") + 1] = str(tmp_path / db)
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    return _entry_files(tmp_path / db, entry)


def _same_entry(run_cli, tmp_path, local, remote, extra=SMALL_LEVELS) -> dict[str, bytes]:
    a = _build(run_cli, tmp_path, local, "db_local", extra=extra)
    b = _build(run_cli, tmp_path, remote, "db_remote", extra=extra)
    assert list(a) == list(b)
    for name in a:
        assert a[name] == b[name], name
    # copies of the objects went with the run's working folder
    work = tmp_path / "work"
    assert not work.exists() or not any(work.iterdir())
    return a


def _volume(tmp_path, name="tomo.mrc", shape=(40, 70, 90), seed=3) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=shape).astype(np.float32)
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    return write_mrc(folder / name, data, voxel_size=3.5), data


def _mask(tmp_path, shape=(40, 70, 90)) -> Path:
    z, y, x = np.indices(shape, sparse=True)
    labels = ((x // 20 + y // 25 + z // 15) % 5).astype(np.uint8)
    return write_mrc(tmp_path / "in" / "tomo_mask.mrc", labels, voxel_size=3.5)


# --- S3 ----------------------------------------------------------------------------------


def test_map_mask_and_json_inputs_from_s3_are_the_entry_from_disk(
    run_cli, tmp_path, s3, shared_data
):
    volume, _ = _volume(tmp_path)
    mask = _mask(tmp_path)
    geometric = shared_data / "preprocessor/sample_segmentations/geometric_segmentations"
    geo = geometric / "geometric_segmentation_1.json"
    extra = tmp_path / "in" / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "segmentation": {
                    "segment_ids_to_segment_names_mapping": {"tomo_mask": {"1": "a", "2": "b"}}
                },
                "entry_metadata": {"description": "from s3", "url": "https://example.org"},
            }
        )
    )
    star = tmp_path / "in" / "particles.star"
    import pandas as pd
    import starfile

    starfile.write(
        {
            "optics": pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [3.5]}),
            "particles": pd.DataFrame(
                {
                    "rlnCoordinateX": [10.0, 20.0, 30.0],
                    "rlnCoordinateY": [5.0, 15.0, 25.0],
                    "rlnCoordinateZ": [7.0, 8.0, 9.0],
                    "rlnOpticsGroup": [1, 1, 1],
                }
            ),
        },
        star,
    )
    local = [
        (volume, "map"),
        (mask, "mask"),
        (geo, "geometric_segmentation"),
        (star, "star_file_geometric_segmentation"),
        (extra, "extra_data"),
    ]
    remote = [(put(s3, path, f"entry/{path.name}"), kind) for path, kind in local]
    files = _same_entry(run_cli, tmp_path, local, remote)
    assert "geometric_segmentation.json" in files
    metadata = json.loads(files["metadata.json"])
    assert metadata["segmentation_lattices"]["segmentation_ids"] == ["tomo_mask"]
    assert metadata["entry_metadata"]["description"] == "from s3"
    box = metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
    assert box["grid_dimensions"] == [90, 70, 40]


def test_real_map_gz_and_sff_from_s3(run_cli, tmp_path, s3, shared_data, emd1832_map):
    sff = shared_data / "preprocessor/sample_segmentations/emdb_sff/emd_1832.hff"
    if not sff.is_file():
        pytest.skip(f"{sff} not found")
    gz = tmp_path / "in" / "emd_1832.map.gz"
    gz.parent.mkdir(exist_ok=True)
    import gzip

    gz.write_bytes(gzip.compress(emd1832_map.read_bytes(), 6))
    annotations = shared_data / "preprocessor/sample_annotations/annotations_example.json"
    local = [(gz, "map"), (sff, "sff")]
    remote = [(put(s3, p, f"emdb/{p.name}"), kind) for p, kind in local]
    files = _same_entry(run_cli, tmp_path, local, remote, extra=())
    annotations_json = json.loads(files["annotations.json"])
    assert len(annotations_json["segment_annotations"]) == 6  # the SFF's six segments
    del annotations  # (custom annotations are covered with NIfTI below)


def test_nifti_inputs_and_custom_annotations_from_s3(run_cli, tmp_path, s3):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(5)
    folder = tmp_path / "in"
    folder.mkdir()
    data = rng.normal(size=(30, 26, 22)).astype(np.float32)
    labels = (rng.random((30, 26, 22)) > 0.6).astype(np.uint8) * 2
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), folder / "brain.nii")
    nib.save(nib.Nifti1Image(labels, affine), folder / "brain_seg.nii.gz")
    custom = folder / "custom.json"
    custom.write_text(json.dumps({"name": "from custom annotations", "details": "remote"}))
    local = [
        (folder / "brain.nii", "nii_volume"),
        (folder / "brain_seg.nii.gz", "nii_segmentation"),
        (custom, "custom_annotations"),
    ]
    remote = [(put(s3, p, f"nifti/{p.name}"), kind) for p, kind in local]
    files = _same_entry(run_cli, tmp_path, local, remote)
    assert json.loads(files["annotations.json"])["name"] == "from custom annotations"
    assert json.loads(files["metadata.json"])["segmentation_lattices"]["segmentation_ids"] == [
        "brain_seg"
    ]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_omezarr_from_s3(run_cli, tmp_path, s3, version):
    pytest.importorskip("ome_zarr")
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image, write_labels

    fmt = {"0.4": FormatV04(), "0.5": FormatV05()}[version]
    rng = np.random.default_rng(11)
    data = rng.integers(0, 1000, size=(2, 20, 28, 24), dtype=np.uint16)
    cells = np.zeros((20, 28, 24), np.uint8)
    cells[2:9, 3:20, 5:17] = 1
    cells[10:18, 1:9, 2:22] = 4
    path = tmp_path / "in" / f"cells_{version}.zarr"
    path.parent.mkdir()
    group = zarr.open_group(path, mode="w", zarr_format=fmt.zarr_format)
    units = {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
    write_image(
        data,
        group,
        fmt=fmt,
        axes=["c", "z", "y", "x"],
        scale={"c": 1.0, "z": 0.5, "y": 0.25, "x": 0.25},
        axes_units=units,
        scale_factors=[2],
        method="nearest",
    )
    write_labels(
        cells,
        group,
        name="cells",
        scaler=None,
        fmt=fmt,
        axes=["z", "y", "x"],
        scale={"z": 0.5, "y": 0.25, "x": 0.25},
        axes_units=units,
        scale_factors=[],
    )
    url = put(s3, path, f"portal/{path.name}")
    files = _same_entry(run_cli, tmp_path, [(path, "omezarr")], [(url, "omezarr")])
    metadata = json.loads(files["metadata.json"])
    assert metadata["volumes"]["channel_ids"] == ["0", "1"]
    assert metadata["segmentation_lattices"]["segmentation_ids"] == ["cells"]
    shown = run_cli("inspect", url, "--json")
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["kind"] == "omezarr" and info["volume"]["shape_xyz"] == [24, 28, 20]
    assert info["file"]["labels"] == ["cells"]
    missing = run_cli("inspect", f"s3://{BUCKET}/portal/none.zarr")
    assert_one_line_error(missing, f"s3://{BUCKET}/portal/none.zarr")


def test_anonymous_access_with_storage_options(run_cli, tmp_path, s3, monkeypatch):
    volume, _ = _volume(tmp_path, "anon.mrc", shape=(20, 30, 40))
    s3.upload_file(str(volume), BUCKET, "public/anon.mrc", ExtraArgs={"ACL": "public-read"})
    url = f"s3://{BUCKET}/public/anon.mrc"
    local = _build(run_cli, tmp_path, [(volume, "map")], "db_local")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    anon = ("--storage-options", '{"anon": true}', *SMALL_LEVELS)
    remote = _build(run_cli, tmp_path, [(url, "map")], "db_anon", extra=anon)
    assert local == remote


def test_missing_object_and_bad_storage_options_are_one_line(run_cli, tmp_path, s3):
    volume, _ = _volume(tmp_path, shape=(8, 8, 8))
    db = tmp_path / "db"
    db.mkdir()
    before = tree_digest(db)
    missing = f"s3://{BUCKET}/nowhere/emd_1.map"
    result = run_cli(*preprocess_args([(missing, "map")], tmp_path))
    assert_one_line_error(result, missing, "no such object")
    mask = run_cli(*preprocess_args([(volume, "map"), (missing, "mask")], tmp_path))
    assert_one_line_error(mask, missing, "no such object")
    gone_bucket = "s3://no-such-bucket-here/emd_1.map"
    result = run_cli(*preprocess_args([(gone_bucket, "map")], tmp_path))
    assert_one_line_error(result, gone_bucket)
    bad = run_cli(*preprocess_args([(volume, "map")], tmp_path, extra=("--storage-options", "[")))
    assert_one_line_error(bad, "--storage-options")
    assert tree_digest(db) == before


def test_inspect_and_batch_take_urls(run_cli, tmp_path, s3):
    volume, _ = _volume(tmp_path, "listed.mrc", shape=(24, 36, 48))
    mask = write_mrc(
        tmp_path / "in" / "listed_mask.mrc",
        (np.arange(24 * 36 * 48).reshape(24, 36, 48) % 3).astype(np.uint8),
        voxel_size=3.5,
    )
    url = put(s3, volume, "batch/listed.mrc")
    mask_url = put(s3, mask, "batch/listed_mask.mrc")
    shown = run_cli("inspect", url, "--json")
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["path"] == url
    assert info["volume"]["shape_xyz"] == [48, 36, 24]
    assert info["file"]["mode"] == 2
    listing = tmp_path / "list.csv"
    listing.write_text(
        f"entry_id,source_db,inputs\nremote,emdb,map:{url};mask:{mask_url}\n"
        f"gone,emdb,map:s3://{BUCKET}/batch/gone.mrc\n"
    )
    result = run_cli(
        "batch", listing, "--working-folder", tmp_path / "work", "--db-path", tmp_path / "db"
    )
    assert result.exit_code == 1, result.output
    assert "ok      emdb/remote" in result.stdout
    assert f"failed  emdb/gone (row 3): s3://{BUCKET}/batch/gone.mrc: no such object" in (
        result.stdout
    )
    local = _build(run_cli, tmp_path, [(volume, "map"), (mask, "mask")], "db_local", "remote", ())
    assert local == _entry_files(tmp_path / "db", "remote")


# --- HTTP --------------------------------------------------------------------------------


def test_http_with_ranges_reads_only_ranges(run_cli, tmp_path, http):
    server = http(ranges=True)
    volume, _ = _volume(tmp_path)
    shutil.copy(volume, tmp_path / "www" / "tomo.mrc")
    files = _same_entry(
        run_cli, tmp_path, [(volume, "map")], [(f"{server.url}/tomo.mrc", "map")]
    )
    assert "data.zip" in files
    gets = [r for r in server.requests if r[0] == "GET"]
    assert gets and all(r[2] is not None for r in gets)  # every GET a ranged one
    fetched = 0
    for _, _, wanted in gets:
        first, _, last = wanted[6:].partition("-")
        fetched += int(last) - int(first) + 1
    # the data once (plus the header and a few probes), never the whole object per block
    assert fetched < 1.2 * volume.stat().st_size


def _map_gets(server, name: str) -> list[tuple[int, int]]:
    """The byte ranges ``[start, end)`` of the GETs of ``/name``."""
    out = []
    for method, path, wanted in server.requests:
        if method == "GET" and path == f"/{name}":
            first, _, last = wanted[6:].partition("-")
            out.append((int(first), int(last) + 1))
    return out


def test_large_remote_map_is_fetched_by_a_few_large_requests(run_cli, tmp_path, http):
    # 256 x 256 x 80 float32: 20 MiB. Read in place, block by block, this map takes one
    # request per z-plane of every block (~170); copied by 16 MiB ranges it takes two.
    server = http(ranges=True)
    volume, _ = _volume(tmp_path, "large.mrc", shape=(80, 256, 256))
    size = volume.stat().st_size
    assert size > 20 * 2**20
    shutil.copy(volume, tmp_path / "www" / "large.mrc")
    _same_entry(run_cli, tmp_path, [(volume, "map")], [(f"{server.url}/large.mrc", "map")])
    gets = _map_gets(server, "large.mrc")
    # a one-byte probe, the header, then ceil(size / 16 MiB) = 2 ranges
    assert len(gets) <= 2 + -(-size // (16 * 2**20))
    assert max(b - a for a, b in gets) <= 16 * 2**20
    assert sum(b - a for a, b in gets) <= size + 8192  # every byte once (+ header, probe)


def test_remote_map_is_read_in_place_when_the_working_folder_cannot_hold_it(
    run_cli, tmp_path, http, monkeypatch
):
    from pipeline.inputs import source

    monkeypatch.setattr(source, "SPOOL_RESERVE", 2**62)  # no room for a copy
    server = http(ranges=True)
    volume, _ = _volume(tmp_path, "big.mrc", shape=(40, 300, 300))
    shutil.copy(volume, tmp_path / "www" / "big.mrc")
    _same_entry(run_cli, tmp_path, [(volume, "map")], [(f"{server.url}/big.mrc", "map")])
    gets = _map_gets(server, "big.mrc")
    # block by block: the runs of each block's planes, each well under the object
    assert len(gets) > 10
    assert max(b - a for a, b in gets) < volume.stat().st_size // 4


def test_http_without_ranges_is_copied_once(run_cli, tmp_path, http):
    server = http(ranges=False)
    volume, _ = _volume(tmp_path)
    mask = _mask(tmp_path)
    for path in (volume, mask):
        shutil.copy(path, tmp_path / "www" / path.name)
    remote = [(f"{server.url}/{p.name}", kind) for p, kind in ((volume, "map"), (mask, "mask"))]
    _same_entry(run_cli, tmp_path, [(volume, "map"), (mask, "mask")], remote)
    whole = [r for r in server.requests if r[0] == "GET" and r[2] is None]
    assert len([r for r in whole if r[1] == "/tomo.mrc"]) == 1  # streamed into the copy once


def test_http_transient_errors_are_retried(run_cli, tmp_path, http):
    server = http(ranges=True)
    volume, _ = _volume(tmp_path, shape=(16, 20, 24))
    shutil.copy(volume, tmp_path / "www" / "flaky.mrc")
    server.failures["/flaky.mrc"] = 2
    files = _same_entry(
        run_cli, tmp_path, [(volume, "map")], [(f"{server.url}/flaky.mrc", "map")]
    )
    assert "data.zip" in files
    assert server.failures["/flaky.mrc"] == 0


def test_http_missing_and_denied_are_one_line(run_cli, tmp_path, http):
    server = http(ranges=True)
    volume, _ = _volume(tmp_path, shape=(8, 8, 8))
    shutil.copy(volume, tmp_path / "www" / "secret.mrc")
    server.denied.add("/secret.mrc")
    missing = f"{server.url}/pub/databases/emdb/structures/EMD-0/map/emd_0.map.gz"
    result = run_cli(*preprocess_args([(missing, "map")], tmp_path))
    assert_one_line_error(result, missing, "no such object")
    denied = f"{server.url}/secret.mrc"
    result = run_cli(*preprocess_args([(denied, "map")], tmp_path))
    assert_one_line_error(result, denied, "access denied")
    shown = run_cli("inspect", denied)
    assert_one_line_error(shown, denied, "access denied")
    assert not (tmp_path / "db").exists()


def test_http_url_with_a_directory_kind_or_unreachable_server(run_cli, tmp_path):
    with contextlib.closing(__import__("socket").socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/emd_1.map"  # nobody listens there
    result = run_cli(*preprocess_args([(url, "map")], tmp_path))
    assert_one_line_error(result, url)


# --- a cluster without a shared file system ----------------------------------------------


def _unshare_works(folder: Path) -> str | None:
    """None when this process may run a command in its own mount namespace with a tmpfs
    mounted over ``folder``; else why not."""
    import subprocess

    if shutil.which("unshare") is None:
        return "no unshare command"
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs tmpfs "$0" && test ! -e "$0/seen"', str(folder)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"unshare -m with a tmpfs mount not permitted: {probe.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="module")
def isolated_cluster(tmp_path_factory, s3) -> Iterator[tuple[str, Path]]:
    """A ``dask scheduler`` and one ``dask worker`` that runs in its own mount namespace with
    tmpfs mounted over the client's working folder and database (``base/work``, ``base/db``):
    it truly cannot see them. Yields (scheduler address, base)."""
    import subprocess
    import sys
    import time

    from conftest import ROOT

    base = tmp_path_factory.mktemp("isolated")
    for name in ("work", "db"):
        (base / name).mkdir()
    (base / "work" / "seen").write_text("the client's")
    why = _unshare_works(base / "work")
    if why:
        pytest.skip(why)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    spec = base / "scheduler.json"
    procs: list[subprocess.Popen] = []
    with contextlib.ExitStack() as logs:

        def start(name: str, command: list[str]) -> None:
            log = logs.enter_context(open(base / f"{name}.log", "wb"))
            procs.append(subprocess.Popen(command, stdout=log, stderr=log, env=env))

        try:
            start("scheduler", [sys.executable, "-m", "dask", "scheduler", "--no-dashboard",
                                "--host", "127.0.0.1", "--port", "0",
                                "--scheduler-file", str(spec)])  # fmt: skip
            deadline = time.monotonic() + 60
            while not spec.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert spec.exists(), (base / "scheduler.log").read_text()
            worker = [sys.executable, "-m", "dask", "worker", "--scheduler-file", str(spec),
                      "--nthreads", "2", "--nworkers", "1", "--memory-limit", "1GiB",
                      "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "60",
                      "--local-directory", str(base / "worker")]  # fmt: skip
            mounts = 'mount -t tmpfs tmpfs "$0" && mount -t tmpfs tmpfs "$1" && shift && exec "$@"'
            start("worker", ["unshare", "-m", "--propagation", "private", "sh", "-c", mounts,
                             str(base / "work"), str(base / "db"), *worker])  # fmt: skip
            address = json.loads(spec.read_text())["address"]
            from distributed import Client

            with Client(address, timeout="30s") as client:
                client.wait_for_workers(1, timeout=180)  # slow starts on a loaded machine
                seen = client.run(os.path.exists, str(base / "work" / "seen"))
                assert list(seen.values()) == [False], seen  # the worker cannot see it
            yield address, base
        finally:
            stop_processes(procs)


def _cluster_args(inputs, base: Path, entry: str, *extra: str) -> list[str]:
    args = preprocess_args(inputs, base, entry=entry, extra=(*SMALL_LEVELS, *extra))
    return args


def test_worker_without_the_working_folder_sends_chunks_through_dask(
    run_cli, tmp_path, s3, isolated_cluster
):
    address, base = isolated_cluster
    volume, _ = _volume(tmp_path, "isolated.mrc", shape=(60, 150, 170))
    mask = write_mrc(
        tmp_path / "in" / "isolated_mask.mrc",
        (np.indices((60, 150, 170)).sum(axis=0) // 37 % 4).astype(np.uint16),
        voxel_size=3.5,
    )
    local = [(volume, "map"), (mask, "mask")]
    threaded = _build(run_cli, tmp_path, local, "db_threads", "iso")
    remote = [(put(s3, p, f"iso/{p.name}"), kind) for p, kind in local]
    # the mode is probed: the worker does not see the working folder, so chunks travel by dask
    result = run_cli(*_cluster_args(remote, base, "iso", "--scheduler", address))
    assert result.exit_code == 0, result.output
    assert _entry_files(base / "db", "iso") == threaded
    # bounded client memory: a budget of a few blocks still gives the same bytes
    result = run_cli(
        *_cluster_args(
            remote, base, "iso2", "--scheduler", address, "--transfer", "comms",
            "--max-memory", "256MiB",
        )
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _entry_files(base / "db", "iso2")["data.zip"] == threaded["data.zip"]
    assert not any((base / "work").glob(".cellstar-*"))


def test_worker_without_the_working_folder_reads_copies_through_the_client(
    run_cli, tmp_path, s3, isolated_cluster
):
    """Inputs the client copies (a .nii.gz here) or decodes are shipped block by block."""
    nib = pytest.importorskip("nibabel")
    address, base = isolated_cluster
    rng = np.random.default_rng(9)
    folder = tmp_path / "in"
    folder.mkdir()
    nib.save(
        nib.Nifti1Image(rng.normal(size=(50, 44, 38)).astype(np.float32), np.eye(4)),
        folder / "head.nii.gz",
    )
    local = [(folder / "head.nii.gz", "nii_volume")]
    threaded = _build(run_cli, tmp_path, local, "db_threads", "nii")
    remote = [(put(s3, folder / "head.nii.gz", "nii/head.nii.gz"), "nii_volume")]
    result = run_cli(*_cluster_args(remote, base, "nii", "--scheduler", address))
    assert result.exit_code == 0, result.output
    assert _entry_files(base / "db", "nii") == threaded


def test_local_input_for_workers_without_the_file_system_is_one_line(
    run_cli, tmp_path, isolated_cluster
):
    address, base = isolated_cluster
    volume, _ = _volume(tmp_path, "here.mrc", shape=(10, 10, 10))
    result = run_cli(*_cluster_args([(volume, "map")], base, "local", "--scheduler", address))
    assert_one_line_error(result, str(volume), "--transfer comms", "URL")
    assert not (base / "db" / "emdb" / "local").exists()


def test_comms_runner_bounds_the_blocks_in_flight_and_orders_chunks():
    """CommsRunner on an in-process cluster: the block data the client holds for the tasks in
    flight stays under its budget, chunks reach the sink in block order, next-level blocks
    written on the workers are written by the client."""
    from dataclasses import dataclass

    from distributed import Client, LocalCluster

    from pipeline.engine.runner import CommsRunner

    @dataclass(frozen=True)
    class Job:
        source: Any
        next_level: Any

    class Target:
        def __init__(self) -> None:
            self.writes: dict[tuple[int, ...], np.ndarray] = {}

        def write(self, origin, block) -> None:
            self.writes[tuple(origin)] = block

    class Sink:
        def __init__(self) -> None:
            self.keys: list[str] = []

        def put_many(self, chunks) -> None:
            self.keys += [k for k, _ in chunks]

    def task(job, start, stop, n):
        block = job.source[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
        job.next_level.write(start, block[::2, ::2, ::2] * 2)
        return float(block.sum()), [(f"chunk/{n:03d}", block.tobytes()[:8])]

    data = np.arange(64 * 64 * 64, dtype=np.float64).reshape(64, 64, 64)
    target = Target()
    job = Job(data, target)
    items = [
        (job, (x, y, z), (x + 16, y + 16, z + 16))
        for x in range(0, 64, 16)
        for y in range(0, 64, 16)
        for z in range(0, 64, 16)
    ]
    block_bytes = 16**3 * 8
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0")
        as cluster,
        Client(cluster) as client,
    ):
        runner = CommsRunner(client, max_memory=4 * 3 * block_bytes)
        sink = Sink()
        sums = runner.run_blocks(task, items, sink, window=8)
    assert runner.peak_in_flight <= 4 * 3 * block_bytes
    assert runner.peak_in_flight >= 3 * block_bytes
    assert sink.keys == [f"chunk/{n:03d}" for n in range(len(items))]
    expected = [
        float(data[x0:x1, y0:y1, z0:z1].sum()) for _, (x0, y0, z0), (x1, y1, z1) in items
    ]
    assert sums == expected
    for _, start, stop in items:
        block = data[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
        assert np.array_equal(target.writes[start], block[::2, ::2, ::2] * 2)


def test_dry_run_and_inspect_of_urls_read_headers_only(run_cli, tmp_path, s3, http):
    server = http(ranges=True)
    volume, _ = _volume(tmp_path, "dry.mrc", shape=(30, 40, 50))
    import gzip

    gz = tmp_path / "www" / "dry.mrc.gz"
    gz.write_bytes(gzip.compress(volume.read_bytes()))
    url = put(s3, volume, "dry/dry.mrc")
    for source in (url, f"{server.url}/dry.mrc.gz"):
        result = run_cli(*preprocess_args([(source, "map")], tmp_path, extra=("--dry-run",)))
        assert result.exit_code == 0, result.output
        assert "volume 50x40x30 float32" in result.stdout
        assert "dry run: nothing written" in result.stdout
    # the compressed object was not copied: a few ranged reads from its start (the range
    # probe, the magic bytes, the read-ahead of the decompressing stream), nothing else
    gets = [r for r in server.requests if r[0] == "GET" and r[1] == "/dry.mrc.gz"]
    assert gets and all(r[2] is not None for r in gets) and len(gets) <= 4
    assert not (tmp_path / "db").exists()


def test_copies_are_capped(tmp_path, s3):
    from pipeline.errors import InputFormatError
    from pipeline.inputs.source import spool

    volume, _ = _volume(tmp_path, "big.mrc", shape=(10, 10, 10))
    url = put(s3, volume, "cap/big.mrc")
    with pytest.raises(InputFormatError) as caught:
        spool(url, tmp_path / "copies", cap=1000)
    assert str(caught.value).startswith(f"{url}: larger than")
    assert not any((tmp_path / "copies").iterdir())
    copy = spool(url, tmp_path / "copies")
    assert copy.name == "big.mrc" and copy.read_bytes() == volume.read_bytes()


def test_transfer_needs_a_cluster(run_cli, tmp_path):
    volume, _ = _volume(tmp_path, shape=(8, 8, 8))
    result = run_cli(*preprocess_args([(volume, "map")], tmp_path, extra=("--transfer", "comms")))
    assert_one_line_error(result, "--transfer")


def test_ometiff_inputs_from_s3(run_cli, tmp_path, s3):
    pytest.importorskip("tifffile")
    from test_ometiff import _hipsc_extra, _hipsc_files

    folder = tmp_path / "in"
    folder.mkdir()
    image, seg, _, _ = _hipsc_files(folder)
    extra = _hipsc_extra(folder / "hipsc_extra.json")
    local = [(image, "ometiff_image"), (seg, "ometiff_segmentation"), (extra, "extra_data")]
    remote = [(put(s3, p, f"hipsc/{p.name}"), kind) for p, kind in local]
    files = _same_entry(run_cli, tmp_path, local, remote)
    metadata = json.loads(files["metadata.json"])
    assert metadata["volumes"]["channel_ids"] == ["dna", "membrane", "structure"]
    assert "dna_segmentation" in metadata["segmentation_lattices"]["segmentation_ids"]
