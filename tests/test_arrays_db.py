"""Raw region I/O, the zarr 2 writer and the zip sink, read back with zarr-python and zipfile."""

from __future__ import annotations

import json
import threading
import zipfile

import numpy as np
import pytest
import zarr
from numcodecs import Blosc
from zarr.storage import ZipStore

from pipeline.arrays import CastArray, RawArrayFile, TransposedArray, local_raw
from pipeline.db.sinks import ZipSink
from pipeline.db.writer import DataWriter
from pipeline.db.zarr2 import encode_block
from pipeline.options import Compressor


def test_raw_file_regions_read_and_write_like_numpy(tmp_path):
    ref = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    f = RawArrayFile.create(tmp_path / "a.raw", ref.shape, ref.dtype)
    f.write((0, 0, 0), ref[:3])
    f.write((3, 0, 0), ref[3:, :4])
    f.write((3, 4, 0), ref[3:, 4:])
    for key in [np.s_[:, :, :], np.s_[1:4, 2:5, 3:8], np.s_[5:6, 0:7, 7:8], np.s_[2:2, :, :]]:
        np.testing.assert_array_equal(f[key], ref[key])
    readonly = RawArrayFile(tmp_path / "a.raw", ref.shape, np.dtype(">f4").newbyteorder("<"))
    with pytest.raises(PermissionError):
        readonly.write((0, 0, 0), ref[:1])


def test_transposed_view(tmp_path):
    zyx = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    raw = RawArrayFile.create(tmp_path / "t.raw", zyx.shape, zyx.dtype)
    raw.write((0, 0, 0), zyx)
    xyz = TransposedArray(raw, (2, 1, 0))
    assert xyz.shape == (7, 6, 5)
    np.testing.assert_array_equal(xyz[1:4, :, 2:5], zyx.T[1:4, :, 2:5])
    assert xyz[0:7, 0:6, 0:5].flags.f_contiguous
    np.testing.assert_array_equal(xyz[0:7, 0:6, 0:5], zyx.T)


def test_local_raw_sees_through_views_but_not_urls(tmp_path):
    """Local raw files, transposed or converted, are read in place; a URL's raw block is not
    (ranged requests through fsspec), nor anything else."""
    from pipeline.inputs.source import RemoteRawArray

    raw = RawArrayFile.create(tmp_path / "r.raw", (2, 3, 4), np.dtype(np.uint16))
    assert local_raw(raw)
    assert local_raw(TransposedArray(CastArray(raw, np.dtype(np.float32)), (2, 1, 0)))
    assert local_raw(CastArray(TransposedArray(raw, (2, 1, 0)), np.dtype(np.float32)))
    url = RemoteRawArray("http://127.0.0.1:9/m.mrc", (2, 3, 4), np.dtype(np.uint16), 1024, {}, 1048)
    assert not local_raw(url) and not local_raw(TransposedArray(url, (2, 1, 0)))
    assert not local_raw(np.zeros((2, 3, 4)))


def test_encode_block_pads_edge_chunks():
    codec = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    block = np.arange(3 * 5, dtype=np.int16).reshape(3, 5)
    chunks = dict(encode_block(block, (4, 0), (4, 4), codec))
    assert sorted(chunks) == [(1, 0), (1, 1)]
    edge = np.frombuffer(codec.decode(chunks[(1, 1)]), np.int16).reshape(4, 4)
    np.testing.assert_array_equal(edge[:3, :1], block[:, 4:])
    assert not edge[3:].any() and not edge[:, 1:].any()
    with pytest.raises(ValueError, match="chunk grid"):
        list(encode_block(block, (1, 0), (4, 4), codec))


@pytest.mark.parametrize("order", ["C", "F"])
def test_zip_hierarchy_reads_back_with_zarr_and_zipfile(tmp_path, order):
    data = np.random.default_rng(1).normal(size=(70, 33, 5)).astype(np.float32)
    sink = ZipSink(tmp_path / "data.zip")
    writer = DataWriter(sink, Compressor.LZ4)
    target = writer.array(
        "volume_data/1/0/0", data.shape, data.dtype, (64, 64, 64), attrs={"note": "x"}, order=order
    )
    block = np.asfortranarray(data) if order == "F" else data
    threads = [
        threading.Thread(target=writer.write_block, args=(target, block[a:b], (a, 0, 0)))
        for a, b in [(0, 64), (64, 70)]
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.finish()
    sink.close()
    with zipfile.ZipFile(tmp_path / "data.zip") as zf:
        assert zf.testzip() is None
        names = set(zf.namelist())
        assert {
            ".zgroup",
            "volume_data/.zgroup",
            "volume_data/1/.zgroup",
            "volume_data/1/0/.zgroup",
            "volume_data/1/0/0/.zarray",
            "volume_data/1/0/0/.zattrs",
            "volume_data/1/0/0/0.0.0",
            "volume_data/1/0/0/1.0.0",
        } == names
        meta = json.loads(zf.read("volume_data/1/0/0/.zarray"))
        assert meta["zarr_format"] == 2 and meta["order"] == order
        assert meta["compressor"]["cname"] == "lz4" and meta["compressor"]["clevel"] == 5
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
    root = zarr.open_group(store=ZipStore(tmp_path / "data.zip", mode="r"), mode="r", zarr_format=2)
    arr = root["volume_data/1/0/0"]
    assert arr.chunks == (64, 33, 5)
    assert dict(arr.attrs) == {"note": "x"}
    np.testing.assert_array_equal(arr[:], data)


def test_zip_is_deterministic_and_refuses_duplicates(tmp_path):
    outputs = []
    for name in ("a.zip", "b.zip"):
        sink = ZipSink(tmp_path / name)
        sink.put("k/1", b"one")
        sink.put("k/2", b"two" * 1000)
        with pytest.raises(ValueError, match="written twice"):
            sink.put("k/1", b"again")
        sink.close()
        outputs.append((tmp_path / name).read_bytes())
    assert outputs[0] == outputs[1]


def test_zip_sink_is_a_zarr_zip_store(tmp_path):
    data = np.arange(100, dtype=np.uint16).reshape(10, 10)
    sink = ZipSink(tmp_path / "z.zip")
    writer = DataWriter(sink, Compressor.ZSTD)
    writer.write_block(writer.array("a", data.shape, data.dtype, (4, 4)), data, (0, 0))
    writer.finish()
    sink.close()
    store = zarr.storage.ZipStore(tmp_path / "z.zip", mode="r")
    arr = zarr.open_array(store=store, path="a", mode="r", zarr_format=2)
    np.testing.assert_array_equal(arr[:], data)
