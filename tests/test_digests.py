# ruff: noqa: E501  (the stored digests are long lines)
"""Behaviour unchanged: entries built from the sample inputs are compared byte for byte with
entries built by the code at commit 7b89536 (before the structure issue 13 started).

Every file of an entry and every member of its data.zip is hashed (sha256) and compared with
the digests stored below. A digest may change only where an issue changes behaviour on purpose;
the commit that changes it says which issue and why. To print the current digests (to paste
below after such a change):

    PYTHONPATH=$PWD python3 tests/test_digests.py

Cases whose sample files are absent (``../shared/test-data``) are skipped with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CELLSTAR_SHARED_DATA", ROOT.parent / "shared" / "test-data"))
SAMPLES = SHARED / "preprocessor"

EMD_1832_MAP = SAMPLES / "sample_volumes/emdb/EMD-1832.map"
EMD_1832_SFF = SAMPLES / "sample_segmentations/emdb_sff/emd_1832.hff"
GEOMETRIC = SAMPLES / "sample_segmentations/geometric_segmentations"
EXTRA_10070 = SAMPLES / "extra_data/empiar/empiar-10070/extra_data_empiar_10070.json"
ANNOTATIONS = SAMPLES / "sample_annotations/annotations_example.json"

Inputs = list[tuple[Path, str]]


def _generated(work: Path) -> Path:
    """The bundled sample (test-data/generate.py) written into ``work``."""
    out = work / "generated"
    if not (out / "sample_map.mrc").is_file():
        subprocess.run(
            [sys.executable, str(ROOT / "test-data" / "generate.py"), str(out)],
            check=True,
            capture_output=True,
        )
    return out


def _require(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            pytest.skip(f"sample not found: {path}")


# Each case: the runs of one entry, as (mode, inputs, extra options), in order.
def _case_generated(work: Path) -> list[tuple[str, Inputs, list[str]]]:
    out = _generated(work)
    inputs = [(out / "sample_map.mrc", "map"), (out / "sample_mask.mrc", "mask")]
    return [("add", inputs, [])]


def _case_emd_1832_sff_u1(work: Path) -> list[tuple[str, Inputs, list[str]]]:
    _require(EMD_1832_MAP, EMD_1832_SFF)
    inputs = [(EMD_1832_MAP, "map"), (EMD_1832_SFF, "sff")]
    return [("add", inputs, ["--quantize-dtype-str", "u1"])]


def _annotations_for(work: Path, segment: int | None) -> Path:
    """The sample annotations with their references moved to what the entry has (issue 10:
    the sample names lattice "0" segment 2371559 at frames 0..17, which these entries do not
    have, and is refused): segment ``segment`` of lattice "0" at frame 0, or (None) no
    descriptions and segment annotations. Keys stay in the sample's order."""
    document = json.loads(ANNOTATIONS.read_text())
    if segment is None:
        document["descriptions"], document["segment_annotations"] = {}, []
    for item in [*document["descriptions"].values(), *document["segment_annotations"]]:
        item["time"] = 0
        (item.get("target_id") or item)["segment_id"] = segment
    path = work / f"annotations-{segment}.json"
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=4))
    return path


def _case_emd_1832_extend(work: Path) -> list[tuple[str, Inputs, list[str]]]:
    _require(EMD_1832_MAP, EMD_1832_SFF, ANNOTATIONS)
    annotations = _annotations_for(work, 85)
    return [
        ("add", [(EMD_1832_MAP, "map")], []),
        ("extend", [(EMD_1832_SFF, "sff"), (annotations, "custom_annotations")], []),
    ]


def _case_emd_1832_geometric(work: Path) -> list[tuple[str, Inputs, list[str]]]:
    first = GEOMETRIC / "geometric_segmentation_1.json"
    second = GEOMETRIC / "geometric_segmentation_2.json"
    _require(EMD_1832_MAP, first, second)
    inputs = [
        (EMD_1832_MAP, "map"),
        (first, "geometric_segmentation"),
        (second, "geometric_segmentation"),
    ]
    return [("add", inputs, [])]


def _case_emd_1832_extra_data(work: Path) -> list[tuple[str, Inputs, list[str]]]:
    _require(EMD_1832_MAP, EXTRA_10070, ANNOTATIONS)
    inputs = [
        (EXTRA_10070, "extra_data"),
        (EMD_1832_MAP, "map"),
        (_annotations_for(work, None), "custom_annotations"),
    ]
    return [("add", inputs, ["--min-downsampling-level", "4", "--remove-original-resolution"])]


CASES: dict[str, Callable[[Path], list[tuple[str, Inputs, list[str]]]]] = {
    "generated": _case_generated,
    "emd-1832-sff-u1": _case_emd_1832_sff_u1,
    "emd-1832-extend": _case_emd_1832_extend,
    "emd-1832-geometric": _case_emd_1832_geometric,
    "emd-1832-extra-data": _case_emd_1832_extra_data,
}

# sha256 of every file of the entry ("data.zip" included) and of every data.zip member
# ("data.zip:<member>"), from the code at commit 7b89536. Change a digest only where an issue
# changes behaviour on purpose, and say so in the commit.
DIGESTS: dict[str, dict[str, str]] = {
    "generated": {
        "annotations.json": "ddb6667bc994c401b218b69d7bf3d47c7e44270e69558b72af28b7ec051704eb",
        "data.zip": "f7d6d240c5d0c91cd93f3aa58e0ee9661d3b958bb110705b99ac853325e2f04d",
        "data.zip:volume_data/1/0/0/.zarray": "d8c467db465b5f22603decb31e51da660a2c1d13af30780345c3e7e7fbe45bc1",
        "data.zip:volume_data/1/0/0/0.0.0": "8795584eaab67df9637423dd5a63e429ea27636958207ea67da63a6243dca80a",
        "data.zip:volume_data/2/0/0/.zarray": "dd812dcf4603d05f11c114a43ca8eef6442a3de51834dab83ff3c13d87da9c13",
        "data.zip:volume_data/2/0/0/0.0.0": "06faf7e4b4586c39c005bb098ad516f8819e25370e8bea04d1406717cc4dd569",
        "data.zip:lattice_segmentation_data/sample_mask/1/0/grid/.zarray": "df2b6343a37c432c4e54fbd8be8023c5d5fc7238ba7c45796b9aec27d5e42b4a",
        "data.zip:lattice_segmentation_data/sample_mask/1/0/grid/0.0.0": "c1fbdffc2f3b171331ea983c46aed6301912271b62fffafd3b43c71935187ddc",
        "data.zip:lattice_segmentation_data/sample_mask/1/0/set_table/.zarray": "2fcdc5c9755175bf75e1af32da6f520315c44de34e61f4c4ea4075865fed5dba",
        "data.zip:lattice_segmentation_data/sample_mask/1/0/set_table/0": "28af40a854a9e22ded52a94f77ae744f6f954d9a66ffb3cee834b70910045df3",
        "data.zip:lattice_segmentation_data/sample_mask/2/0/grid/.zarray": "d76781aaf7ceb102c4a45d3bd14e8e4c84aa246db2e4d73c59a15b50f86f7930",
        "data.zip:lattice_segmentation_data/sample_mask/2/0/grid/0.0.0": "a42ecf3bdec992c1cf0d293516b3984a808531178e81dc31eab8b9e2c0355658",
        "data.zip:lattice_segmentation_data/sample_mask/2/0/set_table/.zarray": "2fcdc5c9755175bf75e1af32da6f520315c44de34e61f4c4ea4075865fed5dba",
        "data.zip:lattice_segmentation_data/sample_mask/2/0/set_table/0": "a9822a281faa64b7ce5dbeb918df4217b4737270fc07950057833872517bd0a1",
        "data.zip:.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/sample_mask/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/sample_mask/1/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/sample_mask/1/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/sample_mask/2/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/sample_mask/2/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "metadata.json": "ee4812e51206653ecadae479deca865171837229c7f351adea600955d028556f"
    },
    "emd-1832-sff-u1": {
        "annotations.json": "f2e6317fd2d86ff077e27b3835b07e1fabfc79839197fb609ece97f5825676b0",
        "data.zip": "d95487eac1fd29b084112ac1966d7bc9cb69d49d46d6bd0cbd8248014bc00eb4",
        "data.zip:volume_data/1/0/0/.zarray": "dcc9d9381d7fbe3aab8af01a96f8c7db786b8854b1ee461711a5e1838c9408a9",
        "data.zip:volume_data/1/0/0/.zattrs": "8bcaee7f9f84eda3be99dfcfbdab983d6d48e8753f821a6406c109c29a119e5c",
        "data.zip:volume_data/1/0/0/0.0.0": "5be3fd1f34771c52d7de8cc02370ab71c4c64b0e764df5f23940f79810b14a09",
        "data.zip:volume_data/2/0/0/.zarray": "64ea3139c7b465094676a3d1aa86d892fb1c3cce51879bf703f01a8756dfc194",
        "data.zip:volume_data/2/0/0/.zattrs": "c624603556d672e8fdb0aeccc71459aece630eb8f97bf27c072ee95d51bfad84",
        "data.zip:volume_data/2/0/0/0.0.0": "120915a787660d7f8f8f994d4d193e3bc9eca750f579c311581ad878e9e6440a",
        "data.zip:lattice_segmentation_data/0/1/0/grid/.zarray": "df2b6343a37c432c4e54fbd8be8023c5d5fc7238ba7c45796b9aec27d5e42b4a",
        "data.zip:lattice_segmentation_data/0/1/0/grid/0.0.0": "bfb75e2f53074142ac459f02ba28449a74277942debd1f9b868a580c4efdcefa",
        "data.zip:lattice_segmentation_data/0/1/0/set_table/.zarray": "2fcdc5c9755175bf75e1af32da6f520315c44de34e61f4c4ea4075865fed5dba",
        "data.zip:lattice_segmentation_data/0/1/0/set_table/0": "a8219d80051f9e3727615a8b158380e36b2ef8b0a96b0cb9c2cc240b8cd98b75",
        "data.zip:lattice_segmentation_data/0/2/0/grid/.zarray": "d76781aaf7ceb102c4a45d3bd14e8e4c84aa246db2e4d73c59a15b50f86f7930",
        "data.zip:lattice_segmentation_data/0/2/0/grid/0.0.0": "a419ec1abf1221f3b69fa379534327ef8b3076a336e7f105267ad8f9620cbf0c",
        "data.zip:lattice_segmentation_data/0/2/0/set_table/.zarray": "2fcdc5c9755175bf75e1af32da6f520315c44de34e61f4c4ea4075865fed5dba",
        "data.zip:lattice_segmentation_data/0/2/0/set_table/0": "4d1f34889de05ebcdd5beb3da43b46e60d077e22dd67a40246afaa3f51e5059b",
        "data.zip:.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/1/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/1/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/2/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/2/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "metadata.json": "38c0244606ad5fced899c9ad555b74df74d5e55010c4b3ab51bd1ba5fd125d8c"
    },
    "emd-1832-extend": {
        "annotations.json": "50562b33ff731527f8f3b1b5d3f3e7919a5dbf49cad2ef2396f8ecf3ca94f148",
        "data.zip": "1ba6b528f69b97c352dbb68ce02521b8d7f624d27f22f6bdd5525d7a9d9344c7",
        "data.zip:volume_data/1/0/0/.zarray": "d8c467db465b5f22603decb31e51da660a2c1d13af30780345c3e7e7fbe45bc1",
        "data.zip:volume_data/1/0/0/0.0.0": "661c8c09c49d8d0bb1971892228d1827ab1cd80d283fdc1d33ee796a00b45a2f",
        "data.zip:volume_data/2/0/0/.zarray": "dd812dcf4603d05f11c114a43ca8eef6442a3de51834dab83ff3c13d87da9c13",
        "data.zip:volume_data/2/0/0/0.0.0": "f2584d5181313f0b81b6fb35674ddd219687374b575fe91c7b5b6d3af1570436",
        "data.zip:.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/1/0/grid/.zarray": "df2b6343a37c432c4e54fbd8be8023c5d5fc7238ba7c45796b9aec27d5e42b4a",
        "data.zip:lattice_segmentation_data/0/1/0/grid/0.0.0": "bfb75e2f53074142ac459f02ba28449a74277942debd1f9b868a580c4efdcefa",
        "data.zip:lattice_segmentation_data/0/1/0/set_table/.zarray": "2fcdc5c9755175bf75e1af32da6f520315c44de34e61f4c4ea4075865fed5dba",
        "data.zip:lattice_segmentation_data/0/1/0/set_table/0": "a8219d80051f9e3727615a8b158380e36b2ef8b0a96b0cb9c2cc240b8cd98b75",
        "data.zip:lattice_segmentation_data/0/2/0/grid/.zarray": "d76781aaf7ceb102c4a45d3bd14e8e4c84aa246db2e4d73c59a15b50f86f7930",
        "data.zip:lattice_segmentation_data/0/2/0/grid/0.0.0": "a419ec1abf1221f3b69fa379534327ef8b3076a336e7f105267ad8f9620cbf0c",
        "data.zip:lattice_segmentation_data/0/2/0/set_table/.zarray": "2fcdc5c9755175bf75e1af32da6f520315c44de34e61f4c4ea4075865fed5dba",
        "data.zip:lattice_segmentation_data/0/2/0/set_table/0": "4d1f34889de05ebcdd5beb3da43b46e60d077e22dd67a40246afaa3f51e5059b",
        "data.zip:lattice_segmentation_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/1/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/1/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/2/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:lattice_segmentation_data/0/2/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "metadata.json": "5b051838fc2e7d5787d5f833de05becf02b310e87ccab8b890ff552f750ebcd8"
    },
    "emd-1832-geometric": {
        "annotations.json": "780c7cb094b71b93fa93f13fd1816d9c80728b4fab7c33c9eb6baf6f481728b2",
        "data.zip": "7a043c51efe41223840190b842ec169343a50b6234f5ebf640917297ab486ae9",
        "data.zip:volume_data/1/0/0/.zarray": "d8c467db465b5f22603decb31e51da660a2c1d13af30780345c3e7e7fbe45bc1",
        "data.zip:volume_data/1/0/0/0.0.0": "661c8c09c49d8d0bb1971892228d1827ab1cd80d283fdc1d33ee796a00b45a2f",
        "data.zip:volume_data/2/0/0/.zarray": "dd812dcf4603d05f11c114a43ca8eef6442a3de51834dab83ff3c13d87da9c13",
        "data.zip:volume_data/2/0/0/0.0.0": "f2584d5181313f0b81b6fb35674ddd219687374b575fe91c7b5b6d3af1570436",
        "data.zip:.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/1/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/2/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "geometric_segmentation.json": "450cc2e18a00c8effe481cb5b9d8115c2d5edfbc66912aa8dff53de65b51bd57",
        "metadata.json": "384efa4888be775cea793bc30ca25fea9eae1a46a921e2c77f97f6d66a7d9981"
    },
    "emd-1832-extra-data": {
        "annotations.json": "4bf816af2d03532f6bc5e37bfe189a92b936ecfc622ee6f1b37b630ae493401b",
        "data.zip": "a3ec6d5684493a758f7ac5029822f02a07883b18281954553bfb02525da9bae4",
        "data.zip:volume_data/4/0/0/.zarray": "862c2e3530bdd3a647b6e583395550d308e48af5933ae96b5760abe64452285e",
        "data.zip:volume_data/4/0/0/0.0.0": "3dfc4beeb0cb7e3c070bbc58f266e6b4a677e628b62162561026311129c0a719",
        "data.zip:.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/4/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "data.zip:volume_data/4/0/.zgroup": "2383746e67b4bcc2762b3f100f06c3fa2d5f149ab5a8e5da5d33521464a01959",
        "metadata.json": "2e4b34aa4419a30709a7de9d1ece6a9c93c9cc0751316c38444b55549720054e"
    }
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_digests(entry: Path) -> dict[str, str]:
    """sha256 of every file below ``entry`` and of every member of its data.zip."""
    digests: dict[str, str] = {}
    for path in sorted(p for p in entry.rglob("*") if p.is_file()):
        name = path.relative_to(entry).as_posix()
        digests[name] = _sha256(path.read_bytes())
        if name == "data.zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    digests[f"data.zip:{member.filename}"] = _sha256(archive.read(member))
    return digests


def build(case: str, work: Path) -> dict[str, str]:
    """Run the case's commands (in-process) into ``work``; the digests of the entry."""
    from click.testing import CliRunner

    from cli.main import cli

    runs = CASES[case](work)
    db, entry_id = work / "db", case
    for mode, inputs, options in runs:
        args = ["preprocess", "--mode", mode]
        for path, kind in inputs:
            args += ["--input-path", str(path), "--input-kind", kind]
        args += ["--entry-id", entry_id, "--source-db", "emdb", "--source-db-id", entry_id]
        args += ["--source-db-name", "emdb", "--working-folder", str(work / "work")]
        args += ["--db-path", str(db), *options]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return entry_digests(db / "emdb" / entry_id)


@pytest.mark.parametrize("case", list(CASES))
def test_entry_bytes_unchanged(case: str, tmp_path: Path) -> None:
    digests = build(case, tmp_path)
    expected = DIGESTS[case]
    assert sorted(digests) == sorted(expected), "the entry's files or data.zip members differ"
    changed = [name for name in expected if digests[name] != expected[name]]
    assert not changed, f"{case}: changed bytes in {changed}"


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(ROOT))
    found: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CASES:
            try:
                found[name] = build(name, Path(tmp) / name)
            except pytest.skip.Exception as skipped:
                print(f"# {name} skipped: {skipped}", file=sys.stderr)
    print("DIGESTS: dict[str, dict[str, str]] = " + json.dumps(found, indent=4))
