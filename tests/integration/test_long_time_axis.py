"""Long datasets: time axes past numpy's datetime64 range, in every calendar insitu handles
on purpose, open as xarray.open_mfdataset opens them, without a warning, and a time axis
opened again is not decoded again.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from xarray.coding.times import SerializationWarning

from insitu import formats
from insitu.errors import DataError
from tests.integration.scanned import one_dataset

_CFTIME = xr.coders.CFDatetimeCoder(use_cftime=True)


def _write(path: Path, days: np.ndarray, units: str, calendar: str, seed: int) -> None:
    """A small CF file of daily values: time (with bounds) x lat x lon."""
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", days.size)
        nc.createDimension("bnds", 2)
        nc.createDimension("lat", 2)
        nc.createDimension("lon", 3)
        t = nc.createVariable("time", "f8", ("time",))
        t.setncatts({"bounds": "time_bnds", "units": units, "calendar": calendar, "axis": "T"})
        t[:] = days
        nc.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack(
            [days - 0.5, days + 0.5], axis=1
        )
        nc.createVariable("lat", "f8", ("lat",))[:] = [-45.0, 45.0]
        nc.createVariable("lon", "f8", ("lon",))[:] = [0.0, 120.0, 240.0]
        tas = nc.createVariable("tas", "f4", ("time", "lat", "lon"))
        tas.units = "K"
        tas[:] = 280 + np.random.default_rng(seed).standard_normal((days.size, 2, 3))


def _archive(
    root: Path, n_files: int, days_per_file: int, units: str, calendar: str, first_day: float = 0
) -> list[str]:
    """``n_files`` consecutive files of one dataset under ``root``; their paths in order."""
    d = root / "CMIP6/CMIP/X/M/piControl/r1i1p1f1/day/tas/gn/v1"
    d.mkdir(parents=True)
    paths = []
    for k in range(n_files):
        days = first_day + k * days_per_file + np.arange(days_per_file) + 0.5
        path = d / f"tas_day_M_piControl_r1i1p1f1_gn_{k + 1:04d}0101-{k + 1:04d}1231.nc"
        _write(path, days, units, calendar, seed=k)
        paths.append(str(path))
    return paths


def _open_mf(paths: list[str], **kw: object) -> xr.Dataset:
    return xr.open_mfdataset(
        paths,
        combine="nested",
        concat_dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
        **kw,
    )


def _assert_same(ours: xr.Dataset, theirs: xr.Dataset) -> None:
    """The same dataset: variables, values, attributes, the same time index and encoding."""
    assert type(ours.indexes["time"]) is type(theirs.indexes["time"])
    assert ours.indexes["time"].equals(theirs.indexes["time"])
    ours = ours.copy()
    del ours.attrs["insitu_dataset_id"]
    xr.testing.assert_identical(ours, theirs)
    for name in ("time", "time_bnds"):
        assert ours[name].encoding.items() <= theirs[name].encoding.items(), name


@pytest.mark.parametrize(
    ("calendar", "days_per_file"),
    [
        ("noleap", 365),
        ("360_day", 360),
        ("all_leap", 366),
        ("julian", 365),
        ("proleptic_gregorian", 365),
        ("standard", 365),
    ],
)
def test_dates_past_2262_open_like_open_mfdataset_without_a_warning(
    tmp_path: Path, calendar: str, days_per_file: int
) -> None:
    """20 years from 2250 on (a piControl run's years, across 2262): cftime dates, no
    warning, and the dataset xarray gives told use_cftime=True (and by default, where it
    warns, in the other calendars)."""
    root = tmp_path / "archive"
    root.mkdir()
    paths = _archive(root, 20, days_per_file, "days since 2250-01-01", calendar)
    with one_dataset(tmp_path, root) as (_, cat, ds_id):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = cat.open_dataset(ds_id)
            again = cat.open_dataset(ds_id)
        assert ours.sizes["time"] == 20 * days_per_file
        assert ours.indexes["time"][-1].year > 2262
        with _open_mf(paths, decode_times=_CFTIME) as theirs:
            _assert_same(ours, theirs)
            xr.testing.assert_equal(ours["tas"].load(), theirs["tas"].load())
            xr.testing.assert_equal(ours["time_bnds"].load(), theirs["time_bnds"].load())
        if calendar not in ("standard", "proleptic_gregorian"):
            # By default xarray decodes each file alone: in a standard calendar, files before
            # 2262 to numpy dates and later ones to cftime dates, one axis of both types.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SerializationWarning)  # xarray's own
                with _open_mf(paths) as theirs:
                    _assert_same(ours, theirs)
        # Opened again: the decoded dates are reused, not decoded again.
        assert np.shares_memory(ours.indexes["time"].values, again.indexes["time"].values)
        xr.testing.assert_identical(ours, again)


def test_standard_dates_in_range_stay_numpy_dates(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    paths = _archive(root, 3, 365, "days since 2000-01-01", "standard")
    with one_dataset(tmp_path, root) as (_, cat, ds_id):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = cat.open_dataset(ds_id)
        assert ours["time"].dtype == np.dtype("datetime64[ns]")
        with _open_mf(paths) as theirs:
            _assert_same(ours, theirs)
            xr.testing.assert_equal(ours["time_bnds"].load(), theirs["time_bnds"].load())


def test_changed_time_values_are_decoded_again(tmp_path: Path) -> None:
    """The decoded axis is kept by its values: a file rewritten with other times and
    rescanned gives the new dates, not the kept ones."""
    root = tmp_path / "archive"
    root.mkdir()
    paths = _archive(root, 2, 365, "days since 2300-01-01", "noleap")
    with one_dataset(tmp_path, root) as (_, cat, ds_id):
        before = cat.open_dataset(ds_id)
        _write(Path(paths[1]), 365 + np.arange(365) + 0.75, "days since 2300-01-01", "noleap", 1)
        cat.scan(workers=1)
        after = cat.open_dataset(ds_id)
        with _open_mf(paths, decode_times=_CFTIME) as theirs:
            assert after.indexes["time"].equals(theirs.indexes["time"])
        assert not after.indexes["time"].equals(before.indexes["time"])
        assert after.indexes["time"][-1].hour == 18


def test_standard_dates_before_the_gregorian_reform_still_warn(tmp_path: Path) -> None:
    """Julian dates in the mixed standard calendar are rarely meant: xarray's warning says
    so, and stays."""
    root = tmp_path / "archive"
    root.mkdir()
    _archive(root, 2, 365, "days since 1500-01-01", "standard")
    with (
        one_dataset(tmp_path, root) as (_, cat, ds_id),
        pytest.warns(SerializationWarning, match="reform date"),
    ):
        ds = cat.open_dataset(ds_id)
    assert ds.indexes["time"][0].year == 1500


@pytest.mark.parametrize(
    ("units", "calendar", "named"),
    [
        ("days since 2300-01-01", "martian", "'martian'"),
        ("fortnights since 2300-01-01", "noleap", "'fortnights since 2300-01-01'"),
    ],
)
def test_times_that_cannot_be_decoded_say_which_and_what_to_do(
    units: str, calendar: str, named: str
) -> None:
    with pytest.raises(DataError, match=f"{named}.*calendar attribute.*decode_times=False"):
        formats.decode_times(np.array([0.5, 1.5]), units, calendar)
