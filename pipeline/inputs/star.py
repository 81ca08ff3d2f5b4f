"""``star_file_geometric_segmentation`` inputs: RELION particle STAR files -> spheres.

Read with ``starfile``. Layouts:

- RELION 3.0: one (often unnamed) ``data_`` loop of particles, no optics block;
- RELION 3.1 and 4: ``data_optics`` + ``data_particles``; ``rlnCoordinateX/Y/Z`` in pixels;
- RELION 5: ``rlnCenteredCoordinateX/Y/ZAngst``, in Angstrom from the tomogram's centre.

Every particle becomes a sphere (id = its 0-based row in the particles table) centred at::

    (rlnCoordinate - rlnOrigin[px]) / coordinate divisor * pixel size - rlnOrigin*Angst

or, RELION 5, ``rlnCenteredCoordinate*Angst - rlnOrigin*Angst`` plus the tomogram's centre.
The pixel size is the option, else the first of ``rlnTomoTiltSeriesPixelSize``,
``rlnMicrographPixelSize``, ``rlnImagePixelSize``, ``rlnPixelSize`` found in the particles or
the optics block (by ``rlnOpticsGroup``), else ``rlnDetectorPixelSize`` (um) * 10^4 /
``rlnMagnification``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputFormatError, InputNotFoundError, OptionError, PreprocessorError
from pipeline.inputs.ids import mapped_id
from pipeline.model import RGBA, Contents, ExtraData, GeometricSegmentation
from pipeline.notices import warn

__all__ = [
    "STAR_OPTION_KEYS",
    "StarOptions",
    "parse_hex_color",
    "parse_star_options",
    "read_star",
    "read_star_geometric",
    "star_file_key",
]

PIXEL_SIZE_COLUMNS = (
    "rlnTomoTiltSeriesPixelSize",
    "rlnMicrographPixelSize",
    "rlnImagePixelSize",
    "rlnPixelSize",
)
_AXES = ("X", "Y", "Z")
STAR_OPTION_KEYS = (
    "segmentation_id",
    "sphere_radius",
    "sphere_color_hex",
    "pixel_size",
    "star_file_coordinate_divisor",
    "tomo_name",
    "tomogram_size",
)


@dataclass(frozen=True, slots=True)
class StarOptions:
    """How a STAR file becomes spheres (``star-to-geometric`` options or extra data)."""

    segmentation_id: str | None = None  # None: the file stem
    sphere_radius: float = 100.0  # Angstrom
    sphere_color: RGBA | None = None  # None: one palette colour for the segmentation
    pixel_size: float | None = None  # Angstrom; None: from the STAR file
    coordinate_divisor: float = 1.0
    tomo_name: str | None = None  # keep the particles of this tomogram only
    tomogram_size: tuple[int, int, int] | None = None  # voxels, for RELION 5 centred coordinates


def parse_hex_color(text: str) -> RGBA:
    """``RRGGBB`` or ``RRGGBBAA`` (``#`` optional) as RGBA 0..1; ValueError otherwise.

    >>> parse_hex_color("#FF0000")
    (1.0, 0.0, 0.0, 1.0)
    """
    digits = text.removeprefix("#")
    if not re.fullmatch(r"[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?", digits):
        raise ValueError(f"not a hex colour RRGGBB or RRGGBBAA: {text!r}")
    values = [int(digits[i : i + 2], 16) / 255 for i in range(0, len(digits), 2)]
    return (values[0], values[1], values[2], values[3] if len(values) == 4 else 1.0)


def parse_star_options(
    values: dict[str, Any], name: Callable[[str], str], error: Callable[[str], PreprocessorError]
) -> StarOptions:
    """Check option values (keys of :data:`STAR_OPTION_KEYS`, None = default) with the model
    of the options document (:class:`pipeline.inputs.json_models.StarOptionsDocument`).

    ``name(key)`` is how the user wrote the key (``--sphere-radius``) and ``error(message)``
    makes the error to raise.
    """
    from pydantic import ValidationError

    from pipeline.inputs.json_models import StarOptionsDocument
    from pipeline.json_errors import located_problem

    given = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    try:
        return StarOptionsDocument.model_validate(given).options()
    except ValidationError as exc:
        loc, problem = located_problem(exc, given)
        key = loc[0] if loc and isinstance(loc[0], str) else ""
        raise error(f"{name(key)}: {problem}" if key else problem) from None


def star_file_key(path: Path) -> str:
    """The key of a STAR file in extra data's ``segmentation.star_files``: its stem."""
    return Path(path).stem


def _refuse_mmcif(path: Path) -> None:
    """An mmCIF file (PDB model: ``_atom_site.`` / ``_entry.`` items) shares STAR's syntax
    but holds no particles: said as such."""
    with open(path, "rb") as f:
        head = f.read(65536).decode("utf-8", errors="replace")
    tags = [line.split()[0] for line in head.splitlines() if line.startswith("_")]
    if any(t.startswith(("_atom_site.", "_entry.", "_cell.", "_struct.")) for t in tags):
        raise InputFormatError(
            "an mmCIF file (a structure model: _atom_site/_entry items), not a RELION particle "
            "STAR file",
            path,
        )


def split_sections(lines: list[str]) -> list[str] | None:
    """The lines of a STAR file with every section after the first of a data block (a second
    ``loop_`` table, or name-value pairs after a table) given a block of its own,
    ``data_<block>__<n>``; None when every block has one section.

    ``starfile`` reads a block as one section: the rows of a second ``loop_`` would be read as
    more rows of the first table (12 particles for 6), pairs after a table are dropped.

    >>> split_sections(["data_a", "loop_", "_x #1", "1", "loop_", "_y #1", "2"])[4]
    'data_a__2'
    """
    out: list[str] = []
    name, count, state, text_field, changed = "", 0, "none", False, False
    for line in lines:
        stripped = line.strip()
        if line.startswith(";"):  # a multi-line text value: its lines are data
            text_field = not text_field
        elif text_field or not stripped or stripped.startswith("#"):
            pass
        elif stripped.startswith("data_"):
            name, count, state = stripped[5:], 0, "none"
        elif stripped.startswith("loop_"):
            if count:
                out.append(f"data_{name}__{count + 1}\n")
                changed = True
            count, state = count + 1, "header"
        elif stripped.startswith("_"):
            if state in ("none", "rows"):
                if count:
                    out.append(f"data_{name}__{count + 1}\n")
                    changed = True
                count, state = count + 1, "pairs"
        elif state == "header":
            state = "rows"
        out.append(line)
    return out if changed else None


def _read_blocks(path: Path) -> dict[str, Any]:
    import tempfile

    import pandas as pd
    import starfile

    if not path.is_file():
        raise InputNotFoundError("no such file", path)
    _refuse_mmcif(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            split = split_sections(f.readlines())
    except OSError as exc:
        raise InputFormatError(f"cannot read the STAR file: {exc.strerror}", path) from None
    try:
        if split is None:
            blocks = starfile.read(path, always_dict=True)
        else:  # one section per block, in a private copy (the input is never changed)
            with tempfile.TemporaryDirectory(prefix="cellstar-star-") as folder:
                copy = Path(folder) / path.name
                copy.write_text("".join(split), encoding="utf-8")
                blocks = starfile.read(copy, always_dict=True)
    except (ValueError, KeyError, IndexError, TypeError, pd.errors.ParserError) as exc:
        detail = " ".join(str(exc).split())  # pandas' messages span lines
        raise InputFormatError(f"not a readable STAR file ({detail})", path) from None
    if not isinstance(blocks, dict) or not blocks:
        raise InputFormatError("not a STAR file: no data_ block", path)
    return blocks


_COORDINATES = {"rlnCoordinateX", "rlnCenteredCoordinateXAngst"}
# columns only an optics table has (RELION 3.1+); with rlnOpticsGroup they identify one
_OPTICS_COLUMNS = {
    *PIXEL_SIZE_COLUMNS,
    "rlnOpticsGroupName",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
}


def _is_optics(key: str, table: Any) -> bool:
    columns = set(table.columns)
    if columns & _COORDINATES:
        return False
    return key == "optics" or ("rlnOpticsGroup" in columns and bool(columns & _OPTICS_COLUMNS))


def _as_table(block: Any) -> Any:
    """A block of name-value pairs as a one-row table (None for anything else)."""
    import pandas as pd

    if isinstance(block, pd.DataFrame):
        return block
    if isinstance(block, dict) and block:
        return pd.DataFrame([block])
    return None


def _tables(path: Path) -> tuple[Any, Any]:
    """The particles table and the optics table (None when absent), found by their columns:
    the particles have coordinates (the block ``particles`` first), the optics table has
    ``rlnOpticsGroup`` and optics columns (the block ``optics`` first), whatever the names."""
    blocks = _read_blocks(path)
    tables = {k: t for k, b in blocks.items() if (t := _as_table(b)) is not None}
    with_coordinates = [k for k, t in tables.items() if _COORDINATES & set(t.columns)]
    if not with_coordinates:
        raise InputFormatError(
            "no particle table with rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst "
            f"(data blocks: {', '.join(repr(k) for k in blocks)})",
            path,
        )
    key = "particles" if "particles" in with_coordinates else with_coordinates[0]
    if len(with_coordinates) > 1:
        warn(
            f"{len(with_coordinates)} tables with particle coordinates "
            f"({', '.join(repr(k) for k in with_coordinates)}): only {key!r} is read",
            path,
        )
    optics_keys = [k for k, t in tables.items() if _is_optics(k, t)]
    optics_key = "optics" if "optics" in optics_keys else next(iter(optics_keys), None)
    return tables[key], tables[optics_key] if optics_key is not None else None


def _column(table: Any, name: str, path: Path) -> np.ndarray:
    try:
        values = np.asarray(table[name], dtype=np.float64)
    except (ValueError, TypeError):
        raise InputFormatError(f"column {name} holds values that are not numbers", path) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise InputFormatError(f"{name} of particle {bad[0]} is not a finite number", path)
    return values


def _vectors(table: Any, prefix: str, suffix: str, path: Path) -> np.ndarray | None:
    names = [f"{prefix}{a}{suffix}" for a in _AXES]
    present = [n for n in names if n in table.columns]
    if not present:
        return None
    if len(present) < 3:
        missing = sorted(set(names) - set(present))
        raise InputFormatError(f"{', '.join(present)} without {', '.join(missing)}", path)
    return np.stack([_column(table, n, path) for n in names], axis=1)


def _from_optics(particles: Any, optics: Any, name: str, path: Path) -> np.ndarray:
    values = _column(optics, name, path)
    if len(values) == 1:
        return np.full(len(particles), values[0])
    if "rlnOpticsGroup" not in particles.columns or "rlnOpticsGroup" not in optics.columns:
        raise InputFormatError(
            f"{len(values)} optics groups but no rlnOpticsGroup to tell which {name} applies",
            path,
        )
    by_group = dict(zip(_column(optics, "rlnOpticsGroup", path).tolist(), values, strict=True))
    groups = _column(particles, "rlnOpticsGroup", path)
    unknown = sorted(set(groups.tolist()) - set(by_group))
    if unknown:
        raise InputFormatError(f"particles name optics group(s) {unknown} not in data_optics", path)
    return np.array([by_group[g] for g in groups.tolist()])


def _pixel_sizes(particles: Any, optics: Any, path: Path) -> np.ndarray | None:
    """Angstrom per coordinate pixel, per particle, as the STAR file says (None: it does not)."""
    sizes: np.ndarray | None = None
    for name in PIXEL_SIZE_COLUMNS:
        if name in particles.columns:
            sizes = _column(particles, name, path)
        elif optics is not None and name in optics.columns:
            sizes = _from_optics(particles, optics, name, path)
        if sizes is not None:
            break
    if sizes is None and {"rlnDetectorPixelSize", "rlnMagnification"} <= set(particles.columns):
        name = "rlnDetectorPixelSize / rlnMagnification"
        magnification = _column(particles, "rlnMagnification", path)
        if not np.all(magnification > 0):
            raise InputFormatError("rlnMagnification must be > 0", path)
        sizes = _column(particles, "rlnDetectorPixelSize", path) * 1e4 / magnification
    if sizes is not None and not np.all(sizes > 0):
        raise InputFormatError(f"pixel size ({name}) must be > 0", path)
    return sizes


def _short_name(name: str) -> str:
    """``tomograms/TS_001/TS_001.st:mrc`` -> ``TS_001``; ``pos22.tomostar`` -> ``pos22``."""
    return Path(name.split(":")[0]).stem


def _select(particles: Any, tomo_name: str | None, path: Path) -> np.ndarray:
    """Rows of the particles of one tomogram (all when the file holds one)."""
    column = next((c for c in ("rlnTomoName", "rlnMicrographName") if c in particles.columns), None)
    if column is None:
        if tomo_name is not None:
            raise InputFormatError(
                f"no rlnTomoName or rlnMicrographName column to select tomogram {tomo_name!r}",
                path,
            )
        return np.arange(len(particles))
    names = [str(n) for n in particles[column].tolist()]
    distinct = list(dict.fromkeys(names))
    if tomo_name is None:
        if len(distinct) > 1:
            raise InputFormatError(
                f"particles of {len(distinct)} tomograms ({column}: "
                f"{', '.join(distinct[:5])}{', ...' if len(distinct) > 5 else ''}): choose one "
                "with --tomo-name (tomo_name in extra data)",
                path,
            )
        return np.arange(len(particles))
    rows = [i for i, n in enumerate(names) if tomo_name in (n, _short_name(n))]
    if not rows:
        raise InputFormatError(
            f"no particle of tomogram {tomo_name!r} ({column} holds: "
            f"{', '.join(distinct[:5])}{', ...' if len(distinct) > 5 else ''})",
            path,
        )
    return np.array(rows)


def read_star(path: Path, options: StarOptions, on_volume: bool = False) -> GeometricSegmentation:
    """Read a RELION particle STAR file as a geometric segmentation of spheres.

    ``on_volume``: the spheres will be placed on the entry's volume by preprocess (pixel
    coordinates then count from its sample 0, RELION 5 centred ones from its centre unless
    ``tomogram_size`` is given); otherwise they count from 0, and RELION 5 coordinates need
    ``tomogram_size``.
    """
    path = Path(path)
    particles, optics = _tables(path)
    rows = _select(particles, options.tomo_name, path)
    particles = particles.iloc[rows]
    if len(particles) == 0:
        raise InputFormatError("the STAR file holds no particles", path)
    pixels = _vectors(particles, "rlnCoordinate", "", path)
    centred = _vectors(particles, "rlnCenteredCoordinate", "Angst", path)
    shift = _vectors(particles, "rlnOrigin", "Angst", path)
    shift = np.zeros((len(particles), 3)) if shift is None else shift
    sizes = None
    if options.pixel_size is not None:
        sizes = np.full(len(particles), options.pixel_size)
    elif pixels is not None or options.tomogram_size is not None:
        sizes = _pixel_sizes(particles, optics, path)
        if sizes is None:
            raise InputFormatError(
                "no pixel size in the STAR file (" + ", ".join(PIXEL_SIZE_COLUMNS) + ", "
                "rlnDetectorPixelSize/rlnMagnification): give --pixel-size (pixel_size in "
                "extra data)",
                path,
            )
    anchor = "volume_origin" if on_volume else "absolute"
    if pixels is not None:
        assert sizes is not None
        origin_px = _vectors(particles, "rlnOrigin", "", path)
        if origin_px is not None:  # RELION 3.0: origins in pixels
            pixels = pixels - origin_px
        centres = pixels / options.coordinate_divisor * sizes[:, None] - shift
    elif centred is not None:
        centres = centred - shift
        if options.tomogram_size is not None:
            assert sizes is not None
            centres = centres + np.asarray(options.tomogram_size) * sizes[:, None] / 2
        elif on_volume:
            anchor = "volume_centre"
        else:
            raise OptionError(
                f"{path}: RELION 5 centred coordinates (rlnCenteredCoordinateX/Y/ZAngst) need "
                "the tomogram's size: give --tomogram-size NX NY NZ"
            )
    else:
        raise InputFormatError(
            "no particle coordinates (rlnCoordinateX/Y/Z or rlnCenteredCoordinateX/Y/ZAngst)",
            path,
        )
    ids = [int(i) for i in rows]
    spheres = tuple(
        {"id": i, "kind": "sphere", "center": c, "radius": options.sphere_radius}
        for i, c in zip(ids, centres.tolist(), strict=True)
    )
    return GeometricSegmentation(
        path=path,
        segmentation_id=options.segmentation_id or star_file_key(path),
        frames={0: spheres},
        colors=dict.fromkeys(ids, options.sphere_color),
        labels=dict.fromkeys(ids),
        anchor=anchor,
    )


def read_star_geometric(
    path: Path, scratch: Path | None, extra: ExtraData | None = None
) -> Contents:
    """The ``star_file_geometric_segmentation`` reader: options from extra data's
    ``segmentation.star_files[<stem>]``; the id from there, else ``segmentation_ids_mapping``,
    else the file stem."""
    key = star_file_key(path)
    options = StarOptions()
    if extra is not None:
        options = extra.star_files.get(key, options)
        if options.segmentation_id is None:
            options = replace(options, segmentation_id=mapped_id(key, extra))
    return Contents(geometric=(read_star(path, options, on_volume=True),))
