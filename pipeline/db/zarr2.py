"""Zarr format 2, written directly: array metadata and encoded chunks as (key, bytes) pairs.

zarr-python is used to *read* what this writes (tests prove the round trip); writing the format
ourselves keeps the hot path to one encode and one write per chunk, lets chunks stream straight
into data.zip, and covers what zarr-python 3 refuses to create (object arrays, DESIGN 3.2).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
from numcodecs.abc import Codec

__all__ = ["array_metadata", "chunk_key", "encode_block", "group_metadata", "json_bytes"]


def json_bytes(document: Any) -> bytes:
    """JSON as zarr writes its metadata: sorted keys, 4-space indent, UTF-8."""
    return json.dumps(document, indent=4, sort_keys=True, ensure_ascii=True).encode()


def group_metadata() -> bytes:
    return json_bytes({"zarr_format": 2})


def array_metadata(
    shape: tuple[int, ...],
    dtype: np.dtype | str,
    chunks: tuple[int, ...],
    compressor: Codec | None,
    fill_value: Any = 0,
    filters: list[dict[str, Any]] | None = None,
    order: str = "C",
) -> bytes:
    """The ``.zarray`` document of an array with ``.``-separated chunk keys."""
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    dtype_str = dtype if isinstance(dtype, str) else np.dtype(dtype).str
    return json_bytes(
        {
            "zarr_format": 2,
            "shape": list(shape),
            "chunks": list(chunks),
            "dtype": dtype_str,
            "compressor": None if compressor is None else compressor.get_config(),
            "fill_value": fill_value,
            "order": order,
            "filters": filters,
            "dimension_separator": ".",
        }
    )


def chunk_key(path: str, index: tuple[int, ...]) -> str:
    """``volume_data/1/0/0`` + (2, 0, 1) -> ``volume_data/1/0/0/2.0.1``."""
    return f"{path}/{'.'.join(map(str, index))}"


def encode_block(
    block: np.ndarray,
    origin: tuple[int, ...],
    chunks: tuple[int, ...],
    compressor: Codec,
    order: str = "C",
    dtype: np.dtype | None = None,
) -> Iterator[tuple[tuple[int, ...], bytes]]:
    """Encode the whole chunks a block covers: yields (chunk index, encoded bytes).

    ``block`` starts at ``origin`` (a multiple of ``chunks``) and ends on a chunk boundary or at
    the array's end; partial edge chunks are padded with 0 to the full chunk shape, as zarr 2
    stores them. ``order`` is the byte layout inside a chunk, as declared in ``.zarray``;
    ``dtype`` the stored dtype (chunks are converted one at a time; default: the block's).
    """
    if any(o % c for o, c in zip(origin, chunks, strict=True)):
        raise ValueError(f"block origin {origin} is not on the chunk grid {chunks}")
    ranges = [range(0, n, c) for n, c in zip(block.shape, chunks, strict=True)]
    for starts in itertools.product(*ranges):
        piece = block[tuple(slice(s, s + c) for s, c in zip(starts, chunks, strict=True))]
        if piece.shape != chunks:
            padded = np.zeros(chunks, dtype=block.dtype, order=order)
            padded[tuple(slice(0, n) for n in piece.shape)] = piece
            piece = padded
        # the chunk's bytes in the declared layout and dtype (a no-op when the block has them)
        if order == "F":
            raw = np.asfortranarray(piece, dtype=dtype).T
        else:
            raw = np.ascontiguousarray(piece, dtype=dtype)
        index = tuple((o + s) // c for o, s, c in zip(origin, starts, chunks, strict=True))
        yield index, compressor.encode(np.ascontiguousarray(raw))
