"""``mask`` inputs: an MRC label volume (integers, or floats holding integers) -> one lattice."""

from __future__ import annotations

from pathlib import Path

from pipeline.inputs.ids import mapped_id, named_segments
from pipeline.inputs.mrc import memory_order, mrc_data, read_mrc_layout
from pipeline.inputs.source import as_input_path
from pipeline.model import Contents, ExtraData, LabelSource

__all__ = ["mask_lattice_id", "read_mask"]


def mask_lattice_id(path: Path, extra: ExtraData | None) -> str:
    """The file's stem (``emd_1273_msk_1.map`` -> ``emd_1273_msk_1``, ``a.labels.mrc`` ->
    ``a.labels``), or its ``segmentation_ids_mapping`` entry."""
    name = as_input_path(path).name  # of a URL: without its query (?X-Amz-Signature=...)
    for suffix in (".gz", ".bz2"):
        name = name.removesuffix(suffix)
    return mapped_id(Path(name).stem, extra)


def read_mask(path: Path, scratch: Path | None, extra: ExtraData | None = None) -> Contents:
    """Open a label volume lazily; its values are checked as they are read (in the pass)."""
    layout = read_mrc_layout(path, scratch)
    lattice_id = mask_lattice_id(path, extra)
    segments = named_segments(lattice_id, extra)
    voxel = layout.voxel_size if all(v > 0 for v in layout.voxel_size) else None
    lattice = LabelSource(
        path=as_input_path(path),
        lattice_id=lattice_id,
        frames=(mrc_data(layout),),
        segments=segments,
        voxel_size=voxel,
        origin=layout.origin(voxel) if voxel is not None else None,
        memory_order=memory_order(layout),
    )
    return Contents(lattices=(lattice,))
