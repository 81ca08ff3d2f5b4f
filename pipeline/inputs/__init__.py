"""One reader per input kind; each returns the source model of ``pipeline.model``."""

from pipeline.inputs.extra_data import read_extra_data
from pipeline.inputs.mrc import read_map, read_mrc_layout

__all__ = ["read_extra_data", "read_map", "read_mrc_layout"]
