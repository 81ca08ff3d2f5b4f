"""Chunk grids shared by readers and the pipeline: blocks aligned to the stored chunk grid."""

from __future__ import annotations

import itertools

__all__ = ["align_chunks", "aligned_or_rechunked"]


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


def aligned_or_rechunked(chunks: tuple[int, ...], block: int) -> tuple[int, ...]:
    """Keep ``chunks`` if every inner boundary is a multiple of ``block`` and no chunk but a
    whole axis has length 1; else the :func:`align_chunks` grid.

    >>> aligned_or_rechunked((256, 256, 100), 128)
    (256, 256, 100)
    >>> aligned_or_rechunked((64, 64, 64), 128)
    (128, 64)
    """
    n = sum(chunks)
    bounds = list(itertools.accumulate(chunks))[:-1]
    if all(b % block == 0 for b in bounds) and (len(chunks) == 1 or chunks[-1] > 1):
        return chunks
    return align_chunks(n, block)
