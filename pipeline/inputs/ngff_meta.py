"""NGFF metadata of an OME-Zarr image group, validated with ``ome-zarr-models``.

What is validated is what the reader uses: the first multiscale, ``omero`` and ``image-label``
of an image group and the ``labels`` list of a labels group. NGFF 0.5 (zarr v3,
``attributes.ome`` of ``zarr.json``) is validated with the ``v05`` models, 0.4 (zarr v2
``.zattrs``) with the ``v04`` models. Older versions are first rewritten into the 0.4 shape
(:func:`as_v04`, the shim), which covers every difference between 0.1-0.3 and 0.4 the reader
needs:

- 0.1/0.2: no ``axes``; the arrays are ``t, c, z, y, x`` (the shim names the last *ndim* of
  them, so 2- to 4-D arrays of older writers are read too);
- 0.3: ``axes`` is a list of names; the shim gives each its type (``t`` time, ``c`` channel,
  ``x``/``y``/``z`` space, other names none);
- 0.1-0.3: no ``coordinateTransformations``; the shim gives each dataset a scale of 1;
- 0.1-0.3 ``omero`` and ``image-label`` have the 0.4 shape (0.4 added nothing the reader uses).

Beyond the specification, for every version: an integer ``datasets[].path`` (ez-zarr writes
``0``) is read as its string, an axis without a ``type`` is typed by its name (as in 0.3) and
a label image needs no ``image-label``. A version in a zarr
v2 group is taken from ``multiscales[0]`` (else the group's ``version``); a multiscale without
one is read by its shape (no axes or axes as names: the shim; else 0.4). What the models
accept but the reader does not is checked here too: axis names and units are strings, scales
and translations are finite and stated in the metadata (not in a file), the x and y axes are
present and a role (t, c, x, y, z) appears once. A bad ``omero`` is a display hint only: it
is ignored with a warning.

Every problem is an :class:`InputFormatError` on one line naming the attributes file and the
JSON path inside it, e.g. ``<image>/.zattrs: $.multiscales[0].axes[2].unit: ...`` (zarr v3:
``<image>/zarr.json: $.attributes.ome.multiscales[0]...``), said by
:mod:`pipeline.json_errors`.
``ome_zarr_models`` (and pydantic) are imported inside the functions that validate.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InputFormatError, UnsupportedInputError
from pipeline.json_errors import json_path, shown_value, validation_problem
from pipeline.notices import warn

__all__ = [
    "NgffAxis",
    "NgffChannel",
    "NgffImage",
    "as_v04",
    "attributes_file",
    "first_dataset",
    "label_names",
    "parse_image",
]

_IMPLICIT_AXES = ("t", "c", "z", "y", "x")  # NGFF 0.1/0.2
_OLD_VERSIONS = ("0.1", "0.2", "0.3")
_TYPE_OF_NAME = {"t": "time", "c": "channel", "x": "space", "y": "space", "z": "space"}
_ROLES = ("t", "c", "x", "y", "z")


@dataclass(frozen=True, slots=True)
class NgffAxis:
    name: str  # as written
    role: str  # "t", "c", "x", "y", "z" or "other"
    unit: str | None
    loc: str  # JSON path in the attributes file, e.g. "$.multiscales[0].axes[2]"


@dataclass(frozen=True, slots=True)
class NgffChannel:
    """One ``omero`` channel: what the reader uses of it."""

    label: str | None
    color: str | None  # "RRGGBB" as written


@dataclass(frozen=True, slots=True)
class NgffImage:
    """The validated metadata of an image (or label image) group."""

    file: Path  # the attributes file (``.zattrs`` or ``zarr.json``), for messages
    version: str | None  # as declared
    axes: tuple[NgffAxis, ...]
    datasets: tuple[str, ...]
    scale: tuple[float, ...]  # of dataset 0, composed with the multiscale's own
    translation: tuple[float, ...]
    channels: tuple[NgffChannel, ...] | None  # omero (None: none or invalid)
    label_colors: dict[int, tuple[int, int, int, int]]  # image-label colors (0..255)
    label_properties: dict[int, dict[str, Any]]  # image-label properties, without label-value

    def axis(self, role: str) -> int | None:
        """Index of the axis with that role (None when the image has none)."""
        return next((i for i, a in enumerate(self.axes) if a.role == role), None)


def attributes_file(group: Path, zarr_format: int) -> Path:
    """The file holding a group's attributes (named in messages)."""
    return group / ("zarr.json" if zarr_format == 3 else ".zattrs")


def _prefix(zarr_format: int) -> tuple[str, ...]:
    """The place of the OME attributes in the attributes file."""
    return ("attributes", "ome") if zarr_format == 3 else ()


def first_dataset(attrs: Mapping[str, Any], file: Path, zarr_format: int = 2) -> str:
    """Path of the level-0 array (``multiscales[0].datasets[0].path``), looked up before the
    metadata can be validated (0.1/0.2 need the array's dimensions)."""
    loc = json_path((*_prefix(zarr_format), "multiscales"))
    multiscales = attrs.get("multiscales")
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise InputFormatError(f"{loc}: must be a non-empty list of objects", file)
    datasets = multiscales[0].get("datasets")
    if not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], dict):
        raise InputFormatError(f"{loc}[0].datasets: must be a non-empty list of objects", file)
    if "path" not in datasets[0]:
        raise InputFormatError(f"{loc}[0].datasets[0].path: missing (a required key)", file)
    path = datasets[0]["path"]
    if isinstance(path, bool) or not isinstance(path, str | int):
        raise InputFormatError(
            f"{loc}[0].datasets[0].path: must be a string{shown_value(path)}", file
        )
    return str(path)


def _declared_version(attrs: Mapping[str, Any]) -> str | None:
    ms = attrs.get("multiscales")
    first = ms[0] if isinstance(ms, list) and ms and isinstance(ms[0], dict) else {}
    version = first.get("version", attrs.get("version"))
    return version if isinstance(version, str) else None


def as_v04(multiscale: Mapping[str, Any], ndim: int) -> dict[str, Any]:
    """The shim: an NGFF 0.1-0.3 multiscale (a copy) in the 0.4 shape, for arrays of ``ndim``
    dimensions. Axes are given when missing (0.1/0.2) or typed when names (0.3); datasets get a
    scale of 1 when they have no transformations. Anything else is left for validation.

    >>> as_v04({"datasets": [{"path": "0"}], "version": "0.2"}, 3)["axes"]
    [{'name': 'z', 'type': 'space'}, {'name': 'y', 'type': 'space'}, {'name': 'x', 'type': 'space'}]
    """
    out = {k: v for k, v in multiscale.items() if k != "version"}
    axes = out.get("axes")
    if axes is None and 2 <= ndim <= len(_IMPLICIT_AXES):
        axes = list(_IMPLICIT_AXES[len(_IMPLICIT_AXES) - ndim :])
    if isinstance(axes, list):
        out["axes"] = [_typed({"name": a}) if isinstance(a, str) else a for a in axes]
    datasets = out.get("datasets")
    if isinstance(datasets, list):
        out["datasets"] = [
            {**d, "coordinateTransformations": [{"type": "scale", "scale": [1.0] * ndim}]}
            if isinstance(d, dict) and "coordinateTransformations" not in d
            else d
            for d in datasets
        ]
    return out


def _typed(axis: dict[str, Any]) -> dict[str, Any]:
    """An axis without a type, typed by its name (``t`` time, ``c`` channel, x/y/z space)."""
    name = axis.get("name")
    if "type" in axis or not isinstance(name, str) or name.lower() not in _TYPE_OF_NAME:
        return axis
    return {**axis, "type": _TYPE_OF_NAME[name.lower()]}


def _lenient(multiscale: Mapping[str, Any]) -> dict[str, Any]:
    """What real files write beyond the specification, read as meant (a copy): an integer
    dataset path (ez-zarr) as its string, an axis without a type typed by its name."""

    def path_as_string(dataset: Any) -> Any:
        path = dataset.get("path") if isinstance(dataset, dict) else None
        if isinstance(path, int) and not isinstance(path, bool):
            return {**dataset, "path": str(path)}
        return dataset

    out = dict(multiscale)
    if isinstance(out.get("datasets"), list):
        out["datasets"] = [path_as_string(d) for d in out["datasets"]]
    if isinstance(out.get("axes"), list):
        out["axes"] = [_typed(a) if isinstance(a, dict) else a for a in out["axes"]]
    return out


def _is_old(multiscale: Mapping[str, Any], version: str | None) -> bool:
    if version is not None:
        return version in _OLD_VERSIONS
    axes = multiscale.get("axes")
    return axes is None or (isinstance(axes, list) and any(isinstance(a, str) for a in axes))


# --- messages ----------------------------------------------------------------------------------


def _validated(model: Any, document: Any, at: Sequence[Any], file: Path) -> Any:
    """``model`` validated from ``document`` (found at ``at`` in ``file``); a failure is one
    line naming the JSON path. Warnings of the models (fixes they make) are reported as
    warnings of the file."""
    from pydantic import ValidationError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = model.model_validate(document)
        except ValidationError as exc:
            raise InputFormatError(validation_problem(exc, document, at), file) from None
    for item in caught:
        warn(f"{json_path(at)}: {item.message}", file)
    return value


# --- image groups -------------------------------------------------------------------------------


def _models(zarr_format: int) -> tuple[Any, Any, Any]:
    """Multiscale, image-label and labels models of the NGFF version of a zarr format."""
    if zarr_format == 3:
        from ome_zarr_models.v05.image_label_types import Label
        from ome_zarr_models.v05.labels import LabelsAttrs
        from ome_zarr_models.v05.multiscales import Multiscale
    else:
        from ome_zarr_models.v04.image_label_types import Label
        from ome_zarr_models.v04.labels import LabelsAttrs
        from ome_zarr_models.v04.multiscales import Multiscale
    return Multiscale, Label, LabelsAttrs


def _axes(model: Any, loc: str, file: Path) -> tuple[NgffAxis, ...]:
    axes = []
    for i, axis in enumerate(model.axes):
        where = f"{loc}.axes[{i}]"
        if not isinstance(axis.name, str) or not axis.name:
            raise InputFormatError(f"{where}.name: must be a string{shown_value(axis.name)}", file)
        if axis.unit is not None and not isinstance(axis.unit, str):
            raise InputFormatError(f"{where}.unit: must be a string{shown_value(axis.unit)}", file)
        role = axis.name.lower() if axis.name.lower() in _ROLES else None
        if role is None:
            role = {"time": "t", "channel": "c"}.get(axis.type or "", "other")
        axes.append(NgffAxis(axis.name, role, axis.unit, where))
    names = [a.name for a in axes]
    roles = [a.role for a in axes if a.role != "other"]
    if len(set(roles)) != len(roles):
        raise InputFormatError(f"{loc}.axes: {names}: an axis role appears twice", file)
    if "x" not in roles or "y" not in roles:
        raise InputFormatError(f"{loc}.axes: {names}: an image needs x and y axes", file)
    return tuple(axes)


def _vector(transform: Any, loc: str, file: Path) -> list[float]:
    kind = transform.type
    values = getattr(transform, kind, None)
    if not isinstance(values, list):  # a PathScale / PathTranslation
        raise UnsupportedInputError(f"{loc}: {kind} stored in a file ('path') is unsupported", file)
    if not all(math.isfinite(v) for v in values):
        raise InputFormatError(f"{loc}.{kind}: must be finite numbers, got {values}", file)
    return values


def _transforms(items: Any, ndim: int, loc: str, file: Path) -> tuple[list[float], list[float]]:
    """Scale and translation of a validated (scale[, translation]) list."""
    scale, shift = [1.0] * ndim, [0.0] * ndim
    for i, item in enumerate(items or ()):
        values = _vector(item, f"{loc}.coordinateTransformations[{i}]", file)
        if item.type == "scale":
            scale = values
        else:
            shift = values
    return scale, shift


def _channels(omero: Any, at: Sequence[Any], file: Path) -> tuple[NgffChannel, ...] | None:
    if omero is None:
        return None
    from ome_zarr_models.v04.omero import Omero  # the omero model (0.5 has none of its own)
    from pydantic import ValidationError

    try:
        model = Omero.model_validate(omero)
    except ValidationError as exc:
        problem = validation_problem(exc, omero, (*at, "omero"))
        warn(f"{problem}: the omero metadata is ignored", file)
        return None
    out = []
    for channel in model.channels:
        label = getattr(channel, "label", None)
        label = str(label) if isinstance(label, str | int | float) else None
        out.append(NgffChannel(label, channel.color))
    return tuple(out)


def _image_label(info: Any, model: Any, at: Sequence[Any], file: Path) -> tuple[dict, dict]:
    if info is None:
        return {}, {}
    if isinstance(info, dict):  # the group's version governs (0.1-0.3 labels say theirs)
        info = {k: v for k, v in info.items() if k != "version"}
    label = _validated(model, info, (*at, "image-label"), file)
    colors = {c.label_value: tuple(c.rgba) for c in label.colors or () if c.rgba is not None}
    properties = {
        p.label_value: {k: v for k, v in p.model_dump(by_alias=True).items() if k != "label-value"}
        for p in label.properties or ()
    }
    return colors, properties


def parse_image(attrs: Mapping[str, Any], ndim: int, file: Path, zarr_format: int) -> NgffImage:
    """Validate the metadata of an image group whose level-0 array has ``ndim`` dimensions.

    ``attrs`` are the group's OME attributes (``attributes["ome"]`` of a zarr v3 group).
    """
    prefix = _prefix(zarr_format)
    multiscale_model, label_model, _ = _models(zarr_format)
    raw = attrs["multiscales"][0]  # first_dataset has checked it
    version = attrs.get("version") if zarr_format == 3 else _declared_version(attrs)
    if zarr_format == 2 and _is_old(raw, version):
        raw = as_v04(raw, ndim)
    loc = json_path((*prefix, "multiscales", 0))
    model = _validated(multiscale_model, _lenient(raw), (*prefix, "multiscales", 0), file)
    axes = _axes(model, loc, file)
    if len(axes) != ndim:
        raise InputFormatError(
            f"{loc}.axes: {len(axes)} axes for an array of {ndim} dimensions", file
        )
    scale, shift = _transforms(
        model.datasets[0].coordinateTransformations, ndim, f"{loc}.datasets[0]", file
    )
    scale_all, shift_all = _transforms(model.coordinateTransformations, ndim, loc, file)
    colors, properties = _image_label(attrs.get("image-label"), label_model, prefix, file)
    return NgffImage(
        file=file,
        version=version if isinstance(version, str) else None,
        axes=axes,
        datasets=tuple(d.path for d in model.datasets),
        scale=tuple(s * g for s, g in zip(scale, scale_all, strict=True)),
        translation=tuple(
            t * g + u for t, g, u in zip(shift, scale_all, shift_all, strict=True)
        ),
        channels=_channels(attrs.get("omero"), prefix, file),
        label_colors=colors,  # type: ignore[arg-type]
        label_properties=properties,
    )


def label_names(attrs: Mapping[str, Any], file: Path, zarr_format: int) -> list[str] | None:
    """The ``labels`` list of a labels group (duplicates dropped); None when it has none."""
    if "labels" not in attrs:
        return None
    _, _, labels_model = _models(zarr_format)
    document = {"version": "0.5", **attrs} if zarr_format == 3 else dict(attrs)
    model = _validated(labels_model, document, _prefix(zarr_format), file)
    return list(dict.fromkeys(model.labels))
