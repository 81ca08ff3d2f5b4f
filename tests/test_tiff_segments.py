"""OME-TIFF regions read segment by segment equal tifffile's own reading of the whole image,
for strips, tiles, compression, predictors, byte orders and samples (issue 12)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.inputs.ometiff import read_ometiff_image

# (name, tifffile.imwrite options)
LAYOUTS = [
    ("strips-raw", {"rowsperstrip": 7}),
    ("one-strip-per-plane", {}),
    ("tiles-raw", {"tile": (32, 48)}),
    ("strips-zlib-predictor", {"rowsperstrip": 5, "compression": "zlib", "predictor": True}),
    ("tiles-zlib", {"tile": (16, 32), "compression": "zlib"}),
    ("tiles-zlib-predictor", {"tile": (16, 48), "compression": "zlib", "predictor": True}),
    ("big-endian", {"rowsperstrip": 6, "byteorder": ">"}),
    ("big-endian-tiles", {"tile": (16, 16), "byteorder": ">"}),
]


def _write(path: Path, data: np.ndarray, axes: str, **options: object) -> None:
    tifffile.imwrite(
        path,
        data,
        ome=True,
        photometric="minisblack",
        metadata={"axes": axes, "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 1.0},
        **options,
    )


def _regions(shape: tuple[int, int, int], rng: np.random.Generator, n: int = 12):
    yield tuple(slice(0, s) for s in shape)
    for _ in range(n):
        bounds = []
        for s in shape:
            a = int(rng.integers(0, s))
            b = int(rng.integers(a + 1, s + 1))
            bounds.append(slice(a, b))
        yield tuple(bounds)


@pytest.mark.parametrize(("name", "options"), LAYOUTS, ids=[n for n, _ in LAYOUTS])
@pytest.mark.parametrize("dtype", ["u2", "f4"])
def test_regions_equal_tifffile(tmp_path: Path, name: str, options: dict, dtype: str) -> None:
    if dtype == "f4" and options.get("predictor"):
        pytest.skip("tifffile writes the floating-point predictor only with imagecodecs")
    rng = np.random.default_rng(len(name))
    # Z, C, Y, X with sizes that are not multiples of the strips or tiles
    data = (rng.random((5, 2, 70, 83)) * 60000).astype(dtype)
    path = tmp_path / "a.ome.tif"
    _write(path, data, "ZCYX", **options)
    truth = tifffile.imread(path)  # tifffile's own reading of the whole image
    np.testing.assert_array_equal(truth, data)
    volume = read_ometiff_image(path, None).volume
    arrays = volume.frames[0]
    assert arrays[0].pixels.segments is not None  # read here, not through zarr
    for c, arr in enumerate(arrays):
        xyz = truth[:, c].transpose(2, 1, 0)
        assert arr.shape == xyz.shape
        for region in _regions(arr.shape, rng):
            got = arr[region]
            assert got.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(got, xyz[region])


@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_rgb_samples_are_channels(tmp_path: Path, planar: str) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(0, 255, (4, 40, 50, 3), dtype=np.uint8)  # Z, Y, X, S
    path = tmp_path / "rgb.ome.tif"
    stored = data if planar == "contig" else np.moveaxis(data, -1, 1)
    tifffile.imwrite(
        path,
        stored,
        ome=True,
        photometric="rgb",
        planarconfig=planar,
        rowsperstrip=8,
        metadata={"axes": "ZYXS" if planar == "contig" else "ZSYX", "PhysicalSizeX": 1.0,
                  "PhysicalSizeY": 1.0, "PhysicalSizeZ": 1.0},
    )
    volume = read_ometiff_image(path, None).volume
    arrays = volume.frames[0]
    assert len(arrays) == 3
    # separate sample planes are read through tifffile's zarr store; both ways agree
    assert (arrays[0].pixels.segments is not None) == (planar == "contig")
    for c, arr in enumerate(arrays):
        xyz = data[..., c].transpose(2, 1, 0)
        for region in _regions(arr.shape, rng, 5):
            np.testing.assert_array_equal(arr[region], xyz[region])


def test_time_series_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = rng.integers(0, 4000, (3, 4, 2, 30, 20), dtype=np.uint16)  # T, Z, C, Y, X
    path = tmp_path / "t.ome.tif"
    _write(path, data, "TZCYX", tile=(16, 16), compression="zlib")
    volume = read_ometiff_image(path, None).volume
    assert len(volume.frames) == 3
    for t, frame in enumerate(volume.frames):
        for c, arr in enumerate(frame):
            np.testing.assert_array_equal(arr[:, :, :], data[t, :, c].transpose(2, 1, 0))
            np.testing.assert_array_equal(arr[3:9, 5:21, 1:3], data[t, 1:3, c, 5:21, 3:9].T)
