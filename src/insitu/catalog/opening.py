"""Opening datasets from the index: lazy, Dask-backed, one chunk per file along time.

The time axis comes from the values the scan stored, so opening a 1,000-file dataset
opens one file (for the small static coordinates and the exact attribute types) instead
of a thousand. Files are read through their format reader (:mod:`insitu.formats`: chunks
decoded directly where the layout allows). The dataset is first assembled in its encoded
form (raw values and CF attributes, as the reader types them) and then decoded by xarray's own
:func:`xarray.decode_cf`, which is what ``xarray.open_mfdataset`` does file by file; the
values are therefore exactly the ones ``open_mfdataset`` gives. The time axis is decoded
apart, as a whole, by xarray's own date decoding (:func:`insitu.formats.decode_times`:
without its warning where cftime dates are meant), and kept: a thousand years of days takes
most of a second to decode, and a dataset opened again reuses it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu import formats
from insitu._util import LRU
from insitu.catalog.models import FileRecord, LocatedFile
from insitu.errors import DataError, InvalidQuery

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

__all__ = [
    "bounds_of",
    "decoded_bounds",
    "group_by_variables",
    "open_files",
    "read_raw",
    "read_raw_time",
    "reencode_from",
    "sorted_members",
    "time_like_units",
    "time_values",
]

_EAGER_LIMIT = 4 * 2**20  # static variables smaller than this are read at open time


def read_raw(path: str, name: str, index: tuple[slice, ...] | None = None) -> np.ndarray[Any, Any]:
    """Undecoded values of one variable of one file (a Dask task), or of its slab ``index``,
    read through the file's format reader (from its chunks directly where it can)."""
    try:
        return formats.read(path, name, index or ())
    except (OSError, RuntimeError, KeyError, IndexError) as exc:
        raise DataError(
            f"Cannot read variable {name!r} from {path}: {exc}. The file changed or became "
            "unreadable since it was scanned; rescan its collection with 'insitu catalog scan'."
        ) from exc


def read_raw_time(
    path: str,
    name: str,
    units: str,
    to_units: str,
    calendar: str,
    index: tuple[slice, ...] | None = None,
) -> np.ndarray[Any, Any]:
    """Undecoded values of a time-like variable, re-encoded from ``units`` to ``to_units``.

    Files of one dataset may count time from different dates; their bounds must be put on
    the first file's footing before the dataset is decoded as one.
    """
    return formats.reencode_time(read_raw(path, name, index), units, to_units, calendar)


def open_files(
    located: Sequence[LocatedFile],
    *,
    time: slice | None = None,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """One lazy dataset from the scanned files of one dataset.

    ``time`` is a slice of date strings or dates; only files that overlap it are touched.
    ``variables`` keeps only those data variables (with their coordinates).
    """
    import xarray as xr

    from insitu.catalog.search import parse_time_range

    paths = {f.record.path: f.path for f in located}
    files = sorted_members([f.record for f in located])
    members = files
    if time is not None and any(f.tkey_start is not None for f in members):
        lo, hi = parse_time_range(time.start, time.stop)
        members = [
            f
            for f in members
            if f.tkey_start is None or (f.tkey_start <= hi and (f.tkey_end or f.tkey_start) >= lo)
        ]
        if not members:
            raise InvalidQuery(
                f"No file of dataset {files[0].dataset_id!r} overlaps time {time.start!r} to "
                f"{time.stop!r}; it covers {files[0].time_start} to {files[-1].time_end}."
            )
    parts = [_open_group(g, paths) for g in group_by_variables(members)]
    ds = (
        parts[0]
        if len(parts) == 1
        else xr.merge(parts, compat="override", join="outer", combine_attrs="override")
    )
    if variables:
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise InvalidQuery(
                f"Variables {missing} are not in dataset {members[0].dataset_id!r}; it has "
                f"{sorted(map(str, ds.data_vars))}."
            )
        ds = ds[list(variables)]
    if time is not None and members[0].time_var in ds.dims:
        ds = ds.sel({members[0].time_var: slice(time.start, time.stop)})
    ds.attrs["insitu_dataset_id"] = members[0].dataset_id or ""
    return ds


def sorted_members(files: Sequence[FileRecord]) -> list[FileRecord]:
    """The readable files of a dataset in time order (the order of its time axis)."""
    members = sorted((f for f in files if f.ok), key=lambda f: (f.tkey_start or 0, f.path))
    if not members:
        raise DataError("No readable files in this dataset; see 'insitu catalog problems'.")
    return members


def group_by_variables(members: Sequence[FileRecord]) -> list[list[FileRecord]]:
    """Files with the same variables, in order; each group is concatenated along time."""
    groups: dict[tuple[str, ...], list[FileRecord]] = {}
    for f in members:
        groups.setdefault(tuple(sorted(v.name for v in f.variables)), []).append(f)
    return list(groups.values())


def time_like_units(first: FileRecord, name: str, attrs: dict[str, Any], tdim: str) -> str | None:
    """The units a time-dependent variable counts time in (its own, or the time axis' for
    its bounds), or None when it is not time-like."""
    units = attrs.get("units", first.time_units if name == bounds_of(first, tdim) else None)
    return units if isinstance(units, str) and " since " in units else None


def reencode_from(
    f: FileRecord, first: FileRecord, name: str, time_units: str | None
) -> str | None:
    """The units ``f`` counts the time-like variable ``name`` in, when it must be
    re-encoded to the first file's ``time_units``; None when its values can be used as read."""
    if time_units is None or not f.time_units or f.time_units == first.time_units:
        return None
    own = next((v.attrs.get("units") for v in f.variables if v.name == name), None)
    return str(own or f.time_units)


def _open_group(files: list[FileRecord], paths: dict[str, str]) -> xr.Dataset:
    """Files with the same variables, concatenated along their time dimension."""
    import xarray as xr

    first = files[0]
    first_path = paths[first.path]
    tdim = first.time_var
    load = [
        info.name
        for info in first.variables
        if (tdim is None or tdim not in info.dims)
        and (_nbytes(info.shape, info.dtype) <= _EAGER_LIMIT or info.name in first.dims)
    ]
    try:
        found = formats.reader_for(first_path).encoded(first_path, load)
    except (OSError, RuntimeError) as exc:
        raise DataError(
            f"Cannot open {first_path}: {exc}. Rescan its collection with 'insitu catalog scan'."
        ) from exc
    raw: dict[str, xr.Variable] = {}
    global_attrs = found.attrs
    for info in first.variables:
        var = found.variables.get(info.name)
        if var is None:
            raise DataError(
                f"{first_path} has no variable {info.name!r} any more; rescan its collection "
                "with 'insitu catalog scan'."
            )
        attrs = var.attrs
        if tdim is not None and tdim in info.dims:
            if info.name == tdim:
                dated = formats.with_time_units(attrs, first.time_units, first.calendar)
                # Dated by another variable (raw NEMO output): float64 keeps its values.
                dtype = var.dtype if dated is attrs else np.dtype("float64")
                attrs, data = dated, time_values(files, dtype)
            else:
                data = _lazy(
                    files,
                    paths,
                    info.name,
                    info.dims,
                    tdim,
                    var.dtype,
                    time_like_units(first, info.name, attrs, tdim),
                )
        elif var.values is not None:
            data = var.values
        else:
            data = _lazy([first], paths, info.name, info.dims, None, var.dtype)
        raw[info.name] = xr.Variable(info.dims, data, attrs)
    if tdim is not None and tdim not in raw and first.time_units:
        # A time dimension without a coordinate, dated by an auxiliary one: its dates.
        dates = formats.with_time_units({}, first.time_units, first.calendar)
        raw[tdim] = xr.Variable((tdim,), time_values(files, np.dtype("float64")), dates)
    time = raw.get(tdim) if tdim is not None else None
    index = _time_index(time) if time is not None else None
    if tdim is None or time is None or index is None:
        return _decoded(xr.Dataset(raw, attrs=global_attrs), first_path)
    # The time axis is decoded here, once per distinct axis (cftime dates cost about 2 µs
    # each: most of a second for a thousand years of days), and held out of xarray's reach
    # with its bounds, which would otherwise read their first and last values (two files)
    # to learn their type.
    del raw[tdim]
    encoded = xr.Dataset(raw, attrs=global_attrs)
    bounds = bounds_of(first, tdim)
    decoded = None
    if bounds is not None and bounds in encoded.variables:
        held = encoded.variables[bounds]
        decoded = decoded_bounds(held, bounds, time.attrs, np.asarray(index[:0]).dtype)
        if decoded is not None:
            held.attrs = dict(decoded.attrs)
        else:  # xarray decodes them, as it would with the time axis there to name them
            for key in ("units", "calendar"):
                if key in time.attrs:
                    held.attrs.setdefault(key, time.attrs[key])
    ds = _decoded(encoded, first_path)
    if decoded is not None:
        ds[bounds] = decoded
    return _with_time_index(ds, time, index)


def _decoded(encoded: xr.Dataset, source: str) -> xr.Dataset:
    import xarray as xr

    ds = xr.decode_cf(encoded)
    ds.encoding["source"] = source
    return ds


# Attributes that make xarray decode more than the dates (masks, packing, types).
_NOT_ONLY_DATES = {"_FillValue", "missing_value", "scale_factor", "add_offset", "dtype"}

# Decoded time axes by units, calendar, type and digest of their encoded values: an open
# dataset is opened again without decoding its dates again. At most 2,000,000 dates (about
# 130 bytes each as cftime dates).
_TIME_INDEXES: LRU[tuple[str, str | None, str, str], pd.Index] = LRU(16, 2_000_000, len)


def _time_index(time: xr.Variable) -> pd.Index | None:
    """The index xarray builds for the encoded time axis ``time`` once decoded (numpy dates
    or a ``CFTimeIndex``; see :func:`insitu.formats.decode_times`), or None where xarray
    must decode it itself (no dated units, masked, packed or not numbers).

    Raises DataError when the values cannot be decoded.
    """
    import pandas as pd
    import xarray as xr

    units, calendar = time.attrs.get("units"), time.attrs.get("calendar")
    if (
        not isinstance(units, str)
        or " since " not in units
        or (calendar is not None and not isinstance(calendar, str))
        or _NOT_ONLY_DATES & set(time.attrs)
        or time.dtype.kind not in "iuf"
        or time.size == 0
    ):
        return None
    values = np.ascontiguousarray(time.values)
    key = (
        units,
        calendar,
        values.dtype.str,
        hashlib.blake2b(values.data, digest_size=16).hexdigest(),
    )
    index = _TIME_INDEXES.get(key)
    if index is None:
        dates = formats.decode_times(values, units, calendar)
        as_index: Any = xr.CFTimeIndex if dates.dtype.kind == "O" else pd.Index
        index = as_index(dates)
        _TIME_INDEXES.put(key, index)
    return index


def _with_time_index(ds: xr.Dataset, time: xr.Variable, index: pd.Index) -> xr.Dataset:
    """``ds`` with its decoded time axis (encoded as ``time``, decoded to ``index``) as the
    coordinate xarray would make of it."""
    import xarray as xr
    from xarray.indexes import PandasIndex

    (tdim,) = time.dims
    pindex = PandasIndex(index, tdim)
    (coord,) = pindex.create_variables().values()
    coord.attrs = {k: v for k, v in time.attrs.items() if k not in ("units", "calendar")}
    coord.encoding = {
        **{k: time.attrs[k] for k in ("units", "calendar") if k in time.attrs},
        "dtype": time.dtype,
    }
    # The time axis first (where CF files have it), then the others in the file's order.
    out = xr.Dataset(coords=xr.Coordinates({tdim: coord}, indexes={tdim: pindex}))
    out.update(ds)
    out.attrs = ds.attrs
    out.encoding = ds.encoding
    return out


def decoded_bounds(
    var: xr.Variable, name: str, time_attrs: dict[str, Any], dtype: np.dtype[Any]
) -> xr.Variable | None:
    """The lazily read time bounds ``var`` (named ``name``) decoded as xarray would decode
    them with their time axis (``time_attrs``, decoded to ``dtype``), without reading a
    value; None where xarray must decide (bounds that are not lazy, masked or packed)."""
    import xarray as xr

    units = var.attrs.get("units", time_attrs.get("units"))
    calendar = var.attrs.get("calendar", time_attrs.get("calendar"))
    if (
        not isinstance(units, str)
        or "since" not in units
        or not hasattr(var.data, "map_blocks")
        or _NOT_ONLY_DATES & set(var.attrs)
        or var.dtype.kind not in "iuf"
    ):
        return None
    cf = dict(units=units, calendar=calendar, use_cftime=dtype.kind == "O")
    data = var.data.map_blocks(_decode_dates, name, cf, dtype=dtype)
    attrs = {k: v for k, v in var.attrs.items() if k not in ("units", "calendar")}
    encoding = {"units": units, "dtype": var.dtype}
    if calendar is not None:
        encoding["calendar"] = calendar
    return xr.Variable(var.dims, data, attrs, encoding)


def _decode_dates(raw: np.ndarray[Any, Any], name: str, cf: dict[str, Any]) -> Any:
    """Encoded dates of ``name`` decoded, to cftime dates if ``cf["use_cftime"]``, else to
    numpy datetimes (a Dask task)."""
    from xarray.coding.times import decode_cf_datetime

    try:
        return decode_cf_datetime(raw, cf["units"], cf["calendar"], cf["use_cftime"])
    except (ValueError, OverflowError) as exc:
        raise DataError(
            f"The time bounds {name!r} cannot be decoded like their time axis ({exc}); "
            "open the files with xarray and decode_times=False to see their values."
        ) from exc


def time_values(files: Sequence[FileRecord], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """The encoded time axis of all files, in the first file's units."""
    import cftime

    units, calendar = files[0].time_units, files[0].calendar or "standard"
    parts = []
    for f in files:
        values = np.frombuffer(f.time_values or b"", dtype="float64")
        if f.time_units != units and values.size:
            dates = cftime.num2date(values, f.time_units, calendar=f.calendar or "standard")
            values = np.asarray(cftime.date2num(dates, units, calendar=calendar), "float64")
        parts.append(values)
    return np.concatenate(parts).astype(dtype, copy=False)


def _nbytes(shape: Sequence[int], dtype: str) -> int:
    """Bytes of a variable of the index (0 for types of no fixed size: read at open)."""
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:
        itemsize = 0
    return int(np.prod(shape, dtype=np.int64)) * itemsize


def bounds_of(record: FileRecord, name: str) -> str | None:
    """The name of the bounds variable of ``name`` in ``record``, if it has one."""
    for v in record.variables:
        if v.name == name:
            bounds = v.attrs.get("bounds")
            return bounds if isinstance(bounds, str) else None
    return None


def _lazy(
    files: list[FileRecord],
    paths: dict[str, str],
    name: str,
    dims: tuple[str, ...],
    tdim: str | None,
    dtype: np.dtype[Any],
    time_units: str | None = None,
) -> Any:
    """A Dask array of one variable over files, one chunk per file along ``tdim``.

    ``time_units`` (of the first file) marks a time-like variable: chunks of files that
    count time from another date are re-encoded to it.
    """
    from dask.array import Array
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    shape_of = {v.name: v.shape for v in files[0].variables}
    base = list(shape_of[name])
    axis = dims.index(tdim) if tdim is not None else 0
    token = tokenize(name, [(f.path, f.size, f.mtime_ns) for f in files])
    key = f"insitu-read-{name}-{token}"
    rest = (0,) * (len(dims) - 1)
    layer: dict[Any, Any] = {}
    lengths = []
    for i, f in enumerate(files):
        n = f.n_times if tdim is not None else base[axis] if base else 1
        lengths.append(n)
        block = (*rest[:axis], i, *rest[axis:]) if dims else ()
        path = paths[f.path]
        units = reencode_from(f, files[0], name, time_units)
        if time_units is not None and units is not None:
            layer[(key, *block)] = (
                read_raw_time,
                path,
                name,
                units,
                time_units,
                f.calendar or "standard",
            )
        else:
            whole = (slice(0, n),) if axis == 0 and dims else None  # the index's record count
            layer[(key, *block)] = (read_raw, path, name, whole)
    chunks = tuple(tuple(lengths) if d == axis else (base[d],) for d in range(len(dims)))
    graph = HighLevelGraph.from_collections(key, layer, dependencies=())
    return Array(graph, key, chunks, dtype=dtype)  # type: ignore[no-untyped-call]
