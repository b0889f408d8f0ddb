"""Quicklook PNGs: a map of one time step, a time series at a point or of the field mean.

Rendering uses matplotlib's object-oriented API on the Agg canvas (``Figure()``, never
pyplot), so requests render in parallel threads without sharing a current figure. A map
reads exactly one record (one time step of one level) from the one file that holds it,
through its format reader (:func:`insitu.formats.read`).
A series reads the variable over the chosen time range, so its cost is bounded by
``max_slice_bytes`` (413 above it for a point; a field mean that large is computed on the
server instead, :mod:`insitu.access.series`, and drawn here from its result). Times of any
CF calendar are placed on a numeric axis with calendar-aware ticks, so 360-day and
no-leap models plot like the others.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu import formats
from insitu._util import LRU
from insitu.access.selection import (
    TimeRange,
    data_variables,
    dataset_axes,
    main_variable,
    nearest_index,
    parse_point,
    parse_time,
    parse_variables,
    time_key_of,
    time_text,
)
from insitu.access.subset import READ_FACTOR, open_for_time, read_cost
from insitu.compute import OPERATIONS, NoParams
from insitu.errors import DataError, InvalidQuery, TooLarge
from insitu.formats import Axes, mask_default_fill

if TYPE_CHECKING:
    import xarray as xr

    from insitu.catalog import Catalog, DatasetRecord, FileRecord

__all__ = [
    "STYLE",
    "MapField",
    "MapQuery",
    "PngCache",
    "SeriesQuery",
    "SignalLine",
    "draw_series",
    "field_mean_from_result",
    "parse_map_query",
    "parse_series_query",
    "read_map_field",
    "render_map",
    "render_series",
    "render_signal",
    "series_variable",
    "signal_line",
    "time_ticks",
    "warm_up",
]

STYLE = 2  # part of every quicklook ETag: bump it when the pictures change
_MAP_SIZE = (8.2, 4.1)  # 820 x 410 pixels: the web page reserves that space
_SERIES_SIZE = (8.0, 3.8)  # 800 x 380 pixels
_DPI = 100


_FIRST_NEEDS = (
    "xarray",
    "netCDF4",
    "cftime",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
)


def warm_up() -> None:
    """Import what the first quicklook needs (xarray and its file engines, matplotlib's
    Agg canvas: seconds of CPU), so that it does not wait for that after a start of the
    service."""
    import importlib

    for name in _FIRST_NEEDS:
        importlib.import_module(name)
    import xarray as xr

    xr.backends.list_engines()  # reads the engines' entry points, once per process


class PngCache(LRU[str, bytes]):
    """Rendered PNGs by ETag, least recently used first out, bounded in count and bytes."""

    def __init__(self, max_items: int = 256, max_bytes: int = 64 * 2**20) -> None:
        super().__init__(max_items, max_bytes, len)


@dataclass(frozen=True, slots=True)
class MapQuery:
    """A map of one variable at one time step and level."""

    variable: str | None
    time: TimeRange | None
    level: float | None

    def key(self) -> tuple[Any, ...]:
        """Canonical form for the ETag."""
        return (
            "map",
            self.variable,
            (self.time.lo, self.time.hi) if self.time else None,
            self.level,
        )


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """A time series at the grid point nearest (lat, lon), or of the field mean."""

    variable: str | None
    lat: float | None
    lon: float | None
    field_mean: bool
    level: float | None
    time: TimeRange | None

    def key(self) -> tuple[Any, ...]:
        """Canonical form for the ETag."""
        t = (self.time.lo, self.time.hi) if self.time else None
        return ("series", self.variable, self.lat, self.lon, self.field_mean, self.level, t)


def _one_variable(value: str | None) -> str | None:
    names = parse_variables(value)
    if names is not None and len(names) != 1:
        raise InvalidQuery(f"variable={value!r}: a quicklook shows one variable; give one name.")
    return names[0] if names else None


def parse_map_query(variable: str | None, time: str | None, level: str | None) -> MapQuery:
    """Check the map parameters' form (400 naming the bad one)."""
    return MapQuery(_one_variable(variable), parse_time(time), parse_point("level", level))


def parse_series_query(
    variable: str | None,
    lat: str | None,
    lon: str | None,
    mean: str | None,
    level: str | None,
    time: str | None,
) -> SeriesQuery:
    """Check the series parameters' form: a point (lat and lon) or mean=field, not both;
    neither for a signal (a variable of one dimension, drawn as it is)."""
    if mean is not None and mean.strip().lower() != "field":
        raise InvalidQuery(f"mean={mean!r}: the one mean offered is mean=field.")
    y, x = parse_point("lat", lat), parse_point("lon", lon)
    if mean is not None and (y is not None or x is not None):
        raise InvalidQuery("Give either lat=Y&lon=X (a grid point) or mean=field, not both.")
    if mean is None and (y is None) != (x is None):
        raise InvalidQuery(
            "A series at a point needs both coordinates, lat=Y&lon=X (the nearest grid "
            "point); or give mean=field (the area-weighted mean over the grid)."
        )
    return SeriesQuery(
        _one_variable(variable),
        y,
        x,
        mean is not None,
        parse_point("level", level),
        parse_time(time),
    )


def _variable(ds: xr.Dataset, record: DatasetRecord, name: str | None) -> str:
    if name is None:
        return main_variable(ds, record)
    if name not in ds.data_vars:
        raise InvalidQuery(
            f"variable={name!r} is not in dataset {record.dataset_id!r}; it has "
            f"{', '.join(data_variables(ds))}."
        )
    return name


def _level_index(ds: xr.Dataset, ax: Axes, level: float | None) -> dict[str, int]:
    if ax.vertical is None:
        if level is not None:
            raise InvalidQuery(f"level={level:g}: this variable has no vertical dimension.")
        return {}
    if level is None:
        return {ax.vertical: 0}
    return {ax.vertical: nearest_index(ds, ax.vertical, level, label="level")}


def _level_text(ds: xr.Dataset, ax: Axes, index: dict[str, int]) -> str:
    if ax.vertical is None:
        return ""
    coord = ds[ax.vertical]
    value = (
        float(coord.values[index[ax.vertical]]) if ax.vertical in ds.coords else index[ax.vertical]
    )
    units = str(coord.attrs.get("units", ""))
    if units == "Pa":
        return f"{value / 100:g} hPa"
    return f"{ax.vertical} {value:g} {units}".rstrip()


def _labels(da: xr.DataArray) -> tuple[str, str]:
    name = str(da.attrs.get("long_name") or da.attrs.get("standard_name") or da.name)
    units = da.attrs.get("units")
    return name, f"{name} [{units}]" if units else name


def _record_file(
    files: Sequence[FileRecord], variable: str, when: Any
) -> tuple[FileRecord, int] | None:
    """The file holding the time step ``when`` of ``variable``, and its position there."""
    import cftime

    key = time_key_of(when)
    for f in sorted(files, key=lambda f: (f.tkey_start or 0, f.path)):
        if f.tkey_start is None or not f.time_values or not f.time_units:
            continue
        if not f.tkey_start <= key <= (f.tkey_end or f.tkey_start):
            continue
        if variable not in {v.name for v in f.variables}:
            continue
        values = np.frombuffer(f.time_values, dtype="float64")
        dates = cftime.num2date(values, f.time_units, calendar=f.calendar or "standard")
        keys = [time_key_of(d) for d in np.atleast_1d(dates)]
        if key in keys:
            return f, keys.index(key)
    return None


@dataclass(frozen=True)
class MapField:
    """The 2-D field of a map (lat, lon), the lazy dataset it came from, and its labels."""

    field: xr.DataArray
    ds: xr.Dataset
    axes: Axes
    time: str
    level: str


def read_map_field(
    catalog: Catalog, record: DatasetRecord, files: Sequence[FileRecord], query: MapQuery
) -> MapField:
    """The field a map shows, read from the one file that holds that record."""

    ds = open_for_time(catalog, record, query.time)
    var = _variable(ds, record, query.variable)
    ax = dataset_axes(ds, [var])
    if ax.lat is None or ax.lon is None or ax.lat not in ds.coords or ax.lon not in ds.coords:
        raise InvalidQuery(
            f"variable={var!r} has no latitude and longitude dimensions (it has "
            f"{', '.join(map(str, ds[var].dims))}); a map needs both. Try series.png?mean=field "
            "or a subset."
        )
    index: dict[str, int] = _level_index(ds, ax, query.level)
    for dim in ds[var].dims:
        if dim not in (ax.lat, ax.lon, ax.vertical, ax.time):
            index[str(dim)] = 0  # other dimensions (e.g. a realization): the first
    when = ""
    lazy = ds[var]
    if ax.time is not None:
        index[ax.time] = 0
        when = time_text(ds[ax.time].values[:1])[0]
    values: np.ndarray[Any, Any] | None = None
    if ax.time is not None:
        found = _record_file(files, var, ds[ax.time].values[0])
        if found is not None:
            f, position = found
            located = catalog.locate(record.dataset_id)
            path = next(x.path for x in located if x.record.path == f.path)
            one = {**index, ax.time: position}
            try:
                values = _decoded(lazy, formats.read(path, var, _slab(lazy, one)))
            except (OSError, KeyError, IndexError, ValueError) as exc:
                raise DataError(
                    f"Cannot read step {position} of {var!r} from {path}: {exc}. The file "
                    "changed since it was scanned; rescan its collection with 'insitu "
                    "catalog scan'."
                ) from exc
    field = lazy.isel(index)
    if values is None:  # no time axis, or the index disagrees with the file: read lazily
        values = np.asarray(field.load(scheduler="synchronous").values)
    field = field.copy(data=values.reshape(field.shape))
    field = mask_default_fill(field.to_dataset(name=var), var)[var].transpose(ax.lat, ax.lon)
    return MapField(field, ds, ax, when, _level_text(ds, ax, index))


def _slab(da: xr.DataArray, at: dict[str, int]) -> tuple[slice, ...]:
    """The slab of ``da``'s file variable that holds the positions ``at`` (whole along
    the other dimensions)."""
    return tuple(
        slice(at[str(d)], at[str(d)] + 1) if str(d) in at else slice(0, n)
        for d, n in zip(da.dims, da.shape, strict=True)
    )


def _decoded(da: xr.DataArray, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Raw values of ``da``'s file variable masked and scaled as xarray decoded ``da``
    (times stay numbers: a map's values are not dates)."""
    import xarray as xr
    from xarray.conventions import decode_cf_variable

    cf = ("_FillValue", "missing_value", "scale_factor", "add_offset")
    attrs = {k: da.encoding[k] for k in cf if k in da.encoding}
    encoded = xr.Variable(da.dims, raw, attrs)
    return np.asarray(decode_cf_variable(str(da.name), encoded, decode_times=False).values)


def _edges(ds: xr.Dataset, dim: str) -> np.ndarray[Any, Any]:
    """Cell edges from the CF bounds, else half-way between centres."""
    centres = np.asarray(ds[dim].values, dtype="float64")
    bounds = ds[dim].attrs.get("bounds")
    if isinstance(bounds, str) and bounds in ds.variables and ds[bounds].ndim == 2:
        b = np.asarray(ds[bounds].values, dtype="float64")
        if b.shape == (centres.size, 2) and np.all(np.isfinite(b)):
            return np.append(b[:, 0], b[-1, 1])
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _regular(edges: np.ndarray[Any, Any]) -> bool:
    """Whether cell edges are evenly spaced (a regular grid along that axis)."""
    steps = np.diff(edges)
    return steps.size > 0 and bool(np.allclose(steps, steps[0], rtol=1e-3, atol=0))


def _figure(size: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any, description: str | None = None) -> bytes:
    buf = io.BytesIO()
    metadata = {"Software": None, **({"Description": description} if description else {})}
    # zlib level 1: a map's PNG a little larger than at the default 6, and made sooner.
    fig.savefig(buf, format="png", dpi=_DPI, metadata=metadata, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _title(fig: Any, record: DatasetRecord, line: str) -> None:
    # A figure title: constrained layout makes room for it whatever the axes' aspect.
    fig.suptitle(f"{record.dataset_id}\n{line}", fontsize=9)


def render_map(
    catalog: Catalog, record: DatasetRecord, files: Sequence[FileRecord], query: MapQuery
) -> bytes:
    """A PNG map of one time step and level of one variable (``pcolormesh`` on lon/lat)."""
    got = read_map_field(catalog, record, files, query)
    field, ds, ax = got.field, got.ds, got.axes
    assert ax.lat is not None and ax.lon is not None
    values = np.ma.masked_invalid(np.asarray(field.values, dtype="float64"))
    lon_e, lat_e = _edges(ds, ax.lon), np.clip(_edges(ds, ax.lat), -90.0, 90.0)
    name, label = _labels(field)
    span_lon, span_lat = float(np.ptp(lon_e)), float(np.ptp(lat_e))
    # Plate carrée (a degree is a degree both ways) where the extent fits the figure's
    # shape, as a global grid does; a small region fills the figure instead.
    equal = span_lat > 0 and 1.4 <= span_lon / span_lat <= 3
    fig = _figure(_MAP_SIZE)
    plot = fig.add_subplot()
    parts = [f"{name} ({field.name})", got.time.removesuffix("T00:00:00"), got.level]
    _title(fig, record, "  ·  ".join(p for p in parts if p))
    if values.count() == 0:
        plot.text(
            0.5,
            0.5,
            "no valid values at this step",
            ha="center",
            va="center",
            transform=plot.transAxes,
        )
    else:
        mesh: Any
        if _regular(lon_e) and _regular(lat_e) and values.size > 64:
            # An image of the cells, colour-mapped at the figure's resolution: a whole map
            # of a 0.5-degree grid takes 1.6x less CPU than with a mesh of quadrilaterals
            # (BENCHMARKS.md, issue 17).
            extent = (lon_e[0], lon_e[-1], lat_e[0], lat_e[-1])
            mesh = plot.imshow(
                values,
                cmap="viridis",
                extent=extent,
                origin="lower",
                aspect="auto",
                interpolation="nearest",
            )
        else:
            mesh = plot.pcolormesh(lon_e, lat_e, values, cmap="viridis", shading="flat")
        # An inset axes keeps the colour bar as tall as the map, whatever its aspect.
        bar = fig.colorbar(mesh, cax=plot.inset_axes((1.03, 0.0, 0.035, 1.0)))
        bar.set_label(label)
        bar.ax.yaxis.get_major_formatter().set_useOffset(False)
        if values.size <= 64:  # a tiny grid (e.g. a sample): print the values in the cells
            lon_c = np.asarray(ds[ax.lon].values, dtype="float64")
            lat_c = np.asarray(ds[ax.lat].values, dtype="float64")
            norm = mesh.norm
            for i, y in enumerate(lat_c):
                for j, x in enumerate(lon_c):
                    v = values[i, j]
                    if v is np.ma.masked:
                        continue
                    dark = float(norm(v)) < 0.6
                    plot.text(
                        x,
                        y,
                        f"{v:.5g}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if dark else "black",
                    )
    plot.set_xlim(lon_e.min(), lon_e.max())
    plot.set_ylim(lat_e.min(), lat_e.max())
    plot.set_xlabel("longitude [degrees east]")
    plot.set_ylabel("latitude [degrees north]")
    if equal:
        plot.set_aspect("equal")
    from matplotlib.ticker import MultipleLocator

    if span_lon >= 180:  # a global grid: ticks on the usual meridians and parallels
        plot.xaxis.set_major_locator(MultipleLocator(60))
    if span_lat >= 90:
        plot.yaxis.set_major_locator(MultipleLocator(30))
    return _png(fig)


def _nice(span: float, steps: Sequence[int]) -> int:
    return next((s for s in steps if span / s <= 7), steps[-1])


def time_ticks(values: Any) -> tuple[np.ndarray[Any, Any], list[float], list[str]]:
    """Numeric positions of decoded times (any CF calendar) and calendar-aware ticks."""
    import cftime

    arr = np.asarray(values)
    if arr.dtype.kind == "M":
        dates = list(arr.astype("datetime64[us]").astype(object))
        calendar = "proleptic_gregorian"
    else:
        dates = list(arr)
        calendar = getattr(dates[0], "calendar", "") or "standard"
    first, last = dates[0], dates[-1]
    units = f"days since {first.year:04d}-01-01"
    x = np.asarray(cftime.date2num(dates, units, calendar=calendar), dtype="float64")

    def day(y: int, m: int = 1, d: int = 1) -> Any:
        return cftime.datetime(y, m, d, calendar=calendar)

    years = last.year - first.year
    months = years * 12 + last.month - first.month
    if years >= 4:
        step = _nice(years, (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000))
        start = math.ceil(first.year / step) * step
        ticks = [day(y) for y in range(start, last.year + 1, step)]
        fmt = "%Y"
    elif months >= 3:
        step = _nice(months, (1, 2, 3, 6, 12))
        ticks = []
        y, m = first.year, first.month
        while (y, m) <= (last.year, last.month):
            if (m - 1) % step == 0:
                ticks.append(day(y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        fmt = "%Y-%m"
    else:
        span = max(1, int(x[-1] - x[0]))
        step = _nice(span, (1, 2, 5, 7, 10, 15, 30))
        base = math.floor(x[0])
        ticks = list(cftime.num2date(np.arange(base, x[-1] + 1, step), units, calendar=calendar))
        fmt = "%Y-%m-%d"
    pos = [float(p) for p in np.atleast_1d(cftime.date2num(ticks, units, calendar=calendar))]
    inside = [(p, t.strftime(fmt)) for p, t in zip(pos, ticks, strict=True) if x[0] <= p <= x[-1]]
    return x, [p for p, _ in inside], [s for _, s in inside]


def render_series(
    catalog: Catalog,
    record: DatasetRecord,
    files: Sequence[FileRecord],
    query: SeriesQuery,
    *,
    max_bytes: int,
    read_factor: int = READ_FACTOR,
) -> bytes:
    """A PNG time series at the nearest grid point, or of the area-weighted field mean;
    without a place, a signal (see :func:`render_signal`)."""
    ds = open_for_time(catalog, record, query.time)
    var = _variable(ds, record, query.variable)
    ax = dataset_axes(ds, [var])
    if query.lat is None and not query.field_mean:
        if ax.lat is not None or ax.lon is not None or ds[var].ndim != 1:
            raise InvalidQuery(
                f"variable={var!r} has dimensions {', '.join(map(str, ds[var].dims))}: a "
                "series of it needs a place, lat=Y&lon=X (the nearest grid point) or "
                "mean=field (the area-weighted mean over the grid)."
            )
        if query.level is not None:
            raise InvalidQuery(f"level={query.level:g}: variable {var!r} has no levels.")
        return render_signal(ds, record, var, max_bytes=max_bytes * read_factor)
    if ax.time is None:
        raise InvalidQuery(
            f"variable={var!r} has no time dimension (it has "
            f"{', '.join(map(str, ds[var].dims))}); there is no series to draw. Try map.png."
        )
    if ax.lat is None or ax.lon is None:
        raise InvalidQuery(
            f"variable={var!r} has no latitude and longitude dimensions; a series needs a "
            "grid point or a field mean over them."
        )
    refusal = read_cost(list(files), ds, [var], ax.time).refusal(
        f"This series of {var!r} ({ds.sizes[ax.time]} time steps)", max_bytes, read_factor
    )
    if refusal and query.field_mean:  # the route computes it on the server if it can
        raise TooLarge(refusal.replace("ubmit a job", "ubmit a field_mean job"))
    if refusal:  # no operation computes a point series: read it next to the data
        job = "ubmit a job (POST /api/v1/jobs) that computes the result next to the data."
        point = (
            f"elect the point in a notebook next to the data: insitu.open_dataset("
            f"{record.dataset_id!r})[{var!r}].sel({ax.lat}=Y, {ax.lon}=X, method='nearest')."
        )
        raise TooLarge(refusal.replace(job, point))
    index = _level_index(ds, ax, query.level)
    level = _level_text(ds, ax, index)
    sub = ds.isel(index)
    if query.field_mean:
        series = OPERATIONS["field_mean"](sub, var, NoParams())[var]
        where = "area-weighted field mean"
    else:
        assert query.lat is not None and query.lon is not None
        i = nearest_index(ds, ax.lat, query.lat, label="lat")
        j = nearest_index(ds, ax.lon, query.lon, circular=True, label="lon")
        series = mask_default_fill(sub, var)[var].isel({ax.lat: i, ax.lon: j})
        y, x = float(ds[ax.lat].values[i]), float(ds[ax.lon].values[j])
        where = f"at {y:.2f}°N {x:.2f}°E (grid point nearest {query.lat:g}°N {query.lon:g}°E)"
    series = series.load(scheduler="synchronous")
    return draw_series(record, ds, var, series, ax.time, f"{where}  ·  {level}" if level else where)


def series_variable(catalog: Catalog, record: DatasetRecord, query: SeriesQuery) -> str:
    """The variable a series shows: the one asked for (checked), else the main one."""
    return _variable(open_for_time(catalog, record, query.time), record, query.variable)


def field_mean_from_result(
    record: DatasetRecord, result: xr.Dataset, var: str, query: SeriesQuery
) -> bytes:
    """The field-mean series PNG drawn from a computed ``field_mean`` result of ``var``
    (dimensions time and perhaps a level), at the query's level (default: the first)."""
    ax = dataset_axes(result, [var])
    if ax.time is None:
        raise DataError(
            f"The field_mean result of {var!r} has no time dimension ({result[var].dims})."
        )
    index = _level_index(result, ax, query.level)
    series = result[var].isel(index)
    where = "area-weighted field mean"
    level = _level_text(result, ax, index)
    return draw_series(
        record, result, var, series, ax.time, f"{where}  ·  {level}" if level else where
    )


def draw_series(
    record: DatasetRecord, ds: xr.Dataset, var: str, series: xr.DataArray, tdim: str, where: str
) -> bytes:
    """The PNG of a time series ``series`` of ``ds[var]`` along ``tdim``, titled ``where``."""
    name, label = _labels(ds[var])
    x_num, ticks, tick_labels = time_ticks(series[tdim].values)
    fig = _figure(_SERIES_SIZE)
    plot = fig.add_subplot()
    values = np.asarray(series.values, dtype="float64").ravel()
    plot.plot(x_num, values, color="C0", lw=1.4 if values.size < 500 else 0.7)
    if values.size <= 60:
        plot.plot(x_num, values, "o", color="C0", ms=3)
    plot.set_xticks(ticks, tick_labels)
    plot.margins(x=0.01)
    plot.grid(True, alpha=0.3)
    plot.set_ylabel(label)
    plot.set_xlabel(f"time ({ds[tdim].encoding.get('calendar', 'standard')} calendar)")
    _title(fig, record, f"{name} ({var}) {where}")
    return _png(fig)


# A signal longer than twice this many samples is drawn as the minimum and maximum of each
# of this many bins: every spike stays visible, and the picture costs the same for 10^5 or
# 10^9 samples (about one bin per pixel of the 800-pixel plot).
SIGNAL_BINS = 1000
_SIGNAL_BLOCK = 1 << 20  # samples read at a time: memory does not grow with the signal


@dataclass(frozen=True)
class SignalLine:
    """What a signal quicklook draws: per bin, its time (s) and the least and greatest value
    (the same, one bin per sample, when the signal is short)."""

    x: np.ndarray[Any, Any]
    lo: np.ndarray[Any, Any]
    hi: np.ndarray[Any, Any]
    samples: int
    per_bin: int
    time_label: str


def _signal_times(ds: xr.Dataset, da: xr.DataArray) -> tuple[Any, str]:
    """How sample ``i`` of ``da`` maps to a time: ``time_offset + i * sample_interval``
    (uniform sampling, as ingest stores it), an explicit time variable along its dimension
    (irregular sampling, seconds), or the sample number."""
    interval = da.attrs.get("sample_interval")
    if interval is not None:
        offset = float(da.attrs.get("time_offset", 0.0))
        return (offset, float(interval)), "time since acquisition start [s]"
    dim = da.dims[0]
    for name in ("time", dim):
        if name in ds.variables and ds[name].dims == da.dims and ds[name].dtype.kind in "fiu":
            units = ds[name].attrs.get("units", "")
            return ds[name], f"{name} [{units}]" if units else str(name)
    return None, "sample"


def signal_line(ds: xr.Dataset, name: str, bins: int = SIGNAL_BINS) -> SignalLine:
    """The line of a one-dimensional variable of ``ds``, read a block at a time; binned
    (minimum and maximum per bin) when longer than ``2 * bins`` samples."""
    da = ds[name]
    n = int(da.size)
    per_bin = math.ceil(n / bins) if n > 2 * bins else 1
    block = max(per_bin, _SIGNAL_BLOCK // per_bin * per_bin)
    times, label = _signal_times(ds, da)
    dim = da.dims[0]
    xs, los, his = [], [], []
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        part = {dim: slice(lo, hi)}
        values = np.asarray(da.isel(part).load(scheduler="synchronous").values, dtype="float64")
        starts = np.arange(0, hi - lo, per_bin)
        if per_bin == 1:
            los.append(values)
            his.append(values)
        else:  # fmin/fmax skip NaN (masked samples) unless a whole bin is NaN
            los.append(np.fmin.reduceat(values, starts))
            his.append(np.fmax.reduceat(values, starts))
        if isinstance(times, tuple):  # a bin's centre
            offset, interval = times
            xs.append(offset + (lo + starts + (min(per_bin, hi - lo) - 1) / 2) * interval)
        elif times is not None:  # a bin's first sample time
            t = np.asarray(times.isel(part).load(scheduler="synchronous").values, "float64")
            xs.append(t[starts])
        else:
            xs.append((lo + starts).astype("float64"))
    empty = np.empty(0)
    return SignalLine(
        np.concatenate(xs) if xs else empty,
        np.concatenate(los) if los else empty,
        np.concatenate(his) if his else empty,
        n,
        per_bin,
        label,
    )


def render_signal(ds: xr.Dataset, record: DatasetRecord, name: str, *, max_bytes: int) -> bytes:
    """A PNG line plot of the one-dimensional variable ``name`` (a shot's calibrated signal)
    on its time axis; a long one as the band between each bin's minimum and maximum.

    The PNG's ``Description`` says what was drawn: samples, bins, and the least and greatest
    value. A signal over ``max_bytes`` gets :class:`TooLarge` (it is read whole).
    """
    da = ds[name]
    size = int(da.size) * da.dtype.itemsize
    if size > max_bytes:
        raise TooLarge(
            f"Signal {name!r} of dataset {record.dataset_id!r} is {size / 2**20:.1f} MiB, more "
            f"than the {max_bytes / 2**20:.1f} MiB a quicklook reads; open it in a notebook "
            "(insitu.open_dataset) and plot a slice."
        )
    line = signal_line(ds, name)
    long_name, label = _labels(da)
    fig = _figure(_SERIES_SIZE)
    plot = fig.add_subplot()
    finite = np.isfinite(line.lo)
    if not finite.any():
        plot.text(0.5, 0.5, "no valid values", ha="center", va="center", transform=plot.transAxes)
        low = high = math.nan
    else:
        low, high = float(np.nanmin(line.lo)), float(np.nanmax(line.hi))
        if line.per_bin == 1:
            plot.plot(line.x, line.lo, color="C0", lw=1.2 if line.samples < 500 else 0.6)
            if line.samples <= 60:
                plot.plot(line.x, line.lo, "o", color="C0", ms=3)
        else:  # min then max of each bin, in time order: the band the samples fill
            x = np.repeat(line.x, 2)
            y = np.column_stack([line.lo, line.hi]).ravel()
            plot.plot(x, y, color="C0", lw=0.6)
    plot.margins(x=0.01)
    plot.grid(True, alpha=0.3)
    plot.set_ylabel(label)
    plot.set_xlabel(line.time_label)
    plot.yaxis.get_major_formatter().set_useOffset(False)
    how = (
        f"{line.samples} samples"
        if line.per_bin == 1
        else f"{line.samples} samples, min/max of {line.x.size} bins of {line.per_bin}"
    )
    _title(fig, record, f"{long_name} ({name})  ·  {how}")
    description = f"{name}: {how}; min {low!r}, max {high!r}"
    return _png(fig, description)
