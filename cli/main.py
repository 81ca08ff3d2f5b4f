"""The ``cellstar-preprocessor`` command line: parse, validate, call the pipeline, report."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path
from typing import Any

import click

from pipeline import __version__
from pipeline.errors import OptionError, PreprocessorError
from pipeline.options import Compressor, InputKind, Mode, parse_storage_options
from pipeline.progress import Progress

# Everything else is imported inside the command that uses it: ``--version``, ``--help`` and
# each command pay only for what they run (tests/test_startup.py holds this).

__all__ = ["cli", "main"]

_KINDS = [k.value for k in InputKind]


class _Terminated(BaseException):
    """SIGTERM (a batch system's time limit, ``timeout``, ``kill``) or SIGINT (Ctrl-C): unwinds
    the run, so staging folders, part files and the run's working folder are removed on the
    way out (click's own Ctrl-C handling would print an extra line)."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


# whether a signal may still unwind the run (once: a second signal, or one that arrives while
# the outcome is being reported, ends the process at once) and whether a line was written
_SIGNALS = {"unwind": False, "wrote": False}


def _signal_message(signum: int) -> str:
    name = signal.Signals(signum).name
    commit = sys.modules.get("pipeline.db.commit")  # no import inside a signal handler
    committed = list(getattr(commit, "COMMITTED", []))
    if committed:  # the commit's rename returned: that is the outcome
        return f"committed {', '.join(committed)} before {name}"
    if signum == signal.SIGTERM:
        return "terminated (SIGTERM); the database is as it was"
    return f"interrupted ({name}); the database is as it was"


def _on_signal(signum: int, frame: Any) -> None:
    if _SIGNALS["unwind"]:
        _SIGNALS["unwind"] = False
        raise _Terminated(signum)
    if not _SIGNALS["wrote"]:
        _SIGNALS["wrote"] = True
        os.write(2, f"error: {_one_line(_signal_message(signum))}\n".encode())
    os._exit(128 + signum)


def _on_signal_after_run(signum: int, frame: Any) -> None:
    """A signal between the end of the run and the blocking in :func:`main`: what the run
    committed is said (one line), as for a signal during the run."""
    if not _SIGNALS["wrote"] and "committed" in _signal_message(signum):
        _SIGNALS["wrote"] = True
        os.write(2, f"error: {_one_line(_signal_message(signum))}\n".encode())
    os._exit(128 + signum)


# folders a command writes to, for messages about a full disk (set by the commands)
_FOLDERS: list[Path] = []


def _one_line(text: str) -> str:
    """``text`` with every character that could split or hide a line (newlines, other control
    and format characters, undecodable bytes of file names) written as an escape."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _error(text: str) -> None:
    _SIGNALS["wrote"] = True
    click.echo(f"error: {_one_line(text)}", err=True)


def _free(folder: Path) -> str:
    """Free space of the file system holding ``folder`` (or its nearest existing parent)."""
    q = Path(folder).absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    try:
        return f"{shutil.disk_usage(q).free / 1e9:.1f} GB free"
    except OSError:
        return "free space unknown"


def _os_error(exc: OSError) -> str:
    """An OSError as one message naming its file; a full disk or too large a file names the
    folder(s) concerned and their free space."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = {
            errno.ENOSPC: "no space left on the device",
            errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large for the file system (or the file-size limit, ulimit -f)",
        }[exc.errno]
        from pipeline.db.safefs import shown_path

        folders = [shown_path(exc.filename).parent] if exc.filename else list(_FOLDERS)
        if not folders:
            return what
        return f"{what} in " + "; ".join(f"{f} ({_free(f)})" for f in folders)
    if exc.filename:
        from pipeline.db.safefs import shown_path

        return f"{shown_path(exc.filename)}: {exc.strerror or exc}"
    where = ""
    return f"{where}{exc.strerror or exc}"


def _committed_prefix() -> str:
    from pipeline.db.commit import COMMITTED

    return f"committed {', '.join(COMMITTED)}, then: " if COMMITTED else ""


def _quiet_libraries(verbose: bool = False) -> contextlib.ExitStack:
    """Library warnings and log records stay off stderr (shown with --verbose, which closes
    the stack once parsed: :func:`_remember_verbose`): the error, if any, is the one line
    there."""
    stack = contextlib.ExitStack()
    if verbose:
        return stack
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    last_resort = logging.lastResort
    logging.lastResort = logging.NullHandler()
    stack.callback(setattr, logging, "lastResort", last_resort)
    # libraries that print their records through a handler of their own
    for name in ("nibabel", "distributed", "py.warnings"):
        logger = logging.getLogger(name)
        level = logger.level
        logger.setLevel(logging.CRITICAL + 1)
        stack.callback(logger.setLevel, level)
    return stack


class _OneLineErrors(click.Group):
    """Every user error ends as one line ``error: ...`` on stderr and exit status 2."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return self._main(*args, **kwargs)
        signals = (signal.SIGTERM, signal.SIGINT)
        _SIGNALS.update(unwind=True, wrote=False)
        previous = [signal.signal(s, _on_signal) for s in signals]
        try:
            return self._main(*args, **kwargs)
        except _Terminated as exc:  # arrived outside the handling in _main (its first lines)
            _SIGNALS["unwind"] = False
            if not _SIGNALS["wrote"]:
                _error(_signal_message(exc.signum))
            sys.exit(128 + exc.signum)
        finally:
            _SIGNALS["unwind"] = False
            for signum, handler in zip(signals, previous, strict=True):
                if getattr(handler, "__name__", "") == "_interrupted_while_starting":
                    handler = _on_signal_after_run
                signal.signal(signum, handler)

    def _main(self, *args: Any, **kwargs: Any) -> Any:
        from pipeline.db.commit import COMMITTED

        COMMITTED.clear()  # what this invocation commits (in-process callers run several)
        _FOLDERS.clear()
        _RUN["verbose"] = False
        try:
            with _quiet_libraries() as quiet:
                _RUN["quiet"] = quiet
                rv = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
            sys.exit(2)
        except click.UsageError as exc:
            _error(" ".join(exc.format_message().split()))
            sys.exit(2)
        except click.Abort:
            _error("aborted")
            sys.exit(130)
        except _Terminated as exc:
            _error(_signal_message(exc.signum))
            sys.exit(128 + exc.signum)
        except PreprocessorError as exc:
            _error(f"{_committed_prefix()}{exc}")
            sys.exit(exc.exit_status)
        except OSError as exc:
            _error(f"{_committed_prefix()}{_os_error(exc)}")
            sys.exit(2)
        except Exception as exc:  # a bug: still one line
            if _RUN["verbose"]:
                traceback.print_exc()
            tb = traceback.extract_tb(exc.__traceback__)
            where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
            _error(
                f"{_committed_prefix()}internal error {type(exc).__name__}: {exc}{where} "
                "(--verbose shows the traceback)"
            )
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PreprocessorError, OSError):
            if ctx.meta.get(_VERBOSE):  # set by a command's --verbose (shared by subcontexts)
                traceback.print_exc()
            raise


_VERBOSE = "cellstar_preprocessor.verbose"
# this invocation's --verbose, and the stack keeping library warnings and logs quiet till then
_RUN: dict[str, Any] = {"verbose": False, "quiet": None}


def _remember_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[_VERBOSE] = True
        _RUN["verbose"] = True
        if _RUN["quiet"] is not None:
            _RUN["quiet"].close()  # library warnings and log records are shown
    return value


def _verbose_option(help_text: str) -> Any:
    """``--verbose``: tracebacks with errors (and whatever the command adds)."""
    return click.option("--verbose", is_flag=True, callback=_remember_verbose, help=help_text)


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
# the version the package declares (pipeline.__version__ = pyproject's), without looking the
# distribution up through importlib.metadata (a tenth of a second at start-up)
@click.version_option(version=__version__, prog_name="cellstar-preprocessor")
def cli() -> None:
    """Build Mol* Volumes & Segmentations database entries from EM and microscopy data."""


_WORKING_FOLDER = click.option(
    "--working-folder",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for temporary files (removed afterwards).",
)
_DB_PATH = click.option(
    "--db-path", required=True, type=click.Path(path_type=Path), help="Database folder."
)


_STORAGE_OPTIONS = click.option(
    "--storage-options",
    metavar="JSON",
    help='fsspec options for URL inputs (s3://, gs://, https://), e.g. \'{"anon": true}\'; '
    "credentials and endpoints otherwise come from the environment (AWS_*, AWS_ENDPOINT_URL).",
)


def _remote_options(command: Any) -> Any:
    """URL inputs and clusters without a shared file system (preprocess and batch)."""
    command = _STORAGE_OPTIONS(command)
    return click.option(
        "--transfer",
        type=click.Choice(["shared", "comms"]),
        help="How cluster workers return chunks: shared (part files in the working "
        "folder, which they must see) or comms (through dask, for clusters without a "
        "shared file system; inputs must then be URLs). Default: probed.",
    )(command)


def _compressor_option(what: str) -> Any:
    """``--compressor lz4|zstd`` (the Blosc codec of ``what``)."""
    return click.option(
        "--compressor",
        type=click.Choice([c.value for c in Compressor]),
        default="lz4",
        show_default=True,
        help=f"Blosc codec of {what}.",
    )


def _run_options(command: Any) -> Any:
    """Where and in how much memory a run executes (preprocess, batch and export)."""
    for option in reversed(
        [
            click.option(
                "--scheduler",
                metavar="ADDRESS",
                help="Run on this dask.distributed scheduler (e.g. tcp://10.0.0.5:8786); the "
                "working folder and database must be on a file system every worker sees.",
            ),
            click.option(
                "--workers",
                type=int,
                help="Run on a local dask.distributed cluster of this many worker processes.",
            ),
            click.option(
                "--max-memory",
                metavar="SIZE",
                help="Bound the block data in flight, e.g. 2GiB or 800MB (see docs/clusters.md).",
            ),
        ]
    ):
        command = option(command)
    return command


def _progress() -> Progress:
    """A redrawn bar per stage on a terminal (stderr); otherwise one line per stage on stdout,
    the run's log, which leaves stderr to warnings and the one-line error."""
    if sys.stderr.isatty():
        return Progress(sys.stderr, tty=True)
    return Progress(sys.stdout)


@cli.command("preprocess")
@click.option(
    "--mode",
    type=click.Choice([m.value for m in Mode]),
    required=True,
    help="add: create the entry; extend: add data to an existing entry.",
)
@click.option(
    "--input-path",
    "input_paths",
    multiple=True,
    help="An input file (or folder), or a URL (s3://, gs://, https://); repeat, paired by "
    "position with --input-kind.",
)
@click.option(
    "--input-kind",
    "input_kinds",
    multiple=True,
    metavar="KIND",
    help=f"Kind of the input at the same position: {'|'.join(_KINDS)}.",
)
@click.option("--entry-id", required=True, help="Entry folder name, e.g. emd-1832.")
@click.option("--source-db", required=True, help="Source database folder name, e.g. emdb.")
@click.option("--source-db-id", required=True, help="Entry id in the source database.")
@click.option("--source-db-name", required=True, help="Source database name.")
@_WORKING_FOLDER
@_DB_PATH
@click.option(
    "--quantize-dtype-str",
    type=click.Choice(["u1", "u2"]),
    help="Log-quantize volume levels to 8 or 16 bits.",
)
@click.option(
    "--quantize-downsampling-levels",
    multiple=True,
    metavar="LEVELS",
    help='Levels to quantize, e.g. "1 2" (default: all stored levels).',
)
@click.option(
    "--force-volume-dtype",
    metavar="DTYPE",
    help="Store the volume in this numpy dtype (e.g. f4, u2).",
)
@click.option(
    "--max-size-per-downsampling-lvl-mb",
    type=float,
    help="Store no level larger than this (MB = 10^6 bytes).",
)
@click.option(
    "--min-size-per-downsampling-lvl-mb",
    type=float,
    default=5.0,
    show_default=True,
    help="Downsample until a level is smaller than this (MB = 10^6 bytes).",
)
@click.option("--min-downsampling-level", type=int, help="Smallest stored ratio above 1.")
@click.option("--max-downsampling-level", type=int, help="Largest stored ratio.")
@click.option(
    "--remove-original-resolution",
    is_flag=True,
    help="Do not store level 1 (listed as unavailable).",
)
@_compressor_option("the stored arrays")
@click.option("--dry-run", is_flag=True, help="Print the level plan and write nothing.")
@_run_options
@_remote_options
@_verbose_option("Details and tracebacks on errors.")
def preprocess_command(**kw: Any) -> None:
    """Add an entry to the database, or extend one."""
    from pipeline.options import build_options, input_specs
    from pipeline.preprocess import plan_run, preprocess

    _FOLDERS[:] = [kw["working_folder"], kw["db_path"]]
    kw["inputs"] = input_specs(kw.pop("input_paths"), kw.pop("input_kinds"))
    options = build_options(kw)
    if options.dry_run:
        summary = plan_run(options)
        for line in summary.plan_lines():
            click.echo(line)
        click.echo("dry run: nothing written")
        return
    summary = preprocess(options, progress=_progress(), warn=lambda m: click.echo(m, err=True))
    rate = summary.input_bytes / 1e6 / summary.seconds if summary.seconds > 0 else 0.0
    click.echo(
        f"{options.mode.value}: {summary.location.key} -> "
        f"{summary.location.folder} (levels {', '.join(map(str, summary.plan.stored_ratios))}; "
        f"{summary.seconds:.1f} s, {rate:.0f} MB/s)"
    )
    if kw["verbose"]:
        for line in summary.plan_lines():
            click.echo(line)


@cli.command("batch")
@click.argument("entry_list", type=click.Path(path_type=Path))
@_WORKING_FOLDER
@_DB_PATH
@_run_options
@_remote_options
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Report entries already in the database as skipped instead of failed (re-run a "
    "batch that was stopped).",
)
@_verbose_option("Details and tracebacks on errors.")
def batch_command(entry_list: Path, skip_existing: bool, **kw: Any) -> None:
    """Add many entries from a CSV or JSON list, on one cluster; reports each entry.

    Exit status 0 when no entry failed (skipped ones included), 1 when some failed (see
    docs/clusters.md for the list format).
    """
    from pipeline.batch import BatchResult, read_batch, run_batch

    _FOLDERS[:] = [kw["working_folder"], kw["db_path"]]
    entries = read_batch(entry_list)
    names = ("working_folder", "db_path", "scheduler", "workers", "transfer", "storage_options")
    common = {k: kw[k] for k in names}
    common["max_memory"] = kw["max_memory"]

    def report(result: BatchResult) -> None:
        name = _one_line(result.entry.name)
        if result.skipped:
            click.echo(f"skip    {name} (already in the database)")
        elif result.ok and result.summary is not None:
            s = result.summary
            rate = s.input_bytes / 1e6 / s.seconds if s.seconds > 0 else 0.0
            click.echo(f"ok      {name} ({result.seconds:.1f} s, {rate:.0f} MB/s)")
        else:
            click.echo(f"failed  {name} ({result.entry.where}): {_one_line(result.error or '')}")

    results = run_batch(
        entries,
        common,
        progress=_progress(),
        report=report,
        warn=lambda m: click.echo(m, err=True),
        skip_existing=skip_existing,
    )
    failed = [r for r in results if not r.ok]
    skipped = [r for r in results if r.skipped]
    seconds = sum(r.seconds for r in results)
    click.echo(
        f"batch: {len(results) - len(failed) - len(skipped)} of {len(results)} entries done, "
        + (f"{len(skipped)} skipped, " if skip_existing else "")
        + f"{len(failed)} failed ({seconds:.1f} s)"
    )
    if failed:
        sys.exit(1)


@cli.command("star-to-geometric")
@click.option(
    "--star-file-path",
    "--star_file_path",
    "star_file",
    required=True,
    type=click.Path(path_type=Path),
    help="RELION particle STAR file (3.0, 3.1, 4 or 5).",
)
@click.option(
    "--geometric-segmentation-input-file-path",
    "--geometric_segmentation_input_file_path",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="JSON file to write (input of --input-kind geometric_segmentation).",
)
@click.option(
    "--sphere-radius", "--sphere_radius", type=float, help="Sphere radius in A (default 100)."
)
@click.option(
    "--segmentation-id", "--segmentation_id", help="Segmentation id (default: the file stem)."
)
@click.option(
    "--sphere-color-hex",
    "--sphere_color_hex",
    help="Sphere colour RRGGBB[AA] (default: a palette colour chosen when added).",
)
@click.option(
    "--pixel-size",
    "--pixel_size",
    type=float,
    help="A per coordinate pixel (default: from the STAR file).",
)
@click.option(
    "--star-file-coordinate-divisor",
    "--star_file_coordinate_divisor",
    type=float,
    help="Coordinates are divided by this before scaling by the pixel size (default 1).",
)
@click.option("--tomo-name", help="Keep the particles of this tomogram (rlnTomoName).")
@click.option(
    "--tomogram-size",
    type=int,
    nargs=3,
    metavar="NX NY NZ",
    help="Tomogram size in pixels (RELION 5 centred coordinates).",
)
def star_to_geometric_command(**kw: Any) -> None:
    """Convert a RELION particle STAR file into spheres (geometric segmentation input JSON)."""
    from pipeline.build.geometric import star_to_geometric
    from pipeline.inputs.star import STAR_OPTION_KEYS, parse_star_options

    values = {k: kw[k] for k in STAR_OPTION_KEYS}
    options = parse_star_options(
        values, lambda key: f"--{key.replace('_', '-')}", lambda message: OptionError(message)
    )
    segmentation = star_to_geometric(kw["star_file"], kw["output"], options)
    count = sum(len(p) for p in segmentation.frames.values())
    click.echo(
        f"star-to-geometric: {count} spheres, segmentation {segmentation.segmentation_id} -> "
        f"{kw['output']}"
    )


@cli.command("inspect")
@click.argument("path")
@click.option(
    "--input-kind",
    type=click.Choice(_KINDS),
    help="Reader to use (default: guessed from the name; masks need --input-kind mask).",
)
@click.option(
    "--extra-data",
    type=click.Path(path_type=Path),
    help="An extra_data JSON to apply (voxel size, channel and segmentation ids, ...).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@_STORAGE_OPTIONS
@_verbose_option("Tracebacks on errors.")
def inspect_command(
    path: str,
    input_kind: str | None,
    extra_data: Path | None,
    as_json: bool,
    storage_options: str | None,
    verbose: bool,
) -> None:
    """Print what a reader sees in an input (a file, folder or URL): shape, dtype, axis order,
    voxel size, origin, channels, time points, lattices and segments (headers only; no voxel
    is read)."""
    from pipeline.describe import describe, describe_lines
    from pipeline.inputs.source import as_input_path, using_storage_options

    with using_storage_options(parse_storage_options(storage_options)):
        info = describe(
            as_input_path(path), InputKind(input_kind) if input_kind else None, extra_data
        )
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        for line in describe_lines(info):
            click.echo(line)


def main() -> None:
    """Console-script entry point (``python -m cli`` too)."""
    try:
        cli(prog_name="cellstar-preprocessor")
    finally:
        # the run is over and its outcome printed: a signal from here on would only kill the
        # interpreter while it shuts down (Python resets its handlers to the default then),
        # silently; ignored (a disposition Python keeps), the process exits with the run's
        # own status
        with contextlib.suppress(ValueError):  # not the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)


# --- managing entries ----------------------------------------------------------------------

_SOURCE_DB = click.option("--source-db", required=True, help="Source database folder name.")
_ENTRY_ID = click.option("--entry-id", required=True, help="Entry folder name.")


def _location(db_path: Path, source_db: str, entry_id: str) -> Any:
    from pipeline.db.layout import EntryLocation

    _FOLDERS[:] = [db_path]
    return EntryLocation(db_path, source_db, entry_id)


def _manage(name: str) -> Any:
    """The function ``name`` of ``pipeline.manage``, imported when its command runs."""

    def action(*args: Any) -> Any:
        from pipeline import manage

        return getattr(manage, name)(*args)

    return action


def _database(db_path: Path) -> Any:
    """The entries and foreign folders of a database; a path that is not one is a user error."""
    from pipeline.db.validate import has_entry_file, scan_database

    if not db_path.is_dir():
        what = "does not exist" if not db_path.exists() else "is not a folder"
        raise OptionError(f"{db_path}: {what}; not a database")
    try:
        scan = scan_database(db_path)
    except OSError as exc:
        raise OptionError(f"{db_path}: unreadable ({exc.strerror}); not a database") from exc
    if not scan.entries and scan.foreign:
        raise OptionError(
            f"{db_path}: not a database (no <source-db>/<entry-id> folders; found "
            f"{scan.foreign[0]})"
        )
    if scan.entries and not any(has_entry_file(e) for e in scan.entries):
        first = scan.entries[0]
        raise OptionError(
            f"{db_path}: not a database (no <source-db>/<entry-id> folder holds an entry's "
            f"files; e.g. {first.key})"
        )
    return scan


def _ids(ids: list[str]) -> str:
    return ",".join(ids) or "-"


@cli.command("list")
@_DB_PATH
def list_command(db_path: Path) -> None:
    """List the entries with their levels and segmentations (lattices, mesh sets, geometric)."""
    from pipeline.db.validate import check_entry

    scan = _database(db_path)
    for location in scan.entries:
        name = location.key
        check = check_entry(location, quick=True)
        docs = check.documents
        if docs is None:
            click.echo(f"{name}\tdamaged: {check.problems[0]}")
            continue
        line = (
            f"{name}\tlevels {_ids([str(v) for v in docs.volume_levels()])}"
            f"\tlattices {_ids(docs.lattice_ids)}\tmeshes {_ids(docs.mesh_set_ids)}"
            f"\tgeometric {_ids(docs.geometric_ids)}"
        )
        if check.problems:
            line += f"\tdamaged: {check.problems[0]}"
        click.echo(line)
    for item in scan.foreign:
        click.echo(f"{item}\tforeign: not written by this tool")


@cli.command("validate")
@_DB_PATH
@click.argument("entries", nargs=-1, metavar="[SOURCE_DB/ENTRY_ID]...")
@click.option("--quick", is_flag=True, help="Check documents and array metadata; read no chunk.")
def validate_command(db_path: Path, entries: tuple[str, ...], quick: bool) -> None:
    """Check entries against the specification (every chunk read and decoded unless --quick).

    Exit status 0 when all are valid, 1 with the problems found, 2 when the path is not a
    database."""
    from pipeline.db.validate import database_leftovers, stray_files, validate_entry

    scan = _database(db_path)
    foreign = scan.foreign
    if entries:
        locations = []
        for text in entries:
            source, _, entry = text.partition("/")
            if not entry:
                raise OptionError(f"entry {text!r}: give it as SOURCE_DB/ENTRY_ID")
            locations.append(_location(db_path, source, entry))
        foreign = []
    else:
        locations = scan.entries
    bad = 0
    for location in locations:
        name = location.key
        if location.exists():
            problems = validate_entry(location, quick) + stray_files(location)
        else:
            problems = ["entry does not exist"]
        for problem in problems:
            click.echo(_one_line(f"{name}: {problem}"))
        if problems:
            bad += 1
        else:
            click.echo(f"{name}: ok")
    for item in foreign:
        click.echo(_one_line(f"{item} (not written by this tool)"))
    # staging folders: housekeeping, not entry damage (listed without changing the status)
    for problem in database_leftovers(db_path):
        click.echo(_one_line(problem))
    if bad or foreign:
        sys.exit(1)


@cli.command("delete")
@_DB_PATH
@_SOURCE_DB
@_ENTRY_ID
def delete_command(db_path: Path, source_db: str, entry_id: str) -> None:
    """Delete an entry."""
    location = _location(db_path, source_db, entry_id)
    _manage("delete_entry")(location)
    click.echo(f"deleted {location.key}")


@cli.command("remove-volume")
@_DB_PATH
@_SOURCE_DB
@_ENTRY_ID
def remove_volume_command(db_path: Path, source_db: str, entry_id: str) -> None:
    """Remove the volume of an entry (refused while lattices remain)."""
    _manage("remove_volume")(_location(db_path, source_db, entry_id))


@cli.command("remove-segmentation")
@_DB_PATH
@_SOURCE_DB
@_ENTRY_ID
@click.option("--id", "ids", multiple=True, required=True, help="Segmentation id (repeatable).")
@click.option(
    "--kind",
    type=click.Choice(["lattice", "mesh", "geometric", "geometric_segmentation"]),
    required=True,
    help="geometric_segmentation is another name of geometric.",
)
def remove_segmentation_command(
    db_path: Path, source_db: str, entry_id: str, ids: tuple[str, ...], kind: str
) -> None:
    """Remove segmentations (and their annotations) from an entry."""
    _manage("remove_segmentation")(_location(db_path, source_db, entry_id), list(ids), kind)


def _json_file_command(name: str, action: Any, doc: str) -> None:
    @cli.command(name, help=doc)
    @_DB_PATH
    @_SOURCE_DB
    @_ENTRY_ID
    @click.option(
        "--data-json-path",
        required=True,
        type=click.Path(path_type=Path),
        help="JSON file with the items.",
    )
    def command(db_path: Path, source_db: str, entry_id: str, data_json_path: Path) -> None:
        action(_location(db_path, source_db, entry_id), data_json_path)


def _ids_command(name: str, action: Any, doc: str) -> None:
    @cli.command(name, help=doc)
    @_DB_PATH
    @_SOURCE_DB
    @_ENTRY_ID
    @click.option("--id", "ids", multiple=True, required=True, help="Item id (repeatable).")
    def command(db_path: Path, source_db: str, entry_id: str, ids: tuple[str, ...]) -> None:
        action(_location(db_path, source_db, entry_id), list(ids))


_json_file_command(
    "edit-descriptions", _manage("edit_descriptions"), "Add or replace descriptions by id."
)
_json_file_command(
    "edit-segment-annotations",
    _manage("edit_segment_annotations"),
    "Add or replace segment annotations by id.",
)
_ids_command(
    "remove-descriptions", _manage("remove_descriptions"), "Remove descriptions by id."
)
_ids_command(
    "remove-segment-annotations",
    _manage("remove_segment_annotations"),
    "Remove segment annotations by id."
)


# --- exporting entries ---------------------------------------------------------------------


@cli.command("export")
@_DB_PATH
@_SOURCE_DB
@_ENTRY_ID
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ome-zarr"]),
    default="ome-zarr",
    show_default=True,
    help="Output format: an OME-NGFF 0.5 image (zarr v3).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write, e.g. emd-1832.ome.zarr (see docs/export.md for its layout).",
)
@click.option(
    "--overwrite", is_flag=True, help="Replace an existing output (an earlier export)."
)
@_compressor_option("the output's chunks")
@_run_options
@_verbose_option("Tracebacks on errors.")
def export_command(
    db_path: Path,
    source_db: str,
    entry_id: str,
    fmt: str,
    output: Path,
    overwrite: bool,
    compressor: str,
    scheduler: str | None,
    workers: int | None,
    max_memory: str | None,
    verbose: bool,
) -> None:
    """Export an entry for other tools: its volume levels, lattices as label images, meshes and
    geometric segmentations as sidecar files."""
    from pipeline.db.layout import entry_key
    from pipeline.export import ExportOptions, export_omezarr
    from pipeline.options import parse_size

    options = ExportOptions(
        db_path=db_path,
        source_db=source_db,
        entry_id=entry_id,
        output=output,
        overwrite=overwrite,
        compressor=Compressor(compressor),
        max_memory=parse_size(max_memory, "--max-memory") if max_memory else None,
        scheduler=scheduler,
        workers=workers,
    )
    summary = export_omezarr(options, progress=_progress())
    extras = [f"lattices {', '.join(summary.lattices)}"] if summary.lattices else []
    if summary.mesh_files:
        extras.append(f"{summary.mesh_files} mesh files")
    if summary.geometric_files:
        extras.append(f"{summary.geometric_files} geometric segmentation files")
    click.echo(
        f"export: {entry_key(source_db, entry_id)} -> {summary.output} (levels "
        f"{', '.join(map(str, summary.levels))}{'; ' if extras else ''}{'; '.join(extras)}; "
        f"{summary.seconds:.1f} s)"
    )
