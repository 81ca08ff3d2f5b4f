"""The run's engine: threads or a dask.distributed cluster, sized by the memory budget."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from pipeline.engine.passes import Engine
from pipeline.engine.runner import Runner, ThreadedRunner, memory_budget, open_cluster
from pipeline.errors import OptionError
from pipeline.inputs.registry import VOLUME_KINDS
from pipeline.inputs.source import copying_objects, is_url
from pipeline.options import InputKind, PreprocessOptions
from pipeline.progress import Progress
from pipeline.workspace import run_folder

__all__ = ["engine_for", "usable_cpus"]


# kinds whose voxels workers read themselves (the others are read by the client)
_WORKER_READ_KINDS = frozenset(
    {*VOLUME_KINDS, InputKind.MASK, InputKind.NII_SEGMENTATION, InputKind.OMETIFF_SEGMENTATION}
)


def _check_transfer(options: PreprocessOptions, runner: Runner) -> None:
    """Workers that cannot see the working folder (``--transfer comms``) cannot see local
    inputs either: those must be URLs."""
    if getattr(runner, "transfer", "shared") != "comms":
        return
    for spec in options.inputs:
        if spec.kind in _WORKER_READ_KINDS and not is_url(spec.path):
            raise OptionError(
                f"{spec.path}: a local file, but the cluster's workers do not share this "
                "machine's file system (--transfer comms): give the input as a URL (s3://, "
                "gs://, https://) or run on workers that see the working folder"
            )


@contextlib.contextmanager
def engine_for(
    options: PreprocessOptions, progress: Progress, runner: Runner | None
) -> Iterator[Engine]:
    """The run's engine: its runner (threads, or a dask.distributed cluster; ``runner`` when
    the caller shares one between runs) and its memory budget."""
    smallest = (2 * options.chunk_size) ** 3 * 8  # one block edge cubed, 8-byte label scratch
    threaded = runner is None and options.scheduler is None and options.workers is None
    # threads: the budget may run fewer; checked here too before a cluster is reached
    threads, window, block_bytes = memory_budget(
        options.max_memory, usable_cpus() if threaded else 1, 4, smallest
    )
    if threaded:
        # remote maps and masks: copied first by large ranged requests, within the blocks' budget
        with copying_objects(block_bytes * threads):
            yield Engine(ThreadedRunner(threads), options.block_size, block_bytes, window, progress)
        return
    with contextlib.ExitStack() as stack:
        if runner is None:
            parts = stack.enter_context(
                run_folder(options.working_folder, options.entry_id, "parts-")
            )
            runner = stack.enter_context(
                open_cluster(
                    options.scheduler,
                    options.workers,
                    parts,
                    transfer=options.transfer or "auto",
                    max_memory=options.max_memory,
                )
            )
        _check_transfer(options, runner)
        # a cluster's workers run as many tasks as they have threads: only blocks shrink
        _, window, block_bytes = memory_budget(
            options.max_memory, runner.threads_per_process, 4, smallest, fixed_threads=True
        )
        # workers that share the working folder read the client's copy; others read in place
        shared = getattr(runner, "transfer", "shared") != "comms"
        with copying_objects(block_bytes if shared else None):
            yield Engine(runner, options.block_size, block_bytes, window, progress)


def usable_cpus() -> int:
    """CPUs this process may run on (affinity and container limits), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
