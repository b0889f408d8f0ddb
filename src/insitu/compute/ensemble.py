"""Combining the results of several datasets along a ``dataset`` dimension.

Models use different calendars (360_day, noleap, julian, ...), so their time axes cannot be
compared value by value. Results with a time axis are aligned on calendar labels instead:
year and month for monthly data (the 1st of the month, proleptic Gregorian), year for
annual data, the date for daily data (dates that do not exist in the proleptic Gregorian
calendar, such as 30 February, are dropped). Grids must agree exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from insitu.errors import IncompatibleInputs
from insitu.formats import axes

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["combine"]


Array = np.ndarray[Any, Any]


def _fields(times: Array) -> Array:
    """Year, month, day and second of the day of each date (cftime or numpy), as rows."""
    import cftime

    if times.size and isinstance(times[0], cftime.datetime):
        out = np.array(
            [(t.year, t.month, t.day, t.hour * 3600 + t.minute * 60 + t.second) for t in times],
            dtype=np.int64,
        )
        return out.reshape(-1, 4)
    t = np.asarray(times, dtype="datetime64[s]")
    months = t.astype("datetime64[M]")
    days = t.astype("datetime64[D]")
    return np.stack(
        [
            t.astype("datetime64[Y]").astype(np.int64) + 1970,
            months.astype(np.int64) % 12 + 1,
            (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
            (t - days.astype("datetime64[s]")).astype(np.int64),
        ],
        axis=1,
    )


def _days(fields: Array) -> Array:
    """Days since a fixed origin of each (year, month, day, second) row, as if the dates
    were proleptic Gregorian: exact for that calendar, within three days for the others,
    which is all the steps' classification needs."""
    y, m, d, s = fields.T
    a = (14 - m) // 12
    yy, mm = y + 4800 - a, m + 12 * a - 3
    jdn = d + (153 * mm + 2) // 5 + 365 * yy + yy // 4 - yy // 100 + yy // 400
    days: Array = jdn + s / 86400.0
    return days


def _frequency(fields: Array, dataset_id: str) -> str:
    if fields.shape[0] < 2:
        return "month"
    step = float(np.median(np.diff(_days(fields))))
    if step >= 300:
        return "year"
    if step >= 27:
        return "month"
    if step >= 0.9:
        return "day"
    raise IncompatibleInputs(
        f"Dataset {dataset_id!r} has a time step of {step * 24:.1f} hours; sub-daily results "
        "can only be combined when their time axes are identical. Resample them to daily "
        "or coarser first (operation 'resample')."
    )


class _Labels:
    """Calendar labels (proleptic Gregorian dates) by integer key ``YYYYMMDD``, each made
    once for all datasets; None for a date that calendar does not have (30 February)."""

    def __init__(self) -> None:
        self.made: dict[int, Any] = {}

    def keys(self, fields: Array, freq: str) -> Array:
        y, m, d = fields[:, 0], fields[:, 1], fields[:, 2]
        if freq == "year":
            m = np.ones_like(m)
        if freq != "day":
            d = np.ones_like(d)
        return np.asarray(y * 10000 + m * 100 + d, dtype=np.int64)

    def valid(self, keys: Array) -> Array:
        """Where ``keys`` name a date of the proleptic Gregorian calendar."""
        import cftime

        bad = []
        for key in np.unique(keys).tolist():
            if key not in self.made:
                try:
                    y, md = divmod(key, 10000)
                    self.made[key] = cftime.DatetimeProlepticGregorian(y, *divmod(md, 100))
                except ValueError:
                    self.made[key] = None
            if self.made[key] is None:
                bad.append(key)
        return ~np.isin(keys, bad) if bad else np.ones(keys.shape, dtype=bool)

    def dates(self, keys: Array) -> list[Any]:
        return [self.made[k] for k in keys.tolist()]


def _relabel(
    ds: xr.Dataset, tdim: str, freq: str, dataset_id: str, fields: Array, labels: _Labels
) -> xr.Dataset:
    """``ds`` with its time coordinate replaced by integer calendar keys (``YYYYMMDD``):
    pandas aligns integers in a fraction of the time it takes for cftime dates."""
    keys = labels.keys(fields, freq)
    keep = labels.valid(keys)
    out = ds if keep.all() else ds.isel({tdim: np.flatnonzero(keep)})
    keys = keys[keep]
    bounds = out[tdim].attrs.get("bounds")
    if isinstance(bounds, str) and bounds in out.variables:
        out = out.drop_vars(bounds)
    if np.unique(keys).size != keys.size:
        raise IncompatibleInputs(
            f"Dataset {dataset_id!r} has several time steps in one {freq}; it cannot be "
            f"aligned by {freq}. Resample it first."
        )
    import xarray as xr

    # Built afresh rather than with assign_coords, which aligns: half the time, and a
    # thousand datasets are relabelled.
    coords = {k: v.variable for k, v in out.coords.items() if k != tdim}
    coords[tdim] = xr.Variable((tdim,), keys)
    data = {k: v.variable for k, v in out.data_vars.items()}
    return xr.Dataset(data, coords=xr.Coordinates(coords), attrs=out.attrs)


def _sorted(ds: xr.Dataset, tdim: str | None) -> xr.Dataset:
    """Coordinates in ascending order (models store levels and latitudes either way)."""
    for dim in map(str, ds.dims):
        if dim != tdim and dim in ds.coords and ds[dim].ndim == 1 and ds.sizes[dim] > 1:
            values = ds[dim].values
            if values.dtype.kind in "iuf" and bool(np.all(values[1:] > values[:-1])):
                continue  # ascending already: sortby would copy it as it is
            ds = ds.sortby(dim)
    return ds


def combine(
    results: dict[str, xr.Dataset], variable: str, facets: dict[str, dict[str, str]]
) -> xr.Dataset:
    """Stack per-dataset results along ``dataset``; raise if grids or steps disagree."""
    import pandas as pd
    import xarray as xr

    ids = list(results)
    first_id = ids[0]
    ax = axes(results[first_id][variable])
    aligned = {first_id: _sorted(results[first_id][[variable]], ax.time)}
    ref = aligned[first_id][variable]
    for other in ids[1:]:
        part = _sorted(results[other][[variable]], ax.time)
        da = part[variable]
        for dim in map(str, ref.dims):
            if dim == ax.time:
                continue
            same = dim in da.dims and da.sizes[dim] == ref.sizes[dim]
            if same and dim in ref.coords and dim in da.coords:
                same = bool(
                    np.allclose(
                        np.asarray(ref[dim].values, dtype="float64"),
                        np.asarray(da[dim].values, dtype="float64"),
                        rtol=1e-6,
                        atol=0.0,
                    )
                )
                if same:
                    part = part.assign_coords({dim: ref[dim].values})
            if not same:
                raise IncompatibleInputs(
                    f"Datasets {first_id!r} and {other!r} differ along {dim!r} "
                    f"({dict(ref.sizes)} vs {dict(da.sizes)}): their grids do not match. "
                    "Reduce that dimension first (e.g. field_mean) or regrid to one grid."
                )
        aligned[other] = part
    parts = []
    labels = _Labels()
    if ax.time is not None:
        fields = {ds_id: _fields(results[ds_id][ax.time].values) for ds_id in ids}
        freqs = {ds_id: _frequency(fields[ds_id], ds_id) for ds_id in ids}
        if len(set(freqs.values())) > 1:
            raise IncompatibleInputs(
                f"The datasets have different time steps ({freqs}); resample them to one "
                "frequency before combining them."
            )
        freq = freqs[first_id]
        parts = [_relabel(aligned[i], ax.time, freq, i, fields[i], labels) for i in ids]
    else:
        parts = [aligned[i] for i in ids]
    for part in parts:
        part.attrs = {}
    stacked = xr.concat(
        parts,
        dim=pd.Index(ids, name="dataset"),
        join="outer",
        coords="minimal",
        compat="override",
        combine_attrs="drop_conflicts",
    )
    if ax.time is not None:
        dates = labels.dates(np.asarray(stacked[ax.time].values))
        stacked = stacked.assign_coords({ax.time: dates})
        stacked[ax.time].attrs = {
            "standard_name": "time",
            "axis": "T",
            "comment": f"aligned by {freq} across calendars",
        }
    stacked.attrs["title"] = f"{variable} of {len(ids)} datasets"
    for facet in ("source_id", "model", "experiment_id", "member_id"):
        values = [facets.get(i, {}).get(facet) for i in ids]
        if all(values):
            stacked = stacked.assign_coords({facet: ("dataset", values)})
    return stacked
