"""Chunk grids shared by readers and the pipeline: blocks aligned to the stored chunk grid."""

from __future__ import annotations

__all__ = ["align_chunks"]


def align_chunks(n: int, block: int) -> tuple[int, ...]:
    """Chunks of ``block`` samples; a last chunk of one sample is merged into the previous one
    so that every block has the 2-sample halo its neighbour needs.

    >>> align_chunks(257, 128)
    (128, 129)
    """
    chunks = [block] * (n // block)
    rest = n - block * len(chunks)
    if rest:
        if rest == 1 and chunks:
            chunks[-1] += 1
        else:
            chunks.append(rest)
    return tuple(chunks) if chunks else (0,)

