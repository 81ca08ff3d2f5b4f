"""From a lattice level's category sets to one NGFF label value per voxel.

An NGFF label image holds one integer per voxel, the entry a *set* of segment ids per category
(DESIGN 7.2). The rule, the same at every level: **a voxel's label is the smallest non-zero
segment id of its category's set, or 0 when the set holds no other segment than 0.** At level 1
every set has one member, so the label is the segment id itself. At coarser levels a voxel
whose window touches a segment is labelled (foreground wins over background, as the set
pyramid's "set contains s" masks do) and, where several segments meet, the smallest id wins:
deterministic, computable from the set table alone, and always a member of the set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["LabelLut", "apply_lut", "label_dtype", "label_lut", "label_of_set"]

LabelLut = tuple[np.ndarray, np.ndarray]  # (sorted category ids, label values)


def label_of_set(segments: Iterable[int]) -> int:
    """The label of one set: its smallest non-zero member, else 0.

    >>> label_of_set([0, 97, 85]), label_of_set([0]), label_of_set([12])
    (85, 0, 12)
    """
    members = [int(s) for s in segments if int(s) != 0]
    return min(members) if members else 0


def label_lut(table: Mapping[int, Iterable[int]]) -> LabelLut:
    """Category id -> label value, as sorted keys and values for :func:`apply_lut`."""
    keys = np.array(sorted(table), dtype=np.uint64)
    values = np.array([label_of_set(table[int(k)]) for k in keys], dtype=np.uint64)
    return keys, values


def label_dtype(luts: Iterable[LabelLut]) -> np.dtype:
    """uint32 unless a segment id needs 64 bits."""
    top = max((int(v.max()) for _, v in luts if v.size), default=0)
    return np.dtype(np.uint32 if top <= np.iinfo(np.uint32).max else np.uint64)


def apply_lut(grid: np.ndarray, lut: LabelLut, dtype: np.dtype) -> np.ndarray:
    """Label values of a block of category ids; a category missing from the table is an error
    (the entry is damaged), reported as ``KeyError`` with the first missing id."""
    keys, values = lut
    flat = grid.astype(np.uint64, copy=False)
    if keys.size == 0:
        if grid.size:
            raise KeyError(int(flat.flat[0]))
        return np.zeros(grid.shape, dtype)
    where = np.searchsorted(keys, flat)
    where = np.minimum(where, keys.size - 1)
    bad = keys[where] != flat
    if bad.any():
        raise KeyError(int(flat[bad].flat[0]))
    return values[where].astype(dtype, copy=False)
