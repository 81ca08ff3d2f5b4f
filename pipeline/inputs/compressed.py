"""Inputs that may be gzip/bzip2-compressed: detected by their magic bytes, decompressed once,
streaming, into the run's scratch folder (region reads of a compressed stream would decompress
it from the start every time)."""

from __future__ import annotations

import bz2
import gzip
import shutil
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import InputFormatError, InputNotFoundError

__all__ = ["OpenedInput", "detect_compression", "open_input", "open_stream"]


def detect_compression(path: Path) -> str | None:
    """``"gzip"``, ``"bzip2"`` or None, from the file's first bytes."""
    with open(path, "rb") as f:
        magic = f.read(3)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"BZh":
        return "bzip2"
    return None


def open_stream(path: Path, compression: str | None) -> BinaryIO:
    """The file's (decompressed) bytes as a stream, read-only."""
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bzip2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _spool(path: Path, kind: str, scratch: Path) -> Path:
    """Stream-decompress ``path`` into ``scratch`` (bounded memory) and return the copy."""
    scratch.mkdir(parents=True, exist_ok=True)
    target = scratch / f"{uuid.uuid4().hex}-{path.name}.raw"
    try:
        with open_stream(path, kind) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 * 2**20)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        target.unlink(missing_ok=True)
        raise InputFormatError(f"cannot decompress {kind} data: {exc}", path) from exc
    return target


@dataclass(frozen=True, slots=True)
class OpenedInput:
    path: Path  # the user's file (never written)
    compression: str | None
    data_path: Path | None  # the uncompressed bytes; None: compressed and no scratch (dry run)


def open_input(path: Path, scratch: Path | None) -> OpenedInput:
    """A file input, decompressed into ``scratch`` when it is compressed (with no scratch, a
    compressed file is left as it is: callers then read its header from the stream only)."""
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError("no such file", path)
    if not path.is_file():
        raise InputNotFoundError("not a file", path)
    compression = detect_compression(path)
    if compression is None:
        return OpenedInput(path, None, path)
    if scratch is None:
        return OpenedInput(path, compression, None)
    return OpenedInput(path, compression, _spool(path, compression, scratch))
