"""cellstar-preprocessor: inputs -> lazy sources -> pyramids -> zarr -> database entry."""

__version__ = "0.1.0"
