"""Inputs that may be gzip/bzip2-compressed: detected by their magic bytes, decompressed once,
streaming, into the run's scratch folder (region reads of a compressed stream would decompress
it from the start every time)."""

from __future__ import annotations

import bz2
import gzip
import shutil
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import (
    InputFormatError,
    InputNotFoundError,
    InsufficientSpaceError,
    PreprocessorError,
)

__all__ = [
    "InsufficientSpaceError",
    "OpenedInput",
    "check_free_space",
    "detect_compression",
    "free_bytes",
    "open_input",
    "open_stream",
]


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


def free_bytes(folder: Path) -> int:
    """Free bytes (for this user) of the file system holding ``folder`` or its nearest parent."""
    q = Path(folder).absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return shutil.disk_usage(q).free


def check_free_space(folder: Path, needed: int, source: Path | None = None) -> None:
    """Refuse, before writing, ``needed`` bytes into ``folder`` when they do not fit."""
    free = free_bytes(folder)
    if needed > free:
        raise InsufficientSpaceError(
            f"needs {needed / 1e9:.1f} GB in {folder}, {free / 1e9:.1f} GB free", source
        )


# bytes read from the start of a stream to learn its declared size; slack allowed beyond it
HEAD_BYTES = 4096
ALLOWANCE = 2**20

# header bytes -> the whole (decompressed) file's size as its header declares it, or None
Declared = Callable[[bytes], "int | None"]


def _spool(path: Path, kind: str, scratch: Path, declared: Declared | None = None) -> Path:
    """Stream-decompress ``path`` into ``scratch`` (bounded memory) and return the copy.

    With ``declared``, the output may not exceed what the header declares (plus
    :data:`ALLOWANCE`) and must fit in the scratch folder's free space; a header it cannot
    read stops the copy after the header (the reader then reports what is wrong with it).
    """
    scratch.mkdir(parents=True, exist_ok=True)
    target = scratch / f"{uuid.uuid4().hex}-{path.name}.raw"
    try:
        with open_stream(path, kind) as src, open(target, "wb") as dst:
            if declared is None:
                shutil.copyfileobj(src, dst, length=16 * 2**20)
                return target
            head = src.read(HEAD_BYTES)
            size = declared(head)
            dst.write(head)
            if size is None:
                return target
            check_free_space(scratch, size, path)
            cap, total = size + ALLOWANCE, len(head)
            while piece := src.read(min(16 * 2**20, cap - total + 1)):
                total += len(piece)
                if total > cap:
                    raise InputFormatError(
                        f"decompresses to more than its header declares ({size} bytes)", path
                    )
                dst.write(piece)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        target.unlink(missing_ok=True)
        if isinstance(exc, PreprocessorError):
            raise
        raise InputFormatError(f"cannot decompress {kind} data: {exc}", path) from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


@dataclass(frozen=True, slots=True)
class OpenedInput:
    path: Path  # the user's file (never written)
    compression: str | None
    data_path: Path | None  # the uncompressed bytes; None: compressed and no scratch (dry run)


def open_input(path: Path, scratch: Path | None, declared: Declared | None = None) -> OpenedInput:
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
    return OpenedInput(path, compression, _spool(path, compression, scratch, declared))
