"""The kind registration (``pipeline/inputs/kinds.py``) and the shared unit tables."""

from __future__ import annotations

import pytest

from pipeline.errors import InputNotFoundError, OptionError
from pipeline.inputs.kinds import (
    DECODED_KINDS,
    DIRECTORY_KINDS,
    IN_PLACE_KINDS,
    VOLUME_KINDS,
    WORKER_READ_KINDS,
    InputKind,
    check_input_path,
    facts_of,
    guess_kind,
    reader_of,
)
from pipeline.inputs.units import angstrom_per, length_name, time_name

K = InputKind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("emd_1832.map", K.MAP),
        ("TS_026.REC", K.MAP),
        ("emd_3197.map.gz", K.MAP),
        ("stack.mrcs.bz2", K.MAP),
        ("brain.nii.gz", K.NII_VOLUME),
        ("brain.nii", K.NII_VOLUME),
        ("cells.ome.tif", K.OMETIFF_IMAGE),
        ("big.OME.BTF", K.OMETIFF_IMAGE),
        ("emd_1832.hff", K.SFF),
        ("particles.star", K.STAR_FILE_GEOMETRIC_SEGMENTATION),
        ("s3://bucket/image.zarr/", K.OMEZARR),
    ],
)
def test_kind_guessed_from_the_name(name, kind):
    assert guess_kind(name) is kind


def test_a_folder_with_zarr_metadata_is_omezarr(tmp_path):
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "zarr.json").write_text("{}")
    assert guess_kind(tmp_path / "image") is K.OMEZARR


def test_an_unclaimed_name_lists_the_guessed_endings():
    with pytest.raises(OptionError, match=r"give --input-kind \(names guessed: .*\.mrc.*\(map\)"):
        guess_kind("annotations.json")


def test_path_errors_say_what_the_kind_expects(tmp_path):
    (tmp_path / "image.zarr").mkdir()
    (tmp_path / "m.map").write_bytes(b"")
    with pytest.raises(InputNotFoundError, match=r"must be a file .*looks like a omezarr input"):
        check_input_path(K.MAP, tmp_path / "image.zarr")
    with pytest.raises(InputNotFoundError, match=r"must be a directory .*looks like a map input"):
        check_input_path(K.OMEZARR, tmp_path / "m.map")
    with pytest.raises(InputNotFoundError, match="no such file or directory"):
        check_input_path(K.MAP, tmp_path / "missing.map")
    check_input_path(K.MASK, tmp_path / "m.map")


def test_the_kind_sets_runs_depend_on():
    sets = {
        "volume": VOLUME_KINDS,
        "folder": DIRECTORY_KINDS,
        "in place": IN_PLACE_KINDS,
        "decoded": DECODED_KINDS,
        "workers read": WORKER_READ_KINDS,
    }
    volumes = {K.MAP, K.OMEZARR, K.NII_VOLUME, K.OMETIFF_IMAGE}
    assert sets == {
        "volume": volumes,
        "folder": {K.OMEZARR},
        "in place": {K.MAP, K.MASK, K.OMEZARR},
        "decoded": {K.SFF, K.MASK, K.NII_SEGMENTATION},
        "workers read": volumes | {K.MASK, K.NII_SEGMENTATION, K.OMETIFF_SEGMENTATION},
    }


@pytest.mark.parametrize("kind", list(InputKind), ids=lambda k: k.value)
def test_every_registered_function_can_be_imported(kind):
    assert InputKind(kind.value) is kind
    if kind.info.reader is None:
        with pytest.raises(KeyError):
            reader_of(kind)
    else:
        assert callable(reader_of(kind))
    assert kind.info.facts is None or callable(facts_of(kind))


def test_one_length_table_for_names_and_symbols():
    assert angstrom_per("nm") == angstrom_per("nanometer") == 10.0
    assert angstrom_per("µm") == angstrom_per("μm") == angstrom_per("um") == 1e4
    assert angstrom_per("micron") == 1e4 and angstrom_per("mm") == 1e7
    assert angstrom_per("Å") == angstrom_per("\u212b") == angstrom_per("A") == 1.0
    assert angstrom_per("Pm") == 1e25 and angstrom_per("pm") == 1e-2  # symbols keep their case
    assert angstrom_per("pixel") is None and length_name("furlong") is None


def test_one_time_table_for_names_and_symbols():
    assert time_name("ms") == time_name("msec") == time_name("millisecond") == "millisecond"
    assert time_name("µs") == time_name("us") == "microsecond"
    assert time_name("min") == "minute" and time_name("fortnight") is None


def test_a_refused_segmentation_file_is_pointed_to_its_kind(tmp_path):
    from pipeline.errors import UnsupportedInputError
    from pipeline.inputs.application_specific import read_application_specific
    from pipeline.inputs.kinds import kinds_named

    assert kinds_named("labels.mrc.gz") == [K.MAP, K.MASK]
    (tmp_path / "labels.mrc").write_bytes(b"\0" * 1024)
    with pytest.raises(UnsupportedInputError, match=r"\(\.mrc; use --input-kind mask\)"):
        read_application_specific(tmp_path / "labels.mrc", None, None)
