"""Files real archives hold (issue 13), each written here, scanned into a catalog and opened:
raw NEMO output (a time dimension dated by an auxiliary coordinate), variable-length
strings, classic NetCDF (CDF-1, CDF-2, CDF-5), HDF5 files with a user block, files with
groups. The Zarr view of each serves what ``open_dataset`` gives."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest
import xarray as xr

from insitu import formats
from insitu.access.zarrview import ZarrView
from insitu.catalog import Catalog

DIR = "CMIP6/CMIP/LAB/MODEL/historical/r1i1p1f1/Omon/tos/gn/v20200101"
DATASET = "CMIP6.CMIP.LAB.MODEL.historical.r1i1p1f1.Omon.tos.gn.v20200101"


def _name(period: str) -> str:
    return f"tos_Omon_MODEL_historical_r1i1p1f1_gn_{period}.nc"


def _scan(tmp_path: Path) -> Catalog:
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.add_collection("a", tmp_path / "archive")
    cat.scan(workers=1)
    return cat


def _problems(cat: Catalog) -> list[tuple[str, str, str]]:
    return [(f.path, f.status.value, f.reason) for f in cat.store.files("a", problems_only=True)]


def _zarr_view(cat: Catalog, tmp_path: Path) -> xr.Dataset:
    """The dataset as a Zarr client sees its view: every key written to a directory."""
    record = cat.dataset(DATASET)
    view = ZarrView.build(record, cat.locate(DATASET), 4096)
    out = tmp_path / "view.zarr"
    for key, doc in view.documents.items():
        (out / key).parent.mkdir(parents=True, exist_ok=True)
        (out / key).write_bytes(doc)
    for name, plan in view.arrays.items():
        for index in np.ndindex(*plan.grid) if plan.grid else [()]:
            key = f"{name}/{'.'.join(map(str, index)) or '0'}"
            ref = view.lookup(key)
            assert not isinstance(ref, bytes)
            (out / key).write_bytes(bytes(view.read(ref)))
    view.handles.close()
    return xr.open_zarr(out, consolidated=True, zarr_format=2)


# -- NEMO: time_counter without units, dated by time_centered -------------------------------


def _write_nemo(path: Path, start_day: int, *, counter_var: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time_counter", None)
        nc.createDimension("y", 3)
        nc.createDimension("x", 4)
        nc.createDimension("axis_nbounds", 2)
        lat = nc.createVariable("nav_lat", "f4", ("y", "x"))
        lat.standard_name, lat.units = "latitude", "degrees_north"
        lat[:] = np.linspace(-10, 10, 12).reshape(3, 4)
        lon = nc.createVariable("nav_lon", "f4", ("y", "x"))
        lon.standard_name, lon.units = "longitude", "degrees_east"
        lon[:] = np.linspace(100, 130, 12).reshape(3, 4)
        if counter_var:
            counter = nc.createVariable("time_counter", "f8", ("time_counter",))
            counter.long_name = "Time axis"  # raw NEMO output: no units, no axis
            counter[:] = [0.0, 1.0, 2.0]
        centered = nc.createVariable("time_centered", "f8", ("time_counter",))
        centered.standard_name, centered.long_name = "time", "Time axis"
        centered.units, centered.calendar = "seconds since 1900-01-01 00:00:00", "gregorian"
        centered.bounds = "time_centered_bounds"
        days = np.array([start_day, start_day + 31, start_day + 59], "f8")
        centered[:] = (days + 15) * 86400
        bounds = nc.createVariable("time_centered_bounds", "f8", ("time_counter", "axis_nbounds"))
        bounds[:] = np.stack([days * 86400, (days + 28) * 86400], 1)
        tos = nc.createVariable("tos", "f4", ("time_counter", "y", "x"), fill_value=1e20)
        tos.units, tos.coordinates = "degC", "time_centered nav_lat nav_lon"
        tos[:] = np.arange(36, dtype="f4").reshape(3, 3, 4) + start_day


@pytest.mark.parametrize("counter_var", [True, False], ids=["counter-without-units", "no-counter"])
def test_nemo_time_counter_is_dated_by_time_centered(tmp_path: Path, counter_var: bool) -> None:
    # 1900-01-01 + 36524 days = 2000-01-01
    _write_nemo(tmp_path / "archive" / DIR / _name("200001-200003"), 36524, counter_var=counter_var)
    _write_nemo(tmp_path / "archive" / DIR / _name("200004-200006"), 36615, counter_var=counter_var)
    cat = _scan(tmp_path)
    assert _problems(cat) == []
    record = cat.dataset(DATASET)
    assert record.n_files == 2
    assert record.time_start is not None and record.time_start.startswith("2000-01-16")
    assert record.time_end is not None and record.time_end.startswith("2000-06-")
    (hit,) = cat.search(time=("2000-05", "2000-05")).results
    assert hit.dataset_id == DATASET

    ds = cat.open_dataset(DATASET)
    assert ds.sizes["time_counter"] == 6
    assert np.issubdtype(ds["time_counter"].dtype, np.datetime64)
    assert np.issubdtype(ds["time_centered"].dtype, np.datetime64)
    assert str(ds["time_counter"].values[0])[:10] == "2000-01-16"
    assert np.array_equal(ds["time_counter"].values, ds["time_centered"].values)
    assert float(ds["tos"].isel(time_counter=3, y=0, x=0)) == 36615.0
    assert ds.sel(time_counter="2000-05")["tos"].shape == (1, 3, 4)
    assert cat.open_dataset(DATASET, time=slice("2000-04", "2000-12")).sizes["time_counter"] == 3

    view = _zarr_view(cat, tmp_path)
    assert np.array_equal(view["time_counter"].values, ds["time_counter"].values)
    assert np.array_equal(view["tos"].values, ds["tos"].values)


# -- variable-length strings ----------------------------------------------------------------


def _write_strings(path: Path, first: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", None)
        nc.createDimension("station", 3)
        time = nc.createVariable("time", "f8", ("time",))
        time.units, time.calendar = "days since 2000-01-01", "standard"
        time[:] = [first, first + 1]
        station = nc.createVariable("station", str, ("station",))
        station.long_name = "station name"
        station[:] = np.array(["Mace Head", "Zugspitze", "Ny-Ålesund"], dtype=object)
        kind = nc.createVariable("kind", str, ("station",))
        kind[:] = np.array(["coastal", "mountain", "arctic"], dtype=object)
        note = nc.createVariable("note", str, ("time",))
        note[:] = np.array([f"day {first}", f"day {first + 1}: calibrated"], dtype=object)
        tos = nc.createVariable("tos", "f4", ("time", "station"), fill_value=1e20)
        tos.units, tos.coordinates = "degC", "kind"
        tos[:] = np.arange(6, dtype="f4").reshape(2, 3) + first


def test_variable_length_strings_are_opened_and_served(tmp_path: Path) -> None:
    _write_strings(tmp_path / "archive" / DIR / _name("20000101-20000102"), 0)
    _write_strings(tmp_path / "archive" / DIR / _name("20000103-20000104"), 2)
    cat = _scan(tmp_path)
    assert _problems(cat) == []

    ds = cat.open_dataset(DATASET)
    assert list(ds["station"].values) == ["Mace Head", "Zugspitze", "Ny-Ålesund"]
    assert list(ds["kind"].values) == ["coastal", "mountain", "arctic"]
    assert "kind" in ds.coords
    assert list(ds["note"].values) == ["day 0", "day 1: calibrated", "day 2", "day 3: calibrated"]
    assert float(ds["tos"].sel(station="Zugspitze").isel(time=2)) == 3.0

    view = _zarr_view(cat, tmp_path)
    for name in ("station", "kind", "note"):
        assert list(view[name].values) == list(ds[name].values), name
    assert "kind" in view.coords
    assert float(view["tos"].sel(station="Zugspitze").isel(time=2)) == 3.0


# -- classic NetCDF, user blocks, groups ----------------------------------------------------


def _write_simple(path: Path, first: int, fmt: str = "NETCDF4", **kw: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format=fmt, **kw) as nc:  # type: ignore[arg-type]
        _fill_simple(nc, first)


def _fill_simple(nc: Any, first: int) -> None:
    nc.createDimension("time", None)
    nc.createDimension("lat", 2)
    nc.createDimension("lon", 3)
    time = nc.createVariable("time", "f8", ("time",))
    time.units, time.calendar = "days since 2000-01-01", "noleap"
    time[:] = [first + 15.5, first + 45]
    lat = nc.createVariable("lat", "f8", ("lat",))
    lat.units, lat.standard_name = "degrees_north", "latitude"
    lat[:] = [-30, 30]
    lon = nc.createVariable("lon", "f8", ("lon",))
    lon.units, lon.standard_name = "degrees_east", "longitude"
    lon[:] = [0, 120, 240]
    tos = nc.createVariable("tos", "f4", ("time", "lat", "lon"), fill_value=np.float32(1e20))
    tos.units = "degC"
    values = np.arange(12, dtype="f4").reshape(2, 2, 3) + first
    values[1, 1, 2] = 1e20
    tos[:] = values


@pytest.mark.parametrize("fmt", ["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"])
def test_classic_files_are_scanned_and_opened(tmp_path: Path, fmt: str) -> None:
    _write_simple(tmp_path / "archive" / DIR / _name("200001-200002"), 0, fmt)
    _write_simple(tmp_path / "archive" / DIR / _name("200003-200004"), 59, fmt)
    cat = _scan(tmp_path)
    assert _problems(cat) == []
    record = cat.dataset(DATASET)
    assert (record.time_start or "")[:10] == "2000-01-16"
    assert (record.time_end or "")[:10] == "2000-04-15"
    (f, _) = cat.files(DATASET)
    assert f.data_model == fmt
    ds = cat.open_dataset(DATASET)
    assert ds.sizes["time"] == 4 and np.isnan(float(ds["tos"][1, 1, 2]))
    assert float(ds["tos"][2, 0, 0]) == 59.0
    view = _zarr_view(cat, tmp_path)
    assert np.array_equal(view["tos"].values, ds["tos"].values, equal_nan=True)


def _with_user_block(path: Path, first: int, size: int = 512) -> None:
    """A netCDF-4 file whose HDF5 data starts after a user block of ``size`` bytes (as
    h5jam makes them): HDF5 made the empty file, netCDF-C filled it."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=size, track_order=True):
        pass
    with path.open("r+b") as fh:
        fh.write(b"insitu test user block\n")
    with netCDF4.Dataset(path, "a") as nc:
        _fill_simple(nc, first)


def test_hdf5_files_with_a_user_block_are_scanned_and_opened(tmp_path: Path) -> None:
    a = tmp_path / "archive" / DIR / _name("200001-200002")
    _with_user_block(a, 0)
    _with_user_block(tmp_path / "archive" / DIR / _name("200003-200004"), 59, 1024)
    assert a.read_bytes()[:6] == b"insitu"
    assert type(formats.reader_for(str(a))) is formats.NetCDF4Reader
    whole = (slice(0, 2), slice(0, 2), slice(0, 3))
    direct = formats.read(str(a), "tos", whole)
    assert np.array_equal(direct, formats.read(str(a), "tos", whole, direct=False))
    assert float(direct[1, 1, 1]) == 10.0
    cat = _scan(tmp_path)
    assert _problems(cat) == []
    record = cat.dataset(DATASET)
    assert (record.time_start or "")[:10] == "2000-01-16"
    assert record.bbox is not None
    ds = cat.open_dataset(DATASET)
    with xr.open_mfdataset(sorted(a.parent.iterdir()), engine="netcdf4") as want:
        xr.testing.assert_identical(ds.drop_attrs(), want.drop_attrs())
    view = _zarr_view(cat, tmp_path)
    assert np.array_equal(view["tos"].values, ds["tos"].values, equal_nan=True)


def test_files_with_groups_index_the_root_group_and_say_so(tmp_path: Path) -> None:
    path = tmp_path / "archive" / DIR / _name("200001-200002")
    path.parent.mkdir(parents=True)
    with netCDF4.Dataset(path, "w") as nc:
        _fill_simple(nc, 0)
        for name in ("forecast", "analysis"):
            group = nc.createGroup(name)
            group.createDimension("n", 2)
            group.createVariable("skill", "f4", ("n",))[:] = [0.5, 0.7]
    cat = _scan(tmp_path)
    (f,) = cat.files(DATASET)
    assert f.ok and "tos" in {v.name for v in f.variables}
    assert "groups" in f.reason and "forecast" in f.reason and "analysis" in f.reason
    assert "root group" in f.reason
    ds = cat.open_dataset(DATASET)
    assert float(ds["tos"][0, 0, 1]) == 1.0
    assert os.path.getsize(path) > 0
