"""Give freed block buffers back to the system (glibc), so resident memory follows the blocks in
flight rather than the most ever allocated.

glibc serves large allocations from memory maps, but raises that threshold each time one is
freed (up to 32 MiB): after the first blocks, block-sized buffers come from the heaps of the
threads that allocated them and stay resident when freed. :func:`fix_map_threshold` pins the
threshold, so buffers of a few MiB and more (blocks, decoded chunks) are mapped and unmapped;
:func:`trim` returns what the heaps hold free. Both do nothing where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

__all__ = ["fix_map_threshold", "trim"]

_M_MMAP_THRESHOLD = -3
MAP_THRESHOLD = 4 * 2**20


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
    """Allocations of ``nbytes`` and more are memory maps from now on (once per process)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, nbytes) == 1)


def trim() -> None:
    """Return the free memory of the heaps to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
