"""What a run built, recorded in the entry's documents: lattices in metadata.json and
annotations.json, the custom annotations inputs merged (mesh sets and geometric segmentations
record themselves: :func:`pipeline.build.meshes.describe_mesh_sets`,
:func:`pipeline.build.geometric.stage_geometric`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.algorithms.levels import LevelPlan
from pipeline.build.lattices import LatticeResult
from pipeline.db.metadata import add_lattice_annotations, add_lattice_metadata
from pipeline.errors import InputFormatError
from pipeline.inputs.annotations import read_custom_annotations
from pipeline.inputs.source import fetched
from pipeline.model import LabelSource
from pipeline.options import InputKind, PreprocessOptions
from pipeline.progress import Reporter

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = ["describe_lattices", "merge_custom_annotations"]


def merge_custom_annotations(options: PreprocessOptions, documents: EntryDocuments) -> None:
    """Merge the custom annotations inputs; what they name must exist in the entry."""
    for spec in options.inputs:
        if spec.kind is InputKind.CUSTOM_ANNOTATIONS:
            with fetched(spec.path) as local:
                custom = read_custom_annotations(local)
            merged = documents.merge(custom, str(spec.path))
            problems = documents.reference_problems(*merged, where_present=True)
            if problems:
                raise InputFormatError(problems[0], spec.path)


def describe_lattices(
    documents: EntryDocuments,
    lattices: tuple[LabelSource, ...],
    written: list[LatticeResult],
    plan: LevelPlan,
    entry_key: str,
    warn: Reporter,
) -> None:
    """Add the lattices to metadata.json (on the volume's boxes) and to annotations.json.
    Segments named by the inputs (extra data, the SFF) but absent from a lattice are not
    annotated: a warning lists them."""
    for lattice in lattices:  # an SFF's name and details describe the entry
        documents.name_if_unnamed(lattice.name, lattice.details)
    volumes = documents.metadata.volumes
    units = None if volumes is None else volumes.time_info.units  # one time unit per entry
    for lattice, result in zip(lattices, written, strict=True):
        add_lattice_metadata(
            documents, result.lattice_id, plan, result.frames, units or lattice.time_units
        )
        absent = add_lattice_annotations(
            documents,
            entry_key,
            result.lattice_id,
            lattice.segments,
            result.segment_ids,
            result.frames,
            times=result.segment_frames,
        )
        frames = set(range(result.frames))
        occurs = result.segment_frames or {s: frames for s in result.segment_ids}
        documents.lattice_segments[result.lattice_id] = {s: set(t) for s, t in occurs.items()}
        if absent:
            shown = ", ".join(map(str, absent[:20])) + (" ..." if len(absent) > 20 else "")
            warn(
                f"warning: {lattice.path}: lattice {result.lattice_id}: no voxels of segment(s) "
                f"{shown} named in the inputs; they are not annotated"
            )
