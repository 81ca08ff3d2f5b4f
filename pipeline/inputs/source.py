"""Inputs given as URLs (``s3://``, ``gs://``, ``http://``, ``https://``), read through fsspec.

Objects are read with ranged requests where the server allows them; where it does not (an
HTTP server without ``Range`` support) the object is streamed once into the run's working folder
(size-capped) and read from there. Endpoints and credentials come from the standard environment
(``AWS_*`` including ``AWS_ENDPOINT_URL``, Google's application credentials); ``storage_options``
(``--storage-options '{"anon": true}'``) are passed to the file system of s3/gs URLs. Transient
errors are retried with exponential backoff; a missing object or a denied request is one
:class:`~pipeline.errors.PreprocessorError` naming the URL.

fsspec, s3fs and gcsfs are imported only when a URL is read (the command line stays light).
"""

from __future__ import annotations

import contextlib
import contextvars
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

import numpy as np

from pipeline.arrays import RawArrayFile, contiguous_runs, region_bounds
from pipeline.errors import InputAccessError, InputFormatError, InputNotFoundError

__all__ = [
    "RemoteRawArray",
    "Url",
    "as_input_path",
    "copy_budget",
    "copying_objects",
    "fetched",
    "is_url",
    "object_size",
    "open_input",
    "ranged_copy",
    "read_ranges",
    "spool",
    "storage_options",
    "supports_ranges",
    "using_storage_options",
    "zarr_store",
]

SCHEMES = ("s3", "gs", "gcs", "http", "https")
RETRIES = 5  # attempts of one request
BACKOFF = 0.25  # seconds before the second attempt, doubled after every failure
SPOOL_RESERVE = 2**30  # bytes a spool leaves free in the working folder
MERGE_GAP = 64 * 1024  # runs of a region closer than this are fetched as one range
COPY_RANGE = 16 * 2**20  # bytes of one request of a ranged copy (S3's advice: 8-16 MiB)
COPY_PARALLEL = 4  # requests of a ranged copy in flight at most


def is_url(path: Any) -> bool:
    """True for ``s3://``, ``gs://``, ``http(s)://`` inputs (not for local paths)."""
    if isinstance(path, Url):
        return True
    if not isinstance(path, str):
        return False
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


class Url(str):
    """A URL input, with the few path operations readers use (``name``, ``stem``, ``/``...).

    A ``str`` so that messages, JSON and pickling see the URL as given; never a
    :class:`pathlib.Path` (which would fold ``//``).
    """

    __slots__ = ()

    @property
    def scheme(self) -> str:
        return self.partition("://")[0].lower()

    @property
    def _key(self) -> PurePosixPath:
        return PurePosixPath("/" + self.partition("://")[2].split("?")[0].rstrip("/"))

    @property
    def name(self) -> str:
        return self._key.name

    @property
    def stem(self) -> str:
        return self._key.stem

    @property
    def suffix(self) -> str:
        return self._key.suffix

    @property
    def suffixes(self) -> list[str]:
        return self._key.suffixes

    @property
    def parent(self) -> Url:
        return Url(self.rstrip("/").rsplit("/", 1)[0])

    def __truediv__(self, other: Any) -> Url:
        return Url(f"{self.rstrip('/')}/{str(other).lstrip('/')}")

    def absolute(self) -> Url:
        return self


def as_input_path(path: str | Path) -> Path | Url:
    """``--input-path`` as given: a :class:`Url` for URLs, a :class:`Path` otherwise."""
    if isinstance(path, Path):
        return path
    return Url(path) if is_url(path) else Path(path)


# --- storage options ---------------------------------------------------------------------

_OPTIONS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "storage_options", default=None
)


def storage_options() -> dict[str, Any]:
    """The storage options of the current run (``--storage-options``)."""
    return dict(_OPTIONS.get() or {})


@contextlib.contextmanager
def using_storage_options(options: dict[str, Any] | None) -> Iterator[None]:
    """Readers called inside see ``options`` as the run's storage options."""
    token = _OPTIONS.set(dict(options or {}))
    try:
        yield
    finally:
        _OPTIONS.reset(token)


_COPY: contextvars.ContextVar[int | None] = contextvars.ContextVar("copy_budget", default=None)


def copy_budget() -> int | None:
    """Bytes a ranged copy of an uncompressed map or mask may hold in flight, or None: such
    inputs are read in place, block by block (see :func:`copying_objects`)."""
    return _COPY.get()


@contextlib.contextmanager
def copying_objects(in_flight: int | None) -> Iterator[None]:
    """Inside, uncompressed maps and masks at URLs that the working folder can hold are first
    copied into it by large ranged requests (``in_flight`` bytes of them at most at a time),
    then read as local files: a few dozen requests of 16 MiB instead of one request per plane
    of every block. ``None``: read in place (workers that read the URL themselves)."""
    token = _COPY.set(in_flight)
    try:
        yield
    finally:
        _COPY.reset(token)


def _filesystem(url: str, options: dict[str, Any] | None) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the object's path in it."""
    import fsspec

    scheme = Url(url).scheme
    opts = dict(options or {})
    if scheme in ("http", "https"):
        opts.pop("anon", None)  # HTTP needs no credentials; aiohttp would reject the key
        return fsspec.filesystem(scheme, **opts), url
    protocol = "gcs" if scheme in ("gs", "gcs") else scheme
    try:
        fs = fsspec.filesystem(protocol, **opts)
    except ImportError as exc:
        extra = " (pip install 'cellstar-preprocessor[gcs]')" if protocol == "gcs" else ""
        raise InputAccessError(f"cannot read {scheme}:// URLs: {exc}{extra}", url) from None
    return fs, fs._strip_protocol(url)


# --- errors and retries ------------------------------------------------------------------

T = TypeVar("T")


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    return status if isinstance(status, int) else None


def _cause_status(exc: BaseException) -> int | None:
    """The HTTP status behind an error (fsspec's HTTP file system turns a failed size request
    of any status into FileNotFoundError, the answer kept as its cause)."""
    while exc is not None:
        status = _status(exc)
        if status is not None:
            return status
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: a lost connection, a timeout, a 5xx or 429 answer."""
    if isinstance(exc, FileNotFoundError):
        status = _cause_status(exc)
        return status is not None and (status >= 500 or status in (408, 429))
    if isinstance(exc, PermissionError | IsADirectoryError):
        return False
    status = _status(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__
    return name in {
        "ClientConnectionError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ServerTimeoutError",
        "FSTimeoutError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
    }


def _user_error(exc: BaseException, url: str) -> Exception | None:
    """The one-line error a failed request means for the user, or None (not the user's)."""
    status = _cause_status(exc) if isinstance(exc, FileNotFoundError) else _status(exc)
    if isinstance(exc, FileNotFoundError) and status not in (401, 403):
        return InputNotFoundError("no such object", url)
    if isinstance(exc, PermissionError) or status in (401, 403):
        return InputAccessError("access denied (check credentials or --storage-options)", url)
    if status == 404:
        return InputNotFoundError("no such object", url)
    if type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError"}:
        return InputAccessError(
            'no credentials (set AWS_* or give --storage-options \'{"anon": true}\')', url
        )
    return None


def _call(url: str, what: str, fn: Callable[[], T]) -> T:
    """``fn()`` with retries on transient errors; failures as one-line errors naming ``url``."""
    delay = BACKOFF
    for attempt in range(RETRIES):
        try:
            return fn()
        except Exception as exc:
            if _transient(exc) and attempt < RETRIES - 1:
                time.sleep(delay)
                delay *= 2
                continue
            mapped = _user_error(exc, url)
            if mapped is not None:
                raise mapped from None
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise InputAccessError(f"cannot {what}: {text}", url) from exc
    raise AssertionError("unreachable")


# --- reading -----------------------------------------------------------------------------


def object_size(url: str, options: dict[str, Any] | None = None) -> int:
    """Bytes of the object (a missing object or a denied request raises)."""
    fs, key = _filesystem(url, options)

    def info() -> int:
        details = fs.info(key)
        if details.get("type") == "directory":
            raise IsADirectoryError(url)
        size = details.get("size")
        if size is None:
            raise InputFormatError("the server does not say the object's size", url)
        return int(size)

    try:
        return _call(url, "read the object's size", info)
    except InputAccessError as exc:
        if isinstance(exc.__cause__, IsADirectoryError):
            raise InputNotFoundError("a folder (prefix), not an object", url) from None
        raise


def exists(url: str, options: dict[str, Any] | None = None) -> str | None:
    """``"file"``, ``"directory"`` or None (no such object or prefix)."""
    fs, key = _filesystem(url, options)

    def kind() -> str | None:
        try:
            return "directory" if fs.info(key).get("type") == "directory" else "file"
        except FileNotFoundError as exc:
            if _cause_status(exc) not in (None, 404, 410):  # denied, or a server error
                raise
            return None

    return _call(url, "look the object up", kind)


def read_ranges(
    url: str, ranges: list[tuple[int, int]], options: dict[str, Any] | None = None
) -> list[bytes]:
    """The bytes ``[start, end)`` of every range, fetched concurrently where the file system
    can (one request per range)."""
    if not ranges:
        return []
    fs, key = _filesystem(url, options)
    starts = [a for a, _ in ranges]
    ends = [b for _, b in ranges]

    def fetch() -> list[bytes]:
        if len(ranges) == 1:
            return [fs.cat_file(key, start=starts[0], end=ends[0])]
        out = fs.cat_ranges([key] * len(ranges), starts, ends, on_error="raise")
        for item in out:
            if isinstance(item, BaseException):
                raise item
        return out

    data = _call(url, "read", fetch)
    for (a, b), chunk in zip(ranges, data, strict=True):
        if len(chunk) != b - a:
            raise InputFormatError(
                f"truncated: asked for bytes {a}..{b}, the server sent {len(chunk)}", url
            )
    return data


def supports_ranges(url: str, options: dict[str, Any] | None = None) -> bool:
    """Whether the server answers ranged requests (object stores always do; HTTP servers
    are asked for one byte past the start)."""
    if Url(url).scheme not in ("http", "https"):
        return True
    if object_size(url, options) < 2:
        return False
    fs, key = _filesystem(url, options)

    def partial() -> bool:
        # a streamed request: a server without ranges starts sending the whole object, of
        # which nothing is read
        with fs.open(key, "rb", block_size=0, headers={"Range": "bytes=1-1"}) as f:
            return getattr(f, "r", None) is not None and f.r.status == 206

    return _call(url, "read", partial)


def spool(
    url: str, folder: Path, options: dict[str, Any] | None = None, cap: int | None = None
) -> Path:
    """Stream the object into ``folder`` (a file named like the object, in a private
    sub-folder) and return the copy. At most ``cap`` bytes (default: the folder's free space
    less a reserve); more is an error naming the URL."""
    fs, key = _filesystem(url, options)
    target_dir = Path(folder) / f"spool-{uuid.uuid4().hex[:12]}"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / (Url(url).name or "object")
    if cap is None:
        cap = max(shutil.disk_usage(target_dir).free - SPOOL_RESERVE, 0)

    def copy() -> None:
        written = 0
        with fs.open(key, "rb", block_size=0) as src, open(target, "wb") as dst:
            while True:
                block = src.read(8 * 2**20)
                if not block:
                    break
                written += len(block)
                if written > cap:
                    raise _TooLargeError(cap)
                dst.write(block)

    try:
        _call(url, "download", copy)
    except InputAccessError as exc:
        shutil.rmtree(target_dir, ignore_errors=True)
        if isinstance(exc.__cause__, _TooLargeError):
            raise InputFormatError(
                f"larger than the {cap / 2**30:.1f} GiB the working folder can hold for a copy "
                "(the server does not answer ranged requests, so the object is copied first)",
                url,
            ) from None
        raise
    except BaseException:
        shutil.rmtree(target_dir, ignore_errors=True)
        raise
    return target


def copy_ranges(size: int, in_flight: int) -> tuple[int, list[list[tuple[int, int]]]]:
    """(request size, batches of ranges fetched together) covering ``size`` bytes, with at
    most ``in_flight`` bytes per batch.

    >>> copy_ranges(40 * 2**20, 64 * 2**20)[1]
    [[(0, 16777216), (16777216, 33554432), (33554432, 41943040)]]
    >>> step, batches = copy_ranges(40 * 2**20, 8 * 2**20)
    >>> step // 2**20, len(batches), len(batches[0])
    (8, 5, 1)
    """
    step = max(min(COPY_RANGE, in_flight), 2**20)
    ranges = [(a, min(a + step, size)) for a in range(0, size, step)]
    per = max(1, min(COPY_PARALLEL, in_flight // step))
    return step, [ranges[i : i + per] for i in range(0, len(ranges), per)]


def ranged_copy(
    url: str, folder: Path, size: int, in_flight: int, options: dict[str, Any] | None = None
) -> Path | None:
    """Copy the object into ``folder`` (a private sub-folder) by ranged requests of up to
    16 MiB, a few at a time within ``in_flight`` bytes; None (nothing copied) when the folder
    cannot hold it with a reserve to spare."""
    if shutil.disk_usage(folder).free - SPOOL_RESERVE < size:
        return None
    target_dir = Path(folder) / f"copy-{uuid.uuid4().hex[:12]}"
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / (Url(url).name or "object")
    try:
        with open(target, "wb") as dst:
            for batch in copy_ranges(size, in_flight)[1]:
                for block in read_ranges(url, batch, options):
                    dst.write(block)
    except BaseException:
        shutil.rmtree(target_dir, ignore_errors=True)
        raise
    return target


class _TooLargeError(Exception):
    pass


_TEMP: list[Path] = []


def _temp_folder() -> Path:
    """A folder for copies when a run has no working folder (dry run, ``inspect``)."""
    if not _TEMP:
        import atexit

        folder = Path(tempfile.mkdtemp(prefix="cellstar-spool-"))
        atexit.register(shutil.rmtree, folder, True)
        _TEMP.append(folder)
    return _TEMP[0]


@contextlib.contextmanager
def fetched(path: Path | str, folder: Path | None = None) -> Iterator[Path]:
    """A local file holding the input: the path itself, or a copy of a URL's object (removed
    afterwards). Errors the body raises about the copy name the URL instead."""
    if not is_url(path):
        yield Path(path)
        return
    local = spool(str(path), folder or _temp_folder(), storage_options())
    try:
        with renamed_errors(local, str(path)):
            yield local
    finally:
        shutil.rmtree(local.parent, ignore_errors=True)


@contextlib.contextmanager
def renamed_errors(local: Path, url: str) -> Iterator[None]:
    """Errors about the copy ``local`` of ``url`` name ``url``."""
    from pipeline.errors import PreprocessorError

    try:
        yield
    except PreprocessorError as exc:
        if exc.path is not None and exc.path == str(local):
            exc.path = url
        elif exc.path is not None and exc.path.startswith(str(local)):
            exc.path = url + exc.path[len(str(local)) :]
        raise


def open_input(
    path: Path | str, options: dict[str, Any] | None = None, folder: Path | None = None
) -> BinaryIO:
    """A seekable binary file object over a local file or a URL's object, read-only.

    Reads of a URL are ranged requests of bounded size (4 MiB read-ahead); an object whose
    server does not answer ranged requests is first copied into ``folder`` (a temporary
    folder when None)."""
    if not is_url(path):
        return open(path, "rb")
    url = str(path)
    options = storage_options() if options is None else options
    if not supports_ranges(url, options):
        local = spool(url, folder or _temp_folder(), options)
        return open(local, "rb")
    fs, key = _filesystem(url, options)
    return _call(url, "open", lambda: fs.open(key, "rb", block_size=4 * 2**20))


def zarr_store(url: str, options: dict[str, Any] | None = None) -> Any:
    """A read-only zarr store over the URL (zarr's FsspecStore, on an asynchronous file system
    of its own: zarr drives it from its own event loop), for OME-Zarr inputs."""
    from zarr.storage import FsspecStore

    options = storage_options() if options is None else options
    opts = dict(options or {})
    if Url(url).scheme in ("http", "https"):
        opts.pop("anon", None)
    return _call(
        url,
        "open",
        lambda: FsspecStore.from_url(str(url).rstrip("/"), storage_options=opts, read_only=True),
    )


class RemoteRawArray(RawArrayFile):
    """A raw C-order array at ``offset`` in a URL's object (an MRC data block), read by ranged
    requests: the contiguous runs of a region, runs closer than 64 KiB fetched as one."""

    worker_readable = True  # a cluster worker reads the URL itself (the engine's protocol)

    def __init__(
        self,
        url: str,
        shape: tuple[int, ...],
        file_dtype: np.dtype,
        offset: int,
        options: dict[str, Any],
        size: int,
    ) -> None:
        self._layout(url, shape, file_dtype, offset, writable=False)
        self.options = dict(options)
        self._token = (self.path, size, offset, self.file_dtype.str)

    _FIELDS = (*RawArrayFile._FIELDS, "options")

    def __dask_tokenize__(self) -> Any:
        return ("remote-raw-array", *self._token, self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        bounds = region_bounds(key, self.shape)
        out = np.empty([b - a for a, b in bounds], self.file_dtype)
        if out.size:
            self._fetch(bounds, out)
        if self.file_dtype != self.dtype:
            return out.astype(self.dtype)
        return out

    def _fetch(self, bounds: list[tuple[int, int]], out: np.ndarray) -> None:
        k, leading = contiguous_runs(bounds, self.shape)
        item = self.file_dtype.itemsize
        strides = [int(np.prod(self.shape[i + 1 :])) for i in range(self.ndim)]
        tail = sum(a * s for (a, _), s in zip(bounds[k:], strides[k:], strict=True))
        run_bytes = out[(0,) * len(leading)].nbytes if leading else out.nbytes
        runs = []  # (file position, index of the run in ``out``)
        for index in np.ndindex(*(len(r) for r in leading)):
            lead = [r[i] for r, i in zip(leading, index, strict=True)]
            position = self.offset + item * (
                sum(v * s for v, s in zip(lead, strides[:k], strict=True)) + tail
            )
            runs.append((position, index))
        groups: list[list[tuple[int, Any]]] = []
        for run in runs:
            if groups and run[0] - (groups[-1][-1][0] + run_bytes) <= MERGE_GAP:
                groups[-1].append(run)
            else:
                groups.append([run])
        ranges = [(g[0][0], g[-1][0] + run_bytes) for g in groups]
        for group, (start, _), data in zip(
            groups, ranges, read_ranges(self.path, ranges, self.options), strict=True
        ):
            for position, index in group:
                piece = data[position - start : position - start + run_bytes]
                out[index].reshape(-1).view(np.uint8)[:] = np.frombuffer(piece, np.uint8)


def local_copy_folder(scratch: Path | None) -> Path:
    """Where copies of URL objects go: the run's scratch folder, else a temporary one."""
    if scratch is not None:
        Path(scratch).mkdir(parents=True, exist_ok=True)
        return Path(scratch)
    return _temp_folder()
