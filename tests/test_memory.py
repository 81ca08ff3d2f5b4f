"""--max-memory: the block budget, and the same entry whatever the blocks."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from pipeline.engine.passes import block_shape
from pipeline.engine.runner import DEFAULT_BLOCK_BYTES, TASK_BLOCKS, memory_budget
from pipeline.errors import OptionError
from tests.conftest import preprocess_args, write_mrc

MiB = 2**20


def test_budget_without_a_limit_is_the_default():
    assert memory_budget(None, 2, 4, 16 * MiB) == (2, 4, DEFAULT_BLOCK_BYTES)


@pytest.mark.parametrize("limit_mib", [130, 200, 256, 400, 1024, 4096])
def test_budget_keeps_the_blocks_in_flight_under_the_limit(limit_mib):
    threads, window, block = memory_budget(limit_mib * MiB, 2, 4, 16 * MiB)
    assert (TASK_BLOCKS * threads + window) * block <= limit_mib * MiB
    assert 16 * MiB <= block <= DEFAULT_BLOCK_BYTES
    assert 1 <= threads <= 2 and window in (2, 4)


def test_budget_shrinks_blocks_before_threads():
    # 256 MiB over 2 threads: (12 + 4) blocks of 16 MiB
    assert memory_budget(256 * MiB, 2, 4, 16 * MiB) == (2, 4, 16 * MiB)
    # 200 MiB cannot hold 2 threads of 16 MiB blocks with a window of 2 (14 blocks): one thread
    assert memory_budget(200 * MiB, 2, 4, 16 * MiB)[0] == 1


def test_budget_below_the_least_is_an_option_error():
    with pytest.raises(OptionError, match="--max-memory 100 MiB is below the least"):
        memory_budget(100 * MiB, 2, 4, 16 * MiB)


@pytest.mark.slow
def test_smaller_blocks_give_the_same_entry(run_cli, tmp_path):
    rng = np.random.default_rng(11)
    data = rng.normal(size=(128, 256, 1024)).astype(np.float32)  # z, y, x
    z, y, x = np.indices(data.shape, sparse=True)
    # many label combinations, wrapping around, across block boundaries: their category ids at
    # levels >= 2 must not depend on the blocks either
    labels = ((x // 7 + y // 5 + z // 3) % 200).astype(np.uint16)
    (tmp_path / "in").mkdir()
    inputs = [
        (write_mrc(tmp_path / "in" / "m.mrc", data, voxel_size=2.0), "map"),
        (write_mrc(tmp_path / "in" / "m_mask.mrc", labels, voxel_size=2.0), "mask"),
    ]
    default = preprocess_args(inputs, tmp_path)
    assert run_cli(*default).exit_code == 0
    bounded = preprocess_args(inputs, tmp_path, extra=("--max-memory", "256MiB"))
    bounded[bounded.index("--db-path") + 1] = str(tmp_path / "db2")
    result = run_cli(*bounded)
    assert result.exit_code == 0, result.output
    # the default run reads mask blocks of 1024x128x128, the bounded one smaller ones
    shape = (1024, 256, 128)
    assert block_shape(shape, 2, "F", 128, DEFAULT_BLOCK_BYTES) == (1024, 128, 128)
    _, _, block = memory_budget(256 * MiB, 2, 4, 16 * MiB)
    assert block_shape(shape, 2, "F", 128, block) == (1024, 64, 64)
    entry = "emdb/emd-1832/data.zip"
    with (
        zipfile.ZipFile(tmp_path / "db" / entry) as a,
        zipfile.ZipFile(tmp_path / "db2" / entry) as b,
    ):
        names = sorted(a.namelist())
        assert names == sorted(b.namelist())
        for name in names:
            assert a.read(name) == b.read(name), name


def test_too_little_memory_is_a_one_line_error(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    path = write_mrc(tmp_path / "in" / "m.mrc", np.zeros((4, 4, 4), np.float32))
    result = run_cli(*preprocess_args([(path, "map")], tmp_path, extra=("--max-memory", "64MB")))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --max-memory 61 MiB is below")
    assert not (tmp_path / "db" / "emdb").exists()
    bad = run_cli(*preprocess_args([(path, "map")], tmp_path, extra=("--max-memory", "lots")))
    assert bad.exit_code == 2 and "not a size: 'lots'" in bad.stderr
