"""RELION STAR particle files -> spheres: ``star-to-geometric`` and the direct input kind
``star_file_geometric_segmentation``, on files written by starfile here and on real files."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import starfile
from conftest import assert_one_line_error, preprocess_args, tree_digest, write_mrc

from pipeline.db.layout import EntryLocation
from pipeline.db.validate import validate_entry

RELION = "real/relion_star"
RNG = np.random.default_rng(7)


def _convert(run_cli, star, output, *options):
    return run_cli(
        "star-to-geometric",
        "--star-file-path",
        star,
        "--geometric-segmentation-input-file-path",
        output,
        *options,
    )


def _spheres(path):
    """(ids, centres, radii, colours) of a geometric_segmentation input file."""
    doc = json.loads(path.read_text())
    items = doc["shape_primitives_input"]["0"]
    assert {p["kind"] for p in items} == {"sphere"}
    ids = [p["parameters"]["id"] for p in items]
    centres = np.array([p["parameters"]["center"] for p in items])
    radii = {p["parameters"]["radius"] for p in items}
    colours = {tuple(p["parameters"].get("color", ())) for p in items}
    return doc["segmentation_id"], ids, centres, radii, colours


def _stored_spheres(db, entry="emd-1832"):
    folder = db / "emdb" / entry
    doc = json.loads((folder / "geometric_segmentation.json").read_text())
    out = {}
    for item in doc:
        items = item["primitives"]["0"]["shape_primitive_list"]
        out[item["segmentation_id"]] = (
            [p["id"] for p in items],
            np.array([p["center"] for p in items]),
            {p["radius"] for p in items},
        )
    return out


def _relion31(path, pixel_sizes=(2.0, 3.0)):
    """RELION 3.1/4 layout: optics (two groups with their pixel sizes) and particles of two
    tomograms, coordinates in pixels, origins in Angstrom. Returns the particle table written."""
    n = 12
    particles = pd.DataFrame(
        {
            "rlnTomoName": ["TS_01"] * 7 + ["TS_02"] * 5,
            "rlnCoordinateX": np.round(RNG.uniform(0, 500, n), 3),
            "rlnCoordinateY": np.round(RNG.uniform(0, 500, n), 3),
            "rlnCoordinateZ": np.round(RNG.uniform(0, 200, n), 3),
            "rlnOriginXAngst": np.round(RNG.uniform(-5, 5, n), 3),
            "rlnOriginYAngst": np.round(RNG.uniform(-5, 5, n), 3),
            "rlnOriginZAngst": np.round(RNG.uniform(-5, 5, n), 3),
            "rlnAngleRot": np.round(RNG.uniform(-180, 180, n), 3),
            "rlnOpticsGroup": [1, 2] * 6,
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1, 2],
            "rlnOpticsGroupName": ["opticsGroup1", "opticsGroup2"],
            "rlnImagePixelSize": list(pixel_sizes),
            "rlnImageSize": [64, 64],
        }
    )
    starfile.write({"optics": optics, "particles": particles}, path)
    return particles


def _relion5(path, tilt_series_pixel=1.5):
    """RELION 5 layout: centred coordinates in Angstrom, two tomograms."""
    n = 9
    particles = pd.DataFrame(
        {
            "rlnTomoName": ["TS_01"] * 4 + ["TS_02"] * 5,
            "rlnCenteredCoordinateXAngst": np.round(RNG.uniform(-300, 300, n), 3),
            "rlnCenteredCoordinateYAngst": np.round(RNG.uniform(-300, 300, n), 3),
            "rlnCenteredCoordinateZAngst": np.round(RNG.uniform(-100, 100, n), 3),
            "rlnOriginXAngst": np.round(RNG.uniform(-5, 5, n), 3),
            "rlnOriginYAngst": np.round(RNG.uniform(-5, 5, n), 3),
            "rlnOriginZAngst": np.round(RNG.uniform(-5, 5, n), 3),
            "rlnOpticsGroup": [1] * n,
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["optics1"],
            "rlnTomoTiltSeriesPixelSize": [tilt_series_pixel],
            "rlnImagePixelSize": [6.0],
        }
    )
    starfile.write(
        {"general": {"rlnTomoSubTomosAre2DStacks": 1}, "optics": optics, "particles": particles},
        path,
    )
    return particles


def _xyz(table, prefix, suffix=""):
    return table[[f"{prefix}{a}{suffix}" for a in "XYZ"]].to_numpy(dtype=float)


def test_relion31_optics_and_particles_with_a_tomogram_filter(run_cli, tmp_path):
    star = tmp_path / "particles.star"
    particles = _relion31(star)
    output = tmp_path / "spheres.json"
    result = _convert(
        run_cli,
        star,
        output,
        "--tomo-name",
        "TS_02",
        "--sphere-radius",
        "55",
        "--sphere-color-hex",
        "#00FF0080",
        "--star-file-coordinate-divisor",
        "2",
    )
    assert result.exit_code == 0, result.output
    sid, ids, centres, radii, colours = _spheres(output)
    rows = np.flatnonzero(particles["rlnTomoName"] == "TS_02")
    assert sid == "particles" and ids == rows.tolist()
    pixel = np.where(particles["rlnOpticsGroup"] == 1, 2.0, 3.0)[rows, None]
    expected = _xyz(particles, "rlnCoordinate")[rows] / 2 * pixel
    expected -= _xyz(particles, "rlnOrigin", "Angst")[rows]
    np.testing.assert_allclose(centres, expected, rtol=0, atol=1e-9)
    assert radii == {55.0}
    assert colours == {(0.0, 1.0, 0.0, 128 / 255)}

    # --pixel-size overrides the STAR file's
    result = _convert(run_cli, star, output, "--tomo-name", "TS_01", "--pixel-size", "7.84")
    assert result.exit_code == 0, result.output
    _, ids, centres, _, colours = _spheres(output)
    rows = np.flatnonzero(particles["rlnTomoName"] == "TS_01")
    expected = _xyz(particles, "rlnCoordinate")[rows] * 7.84
    expected -= _xyz(particles, "rlnOrigin", "Angst")[rows]
    np.testing.assert_allclose(centres, expected, rtol=0, atol=1e-9)
    assert colours == {()}  # no colour given: chosen when the segmentation is added

    # both tomograms and no filter: refused, the output is left alone
    before = output.read_bytes()
    assert_one_line_error(
        _convert(run_cli, star, output), str(star), "particles of 2 tomograms", "--tomo-name"
    )
    assert_one_line_error(
        _convert(run_cli, star, output, "--tomo-name", "TS_09"), "no particle of tomogram 'TS_09'"
    )
    assert output.read_bytes() == before


def test_relion5_centred_coordinates_need_the_tomogram_size(run_cli, tmp_path):
    star = tmp_path / "run_data.star"
    particles = _relion5(star, tilt_series_pixel=1.5)
    output = tmp_path / "spheres.json"
    assert_one_line_error(
        _convert(run_cli, star, output, "--tomo-name", "TS_01"), "--tomogram-size"
    )
    assert not output.exists()
    result = _convert(
        run_cli,
        star,
        output,
        "--tomo-name",
        "TS_01",
        "--tomogram-size",
        "400",
        "300",
        "100",
        "--segmentation-id",
        "ribosomes",
    )
    assert result.exit_code == 0, result.output
    sid, ids, centres, _, _ = _spheres(output)
    rows = np.flatnonzero(particles["rlnTomoName"] == "TS_01")
    assert sid == "ribosomes" and ids == rows.tolist()
    # RELION 5: Angstrom from the centre of the tomogram (size/2 pixels of the tilt series)
    expected = _xyz(particles, "rlnCenteredCoordinate", "Angst")[rows]
    expected = expected - _xyz(particles, "rlnOrigin", "Angst")[rows]
    expected += np.array([400, 300, 100]) * 1.5 / 2
    np.testing.assert_allclose(centres, expected, rtol=0, atol=1e-9)


def test_relion5_direct_kind_is_placed_on_the_volume_centre(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    star = tmp_path / "in" / "run_data.star"
    particles = _relion5(star)
    shape_xyz, voxel = (24, 20, 12), 6.0
    tomogram = write_mrc(
        tmp_path / "in" / "TS_02.mrc",
        RNG.normal(size=shape_xyz[::-1]).astype(np.float32),
        voxel_size=voxel,
        nxstart=-4,  # an origin of -24 A along x
    )
    extra = tmp_path / "in" / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "segmentation": {
                    "star_files": {
                        "run_data": {
                            "tomo_name": "TS_02",
                            "sphere_radius": 30,
                            "segmentation_id": "nucleosomes",
                            "sphere_color_hex": "FF0000",
                        }
                    }
                }
            }
        )
    )
    args = [(extra, "extra_data"), (tomogram, "map"), (star, "star_file_geometric_segmentation")]
    result = run_cli(*preprocess_args(args, tmp_path))
    assert result.exit_code == 0, result.output
    stored = _stored_spheres(tmp_path / "db")
    ids, centres, radii = stored["nucleosomes"]
    rows = np.flatnonzero(particles["rlnTomoName"] == "TS_02")
    assert ids == rows.tolist() and radii == {30.0}
    centre = np.array([-24.0, 0.0, 0.0]) + np.array(shape_xyz) * voxel / 2
    expected = _xyz(particles, "rlnCenteredCoordinate", "Angst")[rows]
    expected = expected - _xyz(particles, "rlnOrigin", "Angst")[rows] + centre
    np.testing.assert_allclose(centres, expected, rtol=0, atol=1e-9)
    annotations = json.loads((tmp_path / "db/emdb/emd-1832/annotations.json").read_text())
    colours = {tuple(a["color"]) for a in annotations["segment_annotations"]}
    assert colours == {(1.0, 0.0, 0.0, 1.0)}
    assert validate_entry(EntryLocation(tmp_path / "db", "emdb", "emd-1832")) == []


def test_converted_json_fed_back_equals_the_direct_kind(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    star = tmp_path / "in" / "rln_ribosome_bin1_tomo_649.star"
    _relion31(star, pixel_sizes=(1.96, 1.96))
    tomogram = write_mrc(
        tmp_path / "in" / "tomogram.mrc",
        RNG.normal(size=(10, 12, 14)).astype(np.float32),
        voxel_size=7.84,
    )
    # the seed's command line, with its underscore option names
    converted = tmp_path / "in" / "geometric_segmentation_input_1.json"
    result = run_cli(
        "star-to-geometric",
        "--star_file_path",
        star,
        "--geometric_segmentation_input_file_path",
        converted,
        "--sphere_radius",
        "100",
        "--segmentation_id",
        "ribosomes",
        "--sphere_color_hex",
        "FFFF00",
        "--pixel_size",
        "7.84",
        "--star_file_coordinate_divisor",
        "4",
        "--tomo-name",
        "TS_01",
    )
    assert result.exit_code == 0, result.output
    assert "7 spheres" in result.output
    extra = tmp_path / "in" / "extra.json"
    extra.write_text(
        json.dumps(
            {
                "segmentation": {
                    "star_files": {
                        "rln_ribosome_bin1_tomo_649": {
                            "segmentation_id": "ribosomes",
                            "sphere_radius": 100,
                            "sphere_color_hex": "FFFF00",
                            "pixel_size": 7.84,
                            "star_file_coordinate_divisor": 4,
                            "tomo_name": "TS_01",
                        }
                    }
                }
            }
        )
    )
    runs = {
        "direct": [
            (extra, "extra_data"),
            (tomogram, "map"),
            (star, "star_file_geometric_segmentation"),
        ],
        "converted": [(tomogram, "map"), (converted, "geometric_segmentation")],
    }
    documents = {}
    for name, args in runs.items():
        result = run_cli(*preprocess_args(args, tmp_path / name))
        assert result.exit_code == 0, result.output
        folder = tmp_path / name / "db" / "emdb" / "emd-1832"
        documents[name] = [
            json.loads((folder / n).read_text())
            for n in ("geometric_segmentation.json", "annotations.json", "metadata.json")
        ]
        assert validate_entry(EntryLocation(tmp_path / name / "db", "emdb", "emd-1832")) == []
    assert documents["direct"] == documents["converted"]
    ids, _, radii = _stored_spheres(tmp_path / "direct" / "db")["ribosomes"]
    assert len(ids) == 7 and radii == {100.0}


def _real(shared_data, name):
    path = shared_data / RELION / name
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def _plain_table(path):
    """Column names and rows of a one-loop STAR file, parsed here without starfile."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    columns = [line.split()[0][1:] for line in lines if line.startswith("_")]
    rows = [line.split() for line in lines if line and not line.startswith(("_", "data_", "loop_"))]
    return columns, rows


def test_real_relion30_files(run_cli, tmp_path, shared_data):
    # tab-separated, no column numbers, trailing tabs, one tomogram; pixel size rlnPixelSize
    star = _real(shared_data, "sfftk_test_data10.star")
    output = tmp_path / "ten.json"
    assert _convert(run_cli, star, output).exit_code == 0
    columns, rows = _plain_table(star)
    xyz = np.array([[float(r[columns.index(f"rlnCoordinate{a}")]) for a in "XYZ"] for r in rows])
    pixel = {float(r[columns.index("rlnPixelSize")]) for r in rows}
    assert pixel == {1.96}
    sid, ids, centres, _, _ = _spheres(output)
    assert sid == "sfftk_test_data10" and ids == list(range(256))
    np.testing.assert_allclose(centres, xyz * 1.96, rtol=1e-12)

    # three tomograms (rlnMicrographName ....tomostar): one chosen by its name without suffix
    star = _real(shared_data, "sfftk_test_data9.star")
    assert_one_line_error(_convert(run_cli, star, output), "particles of 3 tomograms")
    result = _convert(run_cli, star, output, "--tomo-name", "01122021_BrnoKrios_arctis_lam3_pos29")
    assert result.exit_code == 0, result.output
    columns, rows = _plain_table(star)
    keep = [
        n
        for n, r in enumerate(rows)
        if r[columns.index("rlnMicrographName")] == "01122021_BrnoKrios_arctis_lam3_pos29.tomostar"
    ]
    xyz = np.array(
        [[float(rows[n][columns.index(f"rlnCoordinate{a}")]) for a in "XYZ"] for n in keep]
    )
    _, ids, centres, _, _ = _spheres(output)
    assert ids == keep and len(ids) == 169
    np.testing.assert_allclose(centres, xyz * 1.96, rtol=1e-12)


def test_real_czi_relion3_with_pixel_origins_and_detector_pixel_size(
    run_cli, tmp_path, shared_data
):
    star = _real(shared_data, "czi_relion_3_star.star")
    output = tmp_path / "czi.json"
    assert _convert(run_cli, star, output, "--tomo-name", "tomo_1.tomostar").exit_code == 0
    columns, rows = _plain_table(star)
    keep = [n for n, r in enumerate(rows) if r[0] == "tomo_1.tomostar"]

    def column(name):
        return np.array([float(rows[n][columns.index(name)]) for n in keep])

    pixel = column("rlnDetectorPixelSize") * 1e4 / column("rlnMagnification")  # um -> A
    expected = np.stack(
        [(column(f"rlnCoordinate{a}") - column(f"rlnOrigin{a}")) * pixel for a in "XYZ"], axis=1
    )
    _, ids, centres, _, _ = _spheres(output)
    assert ids == keep == [0, 1]
    np.testing.assert_allclose(centres, expected, rtol=1e-12)
    assert math.isclose(pixel[0], 1.7005)


def test_real_file_without_pixel_size(run_cli, tmp_path, shared_data):
    star = _real(shared_data, "sfftk_test_data5.star")
    output = tmp_path / "five.json"
    assert_one_line_error(
        _convert(run_cli, star, output), str(star), "no pixel size", "--pixel-size"
    )
    assert _convert(run_cli, star, output, "--pixel-size", "2").exit_code == 0
    _, ids, centres, _, _ = _spheres(output)
    assert ids == [0]
    np.testing.assert_allclose(centres, [[487.847 * 2, 2451.941 * 2, 917.8967 * 2]], rtol=1e-12)


def test_relion30_single_unnamed_block_written_by_starfile(run_cli, tmp_path):
    star = tmp_path / "old.star"
    table = pd.DataFrame(
        {
            "rlnCoordinateX": [10.0, 20.0, 30.0],
            "rlnCoordinateY": [1.0, 2.0, 3.0],
            "rlnCoordinateZ": [5.0, 6.0, 7.0],
            "rlnOriginX": [1.0, 0.0, -1.0],
            "rlnOriginY": [0.0, 0.0, 0.0],
            "rlnOriginZ": [0.5, 0.0, 0.0],
            "rlnMicrographName": ["tomo.mrc"] * 3,
            "rlnDetectorPixelSize": [5.0] * 3,
            "rlnMagnification": [25000.0] * 3,
        }
    )
    starfile.write(table, star)
    assert "data_particles" not in star.read_text() and "data_optics" not in star.read_text()
    output = tmp_path / "old.json"
    assert _convert(run_cli, star, output).exit_code == 0
    _, ids, centres, _, _ = _spheres(output)
    assert ids == [0, 1, 2]
    np.testing.assert_allclose(centres, [[18.0, 2.0, 9.0], [40.0, 4.0, 12.0], [62.0, 6.0, 14.0]])


def test_extend_adds_a_star_segmentation(run_cli, tmp_path):
    (tmp_path / "in").mkdir()
    tomogram = write_mrc(
        tmp_path / "in" / "tomogram.mrc",
        RNG.normal(size=(10, 12, 14)).astype(np.float32),
        voxel_size=2.0,
        nzstart=3,  # origin z = 6 A: pixel coordinates count from the volume's sample 0
    )
    assert run_cli(*preprocess_args([(tomogram, "map")], tmp_path)).exit_code == 0
    star = tmp_path / "in" / "ribosomes.star"
    particles = _relion31(star, pixel_sizes=(2.0, 2.0))
    extra = tmp_path / "in" / "extra.json"
    extra.write_text(
        json.dumps({"segmentation": {"star_files": {"ribosomes": {"tomo_name": "TS_01"}}}})
    )
    args = [(extra, "extra_data"), (star, "star_file_geometric_segmentation")]
    result = run_cli(*preprocess_args(args, tmp_path, mode="extend"))
    assert result.exit_code == 0, result.output
    ids, centres, radii = _stored_spheres(tmp_path / "db")["ribosomes"]
    rows = np.flatnonzero(particles["rlnTomoName"] == "TS_01")
    expected = _xyz(particles, "rlnCoordinate")[rows] * 2.0
    expected -= _xyz(particles, "rlnOrigin", "Angst")[rows]
    expected += [0.0, 0.0, 6.0]
    assert ids == rows.tolist() and radii == {100.0}  # the default radius
    np.testing.assert_allclose(centres, expected, rtol=0, atol=1e-9)
    assert validate_entry(EntryLocation(tmp_path / "db", "emdb", "emd-1832")) == []
    # again: the id (the file stem) is taken
    digest = tree_digest(tmp_path / "db")
    assert_one_line_error(
        run_cli(*preprocess_args(args, tmp_path, mode="extend")), "ribosomes already in entry"
    )
    assert tree_digest(tmp_path / "db") == digest


def _write_star_text(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda d: _write_star_text(d, "binary.star", "\x00\x01 not a star file"), "no data_"),
        (
            lambda d: (
                starfile.write(
                    pd.DataFrame({"rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0]}),
                    d / "flat.star",
                )
                or d / "flat.star"
            ),
            "rlnCoordinateX, rlnCoordinateY without rlnCoordinateZ",
        ),
        (
            lambda d: (
                starfile.write(pd.DataFrame({"rlnAngleRot": [1.0]}), d / "angles.star")
                or d / "angles.star"
            ),
            "no particle table",
        ),
        (
            lambda d: (
                starfile.write(
                    pd.DataFrame(
                        {
                            "rlnCoordinateX": ["a"],
                            "rlnCoordinateY": [1.0],
                            "rlnCoordinateZ": [1.0],
                            "rlnPixelSize": [1.0],
                        }
                    ),
                    d / "text.star",
                )
                or d / "text.star"
            ),
            "rlnCoordinateX holds values that are not numbers",
        ),
        (
            lambda d: (
                starfile.write(
                    pd.DataFrame(
                        {
                            "rlnCoordinateX": [1.0],
                            "rlnCoordinateY": [1.0],
                            "rlnCoordinateZ": [1.0],
                            "rlnPixelSize": [0.0],
                        }
                    ),
                    d / "zero.star",
                )
                or d / "zero.star"
            ),
            "pixel size (rlnPixelSize) must be > 0",
        ),
        (lambda d: d / "missing.star", "no such file"),
        (
            lambda d: _write_star_text(
                d,
                "ragged.star",
                "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n1 2 3\n4 5 6 7\n",
            ),
            "not a readable STAR file (Error tokenizing data",
        ),
    ],
)
def test_bad_star_files_are_one_error_and_change_nothing(run_cli, tmp_path, make, fragment):
    (tmp_path / "in").mkdir()
    star = make(tmp_path / "in")
    tomogram = write_mrc(
        tmp_path / "in" / "tomogram.mrc", np.zeros((4, 5, 6), np.float32), voxel_size=1.0
    )
    assert run_cli(*preprocess_args([(tomogram, "map")], tmp_path)).exit_code == 0
    digest = tree_digest(tmp_path / "db")
    result = run_cli(
        *preprocess_args([(star, "star_file_geometric_segmentation")], tmp_path, mode="extend")
    )
    assert_one_line_error(result, str(star), fragment)
    assert tree_digest(tmp_path / "db") == digest
    # the standalone command gives the same error
    assert_one_line_error(_convert(run_cli, star, tmp_path / "out.json"), fragment)
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    "options, fragment",
    [
        ({"sphere_radius": 0}, "$.segmentation.star_files.p.sphere_radius: must be greater than 0"),
        ({"sphere_color_hex": "yellow"}, "star_files.p.sphere_color_hex: not a hex colour"),
        ({"tomogram_size": [1, 2]}, "star_files.p.tomogram_size: must have at least 3 items"),
        (
            {"star_file_coordinate_divisor": -4},
            "$.segmentation.star_files.p.star_file_coordinate_divisor: must be greater than 0",
        ),
        ({"radius": 3}, "$.segmentation.star_files.p: unknown key(s) radius"),
        ({"segmentation_id": "a/b"}, "$.segmentation.star_files.p.segmentation_id: 'a/b' is not"),
    ],
)
def test_bad_star_options_in_extra_data(run_cli, tmp_path, options, fragment):
    (tmp_path / "in").mkdir()
    star = tmp_path / "in" / "p.star"
    _relion31(star)
    extra = tmp_path / "in" / "extra.json"
    extra.write_text(json.dumps({"segmentation": {"star_files": {"p": options}}}))
    tomogram = write_mrc(
        tmp_path / "in" / "tomogram.mrc", np.zeros((4, 5, 6), np.float32), voxel_size=1.0
    )
    args = [(extra, "extra_data"), (tomogram, "map"), (star, "star_file_geometric_segmentation")]
    result = run_cli(*preprocess_args(args, tmp_path))
    assert_one_line_error(result, str(extra), fragment)
    assert not (tmp_path / "db").exists()


def test_bad_standalone_options(run_cli, tmp_path):
    star = tmp_path / "p.star"
    _relion31(star)
    output = tmp_path / "o.json"
    assert_one_line_error(
        _convert(run_cli, star, output, "--sphere-radius", "nan", "--tomo-name", "TS_01"),
        "--sphere-radius: must be a finite number",
    )
    assert_one_line_error(
        _convert(run_cli, star, output, "--star-file-coordinate-divisor", "0"),
        "--star-file-coordinate-divisor: must be greater than 0",
    )
    assert_one_line_error(_convert(run_cli, star, star), "would overwrite the STAR file")
    assert_one_line_error(
        _convert(run_cli, star, tmp_path / "nowhere" / "o.json", "--tomo-name", "TS_01"),
        "the output folder does not exist",
    )
    assert not output.exists()


def test_output_path_that_is_a_folder_is_one_line(run_cli, tmp_path):
    star = tmp_path / "p.star"
    _relion31(star)
    (tmp_path / "out").mkdir()
    result = _convert(run_cli, star, tmp_path / "out", "--tomo-name", "TS_01")
    assert_one_line_error(result, f"{tmp_path / 'out'}: is a folder")
