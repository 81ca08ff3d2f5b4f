"""The command line: up-front validation, one-line errors, exit status 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import ROOT, assert_one_line_error, preprocess_args, tree_digest, write_mrc

from pipeline.options import InputKind
from pipeline.plan import SUPPORTED_KINDS

_ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def small_map(tmp_path):
    data = np.random.default_rng(0).normal(size=(10, 12, 14)).astype(np.float32)
    (tmp_path / "in").mkdir()
    return write_mrc(tmp_path / "in" / "small.mrc", data, voxel_size=3.0)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (("--input-kind", "map"), ["2 --input-kind"]),
        (("--quantize-dtype-str", "u3"), ["u3"]),
        (("--force-volume-dtype", "float17"), ["--force-volume-dtype", "float17"]),
        (("--force-volume-dtype", "complex64"), ["complex64"]),
        (("--min-downsampling-level", "3"), ["power of two"]),
        (("--max-downsampling-level", "0"), ["power of two"]),
        (("--min-downsampling-level", "8", "--max-downsampling-level", "4"), ["greater than"]),
        (("--quantize-downsampling-levels", "1 x"), ["'x'"]),
        (("--quantize-downsampling-levels", "3"), ["powers of two"]),
        (("--min-size-per-downsampling-lvl-mb", "-1"), ["must be > 0"]),
    ],
)
def test_invalid_options_fail_before_anything_is_written(
    run_cli, tmp_path, small_map, extra, fragments
):
    result = run_cli(*preprocess_args([(small_map, "map")], tmp_path, extra=extra))
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "db").exists() and not (tmp_path / "work").exists()


def test_unknown_kind_missing_file_and_every_kind_supported(run_cli, tmp_path, small_map):
    assert_one_line_error(
        run_cli(*preprocess_args([(small_map, "mapp")], tmp_path)), "unknown --input-kind 'mapp'"
    )
    missing = tmp_path / "nope.mrc"
    assert_one_line_error(
        run_cli(*preprocess_args([(missing, "map")], tmp_path)), str(missing), "no such file"
    )
    assert set(SUPPORTED_KINDS) == set(InputKind)  # every --input-kind has its reader
    assert_one_line_error(
        run_cli(*preprocess_args([(tmp_path, "map")], tmp_path)), "must be a file"
    )
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("entry", ["a/b", "..", "../x", "_staging", ".hidden", ""])
def test_entry_ids_cannot_escape_the_database(run_cli, tmp_path, small_map, entry):
    result = run_cli(*preprocess_args([(small_map, "map")], tmp_path, entry=entry))
    assert_one_line_error(result, "--entry-id")
    assert not (tmp_path / "db").exists()


def test_dry_run_prints_the_plan_and_writes_nothing(run_cli, tmp_path, small_map):
    result = run_cli(*preprocess_args([(small_map, "map")], tmp_path, extra=("--dry-run",)))
    assert result.exit_code == 0, result.output
    assert "level    1" in result.stdout and "level    2" in result.stdout
    assert "14x12x10" in result.stdout  # [x, y, z]
    assert "7x6x5" in result.stdout
    assert "nothing written" in result.stdout
    assert not (tmp_path / "db").exists() and not (tmp_path / "work").exists()


def test_add_twice_fails_and_leaves_the_entry_unchanged(run_cli, tmp_path, small_map):
    args = preprocess_args([(small_map, "map")], tmp_path)
    first = run_cli(*args)
    assert first.exit_code == 0, first.output
    assert "levels 1, 2" in first.stdout
    before = tree_digest(tmp_path / "db")
    second = run_cli(*args)
    assert_one_line_error(second, "already exists")
    assert tree_digest(tmp_path / "db") == before
    assert sorted(p.name for p in (tmp_path / "db").iterdir()) == ["emdb"]


def test_bad_input_file_leaves_no_trace(run_cli, tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"\0" * 100)
    result = run_cli(*preprocess_args([(bad, "map")], tmp_path))
    assert_one_line_error(result, str(bad), "truncated")
    assert tree_digest(tmp_path / "db") == {}
    assert not (tmp_path / "db").exists() and not (tmp_path / "work").exists()


def test_verbose_option_adds_the_traceback_to_the_one_line_error(run_cli, tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"\0" * 100)
    quiet = run_cli("inspect", bad, "--input-kind", "map")
    assert_one_line_error(quiet, str(bad), "truncated")
    for args in (
        ("inspect", bad, "--input-kind", "map", "--verbose"),
        tuple(preprocess_args([(bad, "map")], tmp_path, extra=("--verbose",))),
    ):
        result = run_cli(*args)
        assert result.exit_code == 2
        assert "Traceback" in result.stderr
        assert result.stderr.splitlines()[-1].startswith(f"error: {bad}")


def test_nan_map_is_rejected(run_cli, tmp_path):
    data = np.full((6, 6, 6), np.nan, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mrcfile notes the NaNs
        path = write_mrc(tmp_path / "nan.mrc", data)
    result = run_cli(*preprocess_args([(path, "map")], tmp_path))
    assert_one_line_error(result, str(path), "NaN")
    assert tree_digest(tmp_path / "db") == {}


@pytest.mark.slow
def test_console_script_and_module_entry_points(tmp_path, small_map):
    for argv in (["cellstar-preprocessor"], [sys.executable, "-m", "cli"]):
        proc = subprocess.run(
            [*argv, *preprocess_args([(small_map, "mapp")], tmp_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 2
        assert proc.stderr.strip().startswith("error: unknown --input-kind")
        assert "Traceback" not in proc.stderr
    help_ = subprocess.run(
        [sys.executable, "-m", "cli", "preprocess", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for option in ("--quantize-dtype-str", "--remove-original-resolution", "--dry-run"):
        assert option in help_.stdout


def test_missing_required_option_and_no_arguments(run_cli, tmp_path, small_map):
    args = [
        a for a in preprocess_args([(small_map, "map")], tmp_path) if a not in ("--mode", "add")
    ]
    assert_one_line_error(run_cli(*args), "--mode")
    bare = run_cli()
    assert bare.exit_code == 2 and "Usage" in bare.stderr and "preprocess" in bare.stderr


def test_dry_run_of_a_compressed_map_reads_only_its_header(run_cli, tmp_path, small_map):
    import gzip

    packed = tmp_path / "in" / "small.mrc.gz"
    packed.write_bytes(gzip.compress(small_map.read_bytes()))
    result = run_cli(*preprocess_args([(packed, "map")], tmp_path, extra=("--dry-run",)))
    assert result.exit_code == 0, result.output
    assert "14x12x10" in result.stdout
    assert not (tmp_path / "work").exists()


def _run_in_terminal(args: list[str]) -> str:
    """Run a command with a pseudo-terminal as stdout and stderr; everything it printed."""
    import os
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        args, stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, cwd=ROOT, env=_ENV
    )
    os.close(slave)
    output = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not data:
            break
        output += data
    os.close(master)
    assert proc.wait(timeout=60) == 0, output
    return output.decode(errors="replace")


@pytest.mark.slow
def test_progress_bars_per_stage_on_a_terminal_quiet_lines_in_logs(tmp_path, small_map):
    labels = (np.arange(10 * 12 * 14).reshape(10, 12, 14) % 5).astype(np.uint8)
    mask = write_mrc(tmp_path / "in" / "small_mask.mrc", labels, voxel_size=3.0)
    inputs = [(small_map, "map"), (mask, "mask")]
    # this checkout's code (not whatever `cellstar-preprocessor` is installed on PATH)
    args = [sys.executable, "-m", "cli", *preprocess_args(inputs, tmp_path)]
    text = _run_in_terminal(args)
    # a redrawn bar (carriage returns) for each stage, ending at 100 %
    for stage in ("levels", "segmentations"):
        bars = [part for part in text.split("\r") if part.lstrip("\x1b[2K").startswith(stage)]
        assert any("[" + "#" * 24 + "] 100%" in bar for bar in bars), text
    assert "commit" in text and "add: emdb/emd-1832" in text
    assert "MB/s" in text.splitlines()[-1]  # throughput at the end

    db2 = tmp_path / "db2"
    piped = subprocess.run([*args[:-1], str(db2)], capture_output=True, text=True, check=True)
    assert piped.stderr == ""  # stderr stays for warnings and errors
    assert "\r" not in piped.stdout and "#" not in piped.stdout  # no bars in logs
    lines = piped.stdout.splitlines()
    stages = [line.split()[0] for line in lines[:-1]]
    assert stages[0] == "read" and stages[-1] == "commit", lines
    assert {"levels", "segmentations"} <= set(stages), lines
    level_lines = [line for line in lines if line.startswith("levels")]
    assert "level 1" in level_lines[0] and "MB/s" in level_lines[0]
    assert lines[-1].startswith("add: emdb/emd-1832") and "MB/s" in lines[-1]


@pytest.mark.parametrize("source", ["../x", "a/b", "..", "_locks", "/abs"])
def test_source_names_cannot_escape_the_database(run_cli, tmp_path, small_map, source):
    args = preprocess_args([(small_map, "map")], tmp_path)
    args[args.index("--source-db") + 1] = source
    result = run_cli(*args)
    assert_one_line_error(result, "--source-db")
    assert not (tmp_path / "db").exists() and not (tmp_path / "x").exists()
    for command in (["delete"], ["remove-volume"], ["remove-descriptions", "--id", "a"]):
        result = run_cli(
            *command, "--db-path", tmp_path / "db", "--source-db", source, "--entry-id", "e"
        )
        assert_one_line_error(result, "--source-db")
