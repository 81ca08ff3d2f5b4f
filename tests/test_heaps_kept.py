"""``pipeline.memory.heaps_kept``: temporaries of a few MiB reuse freed heap memory inside the
block (instead of fresh maps whose pages are touched again), the pinned threshold is back after
it. Run in a fresh process: the allocator's settings are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, resource, threading
import numpy as np
from pipeline.memory import fix_map_threshold, heaps_kept

def faults(rounds=12, mib=24):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        a = np.ones(mib * 2**17, np.float64)  # touched, freed
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

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
