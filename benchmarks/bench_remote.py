"""Remote-input benchmark (issue 15): ``preprocess`` of a map read by URL from a server on
127.0.0.1 against the same map read from disk.

Servers (``--server``): ``s3``, moto's S3 server mode (a functional S3, but it reads and copies
the whole object for every ranged GET, so its cost grows with the object size times the number
of requests: keep ``--mib`` small with it); ``http``, a threaded HTTP server answering ranged
GETs by reading only the requested bytes (how object stores behave). The runs happen in one
invocation, one after the other; ratios are taken within that invocation. Every entry must be
the same bytes as the one from disk (checked). The HTTP server also counts the bytes served.

Usage: ``python benchmarks/bench_remote.py [--mib 2048] [--server s3 --server http]
[--cluster 2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
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
    parser.add_argument("--server", action="append", choices=["s3", "http"])
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
    served = 0
    for kind in servers:
        with _serve(kind, path) as (url, counter):
            out = folder / kind
            label = "s3 (moto, 127.0.0.1)" if kind == "s3" else "http ranges (127.0.0.1)"
            results.append((measure(label, preprocess_argv([(url, "map")], out, "bench")), out))
            served = counter() if kind == "http" else served
            if kind == "http" and args.cluster:
                for mode in ("shared", "comms"):
                    out = folder / f"cluster-{mode}"
                    argv = preprocess_argv([(url, "map")], out, "bench")
                    argv += ["--workers", str(args.cluster), "--transfer", mode]
                    label = f"http, {args.cluster} workers, {mode}"
                    results.append((measure(label, argv), out))
    reference = (folder / "disk/db/bench/bench/data.zip").read_bytes()
    for m, out in results[1:]:
        same = (out / "db/bench/bench/data.zip").read_bytes() == reference
        assert same, f"{m.label}: the entry differs from the entry from disk"
    print(f"{'input':<30} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13} {'time / disk':>12}")
    for m, _ in results:
        rate = size / 1e6 / m.seconds
        ratio = m.seconds / results[0][0].seconds
        print(f"{m.label:<30} {m.seconds:8.1f} {rate:8.0f} {m.peak_rss_mib:13.0f} {ratio:12.2f}")
    if served:
        print(f"http: {served / size:.3f} x the object's bytes served by the first HTTP run")
    print("every data.zip is the one from disk: yes")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def _serve(kind: str, path: Path) -> Iterator[tuple[str, Callable[[], int]]]:
    """(URL of ``path`` on a server of ``kind`` on 127.0.0.1, bytes served so far)."""
    if kind == "s3":
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        try:
            host, port = server.get_host_and_port()
            os.environ.update(
                {
                    "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                    "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": "bench",
                    "AWS_DEFAULT_REGION": "us-east-1",
                }
            )
            import boto3

            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            s3.upload_file(str(path), BUCKET, path.name)
            yield f"s3://{BUCKET}/{path.name}", lambda: 0
        finally:
            server.stop()
        return
    served = [0]
    size = path.stat().st_size

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
            served[0] += stop - start

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ranged)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}", lambda: served[0]
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
