"""Remote-input benchmark (issue 15): ``preprocess`` of a map read from a local S3 server
(moto's server mode on 127.0.0.1, ranged requests) against the same map read from disk.

Both runs happen in one invocation, one after the other, on the same machine; the ratio is
taken within that run. The two entries must be the same bytes (checked).

Usage: ``python benchmarks/bench_remote.py [--mib 2048] [--folder /tmp/bench-remote]``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
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
    args = parser.parse_args()

    from moto.server import ThreadedMotoServer

    folder = args.folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shape = _shape(args.mib)
    path = folder / "bench.map"
    write_synthetic_map(path, shape)
    size = path.stat().st_size
    print(f"map {shape[2]}x{shape[1]}x{shape[0]} float32, {size / 2**20:.0f} MiB")

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
        s3.upload_file(str(path), BUCKET, "bench.map")
        url = f"s3://{BUCKET}/bench.map"

        results = []
        for label, source in (("disk", path), ("s3 (moto, 127.0.0.1)", url)):
            out = folder / label.split()[0]
            argv = preprocess_argv([(source, "map")], out, "bench")
            results.append((measure(label, argv), out))
        a = (results[0][1] / "db/bench/bench/data.zip").read_bytes()
        b = (results[1][1] / "db/bench/bench/data.zip").read_bytes()
        assert a == b, "the entry from S3 differs from the entry from disk"
    finally:
        server.stop()
    print(f"{'input':<24} {'seconds':>8} {'MB/s':>8} {'peak RSS MiB':>13}")
    for m, _ in results:
        rate = size / 1e6 / m.seconds
        print(f"{m.label:<24} {m.seconds:8.1f} {rate:8.0f} {m.peak_rss_mib:13.0f}")
    ratio = results[1][0].seconds / results[0][0].seconds
    print(f"s3 / disk time ratio {ratio:.2f} (same data.zip: yes)")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    assert math.isfinite(ratio)


if __name__ == "__main__":
    main()
