"""The CF rules every reader and every subsystem shares: what marks a value missing, which
dimension is which axis, how encoded times move from one ``units`` to another.

One place for them, so that the streaming engine, xarray operations, the Zarr view, subsets
and quicklooks agree on what is missing and on where time, latitude and longitude are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from insitu.errors import DataError

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "FILL_ATTRS",
    "Axes",
    "TimeAxis",
    "axes",
    "decode_times",
    "default_fill",
    "fill_values",
    "mask_default_fill",
    "reencode_time",
    "time_axis",
    "with_time_units",
]

FILL_ATTRS = ("_FillValue", "missing_value")  # the attributes that mark missing values

# netCDF's default fill values (netcdf.h NC_FILL_*), by numpy type code: what a variable
# holds where nothing was written.
_DEFAULT_FILL: dict[str, Any] = {
    "i1": -127,
    "u1": 255,
    "i2": -32767,
    "u2": 65535,
    "i4": -2147483647,
    "u4": 4294967295,
    "i8": -9223372036854775806,
    "u8": 18446744073709551614,
    "f4": 9.969209968386869e36,
    "f8": 9.969209968386869e36,
}


def default_fill(dtype: np.dtype[Any]) -> Any:
    """netCDF's default fill value for ``dtype`` (None for types without one), as a value of
    that type."""
    value = _DEFAULT_FILL.get(dtype.str[1:])
    return None if value is None else dtype.type(value)


def fill_values(dtype: np.dtype[Any], attrs: Mapping[str, Any]) -> list[Any]:
    """Values that mean 'missing' in raw values of ``dtype``: the declared ones
    (``_FillValue``, ``missing_value``), else netCDF's default fill for floating point.

    The same rule as :func:`mask_default_fill`, so the streaming engine and xarray agree.
    """
    fills = []
    for name in FILL_ATTRS:
        if name in attrs:
            value = np.asarray(attrs[name]).ravel()
            if value.size:
                fills.append(value[0])
    if not fills and dtype.kind == "f":
        fills = [default_fill(dtype)]
    return fills


def mask_default_fill(ds: xr.Dataset, var: str) -> xr.Dataset:
    """Treat netCDF's default fill value as missing when the variable declares none.

    The netCDF user guide says readers should; xarray (and CDO) do not, and 30 of the 76
    demo datasets hold 9.97e36 where they have no data. Operations follow the guide;
    opening a dataset stays identical to xarray's.
    """
    da = ds[var]
    enc = da.encoding
    if da.dtype.kind != "f" or "_FillValue" in enc or "missing_value" in enc:
        return ds
    fill = default_fill(np.dtype(enc.get("dtype", da.dtype)))
    if fill is None:
        return ds
    out = ds.copy()
    out[var] = da.where(da != fill)
    return out


@dataclass(frozen=True, slots=True)
class Axes:
    """Names of a variable's time, latitude, longitude and vertical dimensions."""

    time: str | None
    lat: str | None
    lon: str | None
    vertical: str | None


def _is(da: Any, name: str, standard: str, axis: str, names: tuple[str, ...]) -> bool:
    attrs = da.coords[name].attrs if name in da.coords else {}
    return (
        attrs.get("standard_name") == standard or attrs.get("axis") == axis or name.lower() in names
    )


def _holds_dates(da: Any, name: str) -> bool:
    """Whether the coordinate ``name`` of ``da`` holds decoded dates (a time dimension
    whose coordinate says nothing else, as NEMO's ``time_counter``)."""
    if name not in da.coords:
        return False
    coord = da.coords[name]
    if coord.dtype.kind == "M":
        return True
    if coord.dtype.kind != "O" or coord.size == 0:
        return False
    import cftime

    return isinstance(coord.values.flat[0], cftime.datetime)


def axes(da: xr.DataArray) -> Axes:
    """Find the CF axes of ``da`` from coordinate attributes and common names."""
    found: dict[str, str | None] = {"time": None, "lat": None, "lon": None, "vertical": None}
    for dim in map(str, da.dims):
        if found["time"] is None and (
            _is(da, dim, "time", "T", ("time", "t")) or _holds_dates(da, dim)
        ):
            found["time"] = dim
        elif found["lat"] is None and _is(da, dim, "latitude", "Y", ("lat", "latitude", "y")):
            found["lat"] = dim
        elif found["lon"] is None and _is(da, dim, "longitude", "X", ("lon", "longitude", "x")):
            found["lon"] = dim
        elif found["vertical"] is None and _is(
            da, dim, "air_pressure", "Z", ("plev", "lev", "level", "depth", "height")
        ):
            found["vertical"] = dim
    return Axes(**found)


@dataclass(frozen=True, slots=True)
class TimeAxis:
    """A file's time dimension and the variable whose values and ``units`` date it: the
    dimension's own coordinate, or an auxiliary coordinate along it."""

    dim: str
    source: str


def _dated(attrs: Mapping[str, Any]) -> bool:
    return " since " in str(attrs.get("units", ""))


def time_axis(variables: Mapping[str, tuple[Sequence[str], Mapping[str, Any]]]) -> TimeAxis | None:
    """The time axis of a file from its variables' dimensions and attributes, by name.

    A time coordinate is a variable along its own dimension with ``axis = "T"``,
    ``standard_name = "time"``, the name ``time`` or ``units`` of the form ``<unit> since
    <date>``; the first one with such units is the time axis. A time dimension whose
    coordinate has no such units (or that has no coordinate) is dated by an auxiliary
    coordinate along it with ``standard_name = "time"`` (or ``axis = "T"``) and units: raw
    NEMO output counts ``time_counter`` without units and dates it by ``time_centered``.
    Failing both, the first time coordinate, undated (the caller says what is wrong).
    """
    coords = [
        name
        for name, (dims, attrs) in variables.items()
        if tuple(dims) == (name,)
        and (
            attrs.get("axis") == "T"
            or attrs.get("standard_name") == "time"
            or name == "time"
            or _dated(attrs)
        )
    ]
    for name in coords:
        if _dated(variables[name][1]):
            return TimeAxis(name, name)
    for name, (dims, attrs) in variables.items():
        if (
            len(dims) == 1
            and dims[0] != name
            and (attrs.get("standard_name") == "time" or attrs.get("axis") == "T")
            and _dated(attrs)
        ):
            return TimeAxis(dims[0], name)
    return TimeAxis(coords[0], coords[0]) if coords else None


def with_time_units(
    attrs: dict[str, Any], units: str | None, calendar: str | None
) -> dict[str, Any]:
    """``attrs`` of a time dimension's coordinate, with the ``units`` and ``calendar`` of the
    variable that dates it (see :func:`time_axis`) where it has no units of its own; ``attrs``
    itself when it has them (or ``units`` is None)."""
    if units is None or _dated(attrs):
        return attrs
    return {**attrs, "units": units, "calendar": calendar or "standard"}


def reencode_time(
    raw: np.ndarray[Any, Any], units: str, to_units: str, calendar: str
) -> np.ndarray[Any, Any]:
    """Encoded times ``raw`` counted in ``units``, counted in ``to_units`` instead (same
    dtype): files of one dataset may count time from different dates."""
    import cftime

    dates = cftime.num2date(raw.astype("float64"), units, calendar=calendar)
    return np.asarray(cftime.date2num(dates, to_units, calendar=calendar)).astype(raw.dtype)


# The calendars xarray decodes to numpy datetimes where it can; every other CF calendar is
# decoded to cftime dates, in range or not.
_STANDARD_CALENDARS = frozenset({"standard", "gregorian", "proleptic_gregorian"})


def decode_times(
    values: np.ndarray[Any, Any], units: str, calendar: str | None
) -> np.ndarray[Any, Any]:
    """Encoded times decoded as xarray decodes them (``xarray.decode_cf``, what
    ``xarray.open_dataset`` gives), without xarray's warning where dates are cftime dates on
    purpose.

    The dates are numpy ``datetime64[ns]`` for a standard calendar (``standard``,
    ``gregorian``, ``proleptic_gregorian``) in numpy's range, else cftime dates: always in
    the other calendars (``noleap``, ``360_day``, ``all_leap``, ``julian``, ...), and in a
    standard calendar beyond 1677-2262 (piControl runs count a thousand years). xarray warns
    in the last case unless told ``use_cftime=True``; this does not. Dates before the
    Gregorian reform (1582-10-15) in the mixed ``standard`` calendar still warn as xarray
    warns: they are Julian dates, which a model run rarely means.

    Raises
    ------
    DataError
        The values cannot be decoded (an unknown calendar, units cftime cannot read, dates
        out of every range); the message names the units and the calendar.
    """
    from pandas.errors import OutOfBoundsDatetime, OutOfBoundsTimedelta
    from xarray.coding.times import decode_cf_datetime

    name = calendar or "standard"
    try:
        if name.lower() not in _STANDARD_CALENDARS:
            return decode_cf_datetime(values, units, name, use_cftime=True)
        try:
            return decode_cf_datetime(values, units, name, use_cftime=False)
        except (OutOfBoundsDatetime, OutOfBoundsTimedelta, OverflowError):
            dates = decode_cf_datetime(values, units, name, use_cftime=True)
        if dates.size and _beyond_datetime64(dates, values):
            return dates
        # Before the reform, or in range with a reference date pandas refuses: xarray's
        # own choice (numpy datetimes in range, a warning before the reform).
        return decode_cf_datetime(values, units, name)
    except (ValueError, OverflowError, TypeError) as exc:
        raise DataError(
            f"Cannot decode times in units {units!r} and calendar {name!r}: {exc}. Fix the "
            "file's time units or calendar attribute, or open it with xarray and "
            "decode_times=False to see its values."
        ) from exc


def _beyond_datetime64(dates: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> bool:
    """Whether cftime ``dates`` of a standard calendar reach past numpy's datetime64[ns]
    range (1677-09-21 to 2262-04-11) without going back before the Gregorian reform."""
    first = dates.flat[int(np.nanargmin(values))]
    last = dates.flat[int(np.nanargmax(values))]
    kind = type(first)
    if first < kind(1582, 10, 15):
        return False
    return bool(
        first < kind(1677, 9, 21, 0, 12, 43, 145224) or last > kind(2262, 4, 11, 23, 47, 16, 854775)
    )
