"""Where encoded zarr keys go: straight into data.zip (threads) or into a folder (processes)."""

from __future__ import annotations

import os
import threading
import zipfile
from pathlib import Path
from typing import Protocol

__all__ = ["ZIP_DATE", "DirectorySink", "KeySink", "ZipSink"]

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed so that the same inputs give the same bytes


class KeySink(Protocol):
    def put(self, key: str, data: bytes) -> None: ...


class ZipSink:
    """Appends members to one stored (uncompressed) ZIP64 file; thread-safe, one process.

    Members are never rewritten or deleted (each key is put once).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._lock = threading.Lock()
        self._keys: set[str] = set()

    def put(self, key: str, data: bytes) -> None:
        info = zipfile.ZipInfo(key, date_time=ZIP_DATE)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        with self._lock:
            if key in self._keys:
                raise ValueError(f"zip member {key} written twice")
            self._keys.add(key)
            self._zip.writestr(info, data)

    def close(self) -> None:
        """Write the central directory and flush to disk."""
        with self._lock:
            fp = self._zip.fp
            self._zip.close()
            del fp
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DirectorySink:
    """Writes each key as a file below ``root`` (picklable: for multi-process schedulers)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)

    def put(self, key: str, data: bytes) -> None:
        target = os.path.join(self.root, key)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.partial"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
