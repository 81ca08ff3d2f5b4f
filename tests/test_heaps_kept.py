"""``pipeline.memory.heaps_kept``: temporaries of a few MiB reuse freed heap memory inside the
block (instead of fresh maps whose pages are touched again), the pinned threshold is back after
it. Run in a fresh process: the allocator's settings are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# page faults of rounds of fresh arrays, touched then freed (both scripts)
FAULTS = r"""
import json, resource, sys, threading
import numpy as np

def faults(rounds=12, mib=24):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        a = np.ones(mib * 2**17, np.float64)  # touched, freed
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""

SCRIPT = FAULTS + r"""
from pipeline.memory import fix_map_threshold, heaps_kept

out = {"pinned": fix_map_threshold()}  # first, as the runner does
out["outside"] = faults()
with heaps_kept():
    faults(1)  # the heap grows once
    out["inside"] = faults()
    with heaps_kept():  # nested (or another thread's): nothing more happens
        out["nested"] = faults()
    seen = []
    t = threading.Thread(target=lambda: seen.append(faults(1) >= 0))
    t.start(); t.join()
    out["thread"] = seen == [True]
out["after"] = faults(mib=40)  # (larger than the hole the block left)
try:
    with heaps_kept():
        raise KeyError("x")
except KeyError:
    out["raised"] = True
with heaps_kept():  # released after the exception: kept again
    faults(1)
    out["again"] = faults()
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_heaps_kept_reuses_freed_memory_and_restores_the_threshold():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    got = json.loads(done.stdout)
    if not got["pinned"]:
        pytest.skip("not glibc: the threshold cannot be pinned")
    # outside: every 24 MiB array is a fresh map, its pages faulted in again each time
    assert got["outside"] > 12 * 8
    assert got["after"] > 12 * 8
    # inside: the freed memory is used again
    assert got["inside"] * 4 < got["outside"]
    assert got["nested"] * 4 < got["outside"]
    assert got["again"] * 4 < got["outside"]
    assert got["thread"] and got["raised"]


THREADS_SCRIPT = FAULTS + r"""
import pipeline.memory as memory

if sys.argv[1] == "own-heaps":  # what glibc does by default: a heap per thread
    memory.one_arena = lambda: False
pinned = memory.fix_map_threshold()  # first, as the runner does (before any thread)

with memory.heaps_kept():
    # a pass's thread allocates, touches and frees; then the merge, in this thread
    t = threading.Thread(target=faults, args=(3,))
    t.start(); t.join()
    main = faults(1)
print(json.dumps({"pinned": pinned, "main": main, "fresh": faults(1)}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_memory_a_thread_frees_is_used_again_by_the_main_thread():
    """:func:`pipeline.memory.one_arena`: what a pass's threads free inside ``heaps_kept`` is
    used again by the merge that follows in the main thread (with a heap per thread, the main
    thread faults every page afresh)."""
    got = {}
    for mode in ("one-heap", "own-heaps"):
        done = subprocess.run(
            [sys.executable, "-c", THREADS_SCRIPT, mode],
            capture_output=True, text=True, check=True, timeout=120,
        )
        got[mode] = json.loads(done.stdout)
    if not got["one-heap"]["pinned"]:
        pytest.skip("not glibc: the allocator's settings cannot be changed")
    fresh = got["one-heap"]["fresh"]  # a fresh map of 24 MiB (outside heaps_kept)
    assert fresh > 8
    assert got["own-heaps"]["main"] * 2 > fresh  # the measure sees fresh pages
    assert got["one-heap"]["main"] * 4 < fresh


def _kept_while_building(tmp_path, monkeypatch, name, inputs, *extra):
    """Whether the heaps were kept while ``preprocess`` built the volume of ``inputs``, and
    still while it built a lattice after it."""
    from click.testing import CliRunner
    from conftest import preprocess_args

    import pipeline.preprocess as pp
    from cli.main import cli
    from pipeline import memory

    seen: dict[str, bool] = {}

    def watched(key, function):
        def call(*args, **kwargs):
            seen[key] = memory._kept.locked()
            return function(*args, **kwargs)

        return call

    args = preprocess_args(inputs, tmp_path, entry=name, extra=extra)
    with monkeypatch.context() as patch:  # (undone after each run: no wrapper of a wrapper)
        patch.setattr(pp, "write_volume", watched("volume", pp.write_volume))
        patch.setattr(pp, "write_lattice", watched("lattice", pp.write_lattice))
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert not memory._kept.locked()  # released when the run ends
    return seen


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_build_keeps_its_heaps_where_it_reads_raw_files(tmp_path, monkeypatch):
    """A map read from a local MRC: the whole build (volume, then lattices) keeps the heaps;
    not with ``--max-memory``, nor for a volume a library decodes (OME-Zarr)."""
    import numpy as np
    import zarr
    from conftest import write_mrc
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    from pipeline.memory import fix_map_threshold

    if not fix_map_threshold():
        pytest.skip("not glibc: the threshold cannot be pinned")
    rng = np.random.default_rng(3)
    density = write_mrc(tmp_path / "m.mrc", rng.normal(size=(20, 18, 16)).astype(np.float32))
    labels = rng.integers(0, 4, size=(20, 18, 16)).astype(np.int16)
    mask = write_mrc(tmp_path / "k.mrc", labels)
    raw = [(density, "map"), (mask, "mask")]
    assert _kept_while_building(tmp_path / "a", monkeypatch, "a-a", raw) == {
        "volume": True,
        "lattice": True,
    }
    bounded = ("--max-memory", "256MiB")
    got = _kept_while_building(tmp_path / "b", monkeypatch, "b-b", raw, *bounded)
    assert got == {"volume": False, "lattice": False}
    image = tmp_path / "image.zarr"
    group = zarr.open_group(image, mode="w", zarr_format=2)
    image_data = rng.integers(0, 999, size=(20, 18, 16), dtype=np.uint16)
    write_image(image_data, group, fmt=FormatV04(), axes=["z", "y", "x"])
    decoded = _kept_while_building(tmp_path / "c", monkeypatch, "c-c", [(image, "omezarr")])
    assert decoded == {"volume": False}
