"""Typed entry documents: metadata.json, annotations.json and geometric_segmentation.json.

The only reader and writer of an entry's JSON documents (DESIGN 4-6). ``*.from_json`` parses
strictly: any malformed document becomes a :class:`DocumentError` naming the file and the JSON
path of the first problem (numbers beyond int64, NaN/Infinity, time ranges beyond
:data:`MAX_FRAMES` and nesting are bounded). ``to_json`` writes the bytes this project has
always written for the same entry: keys in their historical order, numbers as given, items
merged from a ``custom_annotations`` file with their own keys in their own order.

:class:`EntryDocuments` holds the three documents of one entry with the operations commands
perform on them (adding segmentations, merging and editing annotations, removals) and
:meth:`EntryDocuments.reference_problems`, the referential integrity rules (DESIGN 5).

The schema is the models' annotations, and nothing else: :class:`_Doc` reads each model's
fields from its annotations, a model is checked against them wherever it is made (parsed,
built from a dict, constructed), and serialised by walking them. Types are strict: ``str``,
``int`` (not ``bool``), ``float`` (not ``int``), ``bool``, ``None``, ``Literal``, unions,
``list``, ``dict[str, ...]``, ``Any`` (kept as it is) and models; ``Annotated`` adds
:class:`Bounds` (integers), :class:`Length` (lists) and :class:`Finite` (floats). Plain Python
(no pydantic): adding an entry imports nothing beyond the standard library here.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pipeline.db.layout import ANNOTATIONS_JSON, GEOMETRIC_JSON, METADATA_JSON
from pipeline.errors import DocumentError
from pipeline.json_errors import json_path, parse_json, shown_value

__all__ = [
    "MAX_FRAMES",
    "Annotations",
    "DocumentError",
    "EntryDocuments",
    "GeometricItem",
    "Metadata",
    "dump_json",
    "parse_geometric",
    "write_documents",
]

MAX_FRAMES = 1_000_000  # time frames per segmentation or volume (a bound for every loop over them)
MAX_DOCUMENT_BYTES = 1 << 30


def dump_json(document: Any) -> bytes:
    """The bytes of a document as entries store it (4-space indent, a final newline)."""
    return (json.dumps(document, indent=4) + "\n").encode()


def write_documents(folder: Path, files: dict[str, bytes | None]) -> list[str]:
    """Write documents (name -> bytes; None: no such file) into a staged entry folder, then
    fsync each: written first, their data goes to disk in the first fsync's journal commit
    instead of one commit per document. Returns the names written, in order."""
    names = [name for name, data in files.items() if data is not None]
    opened = []
    try:
        for name in names:
            f = open(folder / name, "wb")  # noqa: SIM115 (kept open until its fsync)
            opened.append(f)
            f.write(files[name])  # type: ignore[arg-type]
            f.flush()
        for f in opened:
            os.fsync(f.fileno())
    finally:
        for f in opened:
            f.close()
    return names


# --- the schema vocabulary -------------------------------------------------------------------


class Bounds(NamedTuple):
    """``Annotated[int, Bounds(lo, hi)]``: lo <= value <= hi."""

    lo: int
    hi: int


class Length(NamedTuple):
    """``Annotated[list[...], Length(lo, hi)]``: lo <= len(value) <= hi (hi None: no bound)."""

    lo: int
    hi: int | None


class Finite(NamedTuple):
    """``Annotated[float, Finite()]``: neither NaN nor infinite."""


Int64 = Annotated[int, Bounds(-(2**63), 2**63 - 1)]
Count = Annotated[int, Bounds(0, 2**63 - 1)]
Number = Int64 | Annotated[float, Finite()]
Vec3 = Annotated[list[Number], Length(3, 3)]
Time = Int64 | list[Int64] | None


class _SchemaError(ValueError):
    """A value that does not fit the schema: where (JSON path parts), what, and the value."""

    def __init__(
        self, loc: tuple[Any, ...], message: str, value: Any, show: bool = True, kind: bool = False
    ):
        self.loc, self.message, self.value, self.show = loc, message, value, show
        self.kind = kind  # the value is not of the type (rather than out of bounds)
        super().__init__(loc, message)

    def __str__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """``$.json.path: message (got value)``."""
        shown = shown_value(self.value) if self.show else ""
        return f"{json_path(self.loc)}: {self.message}{shown}"


# a checker: (value, JSON path parts, as read) -> the value as the model holds it
Checker = Callable[[Any, tuple[Any, ...], bool], Any]


def _scalar(kind: type, message: str) -> Checker:
    def check(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        if type(v) is not kind and not (isinstance(v, kind) and not isinstance(v, bool)):
            raise _SchemaError(loc, message, v, kind=True)
        return v

    return check


def _check_none(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
    if v is not None:
        raise _SchemaError(loc, "Input should be None", v, kind=True)
    return v


def _check_any(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
    return v


def _annotated(inner: Checker, constraints: list[Any]) -> Checker:
    def check(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        v = inner(v, loc, as_read)
        for c in constraints:
            if isinstance(c, Bounds):
                if v < c.lo:
                    raise _SchemaError(loc, f"Input should be greater than or equal to {c.lo}", v)
                if v > c.hi:
                    raise _SchemaError(loc, f"Input should be less than or equal to {c.hi}", v)
            elif isinstance(c, Length):
                if len(v) < c.lo:
                    raise _SchemaError(loc, f"List should have at least {c.lo} items", v)
                if c.hi is not None and len(v) > c.hi:
                    raise _SchemaError(loc, f"List should have at most {c.hi} items", v)
            elif isinstance(c, Finite) and (v != v or v in (float("inf"), float("-inf"))):
                raise _SchemaError(loc, "Input should be a finite number", v)
        return v

    return check


def _union(options: list[Checker], kinds: list[tuple[type, ...]]) -> Checker:
    """``kinds``: per option, the Python types of the values it may accept (empty: any)."""
    by_type: dict[type, Checker] = {}
    for option, types_ in zip(options, kinds, strict=True):
        if not types_:
            by_type.clear()
            break
        for t in types_:
            by_type.setdefault(t, option)

    def check(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        option = by_type.get(type(v))
        if option is not None:  # the one option for values of this type
            return option(v, loc, as_read)
        errors = []
        for option in options:
            try:
                return option(v, loc, as_read)
            except _SchemaError as exc:
                errors.append(exc)
        # the option that fit best: the deepest problem, a value of the option's type
        raise max(errors, key=lambda e: (len(e.loc), not e.kind))

    return check


def _list(item: Checker) -> Checker:
    def check(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        if not isinstance(v, list):
            raise _SchemaError(loc, "Input should be a valid list", v, kind=True)
        return [item(x, (*loc, n), as_read) for n, x in enumerate(v)]

    return check


def _dict(value: Checker) -> Checker:
    def check(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        if not isinstance(v, dict):
            raise _SchemaError(loc, "Input should be a valid dictionary", v, kind=True)
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise _SchemaError((*loc, k), "Keys should be strings", k)
            out[k] = value(x, (*loc, k), as_read)
        return out

    return check


def _literal(choices: tuple[Any, ...]) -> Checker:
    expected = " or ".join(repr(c) for c in choices)
    allowed = frozenset((type(c), c) for c in choices)

    def check(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        try:
            known = (type(v), v) in allowed
        except TypeError:  # unhashable
            known = False
        if not known:
            raise _SchemaError(loc, f"Input should be {expected}", v)
        return v

    return check


def _model(cls: type[_Doc]) -> Checker:
    def check(v: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        if type(v) is cls:  # made and checked already
            return v
        return cls._make(v, loc, as_read)

    return check


_SCALARS: dict[Any, Checker] = {
    str: _scalar(str, "Input should be a valid string"),
    int: _scalar(int, "Input should be a valid integer"),
    float: _scalar(float, "Input should be a valid number"),
    bool: _scalar(bool, "Input should be a valid boolean"),
    type(None): _check_none,
    Any: _check_any,
}


def _checker(tp: Any) -> Checker:
    """The checker of one annotation (see the module's docstring for the types known)."""
    if tp in _SCALARS:
        return _SCALARS[tp]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _annotated(_checker(args[0]), list(tp.__metadata__))
    if origin in (typing.Union, types.UnionType):
        return _union([_checker(a) for a in args], [_kinds(a) for a in args])
    if origin is Literal:
        return _literal(args)
    if origin is list:
        return _list(_checker(args[0]))
    if origin is dict and args[0] is str:
        return _dict(_checker(args[1]))
    if isinstance(tp, type) and issubclass(tp, _Doc):
        return _model(tp)
    raise TypeError(f"no checker for {tp!r}")


def _kinds(tp: Any) -> tuple[type, ...]:
    """The Python types of the values an annotation may accept (empty: any, or unknown)."""
    if typing.get_origin(tp) is Annotated:
        return _kinds(typing.get_args(tp)[0])
    origin = typing.get_origin(tp)
    if origin is Literal:
        return tuple({type(c) for c in typing.get_args(tp)})
    if origin in (list, dict):
        return (origin,)
    if isinstance(tp, type) and issubclass(tp, _Doc):
        return (dict, tp)
    if tp in (str, int, float, bool, type(None)):
        return (tp,)
    return ()


def _dump(v: Any) -> Any:
    """A model's value as JSON data (models, and the lists and dicts holding them, copied)."""
    if isinstance(v, _Doc):
        return v.dump()
    if isinstance(v, list):
        return [_dump(x) for x in v]
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    return v


class _Doc:
    """A model: its fields are its annotations (definition order; a field with a class
    attribute has it as default). Strict, no unknown keys (``extra_allowed``: kept, after the
    fields). Serialised with the keys it was read with, in their order, and those set since
    (models made in code: every field in definition order, except those in ``omit_none``
    when None)."""

    omit_none: ClassVar[tuple[str, ...]] = ()
    extra_allowed: ClassVar[bool] = False
    _fields: ClassVar[tuple[str, ...]] = ()
    _field_set: ClassVar[frozenset[str]] = frozenset()
    _required: ClassVar[frozenset[str]] = frozenset()  # the fields without a default
    _checkers: ClassVar[dict[str, Checker] | None] = None

    _order: tuple[str, ...] | None  # the keys as read (None: made in code)
    _set: set[str]  # fields given or assigned
    _extra: dict[str, Any]  # keys not among the fields (extra_allowed), with their values

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for base in reversed(cls.__mro__):
            if issubclass(base, _Doc):
                for name, annotation in inspect.get_annotations(base).items():
                    if name.startswith("_") or str(annotation).startswith("ClassVar"):
                        continue
                    if name not in names:
                        names.append(name)
        cls._fields = tuple(names)
        cls._field_set = frozenset(names)
        cls._required = frozenset(n for n in names if not hasattr(cls, n))
        cls._checkers = None  # compiled on first use

    @classmethod
    def _compiled(cls) -> dict[str, Checker]:
        if cls.__dict__.get("_checkers") is None:
            module = sys.modules[cls.__module__].__dict__
            hints = typing.get_type_hints(cls, module, include_extras=True)
            cls._checkers = {name: _checker(hints[name]) for name in cls._fields}
        return cls._checkers  # type: ignore[return-value]

    @classmethod
    def _make(cls, raw: Any, loc: tuple[Any, ...], as_read: bool) -> Any:
        """A model of ``raw`` (a dict), checked; ``as_read`` keeps its keys' order."""
        if not isinstance(raw, dict):
            raise _SchemaError(loc, "Input should be a valid dictionary", raw, kind=True)
        self = object.__new__(cls)
        values = self.__dict__
        for name, check in cls._compiled().items():
            if name in raw:
                values[name] = check(raw[name], (*loc, name), as_read)
            elif name in cls._required:
                raise _SchemaError((*loc, name), "Field required", None, show=False)
        extra = {k: v for k, v in raw.items() if k not in cls._field_set}
        if extra and not cls.extra_allowed:
            where = (*loc, next(iter(extra)))
            raise _SchemaError(where, "Extra inputs are not permitted", None, show=False)
        values["_extra"] = extra
        values["_set"] = {k for k in raw if k in cls._field_set}
        values["_order"] = tuple(raw) if as_read else None
        try:
            self._check()
        except _SchemaError:
            raise
        except ValueError as exc:
            raise _SchemaError(loc, str(exc), raw) from None
        return self

    @classmethod
    def validate(cls, raw: Any, as_read: bool = False) -> Any:
        """A model of a dict, checked (``as_read``: serialised with the dict's keys in their
        order); :class:`_SchemaError` (a ValueError) names the JSON path of the first problem."""
        return cls._make(raw, (), as_read)

    def __init__(self, **values: Any) -> None:
        made = self._make(values, (), False)
        self.__dict__.update(made.__dict__)

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__[name] = value
        if name in self._field_set:
            self._set.add(name)

    def _check(self) -> None:
        """Rules across fields (raise ValueError)."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = self.__dict__, other.__dict__  # fields, extra keys, order as read
        return {k: v for k, v in mine.items() if k != "_set"} == {
            k: v for k, v in theirs.items() if k != "_set"
        }

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k, None)!r}" for k in self._fields)
        return f"{type(self).__name__}({fields})"

    def dump(self) -> Any:
        """The model as JSON data."""
        data = {name: _dump(getattr(self, name)) for name in self._fields}
        data.update(self._extra)
        omit = self.omit_none
        if self._order is not None:  # as read, and what was set since
            position = list(data).index
            later = sorted((k for k in self._set if k not in self._order), key=position)
            keys = [*self._order, *later]
            return {k: data[k] for k in keys if k in data and not (data[k] is None and k in omit)}
        return {k: v for k, v in data.items() if not (v is None and k in omit)}


class _Item(_Doc):
    """Annotation items: unknown keys (e.g. from a custom annotations file) are kept."""

    extra_allowed = True


# --- metadata.json ---------------------------------------------------------------------------


class EntryId(_Doc):
    source_db_name: str
    source_db_id: str


class TimeInfo(_Doc):
    kind: Literal["range"]
    start: Count
    end: Count
    units: str

    def _check(self) -> None:
        if self.end < self.start:
            raise ValueError(f"end {self.end} before start {self.start}")
        if self.end - self.start + 1 > MAX_FRAMES:
            raise ValueError(f"{self.end - self.start + 1} time frames (at most {MAX_FRAMES})")

    @property
    def frames(self) -> range:
        return range(self.start, self.end + 1)


class Level(_Doc):
    level: Annotated[int, Bounds(1, 2**40)]
    available: bool


class Box(_Doc):
    origin: Vec3
    voxel_size: Vec3
    grid_dimensions: Annotated[list[Annotated[int, Bounds(1, 2**40)]], Length(3, 3)]


class Stats(_Doc):
    mean: Number
    std: Number
    min: Number
    max: Number


AxisOrder = Annotated[list[Annotated[int, Bounds(0, 2)]], Length(3, 3)]


class _Levels:
    spatial_downsampling_levels: list[Level]

    @property
    def available_levels(self) -> list[int]:
        return [lv.level for lv in self.spatial_downsampling_levels if lv.available]


class VolumeSampling(_Doc, _Levels):
    spatial_downsampling_levels: list[Level]
    boxes: dict[str, Box]
    descriptive_statistics: dict[str, dict[str, dict[str, Stats]]]
    time_transformations: list[dict[str, Any]]
    source_axes_units: dict[str, str]
    original_axis_order: AxisOrder


class Volumes(_Doc):
    channel_ids: Annotated[list[str], Length(1, None)]
    time_info: TimeInfo
    volume_sampling_info: VolumeSampling


class LatticeSampling(_Doc, _Levels):
    spatial_downsampling_levels: list[Level]
    boxes: dict[str, Box]
    time_transformations: list[dict[str, Any]]
    source_axes_units: dict[str, str]
    original_axis_order: AxisOrder


class Lattices(_Doc):
    segmentation_ids: list[str]
    segmentation_sampling_info: dict[str, LatticeSampling]
    time_info: dict[str, TimeInfo]


class MeshCounts(_Doc):
    num_vertices: Count
    num_triangles: Count
    num_normals: Count


class MeshLevel(_Doc):
    mesh_ids: dict[str, MeshCounts]


class MeshSegment(_Doc):
    detail_lvls: dict[str, MeshLevel]


class MeshFrame(_Doc):
    segment_ids: dict[str, MeshSegment]


class MeshSetMetadata(_Doc):
    detail_lvl_to_fraction: dict[str, Number]
    mesh_timeframes: dict[str, MeshFrame]

    def segments(self) -> dict[int, set[int]]:
        """Segment id -> the frames where it has meshes."""
        out: dict[int, set[int]] = {}
        for t, frame in self.mesh_timeframes.items():
            for s in frame.segment_ids:
                out.setdefault(int(s), set()).add(int(t))
        return out


class Meshes(_Doc):
    segmentation_ids: list[str]
    segmentation_metadata: dict[str, MeshSetMetadata]
    time_info: dict[str, TimeInfo]


class GeometricSection(_Doc):
    segmentation_ids: list[str]
    time_info: dict[str, TimeInfo]


class EntryMetadata(_Doc):
    description: str | None
    url: str | None


def _empty_lattices() -> Lattices:
    return Lattices(segmentation_ids=[], segmentation_sampling_info={}, time_info={})


def _empty_meshes() -> Meshes:
    return Meshes(segmentation_ids=[], segmentation_metadata={}, time_info={})


def _empty_geometric() -> GeometricSection:
    return GeometricSection(segmentation_ids=[], time_info={})


class Metadata(_Doc):
    """metadata.json (DESIGN 4)."""

    omit_none: ClassVar[tuple[str, ...]] = ("entry_metadata",)
    entry_id: EntryId
    volumes: Volumes | None
    segmentation_lattices: Lattices
    segmentation_meshes: Meshes
    geometric_segmentation: GeometricSection
    entry_metadata: EntryMetadata | None = None

    def _check(self) -> None:
        for name, ids, infos in (
            (
                "segmentation_lattices",
                self.segmentation_lattices.segmentation_ids,
                (
                    (
                        "segmentation_sampling_info",
                        self.segmentation_lattices.segmentation_sampling_info,
                    ),
                    ("time_info", self.segmentation_lattices.time_info),
                ),
            ),
            (
                "segmentation_meshes",
                self.segmentation_meshes.segmentation_ids,
                (
                    ("segmentation_metadata", self.segmentation_meshes.segmentation_metadata),
                    ("time_info", self.segmentation_meshes.time_info),
                ),
            ),
            (
                "geometric_segmentation",
                self.geometric_segmentation.segmentation_ids,
                (("time_info", self.geometric_segmentation.time_info),),
            ),
        ):
            if len(set(ids)) != len(ids):
                raise ValueError(f"{name}.segmentation_ids: an id listed twice")
            for key, info in infos:
                if set(info) != set(ids):
                    raise ValueError(
                        f"{name}.{key}: ids {sorted(info)} differ from segmentation_ids "
                        f"{sorted(ids)}"
                    )

    @classmethod
    def empty(cls, source_db_name: str, source_db_id: str) -> Metadata:
        return cls(
            entry_id=EntryId(source_db_name=source_db_name, source_db_id=source_db_id),
            volumes=None,
            segmentation_lattices=_empty_lattices(),
            segmentation_meshes=_empty_meshes(),
            geometric_segmentation=_empty_geometric(),
        )

    @classmethod
    def from_json(cls, data: bytes | str, name: str = METADATA_JSON) -> Metadata:
        return _parse(cls, data, name)

    def to_json(self) -> bytes:
        return dump_json(self.dump())


# --- annotations.json ------------------------------------------------------------------------

Color = Annotated[list[Number], Length(4, 4)]
Kind = Literal["lattice", "mesh", "primitive"]


class ChannelAnnotation(_Item):
    channel_id: str
    color: Color
    label: str | None = None


class TargetId(_Item):
    segmentation_id: str
    segment_id: Int64


class ExternalReference(_Item):
    id: str | Int64 | None = None
    resource: str | None = None
    accession: str | None = None
    label: str | None = None
    description: str | None = None
    url: str | None = None


class Details(_Item):
    format: Literal["text", "markdown"]
    text: str


class Description(_Item):
    id: str
    target_kind: Literal["lattice", "mesh", "primitive", "entry"]
    target_id: TargetId | None = None
    name: str | None = None
    external_references: list[ExternalReference] | None = None
    is_hidden: bool | None = None
    time: Time = None
    details: Details | None = None
    metadata: dict[str, Any] | None = None


class SegmentAnnotation(_Item):
    id: str
    segment_kind: Kind
    segment_id: Int64
    segmentation_id: str
    color: Color
    time: Time = None


class Annotations(_Doc):
    """annotations.json (DESIGN 5)."""

    name: str | None
    details: str | None
    entry_id: EntryId
    volume_channels_annotations: list[ChannelAnnotation]
    descriptions: dict[str, Description]
    segment_annotations: list[SegmentAnnotation]

    def _check(self) -> None:
        for key, item in self.descriptions.items():
            if item.id != key:
                raise ValueError(f"descriptions[{key!r}]: id {item.id!r} differs from its key")
        seen: set[str] = set()
        for n, a in enumerate(self.segment_annotations):
            if a.id in seen:
                raise ValueError(f"segment_annotations[{n}]: id {a.id} used twice")
            seen.add(a.id)

    @classmethod
    def empty(cls, source_db_name: str, source_db_id: str) -> Annotations:
        return cls(
            name=None,
            details=None,
            entry_id=EntryId(source_db_name=source_db_name, source_db_id=source_db_id),
            volume_channels_annotations=[],
            descriptions={},
            segment_annotations=[],
        )

    @classmethod
    def from_json(cls, data: bytes | str, name: str = ANNOTATIONS_JSON) -> Annotations:
        return _parse(cls, data, name)

    def to_json(self) -> bytes:
        return dump_json(self.dump())


# --- geometric_segmentation.json -------------------------------------------------------------


class ShapeFrame(_Doc):
    shape_primitive_list: list[dict[str, Any]]

    def _check(self) -> None:
        from pipeline.model import normalise_primitive

        seen: set[int] = set()
        for n, p in enumerate(self.shape_primitive_list):
            ident = p.get("id")
            if type(ident) is not int or not -(2**63) <= ident < 2**63:
                raise ValueError(f"shape_primitive_list[{n}]: id must be an integer")
            if ident in seen:
                raise ValueError(f"shape_primitive_list[{n}]: id {ident} used twice")
            seen.add(ident)
            params = {k: v for k, v in p.items() if k not in ("id", "kind")}
            try:
                normalise_primitive(p.get("kind"), params)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"shape_primitive_list[{n}] ({p.get('kind')}): {exc}") from None


class GeometricItem(_Doc):
    segmentation_id: str
    primitives: dict[str, ShapeFrame]

    def _check(self) -> None:
        for t in self.primitives:
            if not (t.isdigit() and len(t) < 8):
                raise ValueError(f"primitives: frame {t!r} is not a frame index")

    def primitive_frames(self) -> dict[int, set[int]]:
        """Primitive id -> the frames where it is."""
        out: dict[int, set[int]] = {}
        for t, frame in self.primitives.items():
            for p in frame.shape_primitive_list:
                out.setdefault(p["id"], set()).add(int(t))
        return out


def parse_geometric(data: bytes | str, name: str = GEOMETRIC_JSON) -> list[GeometricItem]:
    """geometric_segmentation.json (DESIGN 6)."""
    document = _load(data, name)
    if not isinstance(document, list):
        raise DocumentError("$: not a list", name)
    try:
        items = _checker(list[GeometricItem])(document, (), True)
    except _SchemaError as exc:
        raise DocumentError(exc.describe(), name) from None
    ids = [i.segmentation_id for i in items]
    if len(set(ids)) != len(ids):
        raise DocumentError("$: a segmentation_id listed twice", name)
    return items


def geometric_json(items: list[GeometricItem]) -> bytes:
    return dump_json([i.dump() for i in items])


# --- parsing ---------------------------------------------------------------------------------


def _load(data: bytes | str, name: str) -> Any:
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"larger than {MAX_DOCUMENT_BYTES >> 20} MiB", name)
    return parse_json(data, name, error=DocumentError, parse_constant=_no_constant)


def _no_constant(word: str) -> Any:
    raise ValueError(f"{word} is not a number")


def _parse(cls: type[Any], data: bytes | str, name: str) -> Any:
    document = _load(data, name)
    if not isinstance(document, dict):
        what = {type(None): "null", list: "a list", str: "a string", bool: "a boolean"}.get(
            type(document), "a number"
        )
        raise DocumentError(f"$: not a JSON object ({what})", name)
    try:
        return cls.validate(document, as_read=True)
    except _SchemaError as exc:
        raise DocumentError(exc.describe(), name) from None
    except RecursionError:
        raise DocumentError("nested too deeply", name) from None


def _validate(cls: type[Any], raw: Any, where: str, source: str) -> Any:
    try:
        return cls.validate(raw, as_read=True)
    except _SchemaError as exc:
        raise DocumentError(f"{where}{exc.describe()[1:]}", source) from None


# --- one entry's documents -------------------------------------------------------------------


@dataclass
class EntryDocuments:
    """metadata.json, annotations.json and geometric_segmentation.json of one entry (None: the
    entry has no such file) with the operations commands perform on them."""

    metadata: Metadata
    annotations: Annotations
    geometric: list[GeometricItem] | None = None
    # lattice id -> segment id -> frames where it occurs (read from the set tables; only
    # needed for reference checks of lattice annotations)
    lattice_segments: dict[str, dict[int, set[int]]] = field(default_factory=dict)

    @classmethod
    def new(cls, source_db_name: str, source_db_id: str) -> EntryDocuments:
        return cls(
            Metadata.empty(source_db_name, source_db_id),
            Annotations.empty(source_db_name, source_db_id),
        )

    @classmethod
    def parse(cls, metadata: bytes, annotations: bytes, geometric: bytes | None) -> EntryDocuments:
        return cls(
            Metadata.from_json(metadata),
            Annotations.from_json(annotations),
            None if geometric is None else parse_geometric(geometric),
        )

    def files(self) -> dict[str, bytes | None]:
        """File name -> bytes (None: the entry has no such file)."""
        return {
            METADATA_JSON: self.metadata.to_json(),
            ANNOTATIONS_JSON: self.annotations.to_json(),
            GEOMETRIC_JSON: None if self.geometric is None else geometric_json(self.geometric),
        }

    # ids ---------------------------------------------------------------------------------
    @property
    def lattice_ids(self) -> list[str]:
        return list(self.metadata.segmentation_lattices.segmentation_ids)

    @property
    def mesh_set_ids(self) -> list[str]:
        return list(self.metadata.segmentation_meshes.segmentation_ids)

    @property
    def geometric_ids(self) -> list[str]:
        return list(self.metadata.geometric_segmentation.segmentation_ids)

    def ids_of(self, kind: str) -> list[str]:
        return {
            "lattice": self.lattice_ids,
            "mesh": self.mesh_set_ids,
            "primitive": self.geometric_ids,
        }[kind]

    def volume_levels(self) -> list[int]:
        volumes = self.metadata.volumes
        return [] if volumes is None else volumes.volume_sampling_info.available_levels

    def segments(self, kind: str) -> dict[str, dict[int, set[int]]]:
        """Segmentation id -> segment id -> frames, for one kind."""
        if kind == "lattice":
            return self.lattice_segments
        if kind == "mesh":
            meta = self.metadata.segmentation_meshes.segmentation_metadata
            return {sid: meta[sid].segments() for sid in self.mesh_set_ids if sid in meta}
        return {g.segmentation_id: g.primitive_frames() for g in self.geometric or []}

    # building ----------------------------------------------------------------------------
    def set_volume(self, volumes: dict[str, Any], channels: list[dict[str, Any]]) -> None:
        self.metadata.volumes = Volumes.validate(volumes)
        self.annotations.volume_channels_annotations = [
            ChannelAnnotation.validate(c) for c in channels
        ]

    def set_entry_metadata(self, description: str | None, url: str | None) -> None:
        self.metadata.entry_metadata = EntryMetadata(description=description, url=url)

    def name_if_unnamed(self, name: str | None, details: str | None) -> None:
        """An SFF's name and details describe the entry when nothing else did."""
        if self.annotations.name is None and name:
            self.annotations.name, self.annotations.details = name, details

    def add_lattice(
        self, lattice_id: str, sampling: dict[str, Any], time_info: dict[str, Any]
    ) -> None:
        section = self.metadata.segmentation_lattices
        if lattice_id in section.segmentation_ids:
            raise ValueError(f"lattice {lattice_id} already in the entry")
        section.segmentation_ids.append(lattice_id)
        section.segmentation_sampling_info[lattice_id] = LatticeSampling.validate(sampling)
        section.time_info[lattice_id] = TimeInfo.validate(time_info)

    def add_mesh_set(self, set_id: str, info: dict[str, Any], time_info: dict[str, Any]) -> None:
        section = self.metadata.segmentation_meshes
        if set_id in section.segmentation_ids:
            raise ValueError(f"mesh set {set_id} already in the entry")
        section.segmentation_ids.append(set_id)
        section.segmentation_metadata[set_id] = MeshSetMetadata.validate(info)
        section.time_info[set_id] = TimeInfo.validate(time_info)

    def add_geometric(self, item: dict[str, Any], time_info: dict[str, Any]) -> int:
        """Append a geometric segmentation; returns its position (for its default colour)."""
        parsed = GeometricItem.validate(item)
        section = self.metadata.geometric_segmentation
        section.segmentation_ids.append(parsed.segmentation_id)
        section.time_info[parsed.segmentation_id] = TimeInfo.validate(time_info)
        self.geometric = [*(self.geometric or []), parsed]
        return len(section.segmentation_ids) - 1

    def add_description(self, item: dict[str, Any]) -> None:
        d = Description.validate(item)
        self.annotations.descriptions[d.id] = d

    def add_segment_annotation(self, item: dict[str, Any]) -> None:
        a = SegmentAnnotation.validate(item)
        self.annotations.segment_annotations.append(a)

    def merge(
        self, custom: dict[str, Any], source: str = "custom annotations"
    ) -> tuple[list[str], list[str]]:
        """Merge a custom annotations document: name/details when given, descriptions by id,
        segment annotations by id and channel annotations by channel id (replaced or added);
        items keep their own keys in their own order. A malformed item is a
        :class:`DocumentError` naming ``source`` and the item's JSON path. Returns the ids of
        the descriptions and segment annotations merged."""
        merged: tuple[list[str], list[str]] = ([], [])
        a = self.annotations
        for key in ("name", "details"):
            value = custom.get(key)
            if value is not None:
                if not isinstance(value, str):
                    raise DocumentError(f"$.{key}: must be a string or null", source)
                setattr(a, key, value)
        descriptions = custom.get("descriptions") or {}
        for key, item in descriptions.items():
            d = _validate(Description, item, f"$.descriptions[{json.dumps(key)}]", source)
            if d.id != key:
                raise DocumentError(
                    f"$.descriptions[{json.dumps(key)}]: id {d.id!r} differs from its key", source
                )
            a.descriptions[key] = d
            merged[0].append(key)
        for attr, cls, ident in (
            ("segment_annotations", SegmentAnnotation, "id"),
            ("volume_channels_annotations", ChannelAnnotation, "channel_id"),
        ):
            items = getattr(a, attr)
            where = {getattr(item, ident): n for n, item in enumerate(items)}
            for n, raw in enumerate(custom.get(attr) or []):
                item = _validate(cls, raw, f"$.{attr}[{n}]", source)
                key = getattr(item, ident)
                if attr == "segment_annotations":
                    merged[1].append(key)
                if key in where:
                    items[where[key]] = item
                else:
                    where[key] = len(items)
                    items.append(item)
        return merged

    # removing ----------------------------------------------------------------------------
    def remove_segmentations(self, kind: str, ids: Iterable[str]) -> None:
        """Remove lattices, mesh sets or geometric segmentations with their annotations."""
        gone = set(ids)
        if kind == "lattice":
            s = self.metadata.segmentation_lattices
            s.segmentation_ids = [i for i in s.segmentation_ids if i not in gone]
            for i in gone:
                s.segmentation_sampling_info.pop(i, None)
                s.time_info.pop(i, None)
                self.lattice_segments.pop(i, None)
        elif kind == "mesh":
            m = self.metadata.segmentation_meshes
            m.segmentation_ids = [i for i in m.segmentation_ids if i not in gone]
            for i in gone:
                m.segmentation_metadata.pop(i, None)
                m.time_info.pop(i, None)
        else:
            g = self.metadata.geometric_segmentation
            g.segmentation_ids = [i for i in g.segmentation_ids if i not in gone]
            for i in gone:
                g.time_info.pop(i, None)
            rest = [i for i in self.geometric or [] if i.segmentation_id not in gone]
            self.geometric = rest or None
        a = self.annotations
        a.segment_annotations = [
            s
            for s in a.segment_annotations
            if not (s.segment_kind == kind and s.segmentation_id in gone)
        ]
        a.descriptions = {
            k: d
            for k, d in a.descriptions.items()
            if not (
                d.target_kind == kind
                and d.target_id is not None
                and d.target_id.segmentation_id in gone
            )
        }

    def remove_volume(self) -> None:
        self.metadata.volumes = None
        self.annotations.volume_channels_annotations = []

    def remove_descriptions(self, ids: Iterable[str]) -> None:
        for i in ids:
            self.annotations.descriptions.pop(i)

    def remove_segment_annotations(self, ids: Iterable[str]) -> None:
        gone = set(ids)
        self.annotations.segment_annotations = [
            a for a in self.annotations.segment_annotations if a.id not in gone
        ]

    # referential integrity ---------------------------------------------------------------
    def _time_range(self, kind: str, sid: str) -> TimeInfo | None:
        section = {
            "lattice": self.metadata.segmentation_lattices.time_info,
            "mesh": self.metadata.segmentation_meshes.time_info,
            "primitive": self.metadata.geometric_segmentation.time_info,
        }[kind]
        return section.get(sid)

    def reference_problem(
        self,
        where: str,
        kind: str,
        target: TargetId | None,
        time: Time,
        cache: dict[str, Any] | None = None,
        where_present: bool = False,
    ) -> str | None:
        """What is wrong with one reference (None: it names an existing segment at existing
        times). With ``where_present``, only frames where the segment occurs are existing
        times (the viewer draws an annotated segment at every frame its ``time`` names)."""
        if kind == "entry":
            return None
        cache = {} if cache is None else cache
        if kind not in cache:
            cache[kind] = (set(self.ids_of(kind)), self.segments(kind))
        noun = {"lattice": "lattice", "mesh": "mesh set", "primitive": "geometric segmentation"}[
            kind
        ]
        if target is None:
            return f"{where}: a {kind} reference without target_id"
        sid, segment = target.segmentation_id, target.segment_id
        ids, segment_map = cache[kind]
        if sid not in ids:
            return f"{where} names {noun} {sid!r}, which the entry does not have"
        segments = segment_map.get(sid)
        if segments is not None and segment not in segments:
            what = "primitive" if kind == "primitive" else "segment"
            return f"{where}: {what} {segment} is not in {noun} {sid!r}"
        times = [time] if isinstance(time, int) else list(time or [])
        span = self._time_range(kind, sid)
        if span is not None:
            outside = sorted({t for t in times if t not in span.frames})
            if outside:
                return (
                    f"{where}: time {outside[:5]} outside {noun} {sid!r} "
                    f"(frames {span.start}..{span.end})"
                )
        if where_present and segments is not None:
            absent = sorted({t for t in times if t not in segments[segment]})
            if absent:
                what = "primitive" if kind == "primitive" else "segment"
                return (
                    f"{where}: {what} {segment} of {noun} {sid!r} does not occur at time "
                    f"{absent[:5]}"
                )
        return None

    def reference_problems(
        self,
        descriptions: Iterable[str] | None = None,
        annotations: Iterable[str] | None = None,
        where_present: bool = False,
    ) -> list[str]:
        """Descriptions and segment annotations that name a missing segmentation, segment or
        primitive, or a time the segmentation does not have (only the given ids, when given;
        ``where_present``: see :meth:`reference_problem`)."""
        problems: list[str] = []
        wanted_d = None if descriptions is None else set(descriptions)
        wanted_a = None if annotations is None else set(annotations)
        cache: dict[str, Any] = {}
        for key, d in self.annotations.descriptions.items():
            if wanted_d is not None and key not in wanted_d:
                continue
            p = self.reference_problem(
                f"description {key}", d.target_kind, d.target_id, d.time, cache, where_present
            )
            if p:
                problems.append(p)
        for a in self.annotations.segment_annotations:
            if wanted_a is not None and a.id not in wanted_a:
                continue
            target = TargetId(segmentation_id=a.segmentation_id, segment_id=a.segment_id)
            p = self.reference_problem(
                f"segment annotation {a.id}",
                a.segment_kind,
                target,
                a.time,
                cache,
                where_present,
            )
            if p:
                problems.append(p)
        return problems

    def structure_problems(self) -> list[str]:
        """Rules across metadata.json and geometric_segmentation.json."""
        problems = []
        listed = self.geometric_ids
        held = [g.segmentation_id for g in self.geometric or []]
        if self.geometric is None and listed:
            problems.append(
                f"{METADATA_JSON} lists geometric segmentations {listed} but {GEOMETRIC_JSON} "
                "is missing"
            )
        elif sorted(held) != sorted(listed):
            problems.append(
                f"{GEOMETRIC_JSON} holds {sorted(held)} but {METADATA_JSON} lists {sorted(listed)}"
            )
        if self.metadata.volumes is None and self.lattice_ids:
            problems.append(
                f"{METADATA_JSON}: lattices but no volume (lattices sit on the volume's grid)"
            )
        for g in self.geometric or []:
            span = self.metadata.geometric_segmentation.time_info.get(g.segmentation_id)
            if span is not None:
                bad = sorted(int(t) for t in g.primitives if int(t) not in span.frames)
                if bad:
                    problems.append(
                        f"{GEOMETRIC_JSON}: {g.segmentation_id}: frames {bad[:5]} outside its "
                        f"time_info {span.start}..{span.end}"
                    )
        return problems
