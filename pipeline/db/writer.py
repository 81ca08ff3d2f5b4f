"""Writing a zarr 2 hierarchy into a key sink: arrays, attributes, groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numcodecs import JSON, Blosc, blosc
from numcodecs.abc import Codec

from pipeline.db.sinks import KeySink
from pipeline.db.zarr2 import array_metadata, chunk_key, encode_block, group_metadata, json_bytes
from pipeline.engine.sink import ChunkEncoder
from pipeline.options import Compressor

__all__ = ["ArrayTarget", "DataWriter", "compressor_codec"]


# Blosc's own threads (numcodecs uses them for calls from the main thread only) give other
# bytes than one thread does: every chunk is compressed by one thread, whichever thread runs
# its block (a one-block pass runs in the calling thread), so the same input gives the same
# data.zip
blosc.use_threads = False


def compressor_codec(kind: Compressor) -> Blosc:
    """Blosc lz4 (default) or zstd, clevel 5, byte shuffle (DESIGN section 3.2)."""
    return Blosc(cname=kind.value, clevel=5, shuffle=Blosc.SHUFFLE)


@dataclass(frozen=True, slots=True, eq=False)
class ArrayTarget:
    """One array being written: encodes the chunk-aligned blocks a task hands it (plain data,
    no sink: a block task on a cluster worker gets it as it is; :meth:`DataWriter.write_block`
    or the engine's runner stores the chunks)."""

    path: str
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    dtype: np.dtype
    codec: Codec
    order: str = "C"

    def encode(self, block: np.ndarray, origin: tuple[int, ...]) -> list[tuple[str, bytes]]:
        """The (key, encoded bytes) of every chunk of a block that starts on the chunk grid (a
        block of a narrower dtype is widened chunk by chunk)."""
        if block.dtype != self.dtype and not np.can_cast(block.dtype, self.dtype, "safe"):
            raise TypeError(f"{self.path}: block dtype {block.dtype} != {self.dtype}")
        return [
            (chunk_key(self.path, index), data)
            for index, data in encode_block(
                block, origin, self.chunks, self.codec, self.order, self.dtype
            )
        ]


class DataWriter:
    """Creates arrays of one data.zip hierarchy and, at :meth:`finish`, its group markers."""

    def __init__(
        self, sink: KeySink, compressor: Compressor, existing: frozenset[str] = frozenset()
    ) -> None:
        self.sink = sink
        self.codec = compressor_codec(compressor)
        self._groups: set[str] = {""}
        self._existing = existing  # keys already in the archive (extend)

    def _register_parents(self, path: str) -> None:
        parts = path.split("/")
        for i in range(1, len(parts)):
            self._groups.add("/".join(parts[:i]))

    def array(
        self,
        path: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        chunks: tuple[int, ...],
        attrs: dict[str, Any] | None = None,
        order: str = "C",
    ) -> ArrayTarget:
        """Declare an array (its ``.zarray`` and ``.zattrs``); chunks are clipped to the shape.

        ``order`` is the memory layout inside each chunk ('C' or 'F'): choose the layout the
        blocks already have, and no chunk needs a transposing copy.
        """
        chunks = tuple(min(c, max(n, 1)) for c, n in zip(chunks, shape, strict=True))
        self._register_parents(path)
        self.sink.put(
            f"{path}/.zarray", array_metadata(shape, dtype, chunks, self.codec, order=order)
        )
        if attrs:
            self.sink.put(f"{path}/.zattrs", json_bytes(attrs))
        return ArrayTarget(path, tuple(shape), chunks, np.dtype(dtype), self.codec, order)

    def write_block(self, target: ChunkEncoder, block: np.ndarray, origin: tuple[int, ...]) -> None:
        """Encode and store every chunk of a block of ``target`` that starts on the chunk
        grid."""
        self.sink.put_many(target.encode(block, origin))

    def encoded_object_array(self, path: str, encoded: bytes) -> None:
        """A shape-(1,) zarr 2 object array holding a document already encoded as the ``json2``
        codec does (DESIGN 3.2). zarr-python 3 does not create these; this writes what
        zarr-python 2 writes: dtype ``|O``, the ``json2`` object codec as the only filter, no
        compressor."""
        self._register_parents(path)
        self.sink.put(
            f"{path}/.zarray",
            array_metadata((1,), "|O", (1,), None, fill_value=None, filters=[JSON().get_config()]),
        )
        self.sink.put(f"{path}/0", encoded)

    def finish(self) -> None:
        """Write ``.zgroup`` for the root and every group on the way to an array."""
        for group in sorted(self._groups):
            key = f"{group}/.zgroup" if group else ".zgroup"
            if key not in self._existing:
                self.sink.put(key, group_metadata())
