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


def _frequency(times: np.ndarray[Any, Any], dataset_id: str) -> str:
    import cftime

    if times.size < 2:
        return "month"
    if isinstance(times[0], cftime.datetime):
        days = cftime.date2num(times, "days since 0001-01-01", calendar=times[0].calendar)
    else:
        days = (times - times[0]) / np.timedelta64(1, "D")
    step = float(np.median(np.diff(np.asarray(days, dtype="float64"))))
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


def _relabel(ds: xr.Dataset, tdim: str, freq: str, dataset_id: str) -> xr.Dataset:
    import cftime

    labels = []
    keep = []
    for i, t in enumerate(ds[tdim].values):
        t = t if isinstance(t, cftime.datetime) else _to_cftime(t)
        y, m, d = t.year, (t.month if freq != "year" else 1), (t.day if freq == "day" else 1)
        try:
            labels.append(cftime.DatetimeProlepticGregorian(y, m, d))
        except ValueError:
            continue  # e.g. 30 February of a 360_day calendar
        keep.append(i)
    out = ds.isel({tdim: keep})
    bounds = out[tdim].attrs.get("bounds")
    if isinstance(bounds, str) and bounds in out.variables:
        out = out.drop_vars(bounds)
    out = out.assign_coords({tdim: labels})
    if len(set(labels)) != len(labels):
        raise IncompatibleInputs(
            f"Dataset {dataset_id!r} has several time steps in one {freq}; it cannot be "
            f"aligned by {freq}. Resample it first."
        )
    out[tdim].attrs = {
        "standard_name": "time",
        "axis": "T",
        "comment": f"aligned by {freq} across calendars",
    }
    return out


def _to_cftime(value: Any) -> Any:
    import cftime
    import pandas as pd

    ts = pd.Timestamp(value)
    return cftime.DatetimeProlepticGregorian(
        ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second
    )


def _sorted(ds: xr.Dataset, tdim: str | None) -> xr.Dataset:
    """Coordinates in ascending order (models store levels and latitudes either way)."""
    for dim in map(str, ds.dims):
        if dim != tdim and dim in ds.coords and ds[dim].ndim == 1 and ds.sizes[dim] > 1:
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
    if ax.time is not None:
        freqs = {ds_id: _frequency(results[ds_id][ax.time].values, ds_id) for ds_id in ids}
        if len(set(freqs.values())) > 1:
            raise IncompatibleInputs(
                f"The datasets have different time steps ({freqs}); resample them to one "
                "frequency before combining them."
            )
        freq = freqs[first_id]
        parts = [_relabel(aligned[i], ax.time, freq, i) for i in ids]
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
    stacked.attrs["title"] = f"{variable} of {len(ids)} datasets"
    for facet in ("source_id", "model", "experiment_id", "member_id"):
        values = [facets.get(i, {}).get(facet) for i in ids]
        if all(values):
            stacked = stacked.assign_coords({facet: ("dataset", values)})
    return stacked
