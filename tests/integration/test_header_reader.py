"""The fast HDF5 header reader gives exactly what netCDF4-python gives.

Every file is read twice through :func:`insitu.catalog.headers.read_headers`: with the
fast reader (``insitu.formats.netcdf.header``) and with netCDF4-python only (``fast=False``). The
results must be equal, attribute order included, on the real CMIP6 sample archive and on
files made here with the features netCDF-4 files carry. Files the fast reader does not
handle must fall back to netCDF4-python, never be described differently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

from insitu.catalog.headers import HeaderResult, read_headers
from insitu.formats.netcdf import header as _hdf5
from tests.integration.badarchive import write_nc


def _canonical(result: HeaderResult) -> str:
    """The result as text: the top-level header keys sorted, everything inside in order."""
    rel, status, reason, header = result
    body = None
    if header is not None:
        body = {k: json.dumps(v, default=repr) for k, v in sorted(header.items())}
    return json.dumps([rel, status.value, reason, body])


def _fast_path_reads(path: Path) -> bool:
    return _refusal(path) is None


def _refusal(path: Path) -> str | None:
    """Why the fast reader leaves ``path`` to netCDF4-python, or None if it reads it."""
    try:
        with _hdf5.open_header(str(path)):
            return None
    except _hdf5.NotPlain as exc:
        return str(exc)


def _assert_same(paths: list[Path]) -> None:
    batch = [(p.name, str(p)) for p in paths]
    fast = read_headers(batch)
    slow = read_headers(batch, fast=False)
    for path, a, b in zip(paths, fast, slow, strict=True):
        assert _canonical(a) == _canonical(b), path


def test_the_fast_path_is_reachable() -> None:
    assert _hdf5.AVAILABLE, "the HDF5 library under netCDF4-python was not found"


def test_demo_archive_reads_the_same(demo_root: Path) -> None:
    paths = sorted(demo_root.rglob("*.nc"))
    assert len(paths) > 300
    refused = {p.name: why for p in paths if (why := _refusal(p)) is not None}
    assert not refused, f"CMIP6 files left to netCDF4-python: {refused}"
    for i in range(0, len(paths), 64):  # batches as the scan sends them
        _assert_same(paths[i : i + 64])


# -- files with the features a netCDF-4 header can have --------------------------------


def _cf_attributes(path: Path) -> None:
    """Every attribute type, NC_STRING included, on a CF file."""
    write_nc(path)
    with netCDF4.Dataset(path, "a") as ds:
        ds.setncattr_string("references", "one NC_STRING")
        ds.setncattr_string("history_list", ["first", "second"])
        ds.setncattr("empty", "")
        ds.setncattr("unicode", "température, 2 µm")
        ds.setncattr("ints", np.array([1, 2, 3], dtype="i8"))
        ds.setncattr("bytes", np.int8(-3))
        ds.setncattr("ubyte", np.uint8(250))
        ds.setncattr("ushort", np.uint16(65000))
        ds.setncattr("not_a_number", np.float32(np.nan))
        ds.setncattr("doubles", np.array([0.5, 1e300]))
        ds["ta"].setncattr("valid_range", np.array([100.0, 400.0], dtype="f4"))
        ds["ta"].setncattr("missing_value", np.float32(1e20))


def _classic_model(path: Path) -> None:
    write_nc(path)
    tmp = path.with_suffix(".tmp")
    with netCDF4.Dataset(path) as src, netCDF4.Dataset(tmp, "w", format="NETCDF4_CLASSIC") as dst:
        _copy(src, dst)
    tmp.replace(path)


def _copy(src: Any, dst: Any) -> None:
    dst.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
    for name, dim in src.dimensions.items():
        dst.createDimension(name, None if dim.isunlimited() else len(dim))
    for name, var in src.variables.items():
        fill = var.getncattr("_FillValue") if "_FillValue" in var.ncattrs() else None
        out = dst.createVariable(name, var.dtype, var.dimensions, fill_value=fill)
        out.setncatts({k: var.getncattr(k) for k in var.ncattrs() if k != "_FillValue"})
        out[:] = var[:]


def _classic_file(path: Path) -> None:
    write_nc(path, fmt="NETCDF3_CLASSIC")


def _layout_variety(path: Path) -> None:
    """Unlimited time with a variable shorter than it, big-endian and char variables, a
    scalar, compressed coordinates, a dimension without a variable, bounds with a fill."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.title = "layout variety"
        ds.createDimension("time", None)
        ds.createDimension("lat", 3)
        ds.createDimension("lon", 4)
        ds.createDimension("bnds", 2)
        ds.createDimension("strlen", 8)
        t = ds.createVariable("time", "f8", ("time",), zlib=True)
        t.units, t.calendar, t.axis = "hours since 2000-01-01 00:00:00", "proleptic_gregorian", "T"
        t[:] = np.arange(10) * 6.0
        short = ds.createVariable("short_series", "i2", ("time",))
        short[:5] = np.arange(5)
        lat = ds.createVariable("lat", ">f4", ("lat",), endian="big")
        lat.units, lat.bounds = "degrees_north", "lat_bnds"
        lat[:] = [-60.0, 0.0, 60.0]
        lb = ds.createVariable("lat_bnds", "f4", ("lat", "bnds"), fill_value=np.float32(-999))
        lb[:] = [[-90, -30], [-30, 30], [30, 90]]
        lon = ds.createVariable("lon", "f8", ("lon",), zlib=True, shuffle=True)
        lon.units = "degrees_east"
        lon[:] = [-180.0, -90.0, 0.0, 90.0]
        ds.createVariable("crs", "i4", ())
        ds["crs"].grid_mapping_name = "latitude_longitude"
        label = ds.createVariable("label", "S1", ("lat", "strlen"))
        label[:] = netCDF4.stringtochar(np.array(["south", "middle", "north"], dtype="S8"))
        data = ds.createVariable("pr", "f4", ("time", "lat", "lon"), chunksizes=(1, 3, 4))
        data.units = "kg m-2 s-1"
        data.scale_factor = np.float32(2.0)
        data[:] = np.ones((10, 3, 4), dtype="f4")


def _no_time(path: Path) -> None:
    write_nc(path, calendar=None, var="orog")


def _bad_time_units(path: Path) -> None:
    write_nc(path, units="days")


def _unknown_calendar(path: Path) -> None:
    write_nc(path, calendar="foo_calendar")


def _group(path: Path) -> None:
    write_nc(path)
    with netCDF4.Dataset(path, "a") as ds:
        ds.createGroup("extra").setncattr("note", "in a subgroup")


def _string_variable(path: Path) -> None:
    write_nc(path)
    with netCDF4.Dataset(path, "a") as ds:
        ds.createDimension("station", 2)
        names = ds.createVariable("station_name", str, ("station",))
        names[0], names[1] = "alpha", "beta"


def _non_coordinate_twin(path: Path) -> None:
    """A variable named like a dimension but not its coordinate (stored renamed)."""
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("x", 3)
        ds.createDimension("y", 2)
        twin = ds.createVariable("x", "f8", ("y", "x"))
        twin[:] = np.zeros((2, 3))


def _text_fill_value(path: Path) -> None:
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("n", 4)
        var = ds.createVariable("flag", "S1", ("n",), fill_value=b"x")
        var[:] = np.array([b"a", b"b", b"c", b"d"])


# name -> (how to write it, whether the fast reader reads it itself)
CASES: dict[str, tuple[Callable[[Path], None], bool]] = {
    "cf_attributes": (_cf_attributes, True),
    "classic_model": (_classic_model, True),
    "layout_variety": (_layout_variety, True),
    "no_time": (_no_time, True),
    "bad_time_units": (_bad_time_units, True),
    "unknown_calendar": (_unknown_calendar, True),
    "classic_file": (_classic_file, False),
    "group": (_group, False),
    "string_variable": (_string_variable, False),
    "non_coordinate_twin": (_non_coordinate_twin, False),
    "text_fill_value": (_text_fill_value, False),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_feature_reads_the_same(tmp_path: Path, case: str) -> None:
    write, fast = CASES[case]
    path = tmp_path / f"{case}.nc"
    write(path)
    assert _fast_path_reads(path) is fast
    _assert_same([path])


def test_a_file_netcdf4_holds_open_is_read_too(demo_root: Path) -> None:
    """HDF5 opens a file once per process: the reader must share it with netCDF-C (an
    xarray dataset kept open by the access service, say), not be refused."""
    path = sorted(demo_root.rglob("*.nc"))[0]
    with netCDF4.Dataset(path):
        assert _refusal(path) is None
        _assert_same([path])
    assert _refusal(path) is None


def test_classic_model_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "classic_model.nc"
    _classic_model(path)
    ((_, _, _, header),) = read_headers([("f", str(path))])
    assert header is not None and header["data_model"] == "NETCDF4_CLASSIC"


def test_unlimited_dimension_has_its_longest_length(tmp_path: Path) -> None:
    path = tmp_path / "layout.nc"
    _layout_variety(path)
    ((_, status, _, header),) = read_headers([("f", str(path))])
    assert header is not None
    assert header["dims"]["time"] == 10
    shapes = {v["name"]: v["shape"] for v in header["variables"]}
    assert shapes["short_series"] == [10]  # as netCDF reports it, not the 5 stored
    assert header["bbox"] == [-180.0, -90.0, 90.0, 90.0]
    assert (status.value, header["time_start"]) == ("ok", "2000-01-01T00:00:00")


def test_files_of_a_dataset_share_their_variables(tmp_path: Path) -> None:
    paths = [tmp_path / f"ta_{y}.nc" for y in (1950, 1960)]
    for path, y in zip(paths, (1950, 1960), strict=True):
        write_nc(path, years=(y, y + 9))
    a, b = (r[3] for r in read_headers([(p.name, str(p)) for p in paths]))
    assert a is not None and b is not None
    assert a["variables"] is b["variables"]  # pickled once, recorded once
    assert a["time_start"] != b["time_start"]


def test_a_bad_file_in_a_batch_does_not_spoil_the_others(tmp_path: Path) -> None:
    good = tmp_path / "good.nc"
    bad = tmp_path / "bad.nc"
    write_nc(good, calendar="noleap")
    write_nc(bad, calendar="noleap")
    with netCDF4.Dataset(bad, "a") as ds:
        ds["time"][0] = 1e30  # decodes to no date: cftime refuses it
    results = read_headers([("good", str(good)), ("bad", str(bad))])
    assert [r[1].value for r in results] == ["ok", "bad_time"]
    assert "cannot decode time" in results[1][2]
    assert results[0][3] is not None and results[0][3]["time_start"] == "1950-01-16T00:00:00"
    assert os.path.getsize(good) > 0
