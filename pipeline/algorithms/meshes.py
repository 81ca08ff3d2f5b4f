"""Mesh detail levels (DESIGN 7.4): fractions, quadric decimation, vertex normals."""

from __future__ import annotations

import threading

import numpy as np

__all__ = ["MAX_DETAIL_LEVEL", "decimate", "detail_fraction", "vertex_normals"]

MAX_DETAIL_LEVEL = 10

# fast_simplification keeps the mesh being simplified in module state: one call at a time
_LOCK = threading.Lock()


def detail_fraction(level: int) -> float:
    """The fraction of triangles kept at a detail level: 10^(-(level-1)/4), 2 significant digits.

    >>> [detail_fraction(lv) for lv in range(1, 11)]
    [1.0, 0.56, 0.32, 0.18, 0.1, 0.056, 0.032, 0.018, 0.01, 0.0056]
    """
    if not 1 <= level <= MAX_DETAIL_LEVEL:
        raise ValueError(f"detail level must be 1..{MAX_DETAIL_LEVEL}, got {level}")
    return float(f"{10 ** (-(level - 1) / 4):.2g}")


def decimate(
    vertices: np.ndarray, triangles: np.ndarray, fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation (fast_simplification) to ``round(fraction * triangles)`` triangles.

    The mesh is centred and scaled to a unit box for the decimation (its error thresholds are
    absolute, so meshes far from unit size would otherwise barely decimate) and scaled back.
    Returns float32 (n, 3) vertices and int32 (m, 3) triangles, without zero-area triangles
    and unused vertices; an empty mesh when the target rounds to 0 triangles. A mesh whose
    collapses the decimation refuses (slivers, e.g. contour-stacked IMOD meshes) keeps more
    triangles than the target.
    """
    import fast_simplification

    target = round(fraction * len(triangles))
    if target <= 0 or len(triangles) == 0:
        return np.empty((0, 3), np.float32), np.empty((0, 3), np.int32)
    if target >= len(triangles):
        return vertices.astype(np.float32), triangles.astype(np.int32)
    v = np.asarray(vertices, dtype=np.float64)
    centre = v.mean(axis=0)
    scale = float(np.abs(v - centre).max()) or 1.0
    with _LOCK:
        points, faces = fast_simplification.simplify(
            (v - centre) / scale,
            np.ascontiguousarray(triangles, dtype=np.int32),
            target_count=target,
        )
    points = np.asarray(points, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    # collapses can leave zero-area triangles (two corners on one point): invisible, and they
    # would give their vertices no normal; drop them, then the vertices left in no triangle
    cross = np.cross(
        points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]]
    )
    faces = faces[np.linalg.norm(cross, axis=1) > 1e-12]
    used, remapped = np.unique(faces, return_inverse=True)
    vertices_out = points[used] * scale + centre
    return vertices_out.astype(np.float32), remapped.reshape(-1, 3).astype(np.int32)


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals: each vertex gets the sum of the (area-sized) normals of its
    triangles, made unit length; a vertex in no triangle (or only degenerate ones) gets 0."""
    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles, dtype=np.int64)
    sums = np.zeros_like(v)
    if len(t):
        # |cross| is twice the triangle's area: summing crosses weights normals by area
        cross = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
        for corner in range(3):
            np.add.at(sums, t[:, corner], cross)
    length = np.linalg.norm(sums, axis=1, keepdims=True)
    normals = np.divide(sums, length, out=np.zeros_like(sums), where=length > 0)
    return normals.astype(np.float32)
