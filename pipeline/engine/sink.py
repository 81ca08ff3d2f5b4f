"""What the engine knows of where chunks go: a chunk sink, and the encoder a job carries.

A block task returns its encoded chunks as ``(key, bytes)`` pairs; the runner hands them to a
:class:`ChunkSink` in block order, in the client process. The sink stays with the client: a
job holds only a :class:`ChunkEncoder` (plain data, picklable), so a job travels to a cluster
worker as it is. The database implements these (``pipeline.db.sinks.ZipSink`` is a
:class:`PreparingSink`, ``pipeline.db.writer.ArrayTarget`` a :class:`ChunkEncoder`) and may
import this module; the engine never imports the database.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["Chunk", "ChunkEncoder", "ChunkSink", "PreparingSink"]

Chunk = tuple[str, bytes]  # (key, encoded bytes)


class ChunkSink(Protocol):
    """Stores chunks in the order given (called by one thread at a time, in block order)."""

    def put_many(self, items: list[Chunk]) -> None: ...


@runtime_checkable
class PreparingSink(ChunkSink, Protocol):
    """A sink that can do part of the work of storing a block's chunks in the block's own
    thread (``prepare``, any thread, no order), leaving ``put_prepared`` (in block order) only
    the writing."""

    def prepare(self, items: list[Chunk]) -> Any: ...

    def put_prepared(self, prepared: Any) -> None: ...


class ChunkEncoder(Protocol):
    """Encodes chunk-aligned blocks of one stored array (or of several holding the same data)
    into chunks; holds no sink."""

    @property
    def dtype(self) -> np.dtype: ...

    def encode(self, block: np.ndarray, origin: tuple[int, ...]) -> list[Chunk]: ...
