"""SFF mesh segmentations (issue 4 item 1, DESIGN 3.2/4/5/7.4) and application-specific inputs.

Mesh SFFs are written here with h5py following the EMDB-SFF 0.8 HDF5 layout (what sfftk-rw
writes: ``segment_list/<id>/mesh_list/<id>/{vertices,normals,triangles}/{num_*,mode,endianness,
data}``), besides the real files in ../shared/test-data/real/sff.
"""

from __future__ import annotations

import base64
import json
import math
import xml.etree.ElementTree as ET
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import preprocess_args, write_mrc

from pipeline.algorithms.meshes import decimate, detail_fraction, vertex_normals
from pipeline.db import open_entry
from pipeline.db.layout import EntryLocation
from pipeline.db.validate import validate_entry

ENTRY = ("emdb", "emd-1832")


# --- meshes, built independently of the code under test ---------------------------------------


def icosphere(subdivisions: int, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5**0.5) / 2
    verts = [
        (-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t),
        (0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
        (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
        (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    points = [np.array(v, float) / np.linalg.norm(v) for v in verts]
    middle: dict[tuple[int, int], int] = {}

    def mid(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in middle:
            m = points[a] + points[b]
            points.append(m / np.linalg.norm(m))
            middle[key] = len(points) - 1
        return middle[key]

    for _ in range(subdivisions):
        middle.clear()
        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(points) * radius, np.array(faces)


def box(n: int, size: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """A closed box surface: each face an n x n grid of quads, outward triangles."""
    points, faces = [], []
    g = np.linspace(-0.5, 0.5, n + 1)
    for axis in range(3):
        for side in (-0.5, 0.5):
            u, w = [a for a in range(3) if a != axis]
            base = len(points)
            for i in range(n + 1):
                for j in range(n + 1):
                    p = [0.0, 0.0, 0.0]
                    p[axis], p[u], p[w] = side, g[i], g[j]
                    points.append(p)
            for i in range(n):
                for j in range(n):
                    a, b = base + i * (n + 1) + j, base + (i + 1) * (n + 1) + j
                    quad = [(a, b, b + 1), (a, b + 1, a + 1)]
                    flip = (side > 0) != ((w - u) % 3 == 1)
                    faces += [(x, z, y) if flip else (x, y, z) for x, y, z in quad]
    pts = np.round(np.array(points), 9)
    unique, inverse = np.unique(pts, axis=0, return_inverse=True)
    return unique * np.array(size), inverse.ravel()[np.array(faces)]


def reference_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, one triangle at a time."""
    out = np.zeros((len(vertices), 3))
    for a, b, c in triangles:
        face = np.cross(vertices[b] - vertices[a], vertices[c] - vertices[a])  # 2 * area * n
        for k in (a, b, c):
            out[k] += face
    length = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(length > 0, out / np.where(length > 0, length, 1), 0)


def _sequence(group: h5py.Group, name: str, data: np.ndarray, mode: str, zipped: bool) -> None:
    g = group.create_group(name)
    raw = data.astype(np.dtype(mode).newbyteorder("<")).tobytes()
    g[f"num_{name}"] = len(data)
    g["mode"], g["endianness"] = mode, "little"
    g["data"] = base64.b64encode(zlib.compress(raw) if zipped else raw)
    if zipped:
        g["compression"] = "zlib"


def write_mesh_hff(
    path: Path,
    segments: dict[int, dict],
    transform: np.ndarray | None = None,
    zipped: bool = True,
    lattice: np.ndarray | None = None,
) -> Path:
    """An EMDB-SFF 0.8 HDF5 mesh file. ``segments``: id -> {name, colour, meshes: {id: (v, t,
    n or None)}} (or {value} for a lattice segment)."""
    with h5py.File(path, "w") as f:
        f["version"], f["name"], f["details"] = "0.8.0.dev1", "generated meshes", "test"
        f["primary_descriptor"] = "mesh_list"
        if transform is not None:
            f["transform_list/0/id"] = 0
            f["transform_list/0/rows"], f["transform_list/0/cols"] = 3, 4
            f["transform_list/0/data"] = " ".join(repr(float(x)) for x in transform.ravel())
        if lattice is not None:
            g = f.create_group("lattice_list/0")
            g["id"], g["mode"], g["endianness"] = 0, str(lattice.dtype), "little"
            for key, n in zip(("sections", "rows", "cols"), lattice.shape, strict=True):
                g[f"size/{key}"] = n
            g["data"] = base64.b64encode(zlib.compress(lattice.tobytes()))
        for segment_id, seg in segments.items():
            s = f.create_group(f"segment_list/{segment_id}")
            s["id"], s["parent_id"] = segment_id, 0
            s["biological_annotation/name"] = seg["name"]
            s["biological_annotation/number_of_instances"] = 1
            ref = s.create_group("biological_annotation/external_references/0")
            ref["resource"], ref["accession"] = "GO", f"GO:{segment_id:07d}"
            s["colour"] = np.array(seg["colour"], dtype=np.float64)
            if "value" in seg:
                s["three_d_volume/lattice_id"], s["three_d_volume/value"] = 0, seg["value"]
                continue
            for mesh_id, (v, t, n) in seg["meshes"].items():
                m = s.create_group(f"mesh_list/{mesh_id}")
                m["id"] = mesh_id
                _sequence(m, "vertices", v, "float32", zipped)
                if n is not None:
                    _sequence(m, "normals", n, "float32", zipped)
                _sequence(m, "triangles", t, "uint32", zipped)
    return path


def _map(tmp_path: Path, shape=(20, 24, 28), voxel=2.0) -> Path:
    data = np.random.default_rng(3).random(shape, dtype=np.float32)
    return write_mrc(tmp_path / "volume.map", data, voxel_size=voxel)


def _mesh_arrays(entry, base: str) -> dict[str, np.ndarray]:
    return {
        k: np.asarray(entry.root[f"{base}/{k}"][...]) for k in ("vertices", "triangles", "normals")
    }


SPHERE = icosphere(3, radius=10.0)
BOX = box(8, (12.0, 8.0, 6.0))
TRANSFORM = np.array([[2.0, 0, 0, 5.0], [0, 2.0, 0, -3.0], [0, 0, 2.0, 1.5]])


def _apply(v: np.ndarray, transform: np.ndarray) -> np.ndarray:
    return (v.astype(np.float32).astype(np.float64) @ transform[:, :3].T + transform[:, 3]).astype(
        np.float32
    )


def _two_segments() -> dict[int, dict]:
    sv, st = SPHERE
    bv, bt = BOX
    return {
        7: {"name": "sphere", "colour": (1.0, 0.5, 0.0, 1.0), "meshes": {3: (sv, st, sv / 10)}},
        9: {"name": "box", "colour": (0.0, 0.25, 1.0, 0.5), "meshes": {0: (bv, bt, None)}},
    }


# --- pure functions -----------------------------------------------------------------------------


def test_detail_fractions_are_powers_of_ten_to_two_significant_digits():
    for level in range(1, 11):
        x = 10 ** (-(level - 1) / 4)
        digits = 1 - math.floor(math.log10(x))
        assert detail_fraction(level) == round(x, digits)
    with pytest.raises(ValueError):
        detail_fraction(11)


def test_vertex_normals_match_reference_and_sphere_radii():
    v, t = SPHERE
    normals = vertex_normals(v, t)
    assert normals.dtype == np.float32 and normals.shape == v.shape
    np.testing.assert_allclose(normals, reference_normals(v, t), atol=1e-6)
    radial = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert np.min(np.sum(normals * radial, axis=1)) > 0.99  # outward, close to the radius
    # a vertex in no triangle gets a zero normal
    extra = vertex_normals(np.vstack([v, [[50.0, 0, 0]]]), t)
    assert np.all(extra[-1] == 0)


def test_decimation_reaches_the_target_and_does_not_depend_on_scale():
    v, t = SPHERE
    for fraction in (0.56, 0.1, 0.01):
        dv, dt = decimate(v, t, fraction)
        assert dv.dtype == np.float32 and dt.dtype == np.int32
        target = round(fraction * len(t))
        assert abs(len(dt) - target) <= max(2, 0.05 * target), (fraction, len(dt))
        assert dt.min() >= 0 and dt.max() < len(dv)
        if fraction > 0.05:  # still a sphere of radius 10
            radii = np.linalg.norm(dv.astype(np.float64), axis=1)
            assert np.all(np.abs(radii - 10.0) < 1.0)
        # the same mesh in other units decimates to the same mesh (1e6: beyond the library's
        # absolute error thresholds without the unit-box scaling)
        for scale in (1e-3, 1e6):
            sv, st = decimate(v * scale, t, fraction)
            np.testing.assert_array_equal(st, dt)
            np.testing.assert_allclose(sv / scale, dv, atol=1e-5)


# --- preprocess with a generated mesh SFF --------------------------------------------------------


def test_mesh_sff_detail_levels_metadata_and_annotations(run_cli, tmp_path):
    sff = write_mesh_hff(tmp_path / "cell.hff", _two_segments(), transform=TRANSFORM)
    result = run_cli(*preprocess_args([(_map(tmp_path), "map"), (sff, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    location = EntryLocation(tmp_path / "db", *ENTRY)
    assert validate_entry(location) == []
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        meshes = entry.metadata["segmentation_meshes"]
        assert meshes["segmentation_ids"] == ["cell"]
        info = meshes["segmentation_metadata"]["cell"]
        assert meshes["time_info"]["cell"]["start"] == 0 and meshes["time_info"]["cell"]["end"] == 0
        segments = info["mesh_timeframes"]["0"]["segment_ids"]
        assert set(segments) == {"7", "9"}
        for segment_id, mesh_id, (v, t), given in (
            ("7", "3", SPHERE, SPHERE[0] / 10),
            ("9", "0", BOX, None),
        ):
            levels = segments[segment_id]["detail_lvls"]
            base = f"mesh_segmentation_data/cell/0/{segment_id}"
            level1 = _mesh_arrays(entry, f"{base}/1/{mesh_id}")
            # level 1: the mesh as given, in Angstrom through the SFF transform
            np.testing.assert_allclose(level1["vertices"], _apply(v, TRANSFORM), rtol=1e-6)
            np.testing.assert_array_equal(level1["triangles"], t)
            assert level1["vertices"].dtype == np.float32 and level1["triangles"].dtype == np.int32
            expected_normals = given if given is not None else reference_normals(v, t)
            np.testing.assert_allclose(level1["normals"], expected_normals, atol=1e-5)
            counts = [len(t)]
            for level in range(2, len(levels) + 1):
                arrays = _mesh_arrays(entry, f"{base}/{level}/{mesh_id}")
                n_tri = len(arrays["triangles"])
                target = round(detail_fraction(level) * len(t))
                assert abs(n_tri - target) <= max(3, 0.15 * target), (segment_id, level, n_tri)
                assert n_tri <= counts[-1]
                counts.append(n_tri)
                assert arrays["triangles"].max() < len(arrays["vertices"])
                lengths = np.linalg.norm(arrays["normals"], axis=1)
                np.testing.assert_allclose(lengths, 1.0, atol=1e-5)
                ref = reference_normals(arrays["vertices"].astype(np.float64), arrays["triangles"])
                np.testing.assert_allclose(arrays["normals"], ref, atol=1e-4)
            # metadata counts are the stored shapes
            for level, stored in levels.items():
                for mid, c in stored["mesh_ids"].items():
                    arrays = _mesh_arrays(entry, f"{base}/{level}/{mid}")
                    assert c == {
                        "num_vertices": len(arrays["vertices"]),
                        "num_triangles": len(arrays["triangles"]),
                        "num_normals": len(arrays["normals"]),
                    }
            assert sorted(map(int, levels)) == list(range(1, len(levels) + 1))
        # the sphere (1280 triangles) keeps triangles down to level 10 (7 triangles)
        assert set(segments["7"]["detail_lvls"]) == {str(lv) for lv in range(1, 11)}
        assert info["detail_lvl_to_fraction"] == {
            str(lv): detail_fraction(lv) for lv in range(1, 11)
        }
        ann = entry.annotations
        assert ann["name"] == "generated meshes"
        by_segment = {a["segment_id"]: a for a in ann["segment_annotations"]}
        assert by_segment[7]["color"] == [1.0, 0.5, 0.0, 1.0]
        assert by_segment[9]["color"] == [0.0, 0.25, 1.0, 0.5]
        assert {a["segment_kind"] for a in by_segment.values()} == {"mesh"}
        assert {a["segmentation_id"] for a in by_segment.values()} == {"cell"}
        names = {
            d["target_id"]["segment_id"]: d["name"]
            for d in ann["descriptions"].values()
            if d["target_kind"] == "mesh"
        }
        assert names == {7: "sphere", 9: "box"}
        refs = [d["external_references"] for d in ann["descriptions"].values()]
        assert sorted(r[0]["accession"] for r in refs) == ["GO:0000007", "GO:0000009"]


def test_box_levels_stop_when_no_triangle_is_left(run_cli, tmp_path):
    v, t = box(1, (4.0, 4.0, 4.0))  # 12 triangles: 12 * 0.032 rounds to 0 at level 7
    segments = {1: {"name": "small", "colour": (1, 1, 1, 1), "meshes": {0: (v, t, None)}}}
    sff = write_mesh_hff(tmp_path / "small.hff", segments, zipped=False)
    result = run_cli(*preprocess_args([(_map(tmp_path), "map"), (sff, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        info = entry.metadata["segmentation_meshes"]["segmentation_metadata"]["small"]
        levels = info["mesh_timeframes"]["0"]["segment_ids"]["1"]["detail_lvls"]
        # consecutive levels from 1, each with triangles, up to the first one with none left
        last = len(levels)
        assert sorted(map(int, levels)) == list(range(1, last + 1))
        first_empty = next(lv for lv in range(2, 11) if round(detail_fraction(lv) * 12) == 0)
        assert last < first_empty
        counts = [levels[str(lv)]["mesh_ids"]["0"]["num_triangles"] for lv in range(1, last + 1)]
        assert counts[0] == 12 and min(counts) > 0 and counts == sorted(counts, reverse=True)
        assert len(decimate(v, t, detail_fraction(last + 1))[1]) == 0
        assert sorted(map(int, info["detail_lvl_to_fraction"])) == list(range(1, last + 1))
        with zipfile.ZipFile(tmp_path / "db/emdb/emd-1832/data.zip") as zf:
            stored = {
                n.split("/")[4]
                for n in zf.namelist()
                if n.startswith("mesh_seg") and n.count("/") > 5
            }
        assert stored == {str(lv) for lv in range(1, last + 1)}


def test_sff_with_a_lattice_and_meshes(run_cli, tmp_path):
    labels = np.zeros((28, 24, 20), np.uint32)  # (sections, rows, cols) = volume (z, y, x)
    labels[5:15, 4:10, 2:8] = 4
    segments = _two_segments()
    segments[4] = {"name": "blob", "colour": (0.2, 0.2, 0.2, 1.0), "value": 4}
    sff = write_mesh_hff(tmp_path / "both.hff", segments, lattice=labels)
    volume = _map(tmp_path, shape=(28, 24, 20))
    result = run_cli(*preprocess_args([(volume, "map"), (sff, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    assert validate_entry(EntryLocation(tmp_path / "db", *ENTRY)) == []
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        assert entry.metadata["segmentation_lattices"]["segmentation_ids"] == ["0"]
        assert entry.metadata["segmentation_meshes"]["segmentation_ids"] == ["both"]
        grid, table = entry.read_lattice("0", 1)
        np.testing.assert_array_equal(
            np.isin(grid, [k for k, v in table.items() if 4 in v]), labels.T == 4
        )
        kinds = {
            (a["segment_kind"], a["segment_id"]) for a in entry.annotations["segment_annotations"]
        }
        assert kinds == {("lattice", 4), ("mesh", 7), ("mesh", 9)}
        # no transform in the file: vertices as given
        v = _mesh_arrays(entry, "mesh_segmentation_data/both/0/9/1/0")["vertices"]
        np.testing.assert_array_equal(v, BOX[0].astype(np.float32))


def test_extend_remove_and_id_clash(run_cli, tmp_path):
    volume = _map(tmp_path)
    assert run_cli(*preprocess_args([(volume, "map")], tmp_path)).exit_code == 0
    sff = write_mesh_hff(tmp_path / "cell.hff", _two_segments())
    assert run_cli(*preprocess_args([(sff, "sff")], tmp_path, mode="extend")).exit_code == 0
    # the same set id again: refused, entry unchanged
    again = run_cli(*preprocess_args([(sff, "sff")], tmp_path, mode="extend"))
    assert again.exit_code == 2 and "already in the entry" in again.stderr
    assert again.stderr.count("\n") == 1 and "Traceback" not in again.output
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"segmentation": {"segmentation_ids_mapping": {"cell": "cell-2"}}}))
    result = run_cli(
        *preprocess_args([(sff, "sff"), (extra, "extra_data")], tmp_path, mode="extend")
    )
    assert result.exit_code == 0, result.output
    location = EntryLocation(tmp_path / "db", *ENTRY)
    assert validate_entry(location) == []
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        assert entry.metadata["segmentation_meshes"]["segmentation_ids"] == ["cell", "cell-2"]
        ids = {a["id"] for a in entry.annotations["segment_annotations"]}
        assert len(ids) == 4
    removed = run_cli(
        "remove-segmentation", "--db-path", tmp_path / "db", "--source-db", "emdb",
        "--entry-id", "emd-1832", "--kind", "mesh", "--id", "cell",
    )  # fmt: skip
    assert removed.exit_code == 0, removed.output
    assert validate_entry(location) == []
    with zipfile.ZipFile(location.folder / "data.zip") as zf:
        names = zf.namelist()
    assert not [n for n in names if n.startswith("mesh_segmentation_data/cell/")]
    assert [n for n in names if n.startswith("mesh_segmentation_data/cell-2/")]
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        meshes = entry.metadata["segmentation_meshes"]
        assert meshes["segmentation_ids"] == ["cell-2"]
        assert set(meshes["segmentation_metadata"]) == set(meshes["time_info"]) == {"cell-2"}
        left = entry.annotations
        assert {a["segmentation_id"] for a in left["segment_annotations"]} == {"cell-2"}
        assert {d["target_id"]["segmentation_id"] for d in left["descriptions"].values()} == {
            "cell-2"
        }


def test_validate_reports_out_of_range_triangles(run_cli, tmp_path):
    sff = write_mesh_hff(tmp_path / "cell.hff", _two_segments())
    assert (
        run_cli(*preprocess_args([(_map(tmp_path), "map"), (sff, "sff")], tmp_path)).exit_code == 0
    )
    location = EntryLocation(tmp_path / "db", *ENTRY)
    path = location.folder / "metadata.json"
    metadata = json.loads(path.read_text())
    levels = metadata["segmentation_meshes"]["segmentation_metadata"]["cell"]["mesh_timeframes"]
    counts = levels["0"]["segment_ids"]["9"]["detail_lvls"]["1"]["mesh_ids"]["0"]
    counts["num_vertices"] = counts["num_normals"] = 3  # arrays no longer match
    path.write_text(json.dumps(metadata))
    problems = validate_entry(location)
    assert any("mesh_segmentation_data/cell/0/9/1/0/vertices" in p for p in problems)


def _bad_mesh(tmp_path: Path, name: str, **change) -> Path:
    v, t = BOX
    segments = {1: {"name": "x", "colour": (1, 1, 1, 1), "meshes": {0: (v, t, None)}}}
    path = write_mesh_hff(tmp_path / name, segments, zipped=False)
    with h5py.File(path, "r+") as f:
        for key, value in change.items():
            del f[f"segment_list/1/mesh_list/0/{key.replace('__', '/')}"]
            f[f"segment_list/1/mesh_list/0/{key.replace('__', '/')}"] = value
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"triangles__data": base64.b64encode(np.full((4, 3), 9999, "<u4").tobytes())},
         "out of range"),
        ({"vertices__data": b"@@not base64@@"}, "vertices data is not base64"),
        ({"vertices__num_vertices": 5}, "vertices data holds"),
        ({"triangles__mode": "complex64"}, "mode 'complex64'"),
    ],
)  # fmt: skip
def test_bad_mesh_data_is_one_line_error(run_cli, tmp_path, change, message):
    if "triangles__data" in change:
        change["triangles__num_triangles"] = 4
    sff = _bad_mesh(tmp_path, "bad.hff", **change)
    result = run_cli(*preprocess_args([(_map(tmp_path), "map"), (sff, "sff")], tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr and str(sff) in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "db" / "emdb").exists()


@pytest.mark.slow
def test_dry_run_with_meshes_writes_nothing_and_checks_ids(run_cli, tmp_path, shared_data):
    xml = shared_data / "real/sff/emd_3791.sff"
    volume = _map(tmp_path)
    args = preprocess_args([(volume, "map"), (xml, "sff")], tmp_path, extra=("--dry-run",))
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "db").exists()
    # an id already in the entry is found by a dry run of extend too
    assert run_cli(*preprocess_args([(volume, "map"), (xml, "sff")], tmp_path)).exit_code == 0
    args = preprocess_args([(xml, "sff")], tmp_path, mode="extend", extra=("--dry-run",))
    result = run_cli(*args)
    assert result.exit_code == 2 and "mesh set id 'emd_3791'" in result.stderr


# --- real files ---------------------------------------------------------------------------------


def test_real_hff_mesh_without_zlib_counts_or_transform(run_cli, tmp_path, shared_data):
    sff = shared_data / "real/sff/czi_triangular_mesh.hff"
    with h5py.File(sff, "r") as f:
        m = f["segment_list/1/mesh_list/1"]
        vertices = np.frombuffer(base64.b64decode(m["vertices/data"][()]), "<f8").reshape(-1, 3)
        triangles = np.frombuffer(base64.b64decode(m["triangles/data"][()]), "<i8").reshape(-1, 3)
    assert vertices.shape == (40, 3) and triangles.shape == (72, 3)
    result = run_cli(*preprocess_args([(_map(tmp_path), "map"), (sff, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    assert validate_entry(EntryLocation(tmp_path / "db", *ENTRY)) == []
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        base = "mesh_segmentation_data/czi_triangular_mesh/0/1"
        level1 = _mesh_arrays(entry, f"{base}/1/1")
        np.testing.assert_array_equal(level1["vertices"], vertices.astype(np.float32))
        np.testing.assert_array_equal(level1["triangles"], triangles)
        np.testing.assert_allclose(
            level1["normals"], reference_normals(vertices, triangles), atol=1e-5
        )
        (annotation,) = entry.annotations["segment_annotations"]
        assert annotation["color"] == pytest.approx([102 / 255, 102 / 255, 102 / 255, 1.0])
        (description,) = entry.annotations["descriptions"].values()
        assert description["name"] == "special_name" and description["target_kind"] == "mesh"


def test_real_xml_mesh_in_angstrom_through_its_transform(run_cli, tmp_path, shared_data):
    sff = shared_data / "real/sff/emd_3791.sff"
    root = ET.parse(sff).getroot()
    (matrix,) = root.iter("transformation_matrix")
    scale = float(matrix.findtext("data").split()[0])
    assert scale == pytest.approx(19.76)
    expected = {}
    for segment in root.iter("segment"):
        mesh = segment.find("mesh_list/mesh")
        expected[segment.get("id")] = tuple(
            np.frombuffer(base64.b64decode(mesh.find(part).get("data")), dt).reshape(-1, 3)
            for part, dt in (("vertices", "<f4"), ("triangles", "<u4"), ("normals", "<f4"))
        )
    result = run_cli(*preprocess_args([(_map(tmp_path), "map"), (sff, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    assert validate_entry(EntryLocation(tmp_path / "db", *ENTRY)) == []
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        info = entry.metadata["segmentation_meshes"]["segmentation_metadata"]["emd_3791"]
        segments = info["mesh_timeframes"]["0"]["segment_ids"]
        assert set(segments) == {"1", "2", "3", "4"}
        for segment_id, (v, t, n) in expected.items():
            level1 = _mesh_arrays(entry, f"mesh_segmentation_data/emd_3791/0/{segment_id}/1/0")
            np.testing.assert_allclose(level1["vertices"], v.astype(np.float64) * scale, rtol=1e-6)
            np.testing.assert_array_equal(level1["triangles"], t)
            unit = n / np.linalg.norm(n, axis=1, keepdims=True)
            np.testing.assert_allclose(level1["normals"], unit, atol=1e-5)
            counts = [
                segments[segment_id]["detail_lvls"][str(lv)]["mesh_ids"]["0"]["num_triangles"]
                for lv in range(1, 11)
            ]
            assert counts[0] == len(t) and counts == sorted(counts, reverse=True)
        names = {
            d["target_id"]["segment_id"]: d["name"]
            for d in entry.annotations["descriptions"].values()
        }
        assert names == {1: "Nucleus", 2: "Cytoplasm", 3: "Lamella", 4: "segment 4"}
        colours = {a["segment_id"]: a["color"] for a in entry.annotations["segment_annotations"]}
        assert colours[2] == [0.0, 1.0, 1.0, 1.0]
        assert entry.annotations["name"] == "IMOD-NewModel"


def test_real_xml_lattice_reads_like_its_hdf5_twin(tmp_path, shared_data):
    from pipeline.inputs.sff import read_sff

    xml = read_sff(shared_data / "real/sff/emd_1832.sff", tmp_path / "x").lattices[0]
    hff = read_sff(shared_data / "real/sff/emd_1832.hff", tmp_path / "h").lattices[0]
    assert xml.lattice_id == hff.lattice_id == "0" and xml.shape == hff.shape == (64, 64, 64)
    np.testing.assert_array_equal(xml.frames[0][:, :, :], hff.frames[0][:, :, :])
    assert xml.segments == hff.segments and len(xml.segments) == 6


# --- application_specific_segmentation -----------------------------------------------------------


def test_application_specific_reads_sff_and_names_other_formats(run_cli, tmp_path, shared_data):
    volume = _map(tmp_path)
    renamed = tmp_path / "segmentation.dat"  # an SFF under another name: recognised by content
    renamed.write_bytes((shared_data / "real/sff/czi_triangular_mesh.hff").read_bytes())
    args = preprocess_args(
        [(volume, "map"), (renamed, "application_specific_segmentation")], tmp_path
    )
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        assert entry.metadata["segmentation_meshes"]["segmentation_ids"] == ["segmentation"]
    amira = tmp_path / "cell.am"
    amira.write_text("# AmiraMesh BINARY-LITTLE-ENDIAN 2.1\n")
    imod = tmp_path / "model.mod"
    imod.write_bytes(b"IMODV1.2" + bytes(64))
    for path, name in (
        (amira, "not supported: Amira mesh (.am)"),
        (imod, "not supported: IMOD model"),
    ):
        args = preprocess_args(
            [(volume, "map"), (path, "application_specific_segmentation")], tmp_path, entry="x"
        )
        result = run_cli(*args)
        assert result.exit_code == 2
        assert result.stderr.startswith(f"error: {path}: {name}")
        assert result.stderr.count("\n") == 1 and "sff convert" in result.stderr


def write_mesh_xml(path: Path, vertices, triangles, normals, transforms, transform_id) -> Path:
    """An EMDB-SFF 0.8 XML mesh file (xml.etree): zlib data with no ``compression`` field and no
    counts, the mesh placed by ``transform_id``."""
    root = ET.Element("segmentation")
    ET.SubElement(root, "version").text = "0.8.0.dev1"
    ET.SubElement(root, "name").text = "xml meshes"
    transform_list = ET.SubElement(root, "transform_list")
    for ident, matrix in transforms.items():
        m = ET.SubElement(transform_list, "transformation_matrix", id=str(ident))
        ET.SubElement(m, "rows").text, ET.SubElement(m, "cols").text = "3", "4"
        ET.SubElement(m, "data").text = " ".join(str(float(x)) for x in np.ravel(matrix))
    ET.SubElement(root, "primary_descriptor").text = "mesh_list"
    segment = ET.SubElement(ET.SubElement(root, "segment_list"), "segment", id="5")
    ET.SubElement(ET.SubElement(segment, "biological_annotation"), "name").text = "ellipsoid"
    colour = ET.SubElement(segment, "colour")
    for channel, value in zip(("red", "green", "blue"), ("0.", "0.5", "1."), strict=True):
        ET.SubElement(colour, channel).text = value
    mesh = ET.SubElement(ET.SubElement(segment, "mesh_list"), "mesh", id="2")
    ET.SubElement(mesh, "transform_id").text = str(transform_id)
    for part, array, mode in (
        ("vertices", vertices, "<f4"),
        ("normals", normals, "<f4"),
        ("triangles", triangles, "<u4"),
    ):
        data = base64.b64encode(zlib.compress(np.asarray(array, mode).tobytes())).decode()
        ET.SubElement(mesh, part, data=data)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def test_generated_xml_mesh_zlib_and_its_own_transform(run_cli, tmp_path):
    v, t = SPHERE
    anisotropic = np.array([[2.0, 0, 0, 100.0], [0, 1.0, 0, -50.0], [0, 0, 0.5, 7.0]])
    placeholder = [[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]]  # sfftk's "identity"
    xml = write_mesh_xml(
        tmp_path / "ellipsoid.sff", v, t, v / 10, {0: placeholder, 1: anisotropic}, 1
    )
    result = run_cli(*preprocess_args([(_map(tmp_path), "map"), (xml, "sff")], tmp_path))
    assert result.exit_code == 0, result.output
    assert validate_entry(EntryLocation(tmp_path / "db", *ENTRY)) == []
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        level1 = _mesh_arrays(entry, "mesh_segmentation_data/ellipsoid/0/5/1/2")
        np.testing.assert_allclose(level1["vertices"], _apply(v, anisotropic), rtol=1e-6)
        np.testing.assert_array_equal(level1["triangles"], t)
        # the given (radial) normals, carried to the ellipsoid: they agree with the normals of
        # the transformed surface itself
        surface = reference_normals(level1["vertices"].astype(np.float64), t)
        assert np.min(np.sum(level1["normals"] * surface, axis=1)) > 0.97
        np.testing.assert_allclose(np.linalg.norm(level1["normals"], axis=1), 1.0, atol=1e-5)
        (annotation,) = entry.annotations["segment_annotations"]
        assert annotation["color"] == [0.0, 0.5, 1.0, 1.0] and annotation["segment_id"] == 5
    # the placeholder transform is the identity
    xml = write_mesh_xml(tmp_path / "plain.sff", v, t, v / 10, {0: placeholder}, 0)
    args = preprocess_args([(_map(tmp_path), "map"), (xml, "sff")], tmp_path, entry="plain")
    assert run_cli(*args).exit_code == 0
    with open_entry(tmp_path / "db", "emdb", "plain") as entry:
        level1 = _mesh_arrays(entry, "mesh_segmentation_data/plain/0/5/1/2")
        np.testing.assert_array_equal(level1["vertices"], v.astype(np.float32))


def test_application_specific_mesh_files_read_with_trimesh(run_cli, tmp_path):
    """STL and glTF surfaces (written here with trimesh) become mesh sets: one segment per
    object, coordinates in Angstrom with node transforms applied."""
    import trimesh

    volume = _map(tmp_path)
    v, t = SPHERE
    bv, bt = BOX
    stl = tmp_path / "membrane.stl"
    trimesh.Trimesh(v, t, process=False).export(stl)
    scene = trimesh.Scene()
    scene.add_geometry(
        trimesh.Trimesh(v, t, process=False), node_name="nucleus", geom_name="nucleus"
    )
    shift = np.eye(4)
    shift[:3, 3] = (30.0, -4.0, 2.5)
    scene.add_geometry(
        trimesh.Trimesh(bv, bt, process=False), node_name="vesicle", geom_name="vesicle",
        transform=shift,
    )  # fmt: skip
    glb = tmp_path / "organelles.glb"
    scene.export(glb)
    inputs = [(volume, "map"), (stl, "application_specific_segmentation")]
    inputs.append((glb, "application_specific_segmentation"))
    result = run_cli(*preprocess_args(inputs, tmp_path))
    assert result.exit_code == 0, result.output
    with open_entry(tmp_path / "db", *ENTRY) as entry:
        meshes = entry.metadata["segmentation_meshes"]
        assert meshes["segmentation_ids"] == ["membrane", "organelles"]
        got = _mesh_arrays(entry, "mesh_segmentation_data/membrane/0/1/1/0")
        # STL stores each facet's corners (shared vertices are merged on reading): compare
        # the triangles' corner coordinates, in the file's order
        np.testing.assert_allclose(got["vertices"][got["triangles"]], v[t], atol=1e-5)
        nucleus = _mesh_arrays(entry, "mesh_segmentation_data/organelles/0/1/1/0")
        vesicle = _mesh_arrays(entry, "mesh_segmentation_data/organelles/0/2/1/0")
        np.testing.assert_allclose(nucleus["vertices"], v, atol=1e-5)
        np.testing.assert_allclose(vesicle["vertices"], bv + shift[:3, 3], atol=1e-5)
        np.testing.assert_array_equal(vesicle["triangles"], bt)
        names = {
            d["target_id"]["segment_id"]: d["name"]
            for d in entry.annotations["descriptions"].values()
            if d["target_id"]["segmentation_id"] == "organelles"
        }
        assert names == {1: "nucleus", 2: "vesicle"}
    empty = tmp_path / "empty.stl"
    empty.write_text("solid cell\nendsolid cell\n")
    args = preprocess_args(
        [(volume, "map"), (empty, "application_specific_segmentation")], tmp_path, entry="y"
    )
    result = run_cli(*args)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"error: {empty}: ") and "no triangles" in result.stderr
