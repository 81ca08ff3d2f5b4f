"""The run's engine: threads or a dask.distributed cluster, sized by the memory budget."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.engine.passes import Engine
from pipeline.engine.runner import Runner, ThreadedRunner, memory_budget, open_cluster
from pipeline.errors import OptionError
from pipeline.inputs.kinds import WORKER_READ_KINDS
from pipeline.inputs.source import copying_objects, is_url
from pipeline.options import PreprocessOptions
from pipeline.progress import Progress
from pipeline.workspace import run_folder

__all__ = [
    "EngineSpec",
    "check_budget",
    "engine_for",
    "engine_spec",
    "open_engine",
    "open_runner",
    "usable_cpus",
]


def _check_transfer(options: PreprocessOptions, runner: Runner) -> None:
    """Workers that cannot see the working folder (``--transfer comms``) cannot see local
    inputs either: those must be URLs."""
    if getattr(runner, "transfer", "shared") != "comms":
        return
    for spec in options.inputs:
        if spec.kind in WORKER_READ_KINDS and not is_url(spec.path):
            raise OptionError(
                f"{spec.path}: a local file, but the cluster's workers do not share this "
                "machine's file system (--transfer comms): give the input as a URL (s3://, "
                "gs://, https://) or run on workers that see the working folder"
            )


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """What chooses and sizes an engine: ``--max-memory``, ``--scheduler``, ``--workers``, the
    block edge, the least block bytes a task can work in, and how a cluster's chunks return
    (``transfer`` of :func:`pipeline.engine.runner.open_cluster`)."""

    max_memory: int | None
    scheduler: str | None
    workers: int | None
    block: int
    smallest: int
    transfer: str = "shared"


def engine_spec(options: PreprocessOptions) -> EngineSpec:
    """The engine a run's options ask for."""
    return EngineSpec(
        options.max_memory,
        options.scheduler,
        options.workers,
        options.block_size,
        (2 * options.chunk_size) ** 3 * 8,  # one block edge cubed, 8-byte label scratch
        transfer=options.transfer or "auto",
    )


def check_budget(spec: EngineSpec) -> None:
    """Refuse a ``--max-memory`` below the least any engine of ``spec`` can work in (one
    thread), before a cluster is reached."""
    memory_budget(spec.max_memory, 1, 4, spec.smallest)


def open_runner(spec: EngineSpec, parts: Path) -> contextlib.AbstractContextManager[Runner]:
    """The dask.distributed cluster of ``spec`` (part files in ``parts``)."""
    return open_cluster(
        spec.scheduler, spec.workers, parts, transfer=spec.transfer, max_memory=spec.max_memory
    )


@contextlib.contextmanager
def open_engine(
    spec: EngineSpec,
    progress: Progress,
    parts: Callable[[], contextlib.AbstractContextManager[Path]],
    runner: Runner | None = None,
    check: Callable[[Runner], None] | None = None,
) -> Iterator[Engine]:
    """Threads (as many as :func:`usable_cpus` that ``spec.max_memory`` allows), or a
    dask.distributed cluster (``runner`` when the caller shares one between runs; otherwise
    one opened with part files in the folder ``parts()`` gives), with the memory budget's
    window and block bytes. ``check`` sees a cluster's runner before its budget is made."""
    threaded = runner is None and spec.scheduler is None and spec.workers is None
    # threads: the budget may run fewer; checked here too before a cluster is reached
    threads, window, block_bytes = memory_budget(
        spec.max_memory, usable_cpus() if threaded else 1, 4, spec.smallest
    )
    if threaded:
        yield Engine(ThreadedRunner(threads), spec.block, block_bytes, window, progress)
        return
    with contextlib.ExitStack() as stack:
        if runner is None:
            runner = stack.enter_context(open_runner(spec, stack.enter_context(parts())))
        if check is not None:
            check(runner)
        # a cluster's workers run as many tasks as they have threads: only blocks shrink
        _, window, block_bytes = memory_budget(
            spec.max_memory, runner.threads_per_process, 4, spec.smallest, fixed_threads=True
        )
        yield Engine(runner, spec.block, block_bytes, window, progress)


@contextlib.contextmanager
def engine_for(
    options: PreprocessOptions, progress: Progress, runner: Runner | None
) -> Iterator[Engine]:
    """The run's engine (:func:`open_engine`; ``runner`` when the caller shares one between
    runs), inside which remote inputs are copied within the blocks' budget."""
    spec = engine_spec(options)

    def parts() -> contextlib.AbstractContextManager[Path]:
        return run_folder(options.working_folder, options.entry_id, "parts-")

    def check(cluster: Runner) -> None:
        _check_transfer(options, cluster)

    threaded = runner is None and options.scheduler is None and options.workers is None
    with open_engine(spec, progress, parts, runner, check) as engine:
        if threaded:
            # remote maps and masks: copied first by large ranged requests, within the budget
            in_flight: int | None = engine.max_block_bytes * engine.runner.threads_per_process
        elif getattr(engine.runner, "transfer", "shared") != "comms":
            in_flight = engine.max_block_bytes  # workers sharing the folder read the copy
        else:
            in_flight = None  # workers that do not share it read in place
        with copying_objects(in_flight):
            yield engine


def usable_cpus() -> int:
    """CPUs this process may run on (affinity and container limits), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
