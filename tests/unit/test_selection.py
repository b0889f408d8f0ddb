"""Parsing and applying the selection parameters of subsets and quicklooks (no I/O)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr

from insitu.access.selection import (
    Range,
    nearest_index,
    parse_isel,
    parse_range,
    parse_time,
    select_coordinate,
)
from insitu.errors import InvalidQuery


def _grid(lon: np.ndarray) -> xr.Dataset:
    """A field on the given longitudes, with CF bounds."""
    step = float(lon[1] - lon[0])
    bounds = np.stack([lon - step / 2, lon + step / 2], axis=1)
    return xr.Dataset(
        {"t": (("lon",), lon * 10.0), "lon_bnds": (("lon", "bnds"), bounds)},
        coords={"lon": ("lon", lon, {"bounds": "lon_bnds", "units": "degrees_east"})},
    )


def test_ranges_points_and_open_ends() -> None:
    assert parse_range("lat", "-10/10") == Range("lat", -10.0, 10.0)
    assert parse_range("lat", "/10") == Range("lat", None, 10.0)
    assert parse_range("level", "85000") == Range("level", 85000.0, 85000.0, point=True)
    assert parse_range("lon", "350/10") == Range("lon", 350.0, 10.0)  # crosses the date line
    assert parse_range("lat", None) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("lat", "10/-10"), ("lat", "91"), ("lat", "/"), ("lon", "1/2/3"), ("lon", "inf")],
)
def test_bad_ranges(name: str, value: str) -> None:
    with pytest.raises(InvalidQuery, match=re.escape(repr(value))):
        parse_range(name, value)


def test_time_ranges_are_canonical_and_cover_their_period() -> None:
    t = parse_time("1990-1/1990-12")
    assert t is not None
    assert (t.start, t.end) == ("1990-01", "1990-12")
    assert (t.lo, t.hi) == (19900101000000, 19901231235959)
    one = parse_time("850-07-04")
    assert one is not None and one.start == one.end == "0850-07-04"
    with pytest.raises(InvalidQuery, match="ends before it starts"):
        parse_time("2000/1990")


def test_isel_items() -> None:
    got = parse_isel("time:0:12, plev:3 ,lat::-1:2")
    assert got == {"time": slice(0, 12), "plev": slice(3, 4), "lat": slice(None, -1, 2)}
    assert parse_isel("time:-1") == {"time": slice(-1, None)}
    for bad in ("time", "time:x", "time:0:1:0", "time:0,time:1", "1time:0"):
        with pytest.raises(InvalidQuery):
            parse_isel(bad)


def test_longitudes_across_the_date_line_are_relabelled_continuously() -> None:
    ds = _grid(np.arange(0.0, 360.0, 5.0))
    out = select_coordinate(ds, "lon", Range("lon", 350.0, 10.0), circular=True)
    assert out["lon"].values.tolist() == [-10.0, -5.0, 0.0, 5.0, 10.0]
    assert out["t"].values.tolist() == [3500.0, 3550.0, 0.0, 50.0, 100.0]  # data move along
    np.testing.assert_array_equal(out["lon_bnds"].values[0], [-12.5, -7.5])
    whole = select_coordinate(ds, "lon", Range("lon", -180.0, 180.0), circular=True)
    assert whole.sizes["lon"] == 72
    assert np.all(np.diff(whole["lon"].values) > 0) and whole["lon"].values[0] == -180.0


def test_longitudes_of_a_minus_180_grid() -> None:
    ds = _grid(np.arange(-180.0, 180.0, 10.0))
    out = select_coordinate(ds, "lon", Range("lon", 170.0, -170.0), circular=True)
    assert out["lon"].values.tolist() == [170.0, 180.0, 190.0]
    plain = select_coordinate(ds, "lon", Range("lon", 0.0, 20.0), circular=True)
    assert plain["lon"].values.tolist() == [0.0, 10.0, 20.0]


def test_a_range_that_selects_nothing_names_the_coverage() -> None:
    ds = _grid(np.arange(0.0, 30.0, 10.0))
    with pytest.raises(InvalidQuery, match=r"selects nothing.*0 to 20 degrees_east \(3 points\)"):
        select_coordinate(ds, "lon", Range("lon", 100.0, 120.0), circular=True)


def test_nearest_point_must_be_on_the_grid_except_round_a_global_one() -> None:
    regional = _grid(np.arange(0.0, 30.0, 10.0))
    assert nearest_index(regional, "lon", 14.0) == 1
    with pytest.raises(InvalidQuery, match="outside the grid"):
        nearest_index(regional, "lon", 100.0, label="lon")
    world = _grid(np.arange(0.0, 360.0, 10.0))
    assert nearest_index(world, "lon", -4.0, circular=True) == 0
    assert nearest_index(world, "lon", 356.0, circular=True) == 0
