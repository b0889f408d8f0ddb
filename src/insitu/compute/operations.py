"""Named, parameterised analysis operations on (lazy) xarray datasets.

Each operation takes a dataset and the name of its data variable and returns a new
dataset with the result, its coordinates and CF attributes (``cell_methods`` extended,
units adjusted). Sums are taken in float64 and results are cast back to the input's
floating type. Missing values are skipped. Parameters are validated by a pydantic model
per operation, so the CLI and the HTTP API share one description of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from insitu.errors import IncompatibleInputs, InvalidRequest
from insitu.formats import Axes, axes, mask_default_fill

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "OPERATIONS",
    "AnomalyParams",
    "Axes",
    "ClimatologyParams",
    "NoParams",
    "Operation",
    "QuantileParams",
    "ResampleParams",
    "anomaly",
    "area_weights",
    "axes",
    "climatology",
    "field_mean",
    "field_mean_like",
    "field_mean_method",
    "get_operation",
    "mask_default_fill",
    "quantile",
    "resample",
    "result_attrs",
    "time_mean",
    "trend",
    "zonal_mean",
]


def _need(ds: xr.Dataset, da: xr.DataArray, op: str, **dims: str | None) -> None:
    missing = [k for k, v in dims.items() if v is None]
    if missing:
        raise IncompatibleInputs(
            f"Operation {op!r} needs a {' and a '.join(missing)} dimension, but variable "
            f"{da.name!r} of dataset {ds.attrs.get('insitu_dataset_id', '?')!r} has dimensions "
            f"{tuple(map(str, da.dims))}. Choose another operation or variable."
        )


def _with_time(ds: xr.Dataset, var: str, op: str) -> tuple[xr.DataArray, Axes, str]:
    """The variable, its axes and the name of its time dimension (which ``op`` needs)."""
    da = ds[var]
    ax = axes(da)
    _need(ds, da, op, time=ax.time)
    assert ax.time is not None
    return da, ax, ax.time


def _float(da: xr.DataArray) -> np.dtype[Any]:
    return da.dtype if np.issubdtype(da.dtype, np.floating) else np.dtype("float64")


def result_attrs(src: xr.DataArray, method: str) -> dict[str, Any]:
    """The attributes of a result of ``src``: its own, ``cell_methods`` extended by ``method``."""
    attrs = {k: v for k, v in src.attrs.items() if k != "cell_methods"}
    previous = src.attrs.get("cell_methods")
    attrs["cell_methods"] = f"{previous} {method}".strip() if previous else method
    return attrs


def field_mean_method(ax: Axes) -> str:
    """The ``cell_methods`` entry of a field mean over ``ax``'s latitude and longitude."""
    return f"{ax.lat}: {ax.lon}: mean (area-weighted)"


def field_mean_like(da: xr.DataArray, means: np.ndarray[Any, Any]) -> xr.DataArray:
    """The data variable of :func:`field_mean` of ``da`` (latitude and longitude last), its
    values ``means`` computed elsewhere: the same type, coordinates and attributes."""
    ax = axes(da)
    grid = {ax.lat, ax.lon}
    # Dropping and indexing keep the other coordinates' indexes (a time index of cftime
    # dates costs milliseconds to build again).
    kept = da.drop_vars([n for n, c in da.coords.items() if grid & set(c.dims)])
    out = kept.isel({d: 0 for d in map(str, da.dims) if d in grid})
    out = out.copy(data=means.astype(_float(da), copy=False))
    out.attrs = result_attrs(da, field_mean_method(ax))
    return out


def _finish(
    result: xr.DataArray, src: xr.DataArray, method: str, ds: xr.Dataset, keep: tuple[str, ...] = ()
) -> xr.Dataset:
    """Result as a dataset: dtype and attrs of the source, cell_methods extended."""
    import xarray as xr

    out = result.astype(_float(src))
    out.attrs = result_attrs(src, method)
    out.name = src.name
    data = {str(src.name): out}
    for name in keep:
        if name in ds.variables and set(ds[name].dims) <= set(out.dims) | {"bnds", "nv"}:
            data[name] = ds[name]
    return xr.Dataset(data, attrs=dict(ds.attrs))


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(_Params):
    """No parameters."""


class ClimatologyParams(_Params):
    """``period``: 'month' (12 values, like ``cdo ymonmean``) or 'season' (DJF, MAM, ...)."""

    period: Literal["month", "season"] = Field(default="month", description="Grouping.")


class AnomalyParams(_Params):
    """Departure from a climatology over a reference period (default: the whole record)."""

    period: Literal["month", "season"] = Field(default="month", description="Grouping.")
    reference: tuple[str, str] | None = Field(
        default=None, description="Reference period as (start, end) dates, e.g. ('1961', '1990')."
    )


class ResampleParams(_Params):
    """Resample in time, e.g. daily to monthly means."""

    freq: str = Field(default="MS", description="Pandas offset alias: MS, QS-DEC, YS, D, ...")
    how: Literal["mean", "sum", "min", "max"] = Field(default="mean", description="Statistic.")


class QuantileParams(_Params):
    """Quantile over time at each grid point."""

    q: float = Field(default=0.5, description="The quantile, between 0 and 1.")

    @field_validator("q")
    @classmethod
    def _unit_interval(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"q must be between 0 and 1, got {value}")
        return value


def time_mean(ds: xr.Dataset, var: str, p: NoParams) -> xr.Dataset:
    """Mean over time at every point (``cdo timmean``)."""
    da, ax, time = _with_time(ds, var, "time_mean")
    mean = da.astype("float64").mean(time, skipna=True, keep_attrs=True)
    return _finish(mean, da, f"{time}: mean", ds, _bounds(ds, ax))


def _bounds(ds: xr.Dataset, ax: Axes) -> tuple[str, ...]:
    names = []
    for dim in (ax.lat, ax.lon, ax.vertical):
        if dim and dim in ds.variables:
            b = ds[dim].attrs.get("bounds")
            if isinstance(b, str):
                names.append(b)
    return tuple(names)


def area_weights(ds: xr.Dataset, da: xr.DataArray) -> xr.DataArray:
    """Cell areas (up to a constant) from lat/lon bounds, else cos(latitude)."""
    import xarray as xr

    ax = axes(da)
    assert ax.lat is not None and ax.lon is not None
    lat = ds[ax.lat]
    lat_b = ds.get(str(lat.attrs.get("bounds", ""))) if lat.attrs.get("bounds") else None
    lon_b_name = ds[ax.lon].attrs.get("bounds")
    lon_b = ds.get(str(lon_b_name)) if lon_b_name else None
    if lat_b is not None and lon_b is not None:
        lb = np.deg2rad(np.clip(np.asarray(lat_b.values, dtype="float64"), -90, 90))
        dlat = np.abs(np.sin(lb[:, 1]) - np.sin(lb[:, 0]))
        ob = np.asarray(lon_b.values, dtype="float64")
        dlon = np.abs(np.deg2rad(ob[:, 1] - ob[:, 0]))
        w = np.outer(dlat, dlon)
        return xr.DataArray(w, dims=(ax.lat, ax.lon), coords={ax.lat: lat, ax.lon: ds[ax.lon]})
    coslat = np.cos(np.deg2rad(np.asarray(lat.values, dtype="float64")))
    w = np.broadcast_to(coslat[:, None], (lat.size, ds.sizes[ax.lon])).copy()
    return xr.DataArray(w, dims=(ax.lat, ax.lon), coords={ax.lat: lat, ax.lon: ds[ax.lon]})


def field_mean(ds: xr.Dataset, var: str, p: NoParams) -> xr.Dataset:
    """Area-weighted mean over latitude and longitude (``cdo fldmean``), skipping missing."""
    da = ds[var]
    ax = axes(da)
    _need(ds, da, "field_mean", latitude=ax.lat, longitude=ax.lon)
    assert ax.lat is not None and ax.lon is not None
    w = area_weights(ds, da)
    x = da.astype("float64")
    valid = x.notnull()
    total = (x.fillna(0.0) * w).sum((ax.lat, ax.lon))
    weight = (valid * w).sum((ax.lat, ax.lon))
    mean = total / weight.where(weight > 0)
    keep = tuple(
        b for b in _bounds(ds, ax) if ax.vertical and b == ds[ax.vertical].attrs.get("bounds")
    )
    out = _finish(mean, da, field_mean_method(ax), ds, keep)
    return _with_time_bounds(out, ds, ax)


def zonal_mean(ds: xr.Dataset, var: str, p: NoParams) -> xr.Dataset:
    """Mean over longitude (``cdo zonmean``), skipping missing values."""
    da = ds[var]
    ax = axes(da)
    _need(ds, da, "zonal_mean", longitude=ax.lon)
    assert ax.lon is not None
    mean = da.astype("float64").mean(ax.lon, skipna=True)
    lat_b = ds[ax.lat].attrs.get("bounds") if ax.lat else None
    out = _finish(mean, da, f"{ax.lon}: mean", ds, (lat_b,) if isinstance(lat_b, str) else ())
    return _with_time_bounds(out, ds, ax)


def _with_time_bounds(out: xr.Dataset, ds: xr.Dataset, ax: Axes) -> xr.Dataset:
    if ax.time and ax.time in out.dims:
        b = ds[ax.time].attrs.get("bounds") if ax.time in ds.variables else None
        if isinstance(b, str) and b in ds.variables:
            out[b] = ds[b]
    return out


def _groups(da: xr.DataArray, time: str, period: str) -> Any:
    return da.groupby(f"{time}.{'month' if period == 'month' else 'season'}")


def climatology(ds: xr.Dataset, var: str, p: ClimatologyParams) -> xr.Dataset:
    """Mean per calendar month (``cdo ymonmean``) or per season over all years."""
    da, ax, time = _with_time(ds, var, "climatology")
    clim = _groups(da.astype("float64"), time, p.period).mean(skipna=True)
    return _finish(
        clim, da, f"{time}: mean within years {time}: mean over years", ds, _bounds(ds, ax)
    )


def anomaly(ds: xr.Dataset, var: str, p: AnomalyParams) -> xr.Dataset:
    """Departure from the monthly (or seasonal) climatology of a reference period."""
    da, ax, time = _with_time(ds, var, "anomaly")
    x = da.astype("float64")
    ref = x.sel({time: slice(*p.reference)}) if p.reference else x
    if p.reference and ref.sizes[time] == 0:
        raise InvalidRequest(
            f"Reference period {p.reference} is outside the data of "
            f"{ds.attrs.get('insitu_dataset_id', 'this dataset')!r}; choose years it covers."
        )
    key = "month" if p.period == "month" else "season"
    clim = _groups(ref, time, p.period).mean(skipna=True)
    anom = _groups(x, time, p.period) - clim
    anom = anom.drop_vars(key, errors="ignore")
    return _with_time_bounds(_finish(anom, da, f"{time}: anomaly", ds, _bounds(ds, ax)), ds, ax)


def resample(ds: xr.Dataset, var: str, p: ResampleParams) -> xr.Dataset:
    """Aggregate in time to a coarser frequency, e.g. daily to monthly means."""
    da, ax, time = _with_time(ds, var, "resample")
    try:
        grouped = da.astype("float64").resample({time: p.freq})
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(
            f"Cannot resample to frequency {p.freq!r}: {exc}. Use a pandas offset alias "
            "such as MS (month start), QS-DEC (seasons), YS (years) or D (days)."
        ) from exc
    out = getattr(grouped, p.how)(skipna=True)
    return _finish(out, da, f"{time}: {p.how}", ds, _bounds(ds, ax))


_DAYS_PER_YEAR = {
    "360_day": 360.0,
    "noleap": 365.0,
    "365_day": 365.0,
    "all_leap": 366.0,
    "366_day": 366.0,
    "julian": 365.25,
}


def trend(ds: xr.Dataset, var: str, p: NoParams) -> xr.Dataset:
    """Least-squares linear trend over time at every point, in units per year."""
    import cftime
    import xarray as xr

    da, ax, time = _with_time(ds, var, "trend")
    times = ds[time].values
    calendar = getattr(times[0], "calendar", "standard") if times.size else "standard"
    if isinstance(times[0], cftime.datetime):
        days = cftime.date2num(times, "days since 0001-01-01", calendar=calendar)
    else:
        days = (times - times[0]) / np.timedelta64(1, "D")
    years = xr.DataArray(
        np.asarray(days, dtype="float64") / _DAYS_PER_YEAR.get(calendar, 365.2425), dims=(time,)
    )
    y = da.astype("float64")
    valid = y.notnull()
    n = valid.sum(time).where(lambda c: c > 1)  # NaN where no trend can be fitted
    xm = years.where(valid).sum(time) / n
    ym = y.sum(time, skipna=True) / n
    cov = ((years - xm) * (y - ym)).sum(time, skipna=True)
    var_x = ((years - xm) ** 2).where(valid).sum(time)
    slope = cov / var_x.where(var_x > 0)
    out = _finish(slope, da, f"{time}: linear_trend", ds, _bounds(ds, ax))
    units = da.attrs.get("units")
    out[var].attrs["units"] = f"{units} year-1" if units else "year-1"
    out[var].attrs["long_name"] = f"linear trend of {da.attrs.get('long_name', var)}"
    out[var].attrs.pop("standard_name", None)
    return out


def quantile(ds: xr.Dataset, var: str, p: QuantileParams) -> xr.Dataset:
    """The q-quantile over time at every point (linear interpolation, missing skipped)."""
    da, ax, time = _with_time(ds, var, "quantile")
    x = da.astype("float64")
    if x.chunks is not None:
        x = x.chunk({time: -1})
    q = x.quantile(p.q, dim=time, skipna=True).drop_vars("quantile")
    out = _finish(q, da, f"{time}: percentile({p.q * 100:g})", ds, _bounds(ds, ax))
    out[var].attrs["quantile"] = p.q
    return out


@dataclass(frozen=True, slots=True)
class Operation:
    """A named operation with its parameter model."""

    name: str
    func: Callable[..., xr.Dataset]
    params: type[_Params]
    reduces_time: bool

    @property
    def summary(self) -> str:
        """First line of the operation's docstring."""
        return (self.func.__doc__ or "").strip().splitlines()[0]

    def validate(self, params: dict[str, Any] | None) -> _Params:
        """Parameters checked against the model; :class:`InvalidRequest` names the bad one."""
        try:
            return self.params(**(params or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors()
            )
            fields = ", ".join(self.params.model_fields) or "none"
            raise InvalidRequest(
                f"Bad parameters for {self.name!r}: {problems}. Its parameters: {fields}."
            ) from exc

    def __call__(self, ds: xr.Dataset, variable: str, params: _Params) -> xr.Dataset:
        if variable not in ds.data_vars:
            raise InvalidRequest(
                f"Variable {variable!r} is not in dataset "
                f"{ds.attrs.get('insitu_dataset_id', '?')!r}; it has "
                f"{sorted(map(str, ds.data_vars))}."
            )
        return self.func(mask_default_fill(ds, variable), variable, params)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("time_mean", time_mean, NoParams, True),
        Operation("climatology", climatology, ClimatologyParams, True),
        Operation("anomaly", anomaly, AnomalyParams, False),
        Operation("field_mean", field_mean, NoParams, False),
        Operation("zonal_mean", zonal_mean, NoParams, False),
        Operation("resample", resample, ResampleParams, False),
        Operation("trend", trend, NoParams, True),
        Operation("quantile", quantile, QuantileParams, True),
    )
}


def get_operation(name: str) -> Operation:
    """The operation called ``name``."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise InvalidRequest(
            f"Unknown operation {name!r}. Operations: {', '.join(OPERATIONS)}."
        ) from None
