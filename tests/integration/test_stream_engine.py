"""The streaming engine's fast paths and their careful fallbacks give the xarray path's
results: files with no missing value, a land-like mask in every record, a few fills and
NaNs in some records, and a grid whose longitude weights differ."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from insitu.compute import get_operation, run
from insitu.compute.engine import FilePart, stream_field_mean
from insitu.formats import chunks_read
from tests.integration.scanned import one_dataset


def _write(
    root: Path,
    lon_step: np.ndarray,
    holes: str,
    n_files: int = 6,
    shifted: bool = False,
    cmor: bool = False,
) -> None:
    """``shifted``: the third file counts time from another date (its values re-encoded);
    ``cmor``: CMOR's layout, one shuffled and deflated chunk per record (the readers then
    sum on the way)."""
    d = root / "CMIP6/CMIP/X/M/historical/r1i1p1f1/Amon/tas/gn/v1"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    lon_b = np.concatenate([[0.0], np.cumsum(lon_step)])
    for i in range(n_files):
        year = 1900 + i
        with netCDF4.Dataset(
            d / f"tas_Amon_M_historical_r1i1p1f1_gn_{year}01-{year}12.nc", "w"
        ) as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", 30)
            nc.createDimension("lon", lon_step.size)
            nc.createDimension("bnds", 2)
            t = nc.createVariable("time", "f8", ("time",))
            since = 1901 if shifted and i == 2 else 1900
            t.units, t.calendar, t.axis = f"days since {since}-01-01", "noleap", "T"
            t.bounds = "time_bnds"
            start = np.arange(12) * 30.0 + i * 365 - (since - 1900) * 365
            t[:] = start + 15
            nc.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = np.stack(
                [start, start + 30], axis=1
            )
            lat = nc.createVariable("lat", "f8", ("lat",))
            lat.units, lat.standard_name, lat.bounds = "degrees_north", "latitude", "lat_bnds"
            lat[:] = np.linspace(-87, 87, 30)
            nc.createVariable("lat_bnds", "f8", ("lat", "bnds"))[:] = np.stack(
                [np.linspace(-90, 84, 30), np.linspace(-84, 90, 30)], axis=1
            )
            lon = nc.createVariable("lon", "f8", ("lon",))
            lon.units, lon.standard_name, lon.bounds = "degrees_east", "longitude", "lon_bnds"
            lon[:] = (lon_b[:-1] + lon_b[1:]) / 2
            nc.createVariable("lon_bnds", "f8", ("lon", "bnds"))[:] = np.stack(
                [lon_b[:-1], lon_b[1:]], axis=1
            )
            layout = dict(shuffle=True, chunksizes=(1, 30, lon_step.size)) if cmor else {}
            v = nc.createVariable(
                "tas",
                "f4",
                ("time", "lat", "lon"),
                zlib=True,
                fill_value=np.float32(1e20),
                **layout,
            )
            v.units, v.standard_name = "K", "air_temperature"
            data = (280 + 10 * rng.normal(size=(12, 30, lon_step.size))).astype("f4")
            if holes == "mask":  # the same points missing in every record (land, ocean)
                data[:, 3:7, 10:20] = 1e20
            elif holes == "some":  # a few fills and NaNs in a few records of a few files
                if i % 2:
                    data[2, 5, 7] = 1e20
                    data[7, :, 3] = np.nan
                if i == 3:
                    data[4] = 1e20  # one record missing entirely
            v[:] = data


@pytest.mark.parametrize(
    ("holes", "lon_step", "cmor"),
    [
        ("none", np.full(36, 10.0), False),
        ("mask", np.full(36, 10.0), False),
        ("some", np.full(36, 10.0), False),
        ("some", np.array([5.0, 15.0] * 18), False),  # longitude weights differ: 2-D weights
        ("none", np.full(36, 10.0), True),
        ("some", np.full(36, 10.0), True),
    ],
    ids=[
        "no-missing",
        "mask",
        "some-fills-and-nans",
        "irregular-lon",
        "cmor-layout",
        "cmor-layout-some-fills-and-nans",
    ],
)
def test_streamed_means_equal_the_xarray_path(
    tmp_path: Path, holes: str, lon_step: np.ndarray, cmor: bool
) -> None:
    root = tmp_path / "arch"
    _write(root, lon_step, holes, cmor=cmor)
    with one_dataset(tmp_path, root) as (_, cat, ds_id):
        for op in ("time_mean", "field_mean"):
            got = run(cat, op, [ds_id], cache=False).open()["tas"]
            want = run(cat, op, [ds_id], cache=False, engine="xarray").open()["tas"]
            assert got.dtype == want.dtype and got.dims == want.dims
            np.testing.assert_array_equal(np.isnan(got.values), np.isnan(want.values))
            np.testing.assert_allclose(got.values, want.values, rtol=2.5e-7, atol=0)


@pytest.mark.parametrize("shifted", [False, True], ids=["same-units", "one-file-other-units"])
def test_streamed_field_mean_carries_the_same_time_bounds(tmp_path: Path, shifted: bool) -> None:
    """The field-mean tasks read the time bounds themselves (one decode for all files);
    a file that counts time from another date leaves them to the xarray path's reads."""
    root = tmp_path / "arch"
    _write(root, np.full(36, 10.0), "none", shifted=shifted)
    with one_dataset(tmp_path, root) as (_, cat, ds_id):
        got = run(cat, "field_mean", [ds_id], cache=False).open()
        want = run(cat, "field_mean", [ds_id], cache=False, engine="xarray").open()
        assert got["time_bnds"].dtype == want["time_bnds"].dtype
        assert (got["time_bnds"].values == want["time_bnds"].values).all()
        assert (got["time"].values == want["time"].values).all()
        assert got["time_bnds"].dims == ("time", "bnds")


def test_the_field_mean_tasks_read_the_time_bounds(tmp_path: Path) -> None:
    """No per-file read task for the bounds is left in the streamed result's graph, and
    making the graph reads nothing (decoding the bounds does not run a task to see them)."""
    root = tmp_path / "arch"
    _write(root, np.full(36, 10.0), "none")
    with one_dataset(tmp_path, root) as (_, cat, ds_id):
        ds = cat.open_dataset(ds_id)
        template = get_operation("field_mean")(ds, "tas", get_operation("field_mean").validate({}))
        parts = [FilePart(str(root / f.path), "tas", 0, f.n_times) for f in cat.files(ds_id)]
        weights = np.ones((30, 36))
        before = chunks_read()
        out = stream_field_mean(template, "tas", parts, weights, {}, 2**20, "time_bnds")
        assert chunks_read() == before  # building the graph computes none of its tasks
        keys = {str(k) for k in dict(out["time_bnds"].data.__dask_graph__())}
        assert not any("insitu-read" in k for k in keys)
        assert any("files_field_means" in k for k in keys)
        assert (out["time_bnds"].values == template["time_bnds"].values).all()
        lazy = stream_field_mean(template, "tas", parts, weights, {}, 2**20, None)
        assert any("insitu-read" in str(k) for k in dict(lazy["time_bnds"].data.__dask_graph__()))
