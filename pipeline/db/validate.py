"""``validate``: check an entry against the specification (DESIGN 3-6).

Reads metadata.json, annotations.json and data.zip (the lattice grids chunk by chunk) and
returns the problems found, each one line; an empty list means the entry is valid.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.db.layout import (
    ANNOTATIONS_JSON,
    DATA_ZIP,
    GEOMETRIC_JSON,
    METADATA_JSON,
    EntryLocation,
)
from pipeline.model import normalise_primitive

__all__ = ["database_leftovers", "list_entries", "stray_files", "validate_entry"]


def list_entries(db_path: Path) -> list[EntryLocation]:
    """Every entry folder of a database (``_``-prefixed folders are reserved and skipped)."""
    out = []
    if not Path(db_path).is_dir():
        return out
    for source in sorted(Path(db_path).iterdir()):
        if not source.is_dir() or source.name.startswith(("_", ".")):
            continue
        for entry in sorted(source.iterdir()):
            if entry.is_dir() and not entry.name.startswith(("_", ".")):
                out.append(EntryLocation(Path(db_path), source.name, entry.name))
    return out


class _Checker:
    def __init__(self, location: EntryLocation) -> None:
        self.location = location
        self.problems: list[str] = []
        self.zf: zipfile.ZipFile | None = None
        self.names: set[str] = set()

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def array_meta(self, path: str) -> dict[str, Any] | None:
        key = f"{path}/.zarray"
        if key not in self.names:
            self.problem(f"data.zip: missing array {path}")
            return None
        assert self.zf is not None
        return json.loads(self.zf.read(key))

    def object_value(self, path: str) -> Any:
        import numcodecs

        assert self.zf is not None
        meta = self.array_meta(path)
        if meta is None or f"{path}/0" not in self.names:
            self.problem(f"data.zip: missing set table chunk {path}/0")
            return None
        data: Any = self.zf.read(f"{path}/0")
        if meta.get("compressor"):
            data = numcodecs.get_codec(meta["compressor"]).decode(data)
        for config in reversed(meta.get("filters") or []):
            data = numcodecs.get_codec(config).decode(data)
        return np.asarray(data, dtype=object).reshape(meta["shape"])[0]


def _levels(info: dict[str, Any]) -> list[int]:
    return [int(lv["level"]) for lv in info["spatial_downsampling_levels"] if lv["available"]]


def _check_volume(c: _Checker, metadata: dict[str, Any]) -> list[int]:
    volumes = metadata.get("volumes")
    if not volumes:  # allowed for an entry whose volume was removed, if nothing sits on it
        if metadata["segmentation_lattices"]["segmentation_ids"]:
            c.problem("metadata.json: lattices but no volume (lattices sit on the volume's grid)")
        return []
    info = volumes["volume_sampling_info"]
    levels = _levels(info)
    frames = range(volumes["time_info"]["start"], volumes["time_info"]["end"] + 1)
    for level in levels:
        box = info["boxes"].get(str(level))
        if box is None:
            c.problem(f"metadata.json: no box for volume level {level}")
            continue
        for t in frames:
            for channel in volumes["channel_ids"]:
                meta = c.array_meta(f"volume_data/{level}/{t}/{channel}")
                if meta is not None and meta["shape"] != box["grid_dimensions"]:
                    c.problem(
                        f"volume_data/{level}/{t}/{channel}: shape {meta['shape']} != box "
                        f"{box['grid_dimensions']}"
                    )
                stats = info["descriptive_statistics"].get(str(level), {}).get(str(t), {})
                if not {"mean", "std", "min", "max"} <= set(stats.get(channel, {})):
                    c.problem(
                        f"metadata.json: no statistics for level {level} frame {t} "
                        f"channel {channel}"
                    )
    return levels


def _check_lattice(
    c: _Checker, metadata: dict[str, Any], lattice: str, levels: list[int]
) -> set[int]:
    section = metadata["segmentation_lattices"]
    info = section["segmentation_sampling_info"].get(lattice)
    segments: set[int] = set()
    if info is None:
        c.problem(f"metadata.json: lattice {lattice} has no sampling info")
        return segments
    if _levels(info) != levels:
        c.problem(f"lattice {lattice}: levels {_levels(info)} differ from the volume's {levels}")
    volume_boxes = (metadata.get("volumes") or {}).get("volume_sampling_info", {}).get("boxes")
    if volume_boxes is not None and info["boxes"] != volume_boxes:
        c.problem(f"lattice {lattice}: boxes differ from the volume's (DESIGN 7.2)")
    time_info = section["time_info"].get(lattice, {"start": 0, "end": 0})
    for level in _levels(info):
        for t in range(time_info["start"], time_info["end"] + 1):
            base = f"lattice_segmentation_data/{lattice}/{level}/{t}"
            meta = c.array_meta(f"{base}/grid")
            box = info["boxes"].get(str(level))
            if meta is None or box is None:
                continue
            if meta["shape"] != box["grid_dimensions"]:
                c.problem(f"{base}/grid: shape {meta['shape']} != box {box['grid_dimensions']}")
            try:
                table = c.object_value(f"{base}/set_table")
            except (zipfile.BadZipFile, ValueError, RuntimeError, OSError) as exc:
                c.problem(f"{base}/set_table: unreadable ({exc})")
                continue
            if not isinstance(table, dict):
                c.problem(f"{base}/set_table: not a JSON object")
                continue
            for members in table.values():
                segments.update(int(m) for m in members)
            try:
                values = _grid_values(c, f"{base}/grid", meta)
            except (zipfile.BadZipFile, ValueError, RuntimeError, OSError) as exc:
                c.problem(f"{base}/grid: unreadable chunk ({exc})")
                continue
            missing = sorted(values - {int(k) for k in table})
            if missing:
                c.problem(f"{base}/set_table: grid values {missing[:10]} are not in the table")
    return segments


def _grid_values(c: _Checker, path: str, meta: dict[str, Any]) -> set[int]:
    """Distinct values of a stored grid, decoded chunk by chunk (bounded memory)."""
    import numcodecs

    assert c.zf is not None
    codec = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
    values: set[int] = set()
    prefix = f"{path}/"
    shape, chunks = meta["shape"], meta["chunks"]
    expected = 1
    for n, k in zip(shape, chunks, strict=True):
        expected *= -(-n // k)
    found = sum(
        1
        for name in c.names
        if name.startswith(prefix) and not name.rsplit("/", 1)[1].startswith(".")
    )
    if found < expected:  # a missing chunk reads as the fill value
        values.add(int(meta.get("fill_value") or 0))
    for name in c.names:
        if not name.startswith(prefix) or name.rsplit("/", 1)[1].startswith("."):
            continue
        raw = c.zf.read(name)
        flat = np.frombuffer(codec.decode(raw) if codec else raw, dtype=meta["dtype"])
        chunk = flat.reshape(chunks, order=meta.get("order", "C"))
        index = [int(v) for v in name.rsplit("/", 1)[1].split(".")]
        # edge chunks are padded to the full chunk shape: only the array's part counts
        inside = tuple(
            slice(0, min(k, n - i * k)) for i, k, n in zip(index, chunks, shape, strict=True)
        )
        values.update(np.unique(chunk[inside]).tolist())
    return values


def _check_annotations(
    c: _Checker, annotations: dict[str, Any], segments: dict[str, set[int]], kind: str = "lattice"
) -> None:
    """Every ``kind`` segment annotation and description names an existing segment of one of
    the entry's segmentations of that kind (``segments``: segmentation id -> segment ids)."""
    refs = [
        (f"segment_annotations[{n}]", item.get("segmentation_id"), item.get("segment_id"))
        for n, item in enumerate(annotations.get("segment_annotations", []))
        if item.get("segment_kind") == kind
    ] + [
        (
            f"description {key}",
            (item.get("target_id") or {}).get("segmentation_id"),
            (item.get("target_id") or {}).get("segment_id"),
        )
        for key, item in annotations.get("descriptions", {}).items()
        if item.get("target_kind") == kind
    ]
    for where, lattice, segment in refs:
        if lattice not in segments:
            c.problem(f"annotations.json: {where} names unknown {kind} {lattice}")
        elif segment not in segments[lattice]:
            c.problem(f"annotations.json: {where}: segment {segment} is not in {kind} {lattice}")


def _array_rows(c: _Checker, path: str, meta: dict[str, Any]) -> np.ndarray:
    """A stored 2-D (n, 3) array, decoded chunk by chunk (meshes are small)."""
    import numcodecs

    assert c.zf is not None
    codec = numcodecs.get_codec(meta["compressor"]) if meta.get("compressor") else None
    (rows, cols), (step, _) = meta["shape"], meta["chunks"]
    out = np.zeros((rows, cols), dtype=meta["dtype"])
    for i in range(-(-rows // step)):
        raw = c.zf.read(f"{path}/{i}.0")
        chunk = np.frombuffer(codec.decode(raw) if codec else raw, dtype=meta["dtype"])
        part = chunk.reshape((step, cols), order=meta.get("order", "C"))
        out[i * step : (i + 1) * step] = part[: rows - i * step]
    return out


def _check_mesh(c: _Checker, base: str, counts: dict[str, Any]) -> None:
    metas = {}
    for name, dtype in (("vertices", "<f4"), ("triangles", "<i4"), ("normals", "<f4")):
        meta = metas[name] = c.array_meta(f"{base}/{name}")
        if meta is None:
            return
        expected = [counts.get(f"num_{name}"), 3]
        if meta["shape"] != expected or meta["dtype"] != dtype:
            c.problem(f"{base}/{name}: {meta['dtype']} {meta['shape']}, metadata says {expected}")
            return
    try:
        triangles = _array_rows(c, f"{base}/triangles", metas["triangles"])
    except (KeyError, ValueError, RuntimeError) as exc:
        c.problem(f"{base}/triangles: unreadable chunk ({exc})")
        return
    n = counts["num_vertices"]
    if triangles.size and (triangles.min() < 0 or triangles.max() >= n):
        c.problem(
            f"{base}/triangles: indices {triangles.min()}..{triangles.max()} out of range "
            f"for {n} vertices"
        )


def _check_mesh_set(c: _Checker, metadata: dict[str, Any], set_id: str) -> set[int]:
    """Every mesh the metadata lists is stored with matching shapes and valid triangles."""
    section = metadata["segmentation_meshes"]
    info = section["segmentation_metadata"].get(set_id)
    segments: set[int] = set()
    if info is None:
        c.problem(f"metadata.json: mesh set {set_id} has no segmentation_metadata")
        return segments
    fractions = info["detail_lvl_to_fraction"]
    for t, frame in info["mesh_timeframes"].items():
        for segment, levels in frame["segment_ids"].items():
            segments.add(int(segment))
            for level, meshes in levels["detail_lvls"].items():
                if level not in fractions:
                    c.problem(f"mesh set {set_id}: detail level {level} not in its fractions")
                for mesh_id, counts in meshes["mesh_ids"].items():
                    base = f"mesh_segmentation_data/{set_id}/{t}/{segment}/{level}/{mesh_id}"
                    _check_mesh(c, base, counts)
    return segments


def validate_entry(location: EntryLocation) -> list[str]:
    """Problems of one entry (empty: valid)."""
    c = _Checker(location)
    folder = location.folder
    try:
        metadata = json.loads((folder / METADATA_JSON).read_text())
        annotations = json.loads((folder / ANNOTATIONS_JSON).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"cannot read metadata.json/annotations.json: {exc}"]
    try:
        c.zf = zipfile.ZipFile(folder / DATA_ZIP)
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"data.zip: {exc}"]
    with c.zf:
        c.names = set(c.zf.namelist())
        try:
            levels = _check_volume(c, metadata)
            segments = {
                lattice: _check_lattice(c, metadata, lattice, levels)
                for lattice in metadata["segmentation_lattices"]["segmentation_ids"]
            }
            _check_annotations(c, annotations, segments)
            meshes = {
                set_id: _check_mesh_set(c, metadata, set_id)
                for set_id in metadata["segmentation_meshes"]["segmentation_ids"]
            }
            _check_annotations(c, annotations, meshes, "mesh")
        except (KeyError, TypeError, ValueError) as exc:
            c.problem(f"metadata.json: malformed ({type(exc).__name__}: {exc})")
        except (zipfile.BadZipFile, OSError) as exc:
            c.problem(f"data.zip: unreadable ({exc})")
    try:
        _check_geometric(c, metadata, annotations)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        c.problem(f"geometric segmentations: malformed ({type(exc).__name__}: {exc})")
    return c.problems


def _geometric_primitives(c: _Checker, item: Any, where: str) -> set[int]:
    """Problems of one item of geometric_segmentation.json; returns its primitive ids."""
    ids: set[int] = set()
    if not isinstance(item, dict) or not isinstance(item.get("primitives"), dict):
        c.problem(f"{where}: not an object with primitives")
        return ids
    for t, frame in item["primitives"].items():
        primitives = frame.get("shape_primitive_list") if isinstance(frame, dict) else None
        if not str(t).isdigit() or not isinstance(primitives, list):
            c.problem(f"{where}: frame {t}: no shape_primitive_list")
            continue
        seen: set[int] = set()
        for n, p in enumerate(primitives):
            ident = p.get("id") if isinstance(p, dict) else None
            if type(ident) is not int or ident in seen:
                c.problem(f"{where}: frame {t}, primitive {n}: id missing or used twice")
                continue
            seen.add(ident)
            params = {k: v for k, v in p.items() if k not in ("id", "kind")}
            try:
                normalise_primitive(p.get("kind"), params)
            except ValueError as exc:
                c.problem(f"{where}: frame {t}, primitive {n} ({p.get('kind')}): {exc}")
        ids |= seen
    return ids


def _check_geometric(c: _Checker, metadata: dict[str, Any], annotations: dict[str, Any]) -> None:
    """geometric_segmentation.json parses, matches metadata, and annotations name its
    primitives."""
    listed = (metadata.get("geometric_segmentation") or {}).get("segmentation_ids", [])
    path = c.location.folder / GEOMETRIC_JSON
    document: list[Any] = []
    if path.exists():
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            c.problem(f"{GEOMETRIC_JSON}: invalid JSON: {exc}")
            return
        if not isinstance(document, list):
            c.problem(f"{GEOMETRIC_JSON}: not a list")
            return
    elif listed:
        c.problem(
            f"metadata.json lists geometric segmentations {listed} but {GEOMETRIC_JSON} is missing"
        )
        return
    primitives: dict[str, set[int]] = {}
    for n, item in enumerate(document):
        sid = item.get("segmentation_id") if isinstance(item, dict) else None
        if sid in primitives:
            c.problem(f"{GEOMETRIC_JSON}: segmentation {sid} listed twice")
        primitives[sid] = _geometric_primitives(c, item, f"{GEOMETRIC_JSON}[{n}] ({sid})")
    if sorted(primitives, key=str) != sorted(listed, key=str):
        c.problem(
            f"{GEOMETRIC_JSON} holds {sorted(primitives, key=str)} but metadata.json lists "
            f"{sorted(listed, key=str)}"
        )
    time_info = (metadata.get("geometric_segmentation") or {}).get("time_info", {})
    for sid in listed:
        if sid not in time_info:
            c.problem(f"metadata.json: geometric segmentation {sid} has no time_info")
    refs = [
        (f"segment_annotations[{n}]", item.get("segmentation_id"), item.get("segment_id"))
        for n, item in enumerate(annotations.get("segment_annotations", []))
        if item.get("segment_kind") == "primitive"
    ] + [
        (
            f"description {key}",
            (item.get("target_id") or {}).get("segmentation_id"),
            (item.get("target_id") or {}).get("segment_id"),
        )
        for key, item in annotations.get("descriptions", {}).items()
        if item.get("target_kind") == "primitive"
    ]
    for where, sid, ident in refs:
        if sid not in primitives:
            c.problem(f"annotations.json: {where} names unknown geometric segmentation {sid}")
        elif ident not in primitives[sid]:
            c.problem(f"annotations.json: {where}: primitive {ident} is not in {sid}")


# --- the database outside its entries (issue 11) ------------------------------------------------


def database_leftovers(db_path: Path) -> list[str]:
    """Staging folders left by writers that are gone (killed runs, deletions), and symlinks
    where the database expects folders: one problem line each."""
    from pipeline.db.safefs import SymlinkRefusedError, dead_staging

    try:
        dead = dead_staging(Path(db_path))
    except SymlinkRefusedError as exc:
        return [f"{exc.path}: {exc.message}"]
    return [
        f"_staging/{name}: left by a writer that is gone (the next writer of the database "
        "removes it)"
        for name in dead
    ]


def stray_files(location: EntryLocation) -> list[str]:
    """Files in an entry folder that are not the entry's own (a rewrite never carries them),
    and symlinks (refused by every writer)."""
    from pipeline.db.commit import ENTRY_FILES

    problems = []
    try:
        with os.scandir(location.folder) as it:
            found = sorted(it, key=lambda e: e.name)
    except OSError:
        return []
    for item in found:
        if item.is_symlink():
            problems.append(f"{item.name}: a symlink (writers refuse the entry until removed)")
        elif item.name not in ENTRY_FILES:
            problems.append(f"{item.name}: not a file of the entry (rewrites do not carry it)")
    return problems
