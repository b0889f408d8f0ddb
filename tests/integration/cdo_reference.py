"""Independent references for the operation tests: CDO run on the files, and the files read
with netCDF4 and cftime alone (neither xarray nor insitu is involved in the answers).

:func:`cdo` runs ``cdo -s -O OPERATOR -mergetime FILES OUT`` (``mergetime`` sorts the
records of all files by time, so it also checks that insitu puts files with different time
units in order) and reads the result back with :func:`read`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cftime
import netCDF4
import numpy as np
import pandas as pd

__all__ = ["DAYS_PER_YEAR", "SEASON", "Series", "cdo", "cdo_version", "read", "ymd"]

#: Mean length of a year in each CF calendar, in days.
DAYS_PER_YEAR = {
    "360_day": 360.0,
    "365_day": 365.0,
    "noleap": 365.0,
    "366_day": 366.0,
    "all_leap": 366.0,
    "julian": 365.25,
    "gregorian": 365.2425,
    "standard": 365.2425,
    "proleptic_gregorian": 365.2425,
}

#: Season of each month (1-12), the way xarray's ``time.season`` groups them: by month only,
#: so December joins the January and February of the same year.
SEASON = {
    m: s
    for s, months in {
        "DJF": (12, 1, 2),
        "MAM": (3, 4, 5),
        "JJA": (6, 7, 8),
        "SON": (9, 10, 11),
    }.items()
    for m in months
}


@dataclass(frozen=True)
class Series:
    """One variable of one or several files: dates, float64 values (NaN where missing)."""

    dates: list[Any]
    values: np.ndarray[Any, Any]
    calendar: str
    coords: dict[str, np.ndarray[Any, Any]]

    @property
    def years(self) -> np.ndarray[Any, Any]:
        return np.array([d.year for d in self.dates])

    @property
    def months(self) -> np.ndarray[Any, Any]:
        return np.array([d.month for d in self.dates])


def read(paths: Sequence[Path], var: str = "ta") -> Series:
    """``var`` of ``paths`` concatenated along time, each file decoded with its own units.

    Values go through netCDF4's own masking (``_FillValue``, ``missing_value``, valid
    range, and the netCDF default fill value when no ``_FillValue`` is set, as the NetCDF
    User Guide asks) and become float64 with NaN where masked. Records are sorted by date.
    """
    dates: list[Any] = []
    values = []
    calendar = ""
    coords: dict[str, np.ndarray[Any, Any]] = {}
    for path in paths:
        with netCDF4.Dataset(path) as nc:
            v = nc.variables[var]
            data = np.ma.filled(np.ma.asarray(v[...]).astype("float64"), np.nan)
            tdim = v.dimensions[0]
            if tdim in nc.variables and "since" in getattr(nc.variables[tdim], "units", ""):
                t = nc.variables[tdim]
                calendar = getattr(t, "calendar", "standard")
                dates.extend(
                    cftime.num2date(
                        t[:], t.units, calendar=calendar, only_use_cftime_datetimes=True
                    )
                )
            for dim in v.dimensions[1:]:
                if dim in nc.variables:
                    coords[dim] = np.asarray(nc.variables[dim][:], dtype="float64")
            values.append(data)
    if dates:
        order = np.argsort(
            cftime.date2num(dates, "days since 0001-01-01", calendar=calendar), kind="stable"
        )
        dates = [dates[i] for i in order]
        stacked = np.concatenate(values, axis=0)[order]
    else:
        stacked = np.concatenate(values, axis=0)
    return Series(dates, stacked, calendar, coords)


def cdo(operator: str, paths: Sequence[Path], out: Path, var: str = "ta") -> Series:
    """``cdo OPERATOR`` applied to the time-merged ``paths``, read back with :func:`read`."""
    exe = shutil.which("cdo")
    assert exe, "CDO is needed for the reference results (apt-get install cdo)"
    cmd = [exe, "-s", "-O", operator, "-mergetime", *map(str, paths), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr}"
    return read([out], var)


def cdo_version() -> str:
    """The version line of the installed CDO."""
    out = subprocess.run(["cdo", "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).splitlines()[0]


def ymd(values: Any) -> list[tuple[int, int, int]]:
    """(year, month, day) of each of ``values``: cftime dates or numpy datetime64."""
    out = []
    for t in np.asarray(values).ravel():
        if not isinstance(t, cftime.datetime):
            t = pd.Timestamp(t)
        out.append((t.year, t.month, t.day))
    return out
