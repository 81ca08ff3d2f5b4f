"""Start-up: the command line imports only what a command uses (issue 12).

Each check runs a fresh interpreter (``sys.modules`` of this one is full of everything) and
lists which heavy libraries it ended up importing. ``--version`` and ``--help`` must import
none; a run of an MRC map none of the other formats' libraries and no dask.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# libraries that cost tens to hundreds of milliseconds to import; a reader or a cluster run
# imports its own when it starts
HEAVY = (
    "dask",
    "distributed",
    "zarr",
    "h5py",
    "nibabel",
    "tifffile",
    "trimesh",
    "numcodecs",
    "fsspec",
    "s3fs",
    "pydantic",
    "scipy",
    "pandas",
    "starfile",
    "mrcfile",
    "fast_simplification",
)

_PROBE = """
import json, sys
{body}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
"""


def _imported(body: str, cwd: Path = ROOT) -> list[str]:
    code = _PROBE.format(body=body, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cli_call(args: list[str]) -> str:
    """Code that runs the CLI with ``args`` in the probe's process (exit status ignored)."""
    return (
        "from cli.main import cli\n"
        "try:\n"
        f"    cli.main({args!r}, prog_name='cellstar-preprocessor', standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
    )


def test_importing_the_cli_imports_no_heavy_library() -> None:
    assert _imported("import cli.main") == []


def _commands() -> list[str]:
    from cli.main import cli

    return sorted(cli.commands)


@pytest.mark.parametrize("args", [["--version"], ["--help"]])
def test_version_and_help_import_no_heavy_library(args: list[str]) -> None:
    assert _imported(_cli_call(args)) == []


def test_every_command_help_imports_no_heavy_library() -> None:
    body = "\n".join(_cli_call([name, "--help"]) for name in _commands())
    assert len(_commands()) >= 10
    assert _imported(body) == []


def test_a_map_run_imports_no_other_format_and_no_dask(tmp_path: Path) -> None:
    import mrcfile

    data = np.arange(24 * 20 * 16, dtype=np.float32).reshape(16, 20, 24)
    with mrcfile.new(tmp_path / "m.mrc") as mrc:
        mrc.set_data(data)
        mrc.voxel_size = 2.0
    args = [
        "preprocess",
        "--mode",
        "add",
        "--input-path",
        str(tmp_path / "m.mrc"),
        "--input-kind",
        "map",
        "--entry-id",
        "e",
        "--source-db",
        "s",
        "--source-db-id",
        "e",
        "--source-db-name",
        "s",
        "--working-folder",
        str(tmp_path / "wf"),
        "--db-path",
        str(tmp_path / "db"),
    ]
    imported = _imported(_cli_call(args))
    assert (tmp_path / "db" / "s" / "e" / "data.zip").is_file()
    # the map's own reader and the chunk encoder; the typed entry documents
    # (pipeline.db.documents) are plain Python
    assert imported == ["mrcfile", "numcodecs"]


def test_version_is_the_declared_one() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = subprocess.run(
        [sys.executable, "-m", "cli", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.strip() == f"cellstar-preprocessor, version {declared}"


@pytest.mark.parametrize(
    ("given", "expected"),
    [({}, "1"), ({"OPENBLAS_NUM_THREADS": "3"}, "3"), ({"OMP_NUM_THREADS": "2"}, None)],
)
def test_the_program_runs_openblas_on_one_thread_unless_told(given, expected) -> None:
    """As the program (argv[0] "-m"), the CLI package sets OPENBLAS_NUM_THREADS=1 before numpy
    loads, unless the user chose OpenBLAS's (or OpenMP's) thread count; as a library, never."""
    import os

    mine = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in mine}
    code = (
        "import os, sys; sys.argv = [{argv!r}]; import cli; "
        "print(os.environ.get('OPENBLAS_NUM_THREADS'))"
    )
    for argv, want in (("-m", expected), ("my_script.py", given.get("OPENBLAS_NUM_THREADS"))):
        out = subprocess.run(
            [sys.executable, "-c", code.format(argv=argv)],
            env={**env, **given},
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert out == str(want), (argv, given)
