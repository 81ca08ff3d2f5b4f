"""Shared fixtures: real samples from ../shared (skipped when absent), synthetic MRC writers."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSTAR_SHARED_DATA", ROOT.parent / "shared" / "test-data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/test-data``; tests that need it skip when it is not there."""
    if not SHARED.is_dir():
        pytest.skip(f"real sample data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def emd1832_map(shared_data: Path) -> Path:
    path = shared_data / "preprocessor/sample_volumes/emdb/EMD-1832.map"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def write_mrc(
    path: Path,
    data_zyx: np.ndarray,
    voxel_size: float | tuple[float, float, float] = 1.0,
    **header: Any,
) -> Path:
    """Write a map with mrcfile (data indexed [section, row, column]); header fields by name."""
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data_zyx)
        mrc.voxel_size = voxel_size
        for name, value in header.items():
            setattr(mrc.header, name, value)
    return path


def assert_one_line_error(result: Any, *fragments: str) -> None:
    """A CLI result that failed with exit 2 and exactly one ``error:`` line holding
    ``fragments``, and no traceback."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """Terminate test servers (dask scheduler and workers, ...), killing any that hang."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def write_sff_lattice(
    path: Path,
    lattice_zyx: np.ndarray,
    segments: dict[int, int],
    *,
    compress: bool = True,
    transforms: tuple[str, ...] | list[str] = (),
    transform_id: int | None = None,
    annotated: bool = False,
) -> Path:
    """A minimal EMDB-SFF 0.8 HDF5 file written with h5py after the format's layout (as sfftk
    writes it): one lattice ((sections, rows, cols), cols fastest; zlib'd or raw, base64), its
    segments (id -> lattice value; with a colour and a name when ``annotated``), and a
    transform_list of 3x4 matrices given as text, named by each segment's ``transform_id``."""
    import base64
    import zlib

    import h5py

    raw = np.ascontiguousarray(lattice_zyx).tobytes()
    with h5py.File(path, "w") as f:
        f["version"] = "0.8.0.dev1"
        f["name"] = "generated"
        f["primary_descriptor"] = "three_d_volume"
        g = f.create_group("lattice_list/0")
        g["id"], g["mode"], g["endianness"] = 0, str(lattice_zyx.dtype), "little"
        for key, n in zip(("sections", "rows", "cols"), lattice_zyx.shape, strict=True):
            g[f"size/{key}"] = n
            g[f"start/{key}"] = 0
        g["data"] = base64.b64encode(zlib.compress(raw) if compress else raw)
        for n, data in enumerate(transforms):
            t = f.create_group(f"transform_list/{n}")
            t["id"], t["rows"], t["cols"], t["data"] = n, 3, 4, data
        for segment_id, value in segments.items():
            s = f.create_group(f"segment_list/{segment_id}")
            s["id"] = segment_id
            if annotated:
                s["colour"] = np.array([0.1, 0.2, 0.3, 1.0])
                s["biological_annotation/name"] = f"seg {segment_id}"
            s["three_d_volume/lattice_id"] = 0
            s["three_d_volume/value"] = float(value)
            if transform_id is not None:
                s["three_d_volume/transform_id"] = transform_id
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Every file (with its hash) and folder below ``root``: 'the database is unchanged' made
    checkable, leftover empty folders included."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): sha256(p) if p.is_file() else "<dir>"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def run_cli() -> Callable[..., Any]:
    """Invoke the command line in-process; returns click's Result (exit_code, stdout, stderr)."""

    def run(*args: str | Path) -> Any:
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return run


def preprocess_args(
    inputs: list[tuple[Path, str]],
    tmp_path: Path,
    entry: str = "emd-1832",
    mode: str = "add",
    extra: tuple[str, ...] = (),
) -> list[str]:
    """Arguments of a ``preprocess`` call with the database and working folder in tmp_path."""
    args = ["preprocess", "--mode", mode]
    for path, kind in inputs:
        args += ["--input-path", str(path), "--input-kind", kind]
    args += [
        "--entry-id",
        entry,
        "--source-db",
        "emdb",
        "--source-db-id",
        entry,
        "--source-db-name",
        "emdb",
        "--working-folder",
        str(tmp_path / "work"),
        "--db-path",
        str(tmp_path / "db"),
        *extra,
    ]
    return args


def binomial_reference(x: np.ndarray) -> np.ndarray:
    """DESIGN 7.1 computed independently: scipy convolve1d [1,4,6,4,1]/16, mode mirror, [::2]."""
    from scipy.ndimage import convolve1d

    weights = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16
    y = x.astype(np.float64)
    for axis in range(x.ndim):
        if x.shape[axis] > 1:
            y = convolve1d(y, weights, axis=axis, mode="mirror")
    return y[tuple(slice(None, None, 2) for _ in range(x.ndim))]


def window_sets(
    grid: np.ndarray, out1: tuple[int, ...] | None = None
) -> dict[tuple[int, ...], tuple[int, ...]]:
    """Per output voxel of the next level (all of them by default), the sorted distinct
    values of its clipped 3x3x3 window (taps 2i-1, 2i, 2i+1)."""
    if out1 is None:
        out1 = tuple((n + 1) // 2 for n in grid.shape)
    result = {}
    for i in np.ndindex(*out1):
        window = tuple(
            slice(max(2 * c - 1, 0), min(2 * c + 2, n)) for c, n in zip(i, grid.shape, strict=True)
        )
        result[i] = tuple(np.unique(grid[window]).tolist())
    return result


def step_combinations(step: Any) -> list[tuple[int, ...]]:
    """A block step's combinations in the order its ``index`` counts them (its parts one after
    the other), checked: every part holds rows of one width, unpadded, narrowest part first,
    each in the order of tuples; every combination once."""
    rows: list[tuple[int, ...]] = []
    widths = []
    for part in step.combos:
        assert part.dtype == np.uint32 and part.ndim == 2
        got = [tuple(r) for r in part.tolist()]
        assert got == sorted(got)  # in the order of tuples
        assert all(len(set(r)) == len(r) == part.shape[1] for r in got)  # distinct categories
        widths.append(part.shape[1])
        rows += got
    assert widths == sorted(set(widths))  # one part per width, narrowest first
    assert len(set(rows)) == len(rows)  # each combination once
    assert all(list(r) == sorted(r) for r in rows)
    return rows


def padded_rows(rows: list[tuple[int, ...]], extra: int = 0) -> np.ndarray:
    """Rows of category ids as a uint32 matrix padded with the sentinel (2**32 - 1) to the
    longest row plus ``extra`` columns, as the label kernels take them."""
    width = max(len(r) for r in rows) + extra
    out = np.full((len(rows), width), np.iinfo(np.uint32).max, np.uint32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


class ReferenceSetTable:
    """The set table's definition, one union at a time: label v is the set {segment of v};
    a union equal to a known set keeps that set's (first) id, a new one gets the next id."""

    def __init__(self, labels=(), segment_of=None) -> None:
        self.sets: dict[int, tuple[int, ...]] = {}
        self.ids: dict[tuple[int, ...], int] = {}
        self.next = 0
        self.add_labels(labels, segment_of)

    def add_labels(self, values, segment_of=None) -> None:
        for v in values:
            if v not in self.sets:
                members = ((segment_of or {}).get(v, v),)
                self.sets[v] = members
                self.ids.setdefault(members, v)  # labels sharing a segment: the first's id
                self.next = max(self.next, v + 1)

    def union_id(self, categories) -> int:
        members = tuple(sorted(set().union(*(self.sets[c] for c in categories))))
        if members not in self.ids:
            self.ids[members] = self.next
            self.sets[self.next] = members
            self.next += 1
        return self.ids[members]
