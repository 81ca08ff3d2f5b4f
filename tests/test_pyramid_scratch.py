"""The pyramid kernel's per-thread scratch arrays: results never share them, and the values are
those of the filter written out with fresh temporaries."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pipeline.algorithms.pyramid import downsample_block


def _reference(x: np.ndarray) -> np.ndarray:
    """The filter of DESIGN 7.1 spelled out: mirror-pad by 2, [1,4,6,4,1]/16 per axis (axis 0
    first) in the kernel's operation order, keep even samples."""
    acc = np.float32 if x.dtype in (np.float16, np.float32) else np.float64
    work = x.astype(acc)
    for axis in range(x.ndim):
        n = work.shape[axis]
        if n == 1:
            continue
        padded = np.pad(work, [(2, 2) if a == axis else (0, 0) for a in range(x.ndim)], "reflect")
        keep = np.arange(0, n, 2)

        def tap(k: int, keep: np.ndarray = keep, padded: np.ndarray = padded, a: int = axis):
            return np.take(padded, keep + k, axis=a)

        out = tap(1) + tap(3)
        out *= 4
        out += tap(0)
        out += tap(4)
        out += tap(2) * acc(6)
        out *= acc(1 / 16)
        work = out
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        work = np.clip(np.rint(work), info.min, info.max)
    return work.astype(x.dtype)


def _whole(x: np.ndarray) -> np.ndarray:
    n = x.shape
    return downsample_block(x, (0,) * x.ndim, n, (0,) * x.ndim, tuple((v + 1) // 2 for v in n))


@pytest.mark.parametrize(
    "dtype, shape",
    [
        (np.float32, (20, 18, 16)),
        (np.float64, (9, 12, 10)),
        (np.uint16, (17, 10, 12)),
        (np.int8, (8, 8, 8)),
        (np.float16, (6, 10, 8)),
        (np.float32, (12, 10, 1)),  # the last axis does not filter
        (np.float32, (1, 1, 1)),
    ],
)
def test_results_match_the_filter_and_survive_later_calls(dtype, shape):
    rng = np.random.default_rng(1)
    if np.dtype(dtype).kind == "f":
        x = (rng.normal(size=shape) * 100).astype(dtype)
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    first = _whole(x)
    kept = first.copy()
    expected = _reference(x)
    assert first.dtype == x.dtype
    np.testing.assert_array_equal(first, expected)
    # later calls (same thread, same scratch arrays) leave the first result alone
    for _ in range(2):
        np.testing.assert_array_equal(_whole(x[::-1].copy()), _reference(x[::-1].copy()))
    np.testing.assert_array_equal(first, kept)
    assert not np.shares_memory(_whole(x), _whole(x.copy()))


def test_threads_do_not_share_scratch_arrays():
    rng = np.random.default_rng(2)
    volumes = [rng.normal(size=(40, 36, 30)).astype(np.float32) for _ in range(4)]
    expected = [_reference(v) for v in volumes]
    failures: list[int] = []

    def work(k: int) -> None:
        for _ in range(20):
            if not np.array_equal(_whole(volumes[k]), expected[k]):
                failures.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_scratch_arrays_are_reused_up_to_the_limit(monkeypatch):
    """A slot is the same memory block after block up to ``_SCRATCH_LIMIT`` bytes; larger
    temporaries are fresh arrays (every slot of every thread stays resident between blocks),
    and the values are those of the filter either way."""
    import pipeline.algorithms.pyramid as pyramid

    monkeypatch.setattr(pyramid, "_SCRATCH_LIMIT", 4096)
    small = pyramid._scratch("test-small", (16, 16), np.float64)  # 2048 bytes
    again = pyramid._scratch("test-small", (8, 8), np.float64)
    assert np.shares_memory(small, again)
    big = pyramid._scratch("test-big", (40, 40), np.float64)  # 12800 bytes
    other = pyramid._scratch("test-big", (40, 40), np.float64)
    assert not np.shares_memory(big, other)
    rng = np.random.default_rng(5)
    block = rng.integers(0, 60000, size=(21, 18, 13)).astype(np.uint16)
    full = block.shape
    got = downsample_block(block, (0, 0, 0), full, (0, 0, 0), tuple((n + 1) // 2 for n in full))
    np.testing.assert_array_equal(got, _reference(block))
