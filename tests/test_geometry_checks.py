"""Issue 10, point 6: geometry and option checks.

- an SFF lattice's own transform must put it on the volume's grid within half a voxel;
- extra data overriding a voxel size the file declares warns with both values and the factor;
- ``--quantize-downsampling-levels`` without ``--quantize-dtype-str`` is an error;
- integers beyond int64 (segment ids, frame indices, huge JSON numbers) are one-line errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import (
    assert_one_line_error,
    preprocess_args,
    tree_digest,
    write_mrc,
    write_sff_lattice,
)

from pipeline.db import open_entry

IDENTITY_PLACEHOLDER = "1.0 0.0 0.0 1.0 0.0 1.0 0.0 1.0 0.0 0.0 1.0 1.0"  # what sfftk writes


def _transform(scale: float, offset: float) -> str:
    return f"{scale} 0.0 0.0 {offset} 0.0 {scale} 0.0 {offset} 0.0 0.0 {scale} {offset}"


def write_hff(
    path: Path,
    lattice_zyx: np.ndarray,
    transforms: list[str],
    transform_id: int | None = None,
    segment_ids: dict[int, int] | None = None,
) -> Path:
    """An SFF with one lattice, its segments (id -> value; segment 1 by default) and a
    transform_list."""
    segments = segment_ids or {1: 1}
    return write_sff_lattice(
        path, lattice_zyx, segments, transforms=transforms, transform_id=transform_id
    )


def _lattice(shape=(6, 7, 8)) -> np.ndarray:
    lattice = np.zeros(shape, np.uint8)
    lattice[2:, 3:, 4:] = 1
    return lattice


def test_emd_1547_like_transform_is_checked(run_cli, tmp_path):
    """emd_1547's case: the SFF says 2.8 A voxels from -226.8 A. Over a map of that geometry it
    is stored (origin stored as the decimal -226.8); over a 1 A map, one error naming both."""
    lattice = _lattice()
    hff = write_hff(
        tmp_path / "emd_1547.hff",
        lattice,
        [IDENTITY_PLACEHOLDER, _transform(2.8, -226.8), _transform(9.0, 5.0)],
        transform_id=1,
    )
    ones = np.ones(lattice.shape, np.float32)
    good = write_mrc(tmp_path / "good.map", ones, 2.8, nxstart=-81, nystart=-81, nzstart=-81)
    result = run_cli(*preprocess_args([(good, "map"), (hff, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        box = entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
        assert box["origin"] == [-226.8, -226.8, -226.8]
        assert box["voxel_size"] == [2.8, 2.8, 2.8]
        grid, table = entry.read_lattice("0", 1)
        np.testing.assert_array_equal(grid, lattice.transpose(2, 1, 0))
        assert table == {0: [0], 1: [1]}
    before = tree_digest(tmp_path / "db")
    wrong = write_mrc(tmp_path / "one.map", ones, 1.0)
    result = run_cli(*preprocess_args([(wrong, "map"), (hff, "sff")], tmp_path, entry="x-1"))
    assert_one_line_error(
        result, str(hff), "transform 1", "voxel size (2.8, 2.8, 2.8)", "origin (-226.8, -226.8",
        "voxel size (1, 1, 1)", "origin (0, 0, 0)", str(wrong),
    )  # fmt: skip
    # a map one voxel off (N*START -80) is refused too; a tiny voxel difference is not
    shifted = write_mrc(tmp_path / "s.map", ones, 2.8, nxstart=-80, nystart=-81, nzstart=-81)
    result = run_cli(*preprocess_args([(shifted, "map"), (hff, "sff")], tmp_path, entry="x-2"))
    assert_one_line_error(result, "1.0 voxels apart")
    assert tree_digest(tmp_path / "db") == before
    close = write_mrc(tmp_path / "c.map", ones, 2.8001, nxstart=-81, nystart=-81, nzstart=-81)
    result = run_cli(*preprocess_args([(close, "map"), (hff, "sff")], tmp_path, entry="x-3"))
    assert result.exit_code == 0, result.output


def test_the_files_only_non_identity_transform_is_used(run_cli, tmp_path):
    lattice = _lattice()
    hff = write_hff(tmp_path / "a.hff", lattice, [IDENTITY_PLACEHOLDER, _transform(3.0, 0.0)])
    ones = np.ones(lattice.shape, np.float32)
    result = run_cli(*preprocess_args([(write_mrc(tmp_path / "a.map", ones, 3.0), "map"),
                                       (hff, "sff")], tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    wrong = write_mrc(tmp_path / "b.map", ones, 1.5)
    result = run_cli(*preprocess_args([(wrong, "map"), (hff, "sff")], tmp_path, entry="b-1"))
    assert_one_line_error(result, "the file's only transform", "(3, 3, 3)", "(1.5, 1.5, 1.5)")
    # several candidates and no transform_id: cannot tell, a warning and no check
    two = write_hff(tmp_path / "two.hff", lattice, [_transform(3.0, 0.0), _transform(2.0, 0.0)])
    result = run_cli(*preprocess_args([(wrong, "map"), (two, "sff")], tmp_path, entry="c-1"))
    assert result.exit_code == 0, result.output
    assert f"warning: {two}: lattice 0: 2 transforms and no transform_id" in result.stderr


def test_real_emd_1832_sff_transform(run_cli, tmp_path, shared_data, emd1832_map):
    """emd_1832.hff/.sff: transform 1 (5.7 A, -182.4 A) matches EMD-1832.map; over a 1 A map
    of the same grid both forms are refused."""
    sffs = [shared_data / "real/sff/emd_1832.hff", shared_data / "real/sff/emd_1832.sff"]
    sffs = [p for p in sffs if p.is_file()]
    if not sffs:
        pytest.skip("real/sff/emd_1832.* not found")
    result = run_cli(*preprocess_args([(emd1832_map, "map"), (sffs[0], "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    one = write_mrc(tmp_path / "one.map", np.ones((64, 64, 64), np.float32), 1.0)
    for n, sff in enumerate(sffs):
        result = run_cli(*preprocess_args([(one, "map"), (sff, "sff")], tmp_path, entry=f"o-{n}"))
        assert_one_line_error(result, str(sff), "(5.7, 5.7, 5.7)", "(-182.4, -182.4, -182.4)")
        # inspect shows the transform the check uses
        shown = run_cli("inspect", sff, "--input-kind", "sff", "--json")
        transform = json.loads(shown.stdout)["lattices"][0]["transform"]
        assert transform["name"] == "transform 1 (the file's only transform)"
        matrix = np.array(transform["matrix_3x4"])
        np.testing.assert_allclose(matrix[:, :3], np.eye(3) * 5.7, rtol=1e-7)
        np.testing.assert_allclose(matrix[:, 3], [-182.4] * 3, rtol=1e-7)


def test_extra_data_overriding_a_declared_voxel_size_warns(run_cli, tmp_path):
    """PREPROCESS.md's hiPSC case: the OME-TIFF says 0.1083 um (1083 A), extra data gives the
    micrometre number 0.108 as Angstrom: stored as asked, with a warning naming both values and
    the factor."""
    image = tmp_path / "cell.ome.tif"
    data = np.arange(3 * 8 * 10, dtype=np.uint16).reshape(3, 8, 10)
    tifffile.imwrite(image, data, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.1083, "PhysicalSizeY": 0.1083, "PhysicalSizeZ": 0.29,
    })  # fmt: skip
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"volume": {"voxel_size": [0.108, 0.108, 0.29]}}))
    args = preprocess_args([(extra, "extra_data"), (image, "ometiff_image")], tmp_path)
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, result.stderr
    line = warnings[0]
    assert line.startswith(f"warning: {image}: volume.voxel_size of {extra}")
    assert "(0.108, 0.108, 0.29)" in line and "(1083, 1083, 2900)" in line
    assert "factors (9.97230e-05" in line or "factors (9.9723e-05" in line
    with open_entry(tmp_path / "db", "emdb", "emd-1832") as entry:
        box = entry.metadata["volumes"]["volume_sampling_info"]["boxes"]["1"]
        assert box["voxel_size"] == [0.108, 0.108, 0.29]
    # a map: one factor; the same value: no warning
    volume = write_mrc(tmp_path / "m.map", np.ones((4, 5, 6), np.float32), 5.7)
    extra.write_text(json.dumps({"volume": {"voxel_size": [1.0, 1.0, 1.0]}}))
    result = run_cli(*preprocess_args([(volume, "map"), (extra, "extra_data")], tmp_path, "m-1"))
    assert result.exit_code == 0, result.output
    assert f"warning: {volume}: volume.voxel_size of {extra} (1, 1, 1) A overrides" in result.stderr
    assert "(5.7, 5.7, 5.7) A (factor 0.175439)" in result.stderr
    extra.write_text(json.dumps({"volume": {"voxel_size": [5.7, 5.7, 5.7]}}))
    result = run_cli(*preprocess_args([(volume, "map"), (extra, "extra_data")], tmp_path, "m-2"))
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr


def test_quantize_levels_need_a_dtype(run_cli, tmp_path):
    volume = write_mrc(tmp_path / "m.map", np.ones((4, 5, 6), np.float32))
    extra = ("--quantize-downsampling-levels", "1")
    result = run_cli(*preprocess_args([(volume, "map")], tmp_path, extra=extra))
    assert_one_line_error(result, "--quantize-downsampling-levels needs --quantize-dtype-str")
    assert not (tmp_path / "db").exists()


def _huge_json_number(path: Path, digits: int) -> Path:
    text = path.read_text()
    path.write_text(text.replace('"id": 1,', f'"id": {"9" * digits},', 1))
    return path


def test_integers_beyond_int64_are_one_line_errors(run_cli, tmp_path):
    volume = write_mrc(tmp_path / "v.map", np.ones((6, 7, 8), np.float32))
    geometric = tmp_path / "g.json"
    sphere = {"kind": "sphere", "parameters": {"id": 1, "center": [0, 0, 0], "radius": 1}}
    geometric.write_text(json.dumps({"segmentation_id": "g", "shape_primitives_input":
                                     {"0": [sphere]}}))  # fmt: skip
    # a primitive id of 5000 digits (Python refuses to convert it) and of 2**64
    for digits in (5000, 20):
        _huge_json_number(geometric, digits)
        result = run_cli(*preprocess_args([(volume, "map"), (geometric, "geometric_segmentation")],
                                          tmp_path))  # fmt: skip
        assert_one_line_error(result, str(geometric), "beyond the 64-bit integer range")
        geometric.write_text(geometric.read_text().replace("9" * digits, "1"))
    # a frame index beyond int64
    geometric.write_text(json.dumps({"segmentation_id": "g", "shape_primitives_input":
                                     {"9" * 30: [sphere]}}))  # fmt: skip
    result = run_cli(*preprocess_args([(volume, "map"), (geometric, "geometric_segmentation")],
                                      tmp_path))  # fmt: skip
    assert_one_line_error(result, "frame 999999999999999999999999…(30 characters)", "64-bit")
    # a segment id in extra data names, and in an SFF
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"segmentation": {"segment_ids_to_segment_names_mapping":
                                                  {"0": {str(2**63): "x"}}}}))  # fmt: skip
    hff = write_hff(tmp_path / "s.hff", _lattice(), [], segment_ids={2**64 - 1: 1})
    result = run_cli(*preprocess_args([(volume, "map"), (extra, "extra_data")], tmp_path))
    assert_one_line_error(result, str(extra), "segment id 9223372036854775808", "64-bit")
    result = run_cli(*preprocess_args([(volume, "map"), (hff, "sff")], tmp_path))
    assert_one_line_error(result, str(hff), "18446744073709551615", "64-bit")
    assert not (tmp_path / "db").exists()


def test_checked_int_bounds_and_texts():
    from pipeline.errors import InputFormatError
    from pipeline.inputs.limits import INT64_MAX, INT64_MIN, checked_int

    assert checked_int(INT64_MAX, "id", "f") == INT64_MAX
    assert checked_int(str(INT64_MIN), "id", "f") == INT64_MIN
    assert checked_int("007", "id", "f") == 7
    for value, shown in (
        (INT64_MAX + 1, "9223372036854775808"),
        (str(INT64_MIN - 1), "-9223372036854775809"),
        ("1" + "0" * 6000, "100000000000000000000000…(6001 characters)"),
        (10**9000, "(about 10^9000)"),
    ):
        with pytest.raises(InputFormatError) as info:
            checked_int(value, "segment id", "f.json")
        assert str(info.value) == f"f.json: segment id {shown} is beyond the 64-bit integer range"
