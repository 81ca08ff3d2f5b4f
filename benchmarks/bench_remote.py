"""Remote-input benchmark (issue 15): ``preprocess`` of a map read by URL from a server on
127.0.0.1 against the same map read from disk.

Servers (``--server``, several allowed):

- ``s3``: moto's S3 server mode (in the ``test`` extra). A functional S3, not a fast one: it
  reads and copies the whole object for every ranged GET, so its cost grows with the object
  size times the number of requests.
- ``s3rver``: the npm package ``s3rver`` (a small S3 server in node that answers a ranged GET
  by reading only the requested bytes of a file, as object stores do). Benchmark-only, not a
  dependency of the project; install it outside the project and point ``--s3rver-bin`` at it
  (default: ``s3rver`` on ``PATH``)::

      mkdir -p /tmp/s3rver-bench && cd /tmp/s3rver-bench && npm install s3rver@3.7.1
      python benchmarks/bench_remote.py --mib 2048 --server s3rver \
          --s3rver-bin /tmp/s3rver-bench/node_modules/.bin/s3rver

- ``http``: a threaded HTTP server answering ranged GETs by reading only the requested bytes.

The runs happen in one invocation, one after the other; ratios are taken within that
invocation. Every entry must be the same bytes as the one from disk (checked). Every server
counts the GET requests of the map and the bytes they asked for.

Usage: ``python benchmarks/bench_remote.py [--mib 2048] [--server s3 --server s3rver
--server http] [--cluster 2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import measure, preprocess_argv, write_synthetic_map

BUCKET = "bench-remote"


def _shape(mib: int) -> tuple[int, int, int]:
    """(z, y, x) of a float32 map of about ``mib`` MiB: x = y = 2 z."""
    voxels = mib * 2**20 // 4
    z = round((voxels / 4) ** (1 / 3))
    return (z, 2 * z, 2 * z)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=2048, help="map size in MiB")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/bench-remote"))
    parser.add_argument("--keep", action="store_true", help="keep the folder afterwards")
    parser.add_argument("--server", action="append", choices=["s3", "s3rver", "http"])
    parser.add_argument("--s3rver-bin", default="s3rver", help="the s3rver command (npm)")
    parser.add_argument(
        "--cluster",
        type=int,
        metavar="N",
        help="also build the entry from the HTTP server on a local cluster of N worker "
        "processes, once per --transfer mode (shared, comms)",
    )
    args = parser.parse_args()
    servers = args.server or ["s3", "http"]

    folder = args.folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shape = _shape(args.mib)
    path = folder / "bench.map"
    write_synthetic_map(path, shape)
    size = path.stat().st_size
    print(f"map {shape[2]}x{shape[1]}x{shape[0]} float32, {size / 2**20:.0f} MiB")

    results = [(measure("disk", preprocess_argv([(path, "map")], folder / "disk", "bench")),
                folder / "disk")]  # fmt: skip
    counts: dict[str, tuple[int, int]] = {}
    labels = {
        "s3": "s3 (moto, 127.0.0.1)",
        "s3rver": "s3 (s3rver, 127.0.0.1)",
        "http": "http ranges (127.0.0.1)",
    }
    for kind in servers:
        with _serve(kind, path, folder, args.s3rver_bin) as (url, counter):
            out = folder / kind
            before = counter()
            argv = preprocess_argv([(url, "map")], out, "bench")
            results.append((measure(labels[kind], argv), out))
            after = counter()
            counts[labels[kind]] = _delta(before, after)
            if kind == "http" and args.cluster:
                for mode in ("shared", "comms"):
                    out = folder / f"cluster-{mode}"
                    argv = preprocess_argv([(url, "map")], out, "bench")
                    argv += ["--workers", str(args.cluster), "--transfer", mode]
                    label = f"http, {args.cluster} workers, {mode}"
                    before = counter()
                    results.append((measure(label, argv), out))
                    after = counter()
                    counts[label] = _delta(before, after)
    reference = (folder / "disk/db/bench/bench/data.zip").read_bytes()
    for m, out in results[1:]:
        same = (out / "db/bench/bench/data.zip").read_bytes() == reference
        assert same, f"{m.label}: the entry differs from the entry from disk"
    print(
        f"{'input':<30} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13} {'time / disk':>12}"
        f" {'GETs':>7} {'bytes / map':>12}"
    )
    for m, _ in results:
        rate = size / 1e6 / m.seconds
        ratio = m.seconds / results[0][0].seconds
        gets, fetched = counts.get(m.label, (0, 0))
        share = f"{fetched / size:12.3f}" if fetched >= 0 else f"{'-':>12}"
        extra = f" {gets:7d} {share}" if m.label in counts else ""
        print(
            f"{m.label:<30} {m.seconds:8.1f} {rate:8.0f} {m.peak_rss_mib:13.0f} {ratio:12.2f}"
            + extra
        )
    print("every data.zip is the one from disk: yes")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


def _delta(before: tuple[int, int], after: tuple[int, int]) -> tuple[int, int]:
    """(GETs, bytes) between two counts; bytes -1 where the server does not count them."""
    return after[0] - before[0], after[1] - before[1] if after[1] >= 0 else -1


def _ranged_bytes(header: str | None, size: int) -> int:
    """Bytes a GET with this ``Range`` header asks for (the whole object without one)."""
    if not header or not header.startswith("bytes="):
        return size
    first, _, last = header[6:].partition("-")
    return min(int(last or size - 1) + 1, size) - int(first)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _s3_environment(endpoint: str, key: str, secret: str) -> None:
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )


def _upload(path: Path) -> str:
    import boto3
    from boto3.s3.transfer import TransferConfig

    s3 = boto3.session.Session().client(  # not the default session: it keeps old keys
        "s3",
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=BUCKET)
    config = TransferConfig(multipart_chunksize=256 * 2**20, multipart_threshold=256 * 2**20)
    s3.upload_file(str(path), BUCKET, path.name, Config=config)
    return f"s3://{BUCKET}/{path.name}"


@contextlib.contextmanager
def _serve(
    kind: str, path: Path, folder: Path, s3rver_bin: str = "s3rver"
) -> Iterator[tuple[str, Callable[[], tuple[int, int]]]]:
    """(URL of ``path`` on a server of ``kind`` on 127.0.0.1, (GETs of the map so far, bytes
    they asked for))."""
    size = path.stat().st_size
    counted = [0, 0]
    if kind == "s3":
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import WSGIRequestHandler, make_server

        app = DomainDispatcherApplication(create_backend_app)

        def counting(environ: dict, start_response: Callable) -> object:
            if environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].endswith(path.name):
                counted[0] += 1
                counted[1] += _ranged_bytes(environ.get("HTTP_RANGE"), size)
            return app(environ, start_response)

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args: object, **kwargs: object) -> None:
                pass

        server = make_server("127.0.0.1", 0, counting, threaded=True, request_handler=Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            _s3_environment(f"http://127.0.0.1:{server.server_address[1]}", "bench", "bench")
            yield _upload(path), lambda: (counted[0], counted[1])
        finally:
            server.shutdown()
            thread.join(10)
        return
    if kind == "s3rver":
        port = _free_port()
        data = folder / "s3rver-data"
        data.mkdir()
        log = open(folder / "s3rver.log", "w+")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(
            [s3rver_bin, "-d", str(data), "-a", "127.0.0.1", "-p", str(port),
             "--allow-mismatched-signatures", "--no-vhost-buckets"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.1)
            _s3_environment(f"http://127.0.0.1:{port}", "S3RVER", "S3RVER")
            url = _upload(path)

            def gets() -> tuple[int, int]:
                # s3rver's request log: one "<key> 206 <ms> <size>" line per ranged GET (the
                # reader's only GETs of an object store), sizes rounded: bytes not counted
                log.flush()
                text = (folder / "s3rver.log").read_text(errors="replace")
                return sum(1 for line in text.splitlines() if f"{path.name} 206 " in line), -1

            yield url, gets
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
        return

    class Ranged(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(size))
            self.end_headers()

        def do_GET(self) -> None:
            first, _, last = (self.headers.get("Range") or f"bytes=0-{size - 1}")[6:].partition(
                "-"
            )
            start, stop = int(first), min(int(last or size - 1) + 1, size)
            self.send_response(206)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            self.send_header("Content-Length", str(stop - start))
            self.end_headers()
            with open(path, "rb") as f:
                f.seek(start)
                left = stop - start
                while left:
                    block = f.read(min(left, 4 * 2**20))
                    self.wfile.write(block)
                    left -= len(block)
            counted[0] += 1
            counted[1] += stop - start

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ranged)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
        yield url, lambda: (counted[0], counted[1])
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
