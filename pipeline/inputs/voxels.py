"""Voxel sizes and origins as the files mean them, and extra data overriding them.

- Values converted from a decimal text or a float32 field to Angstrom are stored as the decimal
  the file meant: 0.423 nm is 4.23 A (not 4.2299999999999995), a float32 5.7 is 5.7.
- Extra data's ``voxel_size`` replaces what a file declares; when the two differ, one warning
  line names both and their ratio (PREPROCESS.md's hiPSC example gives micrometres there and
  would silently turn a 1083 A voxel into 0.108 A).
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from pipeline.model import Vec3
from pipeline.notices import warn

__all__ = ["float32_decimal", "override_voxel_size", "scaled_decimal"]


def float32_decimal(value: float) -> float:
    """A value held in float32 as the shortest decimal that round-trips in float32.

    >>> float32_decimal(np.float32(4.23))
    4.23
    """
    return float(str(np.float32(value)))


def scaled_decimal(value: float | str, factor: float) -> float:
    """``value * factor`` computed on decimals (``value`` as written, or a float's shortest
    repr), so a unit conversion adds no binary noise.

    >>> scaled_decimal("0.423", 10.0), scaled_decimal(0.423, 10.0)
    (4.23, 4.23)
    """
    try:
        exact = Decimal(str(value).strip()) * Decimal(repr(float(factor)))
    except (InvalidOperation, ValueError):
        return float(value) * factor
    return float(exact)


def _vec(values: Vec3) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _factor_text(given: Vec3, declared: Vec3) -> str:
    factors = [g / d for g, d in zip(given, declared, strict=True)]
    if all(math.isclose(f, factors[0], rel_tol=1e-6) for f in factors):
        text = f"factor {factors[0]:.6g}"
    else:
        text = "factors " + _vec(tuple(factors))  # type: ignore[arg-type]
    powers = [math.log10(f) for f in factors]
    if any(abs(p) >= 0.99 and abs(p - round(p)) < 0.01 for p in powers):
        text += "; extra data voxel sizes are in Angstrom: a unit mix-up?"
    return text


def override_voxel_size(
    declared: Vec3 | None,
    given: Vec3 | None,
    path: str | Path,
    extra_path: str | Path | None,
    key: str = "volume.voxel_size",
) -> Vec3 | None:
    """The voxel size to use: extra data's (``given``) when there is one, else the file's.

    A given value that differs from a voxel size the file declares (more than 1e-4 relative
    on an axis) prints one warning naming both and the factor between them.
    """
    if given is None:
        return declared
    if declared is not None and not all(
        math.isclose(g, d, rel_tol=1e-4) for g, d in zip(given, declared, strict=True)
    ):
        source = f" of {extra_path}" if extra_path is not None else ""
        warn(
            f"{key}{source} {_vec(given)} A overrides the voxel size the file declares, "
            f"{_vec(declared)} A ({_factor_text(given, declared)})",
            path,
        )
    return given
