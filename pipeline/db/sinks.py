"""Where encoded zarr keys go: straight into data.zip, in the order they are put.

:class:`ZipSink` writes a stored (uncompressed) ZIP64 archive itself: the CRC-32 of a member is
computed by the calling thread, outside the lock, and only the append of the local header and
data is serialized. The archive is read back with Python's ``zipfile`` and zarr's ``ZipStore``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import threading
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from pipeline.engine.sink import ChunkSink

__all__ = ["KeySink", "ZipSink", "new_archive"]

# DOS date/time of 1980-01-01 00:00:00: fixed so that the same inputs give the same bytes
_DOS_TIME, _DOS_DATE = 0, (0 << 9) | (1 << 5) | 1
_ZIP64_LIMIT = 0xFFFFFFFF
_VERSION = 45  # 4.5: ZIP64
_WRITEBACK_STEP = 64 * 2**20


class KeySink(ChunkSink, Protocol):
    """A chunk sink (the engine's protocol) that also takes single keys (metadata)."""

    def put(self, key: str, data: bytes) -> None: ...


def _libc_sync_file_range() -> Any:
    try:
        f = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    f.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return f


_SYNC_FILE_RANGE = _libc_sync_file_range()


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Queue a written range for writeback without waiting (Linux ``sync_file_range``)."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE


def _zip64_extra(*values: int) -> bytes:
    body = b"".join(struct.pack("<Q", v) for v in values)
    return struct.pack("<HH", 0x0001, len(body)) + body


class ZipSink:
    """Appends members to one stored ZIP64 file; thread-safe within one process.

    Every key is put once; members are never rewritten or deleted.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self._offset = 0
        self._flushed = 0
        self._lock = threading.Lock()
        self._members: dict[str, tuple[int, int, int]] = {}  # key -> (crc, size, offset)
        self._closed = False

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._offset += len(data)
        if self._offset - self._flushed >= _WRITEBACK_STEP:
            # start writing back what is done (non-blocking) so the final fsync has little
            # left to wait for
            _start_writeback(self._fd, self._flushed, self._offset - self._flushed)
            self._flushed = self._offset

    @property
    def keys(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._members)

    def adopt(self, source: Path | BinaryIO) -> None:
        """Start the archive with every member of an existing one (extend keeps what exists),
        given by path or as an open binary file (one opened through the entry's descriptor).

        Stored archives are copied byte for byte up to their central directory (offsets stay
        valid); members of any other archive are re-added one by one.
        """
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            verbatim = all(
                i.compress_type == zipfile.ZIP_STORED and not i.flag_bits & 0x08 for i in infos
            )
            start = zf.start_dir if verbatim else 0
            if verbatim and self._offset == 0:
                with contextlib.ExitStack() as stack:
                    if isinstance(source, (str, os.PathLike)):
                        src: BinaryIO = stack.enter_context(open(source, "rb"))
                    else:
                        src = source
                    done = 0  # positioned reads: the zip reader's file position is its own
                    while done < start:
                        piece = os.pread(src.fileno(), min(_WRITEBACK_STEP, start - done), done)
                        if not piece:
                            raise EOFError(f"{source}: shorter than its central directory offset")
                        with self._lock:
                            self._write(piece)
                        done += len(piece)
                with self._lock:
                    for i in infos:
                        self._members[i.filename] = (i.CRC, i.file_size, i.header_offset)
            else:
                for i in infos:
                    self.put(i.filename, zf.read(i))

    def put(self, key: str, data: bytes) -> None:
        self.put_many([(key, data)])

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """Append members in the given order (their CRCs computed before taking the lock)."""
        self.put_prepared(self.prepare(items))

    @staticmethod
    def prepare(items: list[tuple[str, bytes]]) -> list[tuple[str, int, int, bytes, bytes]]:
        """The members' CRCs and local headers: the part of an append that needs no lock (a
        block task's thread does it, so appends in block order are only writes)."""
        prepared = []
        for key, data in items:
            name = key.encode()
            crc = zlib.crc32(data)
            size = len(data)
            # local header: sizes always in a ZIP64 extra, so it never depends on offsets
            fields = (0x04034B50, _VERSION, 0, 0, _DOS_TIME, _DOS_DATE, crc)
            header = (
                struct.pack("<IHHHHHIIIHH", *fields, _ZIP64_LIMIT, _ZIP64_LIMIT, len(name), 20)
                + name
                + _zip64_extra(size, size)
            )
            prepared.append((key, crc, size, header, data))
        return prepared

    def put_prepared(self, prepared: list[tuple[str, int, int, bytes, bytes]]) -> None:
        """Append members made by :meth:`prepare`, in order."""
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path}: archive already closed")
            for key, crc, size, header, data in prepared:
                if key in self._members:
                    raise ValueError(f"zip member {key} written twice")
                self._members[key] = (crc, size, self._offset)
                self._write(header)
                self._write(data)

    def close(self) -> None:
        """Write the central directory (ZIP64 end records), fsync and close."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            start = self._offset
            entries = []
            for key, (crc, size, offset) in self._members.items():
                name = key.encode()
                extra = _zip64_extra(size, size, offset)
                entries.append(
                    struct.pack(
                        "<IHHHHHHIIIHHHHHII",
                        0x02014B50,
                        (3 << 8) | _VERSION,
                        _VERSION,
                        0,
                        0,
                        _DOS_TIME,
                        _DOS_DATE,
                        crc,
                        _ZIP64_LIMIT,
                        _ZIP64_LIMIT,
                        len(name),
                        len(extra),
                        0,
                        0,
                        0,
                        0o100644 << 16,
                        _ZIP64_LIMIT,
                    )
                    + name
                    + extra
                )
            directory = b"".join(entries)
            self._write(directory)
            end64 = self._offset
            count = len(entries)
            self._write(
                struct.pack(
                    "<IQHHIIQQQQ",
                    0x06064B50,
                    44,
                    _VERSION,
                    _VERSION,
                    0,
                    0,
                    count,
                    count,
                    len(directory),
                    start,
                )
            )
            self._write(struct.pack("<IIQI", 0x07064B50, 0, end64, 1))
            self._write(
                struct.pack(
                    "<IHHHHIIH",
                    0x06054B50,
                    0,
                    0,
                    min(count, 0xFFFF),
                    min(count, 0xFFFF),
                    min(len(directory), _ZIP64_LIMIT),
                    min(start, _ZIP64_LIMIT),
                    0,
                )
            )
            os.fsync(self._fd)
            os.close(self._fd)

    def abort(self) -> None:
        """Close without writing a directory (the staged file is discarded by the caller)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._fd)


@contextlib.contextmanager
def new_archive(path: Path) -> Iterator[ZipSink]:
    """A new data.zip: closed (central directory, fsync) on success, abandoned on failure."""
    sink = ZipSink(path)
    try:
        yield sink
    except BaseException:
        sink.abort()
        raise
    sink.close()

