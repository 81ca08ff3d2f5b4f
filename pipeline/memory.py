"""Where freed memory goes (glibc): back to the system between blocks, or kept for the next
temporaries during a run.

glibc serves large allocations from memory maps, but raises that threshold each time one is
freed (up to 32 MiB): after the first blocks, block-sized buffers come from the heaps of the
threads that allocated them and stay resident when freed. :func:`fix_map_threshold` pins the
threshold, so buffers of a few MiB and more (blocks, decoded chunks) are mapped and unmapped
and resident memory follows the blocks in flight; :func:`trim` returns what the heaps hold
free. The label passes and merges of a lattice, and the volume's passes where they read a
local raw file (MRC, CCP4), serve their temporaries from the heaps instead
(:func:`heaps_kept`, unless ``--max-memory`` is given): every page freed is used again
without faulting, resident memory no longer drops between passes, and the heaps are trimmed
when the build is done. Threads share the main thread's heap (:func:`one_arena`), so what a
pass's threads free serves the merge that follows in the main thread. All of it does nothing
where glibc is not the allocator.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["BUILD_KEPT", "fix_map_threshold", "heaps_kept", "one_arena", "trim"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MAP_THRESHOLD = 4 * 2**20
_TRIM_THRESHOLD = 128 * 2**10  # glibc's default
_fixed: list[int] = []  # the threshold fix_map_threshold pinned, once it has
_kept = threading.Lock()


@functools.cache
def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
            return None
    except OSError:
        return None
    return libc


@functools.cache
def fix_map_threshold(nbytes: int = MAP_THRESHOLD) -> bool:
    """Allocations of ``nbytes`` and more are memory maps from now on, and threads started
    from now on allocate from the main heap (once per process; see :func:`one_arena`)."""
    libc = _libc()
    one_arena()
    fixed = bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, nbytes) == 1)
    if fixed:
        _fixed.append(nbytes)
    return fixed


@functools.cache
def one_arena() -> bool:
    """Threads that allocate for the first time from now on share the main thread's heap
    instead of a heap of their own (glibc's ``M_ARENA_MAX`` of 1; once per process, before
    the first block pass starts its threads: :func:`fix_map_threshold`).

    While :func:`heaps_kept` keeps freed memory, what a pass's threads free is then used
    again by the merge that follows in the main thread, and by the next pass's new threads,
    instead of sitting in heaps of threads that have ended while fresh pages fault elsewhere
    (a thread's own heap also maps anything above 64 MiB afresh). Measured on the 512^3
    ``cells`` benchmark: the level-1 merge 0.5-0.7 s -> 0.3-0.4 s (its system time 0.3-0.45 s
    -> 0.04 s), peak RSS 710-900 -> 560-575 MiB; the map alone unchanged (see
    docs/labels.md). The threads' allocations are few and large (numpy buffers), so one lock
    costs nothing measurable."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, 1) == 1)


BUILD_KEPT = 256 * 2**20  # allocations below this come from the heaps while a build keeps them


@contextlib.contextmanager
def heaps_kept(nbytes: int = 64 * 2**20) -> Iterator[None]:
    """While the block runs, allocations below ``nbytes`` come from the heaps and what is
    freed stays in them (up to four times that at a heap's top; :func:`trim` does nothing);
    then the pinned threshold is back (pinned first if it was not) and the heaps are trimmed.

    For label passes and merges, many temporaries of a few MiB block after block: each fresh
    map costs the system time of first touching its pages again (and on virtual machines whose
    host takes freed memory back within a second or two, several times more), memory freed
    into a heap is used again, warm. Nested (or in another thread's block): nothing more
    happens."""
    libc = _libc()
    if libc is None or not fix_map_threshold() or not _kept.acquire(blocking=False):
        yield
        return
    try:
        libc.mallopt(_M_MMAP_THRESHOLD, max(nbytes, _fixed[0]))
        libc.mallopt(_M_TRIM_THRESHOLD, 4 * nbytes)
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _fixed[0])
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
        libc.malloc_trim(0)
        _kept.release()


def trim() -> None:
    """Return the free memory of the heaps to the system (not while :func:`heaps_kept` keeps
    it for the next temporaries)."""
    libc = _libc()
    if libc is not None and not _kept.locked():
        libc.malloc_trim(0)
