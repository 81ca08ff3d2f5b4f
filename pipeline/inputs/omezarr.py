"""``omezarr`` inputs: OME-NGFF images (0.1 to 0.5, zarr v2 and v3) -> a volume and lattices.

The metadata is validated with ome-zarr-models in :mod:`pipeline.inputs.ngff_meta` (with
its shim for NGFF 0.1-0.3); arrays are opened read-only with zarr-python and read region by
region through :class:`OmeZarrView`, a lazy ``[x, y, z]`` view of one time point and channel.
Level 1 is the first (finest) dataset of the first multiscale; every ``labels/<name>`` image
becomes a lattice. Decisions where the specification is silent:

- axes: 0.1/0.2 have none (implicitly ``t, c, z, y, x``, the last ``ndim`` of them); 0.3 lists
  names; 0.4/0.5 give name, type and unit. Axes are t, c, x, y, z (or named otherwise with type
  ``time``/``channel``); any other axis must have length 1. Without z the image is one plane.
- geometry: voxel size = dataset 0's scale times the multiscale's own scale; origin = its
  translation (composed in order). A spatial axis without a unit is taken to be in Å; a unit
  that is not a length (or not known) is an error. A plane's z spacing is its x spacing.
- channels: ids from ``channel_ids_mapping`` (keyed by channel index or omero label), else the
  omero labels when they are unique valid names, else ``"0"``, ``"1"``, ...; omero colours
  (hex ``RRGGBB``) become the channel colours.
- labels: lattice id = the label's name (or its ``segmentation_ids_mapping`` entry); a label
  channel axis of length n > 1 gives n lattices ``<name>_c<i>``. Segments from ``image-label``
  ``colors``/``properties`` (value 0, the background, is not listed); a label's voxel size is
  checked against the image's only when its spatial axes state units.
- containers: an HCS plate or well is refused with the path of its first image; a
  bioformats2raw layout holding one image reads that image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.errors import BaseZarrError, ContainsArrayError

from pipeline.db.names import validate_name
from pipeline.errors import (
    InputFormatError,
    InputNotFoundError,
    OptionError,
    UnsupportedInputError,
)
from pipeline.inputs.ids import mapped_id, segment_names
from pipeline.inputs.limits import checked_int
from pipeline.inputs.ngff_meta import (
    NgffAxis,
    NgffChannel,
    NgffImage,
    attributes_file,
    first_dataset,
    label_names,
    parse_image,
)
from pipeline.inputs.source import (
    Url,
    as_input_path,
    exists,
    is_url,
    storage_options,
    zarr_store,
)
from pipeline.inputs.units import angstrom_per, time_name
from pipeline.inputs.voxels import override_voxel_size
from pipeline.json_errors import parse_json
from pipeline.model import Contents, ExtraData, LabelSource, Segment, Vec3, VolumeSource

__all__ = ["OmeZarrView", "omezarr_facts", "read_omezarr"]

_SPATIAL = ("x", "y", "z")
# what zarr/numcodecs raise for unreadable metadata or chunks
_READ_ERRORS = (BaseZarrError, ValueError, TypeError, KeyError, OSError, RuntimeError)


@dataclass(frozen=True, slots=True)
class _Image:
    """The first multiscale of an image group, resolved to its finest dataset."""

    path: Path  # the image group on disk, for messages
    array: zarr.Array
    meta: NgffImage  # the validated metadata

    @property
    def axes(self) -> tuple[NgffAxis, ...]:
        return self.meta.axes

    @property
    def scale(self) -> tuple[float, ...]:
        return self.meta.scale

    @property
    def translation(self) -> tuple[float, ...]:
        return self.meta.translation

    def axis(self, role: str) -> int | None:
        return self.meta.axis(role)

    def size(self, role: str) -> int:
        i = self.axis(role)
        return 1 if i is None else int(self.array.shape[i])


def _error(message: str, path: Path) -> InputFormatError:
    return InputFormatError(message, path)


def _ome_attrs(node: zarr.Group) -> dict[str, Any]:
    """OME metadata of a group: ``attributes["ome"]`` in zarr v3 (0.5), the attributes in v2."""
    attrs = dict(node.attrs)
    ome = attrs.get("ome")
    if node.metadata.zarr_format == 3 and isinstance(ome, dict):
        return ome
    return attrs


def _open_root(path: Path) -> zarr.Group:
    if is_url(path):
        return _open_url_root(Url(path))
    if not path.is_dir():
        raise InputNotFoundError("an omezarr input must be a directory", path)
    try:
        return zarr.open_group(str(path.absolute()), mode="r")
    except ContainsArrayError:
        raise _error("a zarr array, not an OME-Zarr image group (give its parent)", path) from None
    except FileNotFoundError:
        raise _error("not a zarr group (no .zgroup or zarr.json): not an OME-Zarr", path) from None
    except _READ_ERRORS as exc:
        _check_metadata_json(path)
        raise _error(f"cannot open as zarr: {exc}", path) from exc


def _check_metadata_json(folder: Path) -> None:
    """A zarr metadata file of ``folder`` that is not JSON is said as such, naming the file
    (``<folder>/.zattrs: not valid JSON: ...``), as every other JSON document is."""
    for name in (".zgroup", ".zattrs", "zarr.json"):
        file = folder / name
        if file.is_file():
            parse_json(file.read_bytes(), file)


def _open_url_root(url: Url) -> zarr.Group:
    store = zarr_store(url)
    try:
        return zarr.open_group(store=store, mode="r")
    except ContainsArrayError:
        raise _error("a zarr array, not an OME-Zarr image group (give its parent)", url) from None
    except FileNotFoundError:
        if exists(url, storage_options()) is None:
            raise InputNotFoundError("no such object or prefix", url) from None
        raise _error("not a zarr group (no .zgroup or zarr.json): not an OME-Zarr", url) from None
    except _READ_ERRORS as exc:
        raise _error(f"cannot open as zarr: {exc}", url) from exc


def _child_groups(group: zarr.Group) -> list[str]:
    try:
        return sorted(name for name, _ in group.groups())
    except _READ_ERRORS:
        return []


def _subgroup(group: zarr.Group, name: str, path: Path) -> zarr.Group:
    try:
        node = group[name]
    except _READ_ERRORS as exc:
        raise _error(f"{name}: not found or unreadable ({exc})", path) from exc
    if not isinstance(node, zarr.Group):
        raise _error(f"{name}: a zarr array where a group was expected", path)
    return node


def _first_image_in(group: zarr.Group, listed: list[str]) -> str | None:
    """The first child (from ``listed``, else by name) that is a multiscale image."""
    for name in listed or _child_groups(group):
        try:
            node = group[name]
        except _READ_ERRORS:
            continue
        if isinstance(node, zarr.Group) and "multiscales" in _ome_attrs(node):
            return name
    return None


def _well_image(well: zarr.Group) -> str | None:
    info = _ome_attrs(well).get("well")
    images = info.get("images", []) if isinstance(info, dict) else []
    listed = [str(i["path"]) for i in images if isinstance(i, dict) and "path" in i]
    return _first_image_in(well, listed)


def _container_hint(root: zarr.Group, attrs: dict[str, Any]) -> str | None:
    """Path (inside ``root``) of the first image of a plate or well, if one is found."""
    if "well" in attrs:
        return _well_image(root)
    plate = attrs["plate"] if isinstance(attrs["plate"], dict) else {}
    wells = [str(w["path"]) for w in plate.get("wells", []) if isinstance(w, dict) and "path" in w]
    for well_path in wells:
        try:
            well = root[well_path]
        except _READ_ERRORS:
            continue
        if isinstance(well, zarr.Group):
            image = _well_image(well)
            if image is not None:
                return f"{well_path}/{image}"
    return None


def _image_group(root: zarr.Group, path: Path) -> tuple[zarr.Group, Path]:
    """The image group to read: the root, or the only image of a bioformats2raw layout."""
    attrs = _ome_attrs(root)
    if "multiscales" in attrs:
        return root, path
    for kind in ("plate", "well"):
        if kind in attrs:
            hint = _container_hint(root, attrs)
            where = f"; give one of its images, e.g. {path / hint}" if hint else ""
            raise UnsupportedInputError(
                f"an OME-Zarr HCS {kind}, not an image: plates and wells are not read{where}",
                path,
            )
    if "bioformats2raw.layout" in attrs:
        series = [
            name
            for name in _child_groups(root)
            if name.isdigit() and "multiscales" in _ome_attrs(root[name])
        ]
        if len(series) == 1:
            return _subgroup(root, series[0], path), path / series[0]
        if series:
            raise UnsupportedInputError(
                f"a bioformats2raw layout with {len(series)} images ({', '.join(series)}); "
                "give one of them as the input",
                path,
            )
    raise _error("not an OME-Zarr image: no 'multiscales' in its attributes", path)


def _open_image(group: zarr.Group, path: Path) -> _Image:
    attrs = _ome_attrs(group)
    zarr_format = group.metadata.zarr_format
    file = attributes_file(path, zarr_format)
    name = first_dataset(attrs, file, zarr_format)
    try:
        array = group[name]
    except _READ_ERRORS as exc:
        raise _error(f"dataset {name!r} cannot be opened: {exc}", path) from exc
    if not isinstance(array, zarr.Array):
        raise _error(f"dataset {name!r} is a group, not an array", path)
    meta = parse_image(attrs, array.ndim, file, zarr_format)
    for axis, n in zip(meta.axes, array.shape, strict=True):
        if axis.role == "other" and n != 1:
            raise UnsupportedInputError(
                f"axis {axis.name!r} of length {n}: only t, c, z, y, x axes are read", path
            )
    return _Image(path=path, array=array, meta=meta)


def _angstrom_per(unit: str | None, where: str, path: Path) -> float:
    if unit is None:
        return 1.0  # no unit: the numbers are taken as Angstrom
    factor = angstrom_per(unit.strip().lower())  # NGFF names; symbols ignoring case
    if factor is None:
        raise _error(f"{where}: unknown length unit {unit!r}", path)
    return factor


def _decimal(value: float) -> float:
    """A unit conversion without its binary noise (0.57 um is 5700 A, not 5699.999999999999).

    >>> _decimal(0.57 * 1e4)
    5700.0
    """
    return float(f"{value:.12g}")


def _time_units(image: _Image) -> str:
    t = image.axis("t")
    unit = image.axes[t].unit if t is not None else None
    if unit is None:
        return "millisecond"
    name = time_name(unit.strip().lower())
    if name is None:
        raise _error(f"{image.axes[t].loc}.unit: unknown time unit {unit!r}", image.meta.file)
    return name


def _geometry(image: _Image) -> tuple[Vec3, Vec3]:
    """Voxel size and origin (Angstrom, ``[x, y, z]``) of the finest dataset."""
    voxel, origin = [], []
    for role in _SPATIAL:
        i = image.axis(role)
        if i is None:  # a plane: its one sample is as thick as it is wide
            voxel.append(voxel[0])
            origin.append(0.0)
            continue
        axis = image.axes[i]
        factor = _angstrom_per(axis.unit, f"{axis.loc}.unit", image.meta.file)
        if image.scale[i] <= 0:
            raise _error(
                f"axis {axis.name}: scale {image.scale[i]} is not positive", image.meta.file
            )
        voxel.append(_decimal(image.scale[i] * factor))
        origin.append(_decimal(image.translation[i] * factor))
    return tuple(voxel), tuple(origin)  # type: ignore[return-value]


def _states_units(image: _Image) -> bool:
    return all(image.axes[i].unit is not None for r in _SPATIAL if (i := image.axis(r)) is not None)


def _value_dtype(dtype: np.dtype, path: Path, labels: bool) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        what = "labels" if labels else "voxels"
        raise UnsupportedInputError(f"unsupported {what} dtype {dtype}", path)
    return dtype.newbyteorder("=")


class OmeZarrView:
    """One time point and channel of an OME-Zarr array as a lazy ``[x, y, z]`` array.

    ``fixed`` maps array axes (t, c, or other length-1 axes) to the index read; ``spatial``
    gives the array axis of x, y and z (None when the image has no such axis: length 1).
    A region read decodes only the chunks it touches.
    """

    def __init__(
        self,
        array: zarr.Array,
        fixed: dict[int, int],
        spatial: tuple[int | None, int | None, int | None],
        dtype: np.dtype,
        path: Path,
    ) -> None:
        self.array = array
        self.fixed = dict(fixed)
        self.spatial = spatial
        self.dtype = np.dtype(dtype)
        self.path = path
        self.shape = tuple(1 if a is None else int(array.shape[a]) for a in spatial)
        self.ndim = 3
        present = sorted(a for a in spatial if a is not None)
        # axes of a read block: the present spatial axes in array order, then the missing ones
        names = [_SPATIAL[spatial.index(a)] for a in present]
        names += [r for r, a in zip(_SPATIAL, spatial, strict=True) if a is None]
        self._missing = len(_SPATIAL) - len(present)
        self._perm = tuple(names.index(r) for r in _SPATIAL)

    @property
    def worker_readable(self) -> bool:
        """A cluster worker reads an image at a URL (fsspec) itself, a local one not."""
        return type(self.array.store).__name__ == "FsspecStore"

    def __dask_tokenize__(self) -> Any:
        return ("omezarr-view", str(self.array.store), self.array.path, self.fixed, self.spatial)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (3 - len(key))
        base: list[Any] = [slice(None)] * self.array.ndim
        for axis, index in self.fixed.items():
            base[axis] = index
        missing: list[slice] = [slice(None)] * 3  # selections along axes of length 1
        for role, (k, axis) in enumerate(zip(key, self.spatial, strict=True)):
            if not isinstance(k, slice) or k.step not in (None, 1):
                raise TypeError(f"only contiguous slices are supported, got {k!r}")
            if axis is None:
                missing[role] = k
            else:
                base[axis] = k
        try:
            data = np.asarray(self.array[tuple(base)])
        except _READ_ERRORS as exc:
            raise _error(f"{self.array.path}: cannot read chunks: {exc}", self.path) from exc
        data = np.transpose(data.reshape(data.shape + (1,) * self._missing), self._perm)
        return data[tuple(missing)].astype(self.dtype, copy=False)


def _views(image: _Image, labels: bool) -> tuple[tuple[OmeZarrView, ...], ...]:
    """``[t][c]`` views of an image."""
    dtype = _value_dtype(image.array.dtype, image.path, labels)
    spatial = tuple(image.axis(r) for r in _SPATIAL)
    others = {i: 0 for i, a in enumerate(image.axes) if a.role == "other"}  # length 1
    t, c = image.axis("t"), image.axis("c")
    frames = []
    for ti in range(image.size("t")):
        row = []
        for ci in range(image.size("c")):
            fixed = dict(others)
            if t is not None:
                fixed[t] = ti
            if c is not None:
                fixed[c] = ci
            row.append(OmeZarrView(image.array, fixed, spatial, dtype, image.path))  # type: ignore[arg-type]
        frames.append(tuple(row))
    return tuple(frames)


def _memory_order(image: _Image) -> str:
    """'F' when x varies fastest of the spatial axes in the stored array (z, y, x), else 'C'."""
    present = [(i, r) for r in _SPATIAL if (i := image.axis(r)) is not None]
    fastest = max(present)[1]
    return "F" if fastest == "x" else "C"


def _axis_order(image: _Image) -> tuple[int, int, int]:
    """Which of x, y, z (0, 1, 2) is the fastest, middle and slowest stored spatial axis."""
    present = sorted((i, k) for k, r in enumerate(_SPATIAL) if (i := image.axis(r)) is not None)
    stored = [k for _, k in present]
    order = stored[::-1] + [k for k in range(3) if k not in stored]
    return tuple(order)  # type: ignore[return-value]


def _hex_colour(value: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(value, str):
        return None
    text = value.strip().lstrip("#")
    if len(text) not in (6, 8):
        return None
    try:
        parts = [int(text[k : k + 2], 16) / 255 for k in range(0, len(text), 2)]
    except ValueError:
        return None
    return tuple(parts + [1.0] * (4 - len(parts)))  # type: ignore[return-value]


def _valid_name(value: Any) -> bool:
    try:
        validate_name(value, "channel id")
    except (OptionError, TypeError):
        return False
    return True


def _channels(
    image: _Image, extra: ExtraData | None
) -> tuple[tuple[str, ...], tuple[str | None, ...], tuple[Any, ...] | None]:
    """Channel ids, labels and colours (see the module's docstring for the rules)."""
    n = image.size("c")
    channels = image.meta.channels
    if channels is None or len(channels) != n:
        channels = (NgffChannel(None, None),) * n
    labels = tuple(ch.label for ch in channels)
    colours = tuple(_hex_colour(ch.color) for ch in channels)
    ids = [str(i) for i in range(n)]
    if len(set(labels)) == n and all(_valid_name(lb) for lb in labels):
        ids = list(labels)  # type: ignore[arg-type]
    mapping = extra.channel_ids_mapping if extra is not None else {}
    for i in range(n):
        for key in (str(i), labels[i]):
            if key is not None and key in mapping:
                ids[i] = mapping[key]
                break
    where = extra.path if mapping and extra is not None and extra.path else image.path
    for channel in ids:
        if not _valid_name(channel):
            raise _error(f"channel id {channel!r} is not a valid name (no '/', '..')", where)
    if len(set(ids)) != n:
        raise _error(f"channel ids are not unique: {ids}", where)
    return tuple(ids), labels, colours if any(c is not None for c in colours) else None


def _segments(image: _Image, names: dict[int, str]) -> tuple[Segment, ...]:
    """Segments of a label image: ``image-label`` colours and properties, names from extra data."""
    colours = {k: tuple(v / 255 for v in rgba) for k, rgba in image.meta.label_colors.items()}
    props = image.meta.label_properties
    for value in (*colours, *props):
        checked_int(value, "image-label label-value", image.meta.file)
    values = sorted(set(colours) | set(props) | set(names))
    segments = []
    for value in values:
        if value <= 0:  # 0 is the background
            continue
        p = props.get(value, {})
        name = names.get(value)
        if name is None:
            name = next((str(p[k]) for k in ("name", "class", "label") if k in p), None)
        details = "; ".join(f"{k}: {v}" for k, v in p.items()) or None
        segments.append(Segment(id=value, name=name, description=details, color=colours.get(value)))
    return tuple(segments)


def _label_names(root: zarr.Group, path: Path) -> list[str]:
    """Names of the label images: the ``labels`` list, else the groups that hold images."""
    zarr_format = root.metadata.zarr_format
    listed = label_names(_ome_attrs(root), attributes_file(path, zarr_format), zarr_format)
    if listed is not None:
        return listed
    return [name for name in _child_groups(root) if "multiscales" in _ome_attrs(root[name])]


def _lattices(
    group: zarr.Group, path: Path, extra: ExtraData | None, check_voxels: bool
) -> tuple[LabelSource, ...]:
    if "labels" not in _child_groups(group):
        return ()
    labels_root = _subgroup(group, "labels", path)
    sources = []
    for name in _label_names(labels_root, path / "labels"):
        where = path / "labels" / name
        label = _open_image(_subgroup(labels_root, name, path / "labels"), where)
        voxel, origin = _geometry(label)
        known = check_voxels and _states_units(label)
        frames = _views(label, labels=True)
        n = label.size("c")
        for ci in range(n):
            lattice = name if n == 1 else f"{name}_c{ci}"
            lattice = mapped_id(lattice, extra)
            names = segment_names(lattice, extra)
            sources.append(
                LabelSource(
                    path=where,
                    lattice_id=lattice,
                    frames=tuple(row[ci] for row in frames),
                    segments=_segments(label, names),
                    voxel_size=voxel if known else None,
                    origin=origin if known else None,
                    memory_order=_memory_order(label),
                    time_units=_time_units(label),
                    placed_by_origin=known,
                )
            )
    return tuple(sources)


def read_omezarr(path: Path, scratch: Path | None, extra: ExtraData | None = None) -> Contents:
    """Open an OME-Zarr image lazily: its finest dataset as the volume, its labels as lattices.

    Nothing is decoded here: the views read the chunks of the regions the pipeline asks for.
    ``scratch`` is not needed (zarr chunks are read in place).
    """
    path = as_input_path(path)
    root = _open_root(path)
    group, where = _image_group(root, path)
    image = _open_image(group, where)
    override = extra.volume_voxel_size if extra is not None else None
    voxel, origin = _geometry(image)
    if override is not None and _states_units(image):  # a size the file declares in a unit
        override_voxel_size(voxel, override, where, extra.path if extra else None)
    ids, labels, colours = _channels(image, extra)
    units = {a.name: a.unit for a in image.axes if a.unit is not None}
    volume = VolumeSource(
        path=where,
        frames=_views(image, labels=False),
        channel_ids=ids,
        voxel_size=override if override is not None else voxel,
        origin=origin,
        original_axis_order=_axis_order(image),
        time_units=_time_units(image),
        channel_labels=labels,
        source_axes_units=units,
        memory_order=_memory_order(image),
        channel_colors=colours,
    )
    return Contents(
        volume=volume, lattices=_lattices(group, where, extra, check_voxels=override is None)
    )


def omezarr_facts(path: Path, extra: ExtraData | None = None) -> dict[str, Any]:
    """What the NGFF metadata says, as stored (for ``inspect``); no chunk is read."""
    root = _open_root(as_input_path(path))
    group, where = _image_group(root, as_input_path(path))
    image = _open_image(group, where)
    return {
        "format": f"OME-NGFF {image.meta.version or '?'} (zarr v{group.metadata.zarr_format})",
        "image_group": str(where),
        "axes": [f"{a.name}[{a.unit or 'no unit'}]" for a in image.axes],
        "datasets": list(image.meta.datasets),
        "level_0_shape": list(image.array.shape),
        "level_0_chunks": list(image.array.chunks),
        "level_0_dtype": image.array.dtype.str,
        "scale": list(image.scale),
        "translation": list(image.translation),
        "labels": _label_names(group["labels"], where / "labels")
        if "labels" in _child_groups(group)
        else [],
    }
