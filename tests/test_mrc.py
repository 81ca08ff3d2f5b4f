"""The map reader (DESIGN 8): header rules on generated maps, quirks on real ones."""

from __future__ import annotations

import bz2
import gzip
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from conftest import sha256, write_mrc

from pipeline.arrays import LazyArray
from pipeline.errors import InputFormatError, InputNotFoundError
from pipeline.inputs.mrc import read_map, read_mrc_layout
from pipeline.model import ExtraData


def _read(path: Path, tmp_path: Path, **kw) -> tuple[np.ndarray, object]:
    volume = read_map(path, tmp_path / "scratch", **kw).volume
    arr = volume.frames[0][0]
    return arr[tuple(slice(None) for _ in range(3))], volume


class TestReaderContract:
    """What every reader must do: the model, lazily, [x, y, z], positive voxel size."""

    def test_returns_lazy_xyz_array_with_geometry(self, tmp_path):
        data = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
        path = write_mrc(tmp_path / "m.mrc", data, voxel_size=(1.5, 2.0, 2.5))
        volume = read_map(path, tmp_path).volume
        arr = volume.frames[0][0]
        assert isinstance(arr, LazyArray) and not isinstance(arr, np.ndarray)
        assert arr.shape == (6, 5, 4)  # [x, y, z]
        assert volume.voxel_size == (1.5, 2.0, 2.5)
        assert volume.channel_ids == ("0",)
        np.testing.assert_array_equal(arr[1:4, 0:5, 2:3], data.transpose(2, 1, 0)[1:4, 0:5, 2:3])

    def test_input_file_is_not_modified(self, tmp_path):
        path = write_mrc(tmp_path / "m.mrc", np.ones((3, 3, 3), np.float32))
        before = sha256(path)
        path.chmod(0o444)  # a read-only input must be readable
        _read(path, tmp_path)
        assert sha256(path) == before


@pytest.mark.parametrize(
    "dtype, mode",
    [(np.int8, 0), (np.int16, 1), (np.float32, 2), (np.uint16, 6), (np.float16, 12)],
)
def test_every_supported_mode(tmp_path, dtype, mode):
    data = (np.arange(60).reshape(3, 4, 5) - 20).astype(dtype)
    if dtype == np.uint16:
        data = np.arange(60, dtype=dtype).reshape(3, 4, 5) * 1000
    path = write_mrc(tmp_path / "m.mrc", data)
    assert mrcfile.open(path, header_only=True).header.mode == mode
    got, _ = _read(path, tmp_path)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, data.transpose(2, 1, 0))


def test_mode0_with_unsigned_range_in_header_is_read_as_uint8(tmp_path):
    data = np.array([[[0, 127, 200, 255]]], dtype=np.uint8)
    path = write_mrc(tmp_path / "u.mrc", data.view(np.int8))
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.dmin, mrc.header.dmax = 0, 255
    got, _ = _read(path, tmp_path)
    assert got.dtype == np.uint8
    assert got.ravel().tolist() == [0, 127, 200, 255]


def test_mode0_imod_signed_flag(tmp_path):
    data = np.array([[[-5, 0, 5]]], dtype=np.int8)
    path = write_mrc(tmp_path / "s.mrc", data)
    raw = bytearray(path.read_bytes())
    raw[152:156] = np.int32(1146047817).tobytes()  # IMOD stamp
    raw[156:160] = np.int32(1).tobytes()  # bytes are signed
    raw[80:84] = np.float32(200).tobytes()  # a misleading dmax
    path.write_bytes(bytes(raw))
    got, _ = _read(path, tmp_path)
    assert got.dtype == np.int8 and got.ravel().tolist() == [-5, 0, 5]


def test_big_endian_map(tmp_path):
    data = np.arange(24, dtype=">f4").reshape(2, 3, 4)
    path = write_mrc(tmp_path / "be.mrc", data, voxel_size=2.0)
    assert path.read_bytes()[212] == 0x11  # machine stamp: big-endian
    got, volume = _read(path, tmp_path)
    assert got.dtype == np.dtype("=f4")
    np.testing.assert_array_equal(got, data.astype("<f4").transpose(2, 1, 0))
    assert volume.voxel_size == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("opener, suffix", [(gzip.open, ".gz"), (bz2.open, ".bz2")])
def test_compressed_maps_stream_to_scratch(tmp_path, opener, suffix):
    data = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    plain = write_mrc(tmp_path / "m.mrc", data, voxel_size=3.0)
    packed = tmp_path / f"m.mrc{suffix}"
    with opener(packed, "wb") as f:
        f.write(plain.read_bytes())
    got, volume = _read(packed, tmp_path)
    np.testing.assert_array_equal(got, data.transpose(2, 1, 0))
    assert volume.voxel_size == (3.0, 3.0, 3.0)


@pytest.mark.parametrize(
    "mapping", [(1, 2, 3), (3, 2, 1), (2, 1, 3), (3, 1, 2), (1, 3, 2), (2, 3, 1)]
)
def test_axis_order_permutations_give_the_same_xyz_data(tmp_path, mapping):
    xyz = np.random.default_rng(2).normal(size=(4, 3, 2)).astype(np.float32)
    # the file's (section, row, column) axes hold physical axes (maps, mapr, mapc)
    mapc, mapr, maps = (m - 1 for m in mapping)
    stored = np.transpose(xyz, (maps, mapr, mapc))
    path = write_mrc(tmp_path / "p.mrc", stored)
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = mapping
        mrc.header.cella = (8.0, 6.0, 4.0)  # 2 A per voxel along x, y, z
        mrc.header.mx, mrc.header.my, mrc.header.mz = 4, 3, 2
        starts = [0, 0, 0]
        starts[mapc], starts[mapr], starts[maps] = 10, 20, 30  # x=10 ... by file axis
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = (
            starts[mapc],
            starts[mapr],
            starts[maps],
        )
    got, volume = _read(path, tmp_path)
    np.testing.assert_array_equal(got, xyz)
    assert volume.voxel_size == (2.0, 2.0, 2.0)
    assert volume.original_axis_order == (mapc, mapr, maps)
    expected_start = [0, 0, 0]
    expected_start[mapc], expected_start[mapr], expected_start[maps] = 10, 20, 30
    assert volume.origin == tuple(2.0 * s for s in expected_start)


def test_voxel_size_uses_mx_not_n_and_falls_back_to_n(tmp_path):
    path = write_mrc(tmp_path / "m.mrc", np.zeros((2, 3, 4), np.float32))
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.cella = (40.0, 30.0, 20.0)
        mrc.header.mx, mrc.header.my, mrc.header.mz = 8, 3, 0  # x sampled at 8, z unset
    _, volume = _read(path, tmp_path)
    assert volume.voxel_size == (5.0, 10.0, 10.0)  # 40/8, 30/3, 20/nz=2


def test_origin_field_used_only_when_starts_are_zero(tmp_path):
    path = write_mrc(tmp_path / "o.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=2.0)
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.origin = (11.5, -3.0, 7.25)
    _, volume = _read(path, tmp_path)
    assert volume.origin == (11.5, -3.0, 7.25)
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.nxstart = -4
    _, volume = _read(path, tmp_path)
    assert volume.origin == (-8.0, 0.0, 0.0)


def test_zero_voxel_size_is_an_error_unless_overridden(tmp_path):
    path = write_mrc(tmp_path / "z.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=0.0)
    with pytest.raises(InputFormatError, match="voxel size") as info:
        read_map(path, tmp_path)
    assert str(path) in str(info.value)
    volume = read_map(path, tmp_path, ExtraData(volume_voxel_size=(7.84, 7.84, 7.84))).volume
    assert volume.voxel_size == (7.84, 7.84, 7.84)


def test_truncated_zero_byte_and_missing_files(tmp_path):
    full = write_mrc(tmp_path / "t.mrc", np.zeros((4, 4, 4), np.float32)).read_bytes()
    truncated = tmp_path / "trunc.mrc"
    truncated.write_bytes(full[:-10])
    with pytest.raises(InputFormatError, match="truncated"):
        read_mrc_layout(truncated, tmp_path)
    empty = tmp_path / "empty.mrc"
    empty.write_bytes(b"")
    with pytest.raises(InputFormatError, match="truncated"):
        read_mrc_layout(empty, tmp_path)
    with pytest.raises(InputNotFoundError, match="no such file"):
        read_mrc_layout(tmp_path / "missing.mrc", tmp_path)
    with pytest.raises(InputNotFoundError, match="not a file"):
        read_mrc_layout(tmp_path, tmp_path)


def test_unsupported_mode_and_garbage(tmp_path):
    raw = bytearray(write_mrc(tmp_path / "c.mrc", np.zeros((2, 2, 2), np.float32)).read_bytes())
    raw[12:16] = np.int32(4).tobytes()  # complex64
    bad = tmp_path / "complex.mrc"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputFormatError, match="unsupported MRC mode 4"):
        read_mrc_layout(bad, tmp_path)
    junk = tmp_path / "junk.map"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 2000)
    with pytest.raises(InputFormatError, match="not an MRC"):
        read_mrc_layout(junk, tmp_path)


# --- real files -------------------------------------------------------------------------


def test_real_axis_order_samples_agree(shared_data, tmp_path):
    folder = shared_data / "preprocessor/sample_volumes/mrc_axis_order"
    xyz, v_xyz = _read(folder / "fake_ccp4_XYZ.map", tmp_path)
    zyx, v_zyx = _read(folder / "fake_ccp4_ZYX.map", tmp_path)
    assert xyz.shape == (2, 3, 4)  # nx, ny, nz of the XYZ file
    np.testing.assert_array_equal(xyz, zyx)
    # CELLA 20 A over MX, MY, MZ = 4, 3, 2 in both headers
    assert v_xyz.voxel_size == v_zyx.voxel_size == pytest.approx((5.0, 20 / 3, 10.0))
    assert v_xyz.origin == v_zyx.origin
    assert v_xyz.original_axis_order == (0, 1, 2) and v_zyx.original_axis_order == (2, 1, 0)
    # independent check with mrcfile: the ZYX file stores x as sections, z as columns
    with mrcfile.open(folder / "fake_ccp4_ZYX.map", permissive=True) as mrc:
        np.testing.assert_array_equal(zyx, np.asarray(mrc.data))
    with mrcfile.open(folder / "fake_ccp4_XYZ.map", permissive=True) as mrc:
        np.testing.assert_array_equal(xyz, np.asarray(mrc.data).transpose(2, 1, 0))
    # (these samples hold constant data: the value order is covered by the generated
    # permutation test above; here shape and geometry are what the headers decide)


def test_real_emd1832_geometry(emd1832_map, tmp_path):
    got, volume = _read(emd1832_map, tmp_path)
    assert got.shape == (64, 64, 64)
    assert volume.voxel_size == (5.7, 5.7, 5.7)
    assert volume.origin == (-182.4, -182.4, -182.4)
    with mrcfile.open(emd1832_map) as mrc:
        np.testing.assert_array_equal(got, np.asarray(mrc.data).transpose(2, 1, 0))


def test_real_quirky_maps(shared_data, tmp_path):
    real = shared_data / "real/mrc_map"
    # non-standard axis order 3,1,2 with symmetry records and mx != nx
    got, v = _read(real / "EMD-3001.map", tmp_path)
    with mrcfile.open(real / "EMD-3001.map", permissive=True) as mrc:
        file_data = np.asarray(mrc.data)  # (s, r, c) = (y, x, z) physical
    np.testing.assert_array_equal(got, file_data.transpose(1, 0, 2))
    assert v.voxel_size == pytest.approx((17.93 / 40, 4.71 / 12, 33.03 / 72))
    # gzip and the plain file give the same data
    plain, vp = _read(real / "EMD-3197.map", tmp_path)
    packed, vg = _read(real / "emd_3197.map.gz", tmp_path)
    np.testing.assert_array_equal(plain, packed)
    assert vp.origin == vg.origin == (-2 * 11.4, 0.0, 0.0)
    half, _ = _read(real / "emd_3197_f16.mrc", tmp_path)
    assert half.dtype == np.float16
    with mrcfile.open(real / "emd_3197_f16.mrc", permissive=True) as mrc:
        np.testing.assert_array_equal(half, np.asarray(mrc.data).transpose(2, 1, 0))
    # RELION's float16 rewrite of the same map (two voxels differ in the file itself)
    assert np.mean(np.abs(half - plain) < 2e-3 * np.abs(plain).max()) > 0.999
    small, _ = _read(real / "unsigned_ints.mrc", tmp_path)
    assert small.dtype == np.uint8
    with pytest.raises(InputFormatError, match="truncated"):
        read_map(real / "test_data_corrupt_header.map", tmp_path)


def test_input_is_only_ever_opened_read_only(tmp_path, monkeypatch):
    data = np.random.default_rng(9).normal(size=(6, 7, 8)).astype(np.float32)
    path = write_mrc(tmp_path / "m.mrc", data)
    opened: list[tuple[str, int]] = []
    real_open = os.open

    def spy(file, flags, *args, **kwargs):
        opened.append((str(file), flags))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    got, _ = _read(path, tmp_path)
    np.testing.assert_array_equal(got, data.transpose(2, 1, 0))
    ours = [flags for name, flags in opened if name == str(path)]
    assert ours, "the data was not read through os.open"
    assert all(flags & (os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_TRUNC) == 0 for flags in ours)


def test_big_endian_mode0_without_machine_stamp(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.int8).reshape(2, 3, 4)
    path = write_mrc(tmp_path / "be0.mrc", data.astype(">i1"))
    raw = bytearray(path.read_bytes())
    header = np.frombuffer(bytes(raw[:1024]), dtype=mrcfile.dtypes.HEADER_DTYPE)[0]
    swapped = np.array(header).astype(mrcfile.dtypes.HEADER_DTYPE.newbyteorder(">"))
    raw[:1024] = swapped.tobytes()
    raw[212:216] = b"\0\0\0\0"  # no machine stamp
    path.write_bytes(bytes(raw))
    got, _ = _read(path, tmp_path)
    np.testing.assert_array_equal(got, data.transpose(2, 1, 0))


def test_corrupt_gzip_is_an_input_error(tmp_path):
    data = np.random.default_rng(0).normal(size=(20, 20, 20)).astype(np.float32)
    plain = write_mrc(tmp_path / "m.mrc", data)
    packed = bytearray(gzip.compress(plain.read_bytes()))
    for i in range(200, 400):
        packed[i] ^= 0x5A
    bad = tmp_path / "bad.mrc.gz"
    bad.write_bytes(bytes(packed))
    with pytest.raises(InputFormatError, match="cannot decompress gzip") as info:
        read_map(bad, tmp_path / "scratch")
    assert str(bad) in str(info.value)
    assert not list((tmp_path / "scratch").glob("*"))  # the partial copy is removed


def test_file_shrinking_during_a_run_is_an_input_error(tmp_path):
    path = write_mrc(tmp_path / "m.mrc", np.zeros((8, 8, 8), np.float32))
    volume = read_map(path, tmp_path).volume
    with open(path, "r+b") as f:
        f.truncate(1024 + 100)
    with pytest.raises(InputFormatError, match="truncated") as info:
        volume.frames[0][0][0:8, 0:8, 0:8]
    assert str(path) in str(info.value)


def test_compressed_header_only_without_scratch(tmp_path):
    plain = write_mrc(tmp_path / "m.mrc", np.zeros((3, 4, 5), np.float32), voxel_size=2.0)
    packed = tmp_path / "m.mrc.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    volume = read_map(packed, None).volume
    assert volume.shape == (5, 4, 3) and volume.voxel_size == (2.0, 2.0, 2.0)
    with pytest.raises(RuntimeError, match="not decompressed"):
        volume.frames[0][0][0:1, 0:1, 0:1]
