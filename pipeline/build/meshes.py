"""Writing mesh segmentations (DESIGN 3.2, 7.4): detail levels of every mesh of a mesh set.

``mesh_segmentation_data/<set>/<time>/<segment>/<detail level>/<mesh>/{vertices,triangles,
normals}``: level 1 is the mesh as given (its own normals, made unit length, or computed ones),
levels 2..10 are quadric decimations of the original to the level's fraction, with computed
area-weighted normals. A segment's levels stop at the first one where none of its meshes keeps a
triangle; a mesh that loses all its triangles at a level while others of its segment keep some is
left out of that level. One segment's meshes are in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.algorithms.meshes import MAX_DETAIL_LEVEL, decimate, detail_fraction, vertex_normals
from pipeline.build.lattices import RepeatedTarget
from pipeline.db.layout import mesh_group, mesh_key
from pipeline.db.metadata import add_lattice_annotations, add_mesh_metadata
from pipeline.db.writer import DataWriter
from pipeline.errors import OptionError
from pipeline.model import MeshArrays, MeshSetSource, MeshSource, Segment

if TYPE_CHECKING:
    from pipeline.db.documents import EntryDocuments

__all__ = ["MeshSetResult", "check_mesh_sets", "describe_mesh_sets", "write_mesh_set"]

_CHUNK_ROWS = 2**18  # rows per zarr chunk: 3 MB of float32 vertices


# what is stored per mesh: (vertices, triangles, normals) counts, by frame, segment, detail
# level and mesh id (metadata.json's ``mesh_timeframes`` is built from it in pipeline.db)
MeshCounts = tuple[int, int, int]
StoredMeshes = dict[int, dict[int, dict[int, dict[str, MeshCounts]]]]


@dataclass(frozen=True, slots=True)
class MeshSetResult:
    set_id: str
    frames: int
    fractions: dict[int, float]  # every detail level stored for at least one segment
    timeframes: StoredMeshes  # frame -> segment -> detail level -> mesh id -> counts
    segment_ids: tuple[int, ...]  # segments with at least one stored mesh
    # segment id -> the frames where it has a stored mesh
    segment_frames: dict[int, tuple[int, ...]] | None = None


class _Repeating:
    """A writer whose arrays under ``mesh_segmentation_data/<set>/<t>/`` are also stored at
    the other frames ``times`` (a one-frame mesh set over a volume with several frames)."""

    def __init__(self, writer: DataWriter, set_id: str, times: range) -> None:
        self.writer, self.times = writer, times
        self.prefix = mesh_group(set_id)

    def array(self, path: str, shape: Any, dtype: Any, chunks: Any) -> RepeatedTarget:
        rest = path[len(self.prefix) :].split("/", 1)[1]
        return RepeatedTarget(
            tuple(
                self.writer.array(f"{self.prefix}{t}/{rest}", shape, dtype, chunks)
                for t in self.times
            )
        )

    def write_block(self, target: RepeatedTarget, block: np.ndarray, origin: Any) -> None:
        self.writer.write_block(target, block, origin)


def check_mesh_sets(mesh_sets: Iterable[MeshSetSource], taken: Iterable[str] = ()) -> None:
    """Mesh set ids must be unique in a run and (extend) new to the entry."""
    seen: dict[str, Any] = {}
    existing = set(taken)
    for mesh_set in mesh_sets:
        if mesh_set.set_id in existing:
            raise OptionError(
                f"mesh set id {mesh_set.set_id!r} ({mesh_set.path}) is already in the entry "
                "(give a new id with segmentation_ids_mapping in extra_data)"
            )
        if mesh_set.set_id in seen:
            raise OptionError(
                f"mesh set id {mesh_set.set_id!r} given twice: {seen[mesh_set.set_id]} and "
                f"{mesh_set.path} (map one with segmentation_ids_mapping in extra_data)"
            )
        seen[mesh_set.set_id] = mesh_set.path


def _store(writer: DataWriter, path: str, array: np.ndarray) -> None:
    target = writer.array(path, array.shape, array.dtype, (_CHUNK_ROWS, 3))
    writer.write_block(target, np.ascontiguousarray(array), (0, 0))


def _write_mesh(writer: DataWriter, key: Callable[[str], str], mesh: MeshArrays) -> MeshCounts:
    normals = mesh.normals
    if normals is None:
        normals = vertex_normals(mesh.vertices, mesh.triangles)
    _store(writer, key("vertices"), mesh.vertices)
    _store(writer, key("triangles"), mesh.triangles)
    _store(writer, key("normals"), normals)
    return (len(mesh.vertices), len(mesh.triangles), len(normals))


def _write_segment(
    writer: Any, where: tuple[str, int, int], meshes: tuple[MeshSource, ...]
) -> dict[int, dict[str, MeshCounts]]:
    """Every detail level of one segment; returns level -> mesh id -> counts."""
    originals = [(m.id, m.load()) for m in meshes]
    originals = [(i, m) for i, m in originals if len(m.triangles)]
    levels: dict[int, dict[str, MeshCounts]] = {}
    # a decimation that stopped above its target (no collapse allowed any more) gives the same
    # mesh for every smaller target: the deeper levels reuse it instead of recomputing it
    stuck: dict[int, MeshArrays] = {}
    for level in range(1, MAX_DETAIL_LEVEL + 1):
        fraction = detail_fraction(level)
        stored: dict[str, MeshCounts] = {}
        for mesh_id, mesh in originals:
            if mesh_id in stuck:
                mesh = stuck[mesh_id]
            elif level > 1:
                vertices, triangles = decimate(mesh.vertices, mesh.triangles, fraction)
                if not len(triangles):
                    continue
                if len(triangles) > round(fraction * len(mesh.triangles)):
                    stuck[mesh_id] = MeshArrays(vertices, triangles)
                mesh = MeshArrays(vertices, triangles)
            key = partial(mesh_key, *where, level, mesh_id)
            stored[str(mesh_id)] = _write_mesh(writer, key, mesh)
        if not stored:
            break
        levels[level] = stored
    return levels


def write_mesh_set(writer: DataWriter, mesh_set: MeshSetSource, repeat: int = 1) -> MeshSetResult:
    """Store every detail level of every mesh of a mesh set; ``repeat``: a one-frame set is
    stored at frames ``0 .. repeat - 1`` (decimated once)."""
    if repeat > 1 and len(mesh_set.frames) != 1:
        raise ValueError("only a one-frame mesh set can be repeated over frames")
    timeframes: StoredMeshes = {}
    used: set[int] = set()
    present: set[int] = set()
    occurs: dict[int, list[int]] = {}
    target: Any = writer if repeat == 1 else _Repeating(writer, mesh_set.set_id, range(repeat))
    for t, frame in enumerate(mesh_set.frames):
        segments: dict[int, dict[int, dict[str, MeshCounts]]] = {}
        for segment_id in sorted(frame):
            where = (mesh_set.set_id, t, segment_id)
            levels = _write_segment(target, where, frame[segment_id])
            if levels:
                segments[segment_id] = levels
                used.update(levels)
                present.add(segment_id)
                occurs.setdefault(segment_id, []).append(t)
        timeframes[t] = segments
    if repeat > 1:
        timeframes = {t: timeframes[0] for t in range(repeat)}
        occurs = {segment: list(range(repeat)) for segment in occurs}
    return MeshSetResult(
        set_id=mesh_set.set_id,
        frames=len(mesh_set.frames) * repeat,
        fractions={lv: detail_fraction(lv) for lv in sorted(used)},
        timeframes=timeframes,
        segment_ids=tuple(sorted(present)),
        segment_frames={segment: tuple(ts) for segment, ts in occurs.items()},
    )


def describe_mesh_sets(
    documents: EntryDocuments,
    entry_key: str,
    mesh_sets: tuple[MeshSetSource, ...],
    written: list[MeshSetResult],
) -> None:
    """Add written mesh sets to metadata.json and annotations.json (one description and one
    segment annotation per segment with meshes); an SFF's name and details describe the entry
    when nothing else did."""
    for mesh_set, result in zip(mesh_sets, written, strict=True):
        documents.name_if_unnamed(mesh_set.name, mesh_set.details)
        add_mesh_metadata(
            documents, result.set_id, result.fractions, result.timeframes, result.frames
        )
        described = {s.id: s for s in mesh_set.segments}
        segments = tuple(described.get(i, Segment(id=i)) for i in result.segment_ids)
        add_lattice_annotations(
            documents,
            entry_key,
            result.set_id,
            segments,
            None,
            result.frames,
            kind="mesh",
            times=result.segment_frames,
        )
