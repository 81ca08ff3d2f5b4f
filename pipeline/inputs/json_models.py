"""pydantic v2 models of the JSON inputs: extra data, custom annotations, geometric segmentation
input, STAR options, batch rows and the documents of ``edit-descriptions`` /
``edit-segment-annotations``.

Strict (no string for a number, no ``true`` for 1, no NaN or Infinity), unknown keys refused
except where an item keeps its own keys (annotation items, primitive parameters). A
``ValidationError`` becomes one line ``<file>: <json path>: <problem>`` through
:func:`pipeline.json_errors.validation_error`. This module imports pydantic: import it inside
the functions that parse a JSON input, never at the top of a module the CLI imports.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.db.names import name_problem
from pipeline.inputs.kinds import kind_problem
from pipeline.inputs.limits import INT64_MAX, INT64_MIN, shortened
from pipeline.model import PRIMITIVE_PARAMETERS, RGBA, normalise_primitive
from pipeline.options import OPTION_DEFAULTS

__all__ = [
    "BATCH_ROW_OPTIONS",
    "AnnotationsDocument",
    "BatchRow",
    "ChannelAnnotationInput",
    "DescriptionInput",
    "ExtraDataDocument",
    "GeometricInput",
    "PrimitiveInput",
    "SegmentAnnotationInput",
    "StarOptionsDocument",
    "edit_items_adapter",
]


class _Strict(BaseModel):
    """Strict types, no NaN/Infinity, unknown keys refused naming the expected ones."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, frozen=True)
    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") != "allow":
            unknown = sorted(str(k) for k in set(data) - set(cls.model_fields))
            if unknown:
                expected = ", ".join(cls.model_fields)
                raise ValueError(f"unknown key(s) {', '.join(unknown)} (expected: {expected})")
        return data


class _Open(_Strict):
    """An item that keeps keys of its own besides those checked here."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False, frozen=True, extra="allow")


def _name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _int64_text(text: str, what: str) -> str:
    """An integer written as text (a segment id key) must fit int64."""
    if text.lstrip("-").isdigit() and not INT64_MIN <= int(text) <= INT64_MAX:
        raise ValueError(f"{what} {shortened(text)} is beyond the 64-bit integer range")
    return text


NonEmpty = Annotated[StrictStr, Field(min_length=1)]
Positive = Annotated[float, Field(gt=0)]
Unit = Annotated[float, Field(ge=0, le=1)]
Int64 = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
Vec3Positive = Annotated[list[Positive], Field(min_length=3, max_length=3)]
ColorRGBA = Annotated[list[Unit], Field(min_length=4, max_length=4)]
ColorRGBOrA = Annotated[list[Unit], Field(min_length=3, max_length=4)]
SegmentKey = Annotated[str, AfterValidator(lambda k: _int64_text(k, "segment id"))]


# --- STAR options (extra data's segmentation.star_files[<stem>], star-to-geometric) -----------


def _hex_color(text: str) -> str:
    from pipeline.inputs.star import parse_hex_color

    parse_hex_color(text)  # ValueError naming the text
    return text


class StarOptionsDocument(_Strict):
    """How a STAR file becomes spheres; None (or absent): the default."""

    segmentation_id: Annotated[NonEmpty, AfterValidator(_name)] | None = None
    sphere_radius: Positive | None = None
    sphere_color_hex: Annotated[NonEmpty, AfterValidator(_hex_color)] | None = None
    pixel_size: Positive | None = None
    star_file_coordinate_divisor: Positive | None = None
    tomo_name: NonEmpty | None = None
    tomogram_size: (
        Annotated[list[Annotated[StrictInt, Field(gt=0)]], Field(min_length=3, max_length=3)]
        | None
    ) = None

    def options(self) -> Any:
        """As :class:`pipeline.inputs.star.StarOptions`."""
        from pipeline.inputs.star import StarOptions, parse_hex_color

        size = self.tomogram_size
        return StarOptions(
            segmentation_id=self.segmentation_id,
            sphere_radius=100.0 if self.sphere_radius is None else self.sphere_radius,
            sphere_color=(
                None if self.sphere_color_hex is None else parse_hex_color(self.sphere_color_hex)
            ),
            pixel_size=self.pixel_size,
            coordinate_divisor=(
                1.0
                if self.star_file_coordinate_divisor is None
                else self.star_file_coordinate_divisor
            ),
            tomo_name=self.tomo_name,
            tomogram_size=None if size is None else (size[0], size[1], size[2]),
        )


# --- extra data ---------------------------------------------------------------------------


class ExtraVolume(_Strict):
    voxel_size: Vec3Positive = None  # type: ignore[assignment]  # absent: None; null refused
    channel_ids_mapping: dict[str, NonEmpty] = Field(default_factory=dict)
    dataset_specific_data: dict[str, Any] = Field(default_factory=dict)


class ExtraSegmentation(_Strict):
    voxel_size: Vec3Positive = None  # type: ignore[assignment]  # absent: None; null refused
    segmentation_ids_mapping: dict[str, NonEmpty] = Field(default_factory=dict)
    segment_ids_to_segment_names_mapping: dict[str, dict[SegmentKey, NonEmpty]] = Field(
        default_factory=dict
    )
    custom_segment_ids_mapping: dict[str, dict[SegmentKey, NonEmpty]] = Field(
        default_factory=dict
    )  # the older name of the above
    dataset_specific_data: dict[str, Any] = Field(default_factory=dict)
    star_files: dict[str, StarOptionsDocument] = Field(default_factory=dict)


class ExtraEntryMetadata(_Strict):
    description: StrictStr | None = None
    url: StrictStr | None = None


class ExtraDataDocument(_Strict):
    """An ``extra_data`` file (docs/inputs.md)."""

    volume: ExtraVolume = Field(default_factory=ExtraVolume)
    segmentation: ExtraSegmentation = Field(default_factory=ExtraSegmentation)
    entry_metadata: ExtraEntryMetadata | None = None


# --- custom annotations and the edit documents --------------------------------------------


class DescriptionInput(_Open):
    id: StrictStr
    target_kind: Literal["lattice", "mesh", "primitive", "entry"]


class SegmentAnnotationInput(_Open):
    id: StrictStr
    segment_kind: Literal["lattice", "mesh", "primitive"]
    segment_id: Int64
    segmentation_id: StrictStr
    color: ColorRGBA


class ChannelAnnotationInput(_Open):
    channel_id: StrictStr
    color: ColorRGBA


class AnnotationsDocument(_Strict):
    """A ``custom_annotations`` file: the annotations.json format (DESIGN 5); ``entry_id`` is
    ignored."""

    name: StrictStr | None = None
    details: StrictStr | None = None
    entry_id: Any = None
    descriptions: dict[str, DescriptionInput] | None = None
    segment_annotations: list[SegmentAnnotationInput] | None = None
    volume_channels_annotations: list[ChannelAnnotationInput] | None = None

    @field_validator("descriptions")
    @classmethod
    def _ids_are_keys(cls, value: dict[str, DescriptionInput] | None) -> Any:
        for key, item in (value or {}).items():
            if item.id != key:
                raise ValueError(f"item {key!r}: id {item.id!r} differs from its key")
        return value


_EDIT_ITEMS = {"descriptions": DescriptionInput, "segment_annotations": SegmentAnnotationInput}


def edit_items_adapter(key: str, by_id: bool) -> TypeAdapter[Any]:
    """Items of an edit document: a list, or an object by id (``by_id``)."""
    item = _EDIT_ITEMS[key]
    return TypeAdapter(dict[str, item] if by_id else list[item])  # type: ignore[valid-type]


# --- geometric segmentation input -----------------------------------------------------------


class PrimitiveParameters(_Open):
    """``parameters`` of a primitive: its id, colour and label; the kind's own parameters
    (DESIGN 6) are checked by :func:`pipeline.model.normalise_primitive`."""

    id: Int64
    color: ColorRGBOrA | None = None
    label: StrictStr | None = None

    def rgba(self) -> RGBA | None:
        if self.color is None:
            return None
        r, g, b, *a = self.color
        return (r, g, b, a[0] if a else 1.0)


class PrimitiveInput(_Strict):
    kind: StrictStr
    parameters: PrimitiveParameters

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in PRIMITIVE_PARAMETERS:
            kinds = ", ".join(sorted(PRIMITIVE_PARAMETERS))
            raise ValueError(f"unknown kind {kind!r} (expected one of: {kinds})")
        return kind

    @field_validator("parameters")
    @classmethod
    def _kind_parameters(cls, value: PrimitiveParameters, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind is not None:
            normalise_primitive(kind, dict(value.model_extra or {}))  # ValueError: the problem
        return value

    def stored(self) -> dict[str, Any]:
        """The form geometric_segmentation.json stores (DESIGN 6)."""
        rest = dict(self.parameters.model_extra or {})
        return {
            "id": self.parameters.id,
            "kind": self.kind,
            **normalise_primitive(self.kind, rest),
        }


def _frame_key(key: str) -> str:
    if not key.isdigit():
        raise ValueError(f"{shortened(key)!r} is not a time index (0, 1, ...)")
    return _int64_text(key, "frame")


def _unique_ids(items: list[PrimitiveInput]) -> list[PrimitiveInput]:
    seen: dict[int, int] = {}
    for n, item in enumerate(items):
        ident = item.parameters.id
        if ident in seen:
            raise ValueError(f"id {ident} of [{n}] is already used by [{seen[ident]}]")
        seen[ident] = n
    return items


def _segmentation_id(value: Any) -> Any:
    if type(value) is int:
        return str(value)
    return value


class GeometricInput(_Strict):
    """A ``geometric_segmentation`` input file (docs/inputs.md)."""

    segmentation_id: Annotated[StrictStr | None, BeforeValidator(_segmentation_id)] = None
    time_units: NonEmpty | None = None
    shape_primitives_input: Annotated[
        dict[
            Annotated[str, AfterValidator(_frame_key)],
            Annotated[list[PrimitiveInput], AfterValidator(_unique_ids)],
        ],
        Field(min_length=1),
    ]


# --- batch rows -------------------------------------------------------------------------------


def _inputs(value: Any) -> list[tuple[str, str]]:
    """``[{"path", "kind"}…]``, ``[[path, kind]…]`` (JSON) or ``kind:path;kind:path`` (CSV)."""
    pairs: list[tuple[str, str]] = []
    if isinstance(value, str):
        for item in filter(None, (part.strip() for part in value.split(";"))):
            kind, sep, file = item.partition(":")
            if not sep or not file:
                raise ValueError(f"input {item!r} is not kind:path")
            pairs.append((file.strip(), kind.strip()))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            if isinstance(item, dict) and {"path", "kind"} <= set(item):
                pairs.append((str(item["path"]), str(item["kind"])))
            elif isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((str(item[0]), str(item[1])))
            else:
                raise ValueError(f"input {n}: each input is {{'path': ..., 'kind': ...}}")
    else:
        raise ValueError("must be a list or kind:path;kind:path")
    if not pairs:
        raise ValueError("no inputs")
    for _, kind in pairs:
        if (problem := kind_problem(kind)) is not None:
            raise ValueError(f"unknown input kind {problem}")
    return pairs


# options of ``preprocess`` a batch row may set (the others are the whole batch's)
BATCH_ROW_OPTIONS = frozenset(OPTION_DEFAULTS) - {
    "scheduler",
    "workers",
    "max_memory",
    "dry_run",
    "transfer",
    "storage_options",
}


class BatchRow(_Open):
    """A row of a ``batch`` list; the other options of :data:`BATCH_ROW_OPTIONS` it sets are
    checked when the run's options are built."""

    entry_id: Annotated[StrictStr, AfterValidator(_name)]
    source_db: Annotated[StrictStr, AfterValidator(_name)]
    inputs: Annotated[list[tuple[str, str]], BeforeValidator(_inputs)]
    source_db_id: StrictStr | None = None
    source_db_name: StrictStr | None = None
    remove_original_resolution: StrictBool | None = None
    min_downsampling_level: StrictInt | None = None
    max_downsampling_level: StrictInt | None = None
    min_size_per_downsampling_lvl_mb: float | None = None
    max_size_per_downsampling_lvl_mb: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in set(data) - set(cls.model_fields) - BATCH_ROW_OPTIONS)
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(unknown)}")
        return data
