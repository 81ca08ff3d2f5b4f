"""Stateful property test (issue 10): random sequences of add, extend, edit-*, remove-* and
delete, with valid and invalid references, on a small database. After every command that
exits 0, ``validate`` exits 0; after every refused command (exit 2, never a traceback) the
database is byte-identical."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from conftest import preprocess_args, tree_digest, write_mrc
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from cli.main import cli

_INPUTS = Path(tempfile.mkdtemp(prefix="cellstar-state-inputs-"))


def _inputs() -> dict[str, Path]:
    rng = np.random.default_rng(11)
    density = rng.normal(size=(6, 5, 4)).astype(np.float32)
    labels = np.zeros(density.shape, np.uint8)
    labels[1:3, 1:3, 0:2] = 1
    labels[4:6, 2:5, 2:4] = 2
    other = np.zeros(density.shape, np.uint8)
    other[0:2, 0:2, 0:2] = 7
    shapes = {
        "segmentation_id": "shapes",
        "shape_primitive_list": None,
        "shape_primitives_input": {
            "0": [{"kind": "sphere", "parameters": {"id": 1, "center": [1, 2, 3], "radius": 2}}]
        },
    }
    del shapes["shape_primitive_list"]
    (_INPUTS / "shapes.json").write_text(json.dumps(shapes))
    good = {"descriptions": {"c1": _description("c1", "lattice", "labels", 2)}}
    bad = {"descriptions": {"c2": _description("c2", "lattice", "labels", 99)}}
    (_INPUTS / "custom_good.json").write_text(json.dumps(good))
    (_INPUTS / "custom_bad.json").write_text(json.dumps(bad))
    return {
        "map": write_mrc(_INPUTS / "map.mrc", density, voxel_size=3.0),
        "labels": write_mrc(_INPUTS / "labels.mrc", labels, voxel_size=3.0),
        "other": write_mrc(_INPUTS / "other.mrc", other, voxel_size=3.0),
        "shapes": _INPUTS / "shapes.json",
        "custom_good": _INPUTS / "custom_good.json",
        "custom_bad": _INPUTS / "custom_bad.json",
    }


def _description(ident, kind, segmentation, segment, time=0):
    return {
        "id": ident,
        "target_kind": kind,
        "target_id": {"segmentation_id": segmentation, "segment_id": segment},
        "name": f"{segmentation} {segment}",
        "external_references": [],
        "is_hidden": None,
        "time": time,
        "details": None,
        "metadata": None,
    }


INPUTS = _inputs()
# (kind, segmentation, segment): some exist once added (drawn more often), some never do
TARGETS = [
    ("lattice", "labels", 1),
    ("lattice", "labels", 1),
    ("lattice", "labels", 2),
    ("primitive", "shapes", 1),
    ("lattice", "labels", 1),
    ("lattice", "labels", 2),
    ("lattice", "labels", 4242),
    ("lattice", "other", 7),
    ("lattice", "nope", 1),
    ("primitive", "shapes", 1),
    ("primitive", "shapes", 99),
    ("mesh", "meshes", 1),
]
EXTENSIONS = {
    "labels": (INPUTS["labels"], "mask"),
    "other": (INPUTS["other"], "mask"),
    "shapes": (INPUTS["shapes"], "geometric_segmentation"),
    "custom_good": (INPUTS["custom_good"], "custom_annotations"),
    "custom_bad": (INPUTS["custom_bad"], "custom_annotations"),
}


class EntryCommands(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="cellstar-state-"))
        self.db = self.root / "db"
        self.entry = self.db / "emdb" / "emd-1"
        self.where = ("--db-path", str(self.db), "--source-db", "emdb", "--entry-id", "emd-1")

    def teardown(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *args: str | Path) -> None:
        before = tree_digest(self.db) if self.db.exists() else {}
        result = CliRunner().invoke(cli, [str(a) for a in args])
        assert isinstance(result.exception, SystemExit | None), result.exception
        if result.exit_code == 0:
            check = CliRunner().invoke(cli, ["validate", "--db-path", str(self.db)])
            assert check.exit_code == 0, (args, check.output)
        else:
            assert result.exit_code == 2, (args, result.output)
            assert result.stderr.startswith("error: "), result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            after = tree_digest(self.db) if self.db.exists() else {}
            assert after == before, args

    def _annotations(self) -> dict:
        try:
            return json.loads((self.entry / "annotations.json").read_text())
        except (OSError, ValueError):
            return {"descriptions": {}, "segment_annotations": []}

    @initialize(with_labels=st.booleans())
    def start(self, with_labels: bool) -> None:
        self.add(with_labels)

    @rule(with_labels=st.booleans())
    def add(self, with_labels: bool) -> None:
        inputs = [(INPUTS["map"], "map")] + ([(INPUTS["labels"], "mask")] if with_labels else [])
        self._run(*preprocess_args(inputs, self.root, entry="emd-1"))

    @precondition(lambda self: self.entry.exists())
    @rule(what=st.lists(st.sampled_from(sorted(EXTENSIONS)), min_size=1, max_size=2, unique=True))
    def extend(self, what: list[str]) -> None:
        inputs = [EXTENSIONS[w] for w in what]
        self._run(*preprocess_args(inputs, self.root, entry="emd-1", mode="extend"))

    @rule(
        ref=st.sampled_from(TARGETS),
        ident=st.sampled_from(["d-a", "d-b"]),
        time=st.sampled_from([0, [0], [0, 3]]),
    )
    def edit_descriptions(self, ref, ident, time) -> None:
        path = self.root / "descriptions.json"
        path.write_text(json.dumps([_description(ident, *ref, time=time)]))
        self._run("edit-descriptions", *self.where, "--data-json-path", path)

    @rule(ref=st.sampled_from(TARGETS), ident=st.sampled_from(["a-a", "a-b"]))
    def edit_segment_annotations(self, ref, ident) -> None:
        kind, segmentation, segment = ref
        item = {
            "id": ident,
            "segment_kind": kind,
            "segment_id": segment,
            "segmentation_id": segmentation,
            "color": [0.5, 0.5, 0.5, 1.0],
            "time": 0,
        }
        path = self.root / "segment_annotations.json"
        path.write_text(json.dumps([item]))
        self._run("edit-segment-annotations", *self.where, "--data-json-path", path)

    @rule(
        kind=st.sampled_from(["lattice", "geometric", "mesh"]),
        ident=st.sampled_from(["labels", "other", "shapes", "nope"]),
    )
    def remove_segmentation(self, kind, ident) -> None:
        self._run("remove-segmentation", *self.where, "--kind", kind, "--id", ident)

    @rule()
    def remove_volume(self) -> None:
        self._run("remove-volume", *self.where)

    @rule(pick=st.integers(0, 5), bogus=st.booleans())
    def remove_descriptions(self, pick, bogus) -> None:
        ids = sorted(self._annotations()["descriptions"])
        ident = "bogus" if bogus or not ids else ids[pick % len(ids)]
        self._run("remove-descriptions", *self.where, "--id", ident)

    @rule(pick=st.integers(0, 5), bogus=st.booleans())
    def remove_segment_annotations(self, pick, bogus) -> None:
        ids = sorted(a["id"] for a in self._annotations()["segment_annotations"])
        ident = "bogus" if bogus or not ids else ids[pick % len(ids)]
        self._run("remove-segment-annotations", *self.where, "--id", ident)

    @rule()
    def delete(self) -> None:
        self._run("delete", *self.where)

    @invariant()
    def entry_valid_or_absent(self) -> None:
        if self.entry.exists():
            result = CliRunner().invoke(cli, ["validate", "--quick", "--db-path", str(self.db)])
            assert result.exit_code == 0, result.output


EntryCommands.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_entry_commands = EntryCommands.TestCase
