"""Issue 10, points 7 and 8: time frames as the Mol* viewer needs them.

- a one-frame lattice or mesh set over a volume with several frames is stored at every frame
  (the viewer asks for every segmentation at every frame; a missing one answers 500);
- other frame counts are refused naming both;
- a segment annotation's ``time`` lists only the frames where the segment occurs;
- one time unit per entry; an entry id without ``-`` gets a warning naming the id the viewer
  asks for.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import trimesh
from conftest import assert_one_line_error, preprocess_args, tree_digest

from pipeline.db import open_entry
from pipeline.db.layout import EntryLocation
from pipeline.db.validate import validate_entry
from pipeline.errors import GridMismatchError
from pipeline.model import MeshSetSource
from pipeline.plan import Grid, check_frames

ENTRY = ("emdb", "emd-1832")


def _valid(tmp_path: Path) -> None:
    assert validate_entry(EntryLocation(tmp_path / "db", *ENTRY)) == []


def write_nifti(path: Path, data: np.ndarray, units: tuple[str, str] = ("mm", "sec")) -> Path:
    img = nib.Nifti1Image(data, np.diag([1.5, 1.5, 1.5, 1.0]))
    img.header.set_xyzt_units(*units)
    nib.save(img, path)
    return path


def _volume(tmp_path: Path, frames: int) -> Path:
    data = np.random.default_rng(1).normal(size=(8, 9, 10, frames)).astype(np.float32)
    return write_nifti(tmp_path / "vol.nii", data)


def _annotation_times(entry) -> dict[tuple[str, int], object]:
    return {
        (a["segmentation_id"], a["segment_id"]): a["time"]
        for a in entry.annotations["segment_annotations"]
    }


def _description_times(entry) -> dict[tuple[str, int], object]:
    return {
        (d["target_id"]["segmentation_id"], d["target_id"]["segment_id"]): d["time"]
        for d in entry.annotations["descriptions"].values()
        if d["target_id"] is not None
    }


def test_one_frame_lattice_is_stored_at_every_frame_add_and_extend(run_cli, tmp_path):
    volume = _volume(tmp_path, 3)
    labels = np.zeros((8, 9, 10), np.uint8)
    labels[1:5, 2:7, 3:9] = 1
    labels[6:, :3, :2] = 2
    static = write_nifti(tmp_path / "static.nii", labels)
    result = run_cli(*preprocess_args([(volume, "nii_volume"), (static, "nii_segmentation")],
                                      tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    more = write_nifti(tmp_path / "later.nii", (labels == 1).astype(np.uint16) * 5)
    result = run_cli(*preprocess_args([(more, "nii_segmentation")], tmp_path, mode="extend"))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        lattices = entry.metadata["segmentation_lattices"]
        for lattice in ("static", "later"):
            assert lattices["time_info"][lattice]["start"] == 0
            assert lattices["time_info"][lattice]["end"] == 2
        for t in range(3):
            grid, table = entry.read_lattice("static", 1, t)
            np.testing.assert_array_equal(grid, labels)
            assert table == {0: [0], 1: [1], 2: [2]}
            for level in entry.volume_levels:  # every stored level at every frame
                assert entry.read_lattice("static", level, t)[0].shape == (
                    entry.read_volume(level, t).shape
                )
            grid, table = entry.read_lattice("later", 1, t)
            np.testing.assert_array_equal(grid, (labels == 1) * 5)
        times = _annotation_times(entry)
        assert times == {
            ("static", 1): [0, 1, 2],
            ("static", 2): [0, 1, 2],
            ("later", 5): [0, 1, 2],
        }
        assert _description_times(entry) == times
    _valid(tmp_path)


def test_other_frame_counts_are_refused_naming_both(run_cli, tmp_path):
    volume = _volume(tmp_path, 3)
    two = write_nifti(tmp_path / "two.nii", np.zeros((8, 9, 10, 2), np.uint8))
    result = run_cli(*preprocess_args([(volume, "nii_volume"), (two, "nii_segmentation")],
                                      tmp_path))  # fmt: skip
    assert_one_line_error(result, str(two), "2 time frames, but the volume of", "has 3")
    assert tree_digest(tmp_path / "db") == {}
    # mesh sets follow the same rule (no reader gives multi-frame mesh sets: checked directly)
    grid = Grid((8, 9, 10), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), 3, volume)
    mesh_set = MeshSetSource(path=volume, set_id="m", frames=({}, {}))
    with pytest.raises(GridMismatchError, match=r"2 time frames, but .* has 3 \(mesh set m"):
        check_frames(f"mesh set {mesh_set.set_id}", len(mesh_set.frames), grid, volume)
    check_frames("mesh set m", 1, grid, volume)
    check_frames("mesh set m", 3, grid, volume)


def test_one_frame_mesh_set_is_stored_at_every_frame(run_cli, tmp_path):
    volume = _volume(tmp_path, 2)
    surface = tmp_path / "membrane.obj"
    trimesh.creation.icosphere(subdivisions=1, radius=4.0).export(surface)
    inputs = [(volume, "nii_volume"), (surface, "application_specific_segmentation")]
    result = run_cli(*preprocess_args(inputs, tmp_path))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        meshes = entry.metadata["segmentation_meshes"]
        assert meshes["time_info"]["membrane"]["end"] == 1
        assert meshes["time_info"]["membrane"]["units"] == "second"  # the volume's
        frames = meshes["segmentation_metadata"]["membrane"]["mesh_timeframes"]
        assert sorted(frames) == ["0", "1"] and frames["0"] == frames["1"]
        segment = next(iter(frames["0"]["segment_ids"]))
        assert _annotation_times(entry) == {("membrane", int(segment)): [0, 1]}
        for t in range(2):
            vertices = entry.root[f"mesh_segmentation_data/membrane/{t}/{segment}/1/0/vertices"]
            assert vertices.shape == (42, 3)  # an icosphere of subdivision 1
    with zipfile.ZipFile(tmp_path / "db" / "emdb" / "emd-1832" / "data.zip") as zf:
        prefix = "mesh_segmentation_data/membrane/"
        members = {n[len(prefix) :]: zf.read(n) for n in zf.namelist() if n.startswith(prefix)}
    at = {t: {k[2:]: v for k, v in members.items() if k.startswith(f"{t}/")} for t in "01"}
    assert at["0"] and at["0"] == at["1"]  # the same members and bytes at both frames
    _valid(tmp_path)


def test_segment_time_lists_the_frames_where_it_occurs(run_cli, tmp_path):
    """The issue's case: labels per time point, segment 8 only at frame 1 -> time [1]."""
    volume = _volume(tmp_path, 2)
    labels = np.zeros((8, 9, 10, 2), np.uint8)
    labels[1:3, 1:3, 1:3, :] = 3  # both frames
    labels[5:, 5:, 5:, 1] = 8  # frame 1 only
    labels[0, 0, 0, 0] = 4  # frame 0 only
    seg = write_nifti(tmp_path / "cells.nii", labels)
    result = run_cli(*preprocess_args([(volume, "nii_volume"), (seg, "nii_segmentation")],
                                      tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        times = _annotation_times(entry)
        assert times == {("cells", 3): [0, 1], ("cells", 4): [0], ("cells", 8): [1]}
        assert _description_times(entry) == times
        for (_, segment), frames in times.items():  # every annotated frame has its voxels
            for t in frames:
                grid, table = entry.read_lattice("cells", 1, t)
                present = {s for c in np.unique(grid).tolist() for s in table[c]}
                assert segment in present
    _valid(tmp_path)


def test_one_time_unit_per_entry(run_cli, tmp_path):
    """A volume without time (unit unknown: millisecond) and a segmentation whose header says
    seconds: the lattice takes the volume's unit."""
    volume = write_nifti(tmp_path / "v.nii", np.ones((6, 7, 8), np.float32), ("mm", "unknown"))
    seg = write_nifti(tmp_path / "s.nii", np.ones((6, 7, 8), np.uint8), ("mm", "sec"))
    result = run_cli(*preprocess_args([(volume, "nii_volume"), (seg, "nii_segmentation")],
                                      tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        meta = entry.metadata
        assert meta["volumes"]["time_info"]["units"] == "millisecond"
        assert meta["segmentation_lattices"]["time_info"]["s"]["units"] == "millisecond"
        assert _annotation_times(entry) == {("s", 1): 0}  # one frame: an int, as before


def test_entry_id_without_a_dash_warns(run_cli, tmp_path):
    volume = write_nifti(tmp_path / "v.nii", np.ones((6, 7, 8), np.float32))
    result = run_cli(*preprocess_args([(volume, "nii_volume")], tmp_path, entry="star"))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines == [
        "warning: emdb/star: entry id 'star' has no '-': the Mol* viewer opens it as "
        "'emdb-star', which is not this entry (use an id like 'emdb-star' to open it in the "
        "viewer)"
    ]
    result = run_cli(*preprocess_args([(volume, "nii_volume")], tmp_path, entry="emdb-star"))
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    dry = preprocess_args([(volume, "nii_volume")], tmp_path, entry="dry", extra=("--dry-run",))
    result = run_cli(*dry)
    assert result.exit_code == 0 and "'emdb-dry'" in result.stderr


def test_repeated_lattice_on_a_local_cluster_is_the_threaded_entry(tmp_path):
    """The repeated-frame target travels to worker processes detached from the archive, like
    every target: the cluster's data.zip is the threaded run's, byte for byte."""
    import os
    import subprocess
    import sys

    from conftest import ROOT

    volume = _volume(tmp_path, 2)
    labels = (np.indices((8, 9, 10)).sum(axis=0) // 5 % 3).astype(np.uint8)
    seg = write_nifti(tmp_path / "seg.nii", labels)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    zips = []
    for db, extra in (("db_threads", ()), ("db_cluster", ("--workers", "1"))):
        args = preprocess_args([(volume, "nii_volume"), (seg, "nii_segmentation")], tmp_path,
                               extra=extra)  # fmt: skip
        args[args.index("--db-path") + 1] = str(tmp_path / db)
        done = subprocess.run([sys.executable, "-m", "cli", *args], env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
        zips.append((tmp_path / db / "emdb" / "emd-1832" / "data.zip").read_bytes())
    assert zips[0] == zips[1]
    with open_entry(tmp_path / "db_cluster", *ENTRY) as entry:
        for t in range(2):
            np.testing.assert_array_equal(entry.read_lattice("seg", 1, t)[0], labels)
