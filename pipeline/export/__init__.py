"""Exports of database entries to formats other tools read (issue 14: OME-NGFF 0.5)."""

from pipeline.export.omezarr import ExportOptions, ExportSummary, export_omezarr

__all__ = ["ExportOptions", "ExportSummary", "export_omezarr"]
