"""Subsets: NetCDF over real HTTP matching the lazy dataset, CSV and JSON with the same
values, index and coordinate selections, and every refusal before the first byte."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from fastapi.testclient import TestClient

from insitu.access import build_app
from insitu.access.selection import time_text
from tests.integration.access.conftest import (
    MIROC_AMON_TA,
    RESTRICTED_IDS,
    SMALL_LIMIT,
    AccessEnv,
    bearer,
)

AWI_AMON_TA = "CMIP6.CMIP.AWI.AWI-CM-1-1-MR.historical.r1i1p1f1.Amon.ta.gn.v20181218"
IPSL_DAY_TA = "CMIP6.CMIP.IPSL.IPSL-CM6A-LR.historical.r1i1p1f1.day.ta.gr.v20180803"
KACE_DAY_TA = "CMIP6.CMIP.NIMS-KMA.KACE-1-0-G.historical.r1i1p1f1.day.ta.gr.v20191220"


def _url(dataset_id: str) -> str:
    return f"/api/v1/datasets/{dataset_id}/subset"


def _expected(access_env: AccessEnv) -> xr.Dataset:
    """What the query of the NetCDF test selects, the way a notebook would say it."""
    ds = access_env.catalog.open_dataset(MIROC_AMON_TA)
    return ds.sel(time=slice("1990-01", "1990-12"), lat=slice(88, 90)).sel(plev=[92500.0])


QUERY = {"variables": "ta", "time": "1990-01/1990-12", "lat": "88/90", "level": "92500"}


def test_netcdf_over_http_opens_with_netcdf4_and_matches(
    live_url: str, access_env: AccessEnv, tmp_path: Path
) -> None:
    r = httpx.get(live_url + _url(MIROC_AMON_TA), params=QUERY, timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-netcdf"
    assert r.headers["content-disposition"] == (f'attachment; filename="{MIROC_AMON_TA}.subset.nc"')
    assert r.headers["etag"].startswith('"')
    assert int(r.headers["content-length"]) == len(r.content)
    assert "max-age" in r.headers["cache-control"]
    path = tmp_path / "subset.nc"
    path.write_bytes(r.content)
    expected = _expected(access_env)

    with netCDF4.Dataset(path) as nc:
        assert nc.data_model == "NETCDF4"
        assert nc.Conventions.startswith("CF-")
        assert dict(nc.dimensions.items()).keys() >= {"time", "plev", "lat", "lon", "bnds"}
        assert nc.dimensions["time"].isunlimited()
        ta = nc["ta"]
        assert ta.dimensions == ("time", "plev", "lat", "lon")
        assert ta.dtype == np.float32
        assert ta.units == "K" and ta.standard_name == "air_temperature"
        np.testing.assert_array_equal(np.ma.filled(ta[:], np.nan), expected["ta"].values)
        assert nc["time"].calendar == "gregorian"
        assert nc["time"].units == "days since 1850-01-01"
        assert nc["lat"].bounds == "lat_bnds"
        assert "_FillValue" not in nc["lat"].ncattrs()  # CF: no fill on coordinates
        first_line = nc.history.splitlines()[0]
        assert MIROC_AMON_TA in first_line
        assert "ta_Amon_MIROC6_historical_r1i1p1f1_gn_199001-199912.nc" in first_line
        assert "time=1990-01/1990-12" in first_line and "level=92500" in first_line
        assert "altered by CMOR" in nc.history  # the source's history is kept after ours

    with xr.open_dataset(path) as got:
        # Equal values and coordinates; attributes too, but for the source's storage details
        # (_ChunkSizes), which do not describe the subset.
        xr.testing.assert_equal(got["ta"], expected["ta"].load())
        assert got["ta"].attrs == expected["ta"].attrs
        for name in ("time", "plev", "lat", "lon", "time_bnds", "lat_bnds", "lon_bnds"):
            np.testing.assert_array_equal(got[name].values, expected[name].values)


def test_csv_is_a_long_table_with_the_same_values(
    client: TestClient, access_env: AccessEnv
) -> None:
    r = client.get(_url(MIROC_AMON_TA), params={**QUERY, "format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].endswith('.subset.csv"')
    table = pd.read_csv(io.StringIO(r.text))
    assert list(table.columns) == ["time", "plev", "lat", "lon", "ta"]
    expected = _expected(access_env)["ta"]
    assert len(table) == expected.size == 12 * 1 * 1 * 2
    flat = expected.to_dataframe().reset_index()  # xarray's own long form, same order
    np.testing.assert_array_equal(table["ta"].to_numpy(np.float32), flat["ta"].to_numpy())
    np.testing.assert_array_equal(table["lon"], flat["lon"])
    assert list(table["time"]) == time_text(flat["time"].to_numpy())
    assert table["time"][0] == "1990-01-16T12:00:00"


def test_json_has_dims_coords_and_data_vars_with_the_same_values(
    client: TestClient, access_env: AccessEnv
) -> None:
    r = client.get(_url(MIROC_AMON_TA), params={**QUERY, "format": "json"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    expected = _expected(access_env)
    assert body["dims"] == {"time": 12, "plev": 1, "lat": 1, "lon": 2}
    ta = body["data_vars"]["ta"]
    assert ta["dims"] == ["time", "plev", "lat", "lon"]
    assert ta["attrs"]["units"] == "K"
    np.testing.assert_array_equal(np.array(ta["data"], dtype=np.float32), expected["ta"].values)
    assert body["coords"]["time"]["data"] == time_text(expected["time"].values)
    assert body["coords"]["plev"]["data"] == [92500.0]
    assert "lat_bnds" not in body["data_vars"]  # bounds only in NetCDF answers


def test_json_writes_missing_values_as_null(client: TestClient, access_env: AccessEnv) -> None:
    """Missing values (NaN after decoding, or netCDF's default fill) are null, never NaN."""
    # MIROC6 holds no missing value, so look for a demo dataset that does.
    found = None
    for rec in access_env.catalog.search(collection="demo", limit=200):
        da = access_env.catalog.open_dataset(rec.dataset_id).isel(time=slice(0, 3))
        name = str(rec.attrs.get("variable_id", "ta"))
        if name in da and bool((da[name].isnull() | (da[name] > 1e30)).any()):
            found = rec.dataset_id, name
            break
    assert found is not None, "the demo archive should hold a dataset with missing values"
    r = client.get(_url(found[0]), params={"isel": "time:0:3", "format": "json"})
    assert r.status_code == 200
    data = np.array(r.json()["data_vars"][found[1]]["data"], dtype=object).ravel()
    assert any(v is None for v in data)
    assert "NaN" not in r.text


def test_index_selection_matches_isel(client: TestClient, access_env: AccessEnv) -> None:
    r = client.get(_url(MIROC_AMON_TA), params={"isel": "time:0:24:2,plev:1", "format": "json"})
    assert r.status_code == 200, r.text
    expected = access_env.catalog.open_dataset(MIROC_AMON_TA)["ta"].isel(
        time=slice(0, 24, 2), plev=slice(1, 2)
    )
    got = np.array(r.json()["data_vars"]["ta"]["data"], dtype=np.float32)
    np.testing.assert_array_equal(got, expected.values)
    assert r.json()["dims"]["time"] == 12


def test_longitudes_across_the_date_line_run_continuously(
    client: TestClient, access_env: AccessEnv, tmp_path: Path
) -> None:
    """AWI-CM has longitudes 0, 0.94 and 1.88; 1.5/0.5 goes east from 1.5 round to 0.5."""
    r = client.get(_url(AWI_AMON_TA), params={"lon": "1.5/0.5", "time": "1990-01"})
    assert r.status_code == 200, r.text
    path = tmp_path / "wrap.nc"
    path.write_bytes(r.content)
    expected = access_env.catalog.open_dataset(AWI_AMON_TA).sel(time="1990-01").isel(lon=[2, 0])
    with netCDF4.Dataset(path) as nc:
        np.testing.assert_array_equal(nc["lon"][:], [1.875, 360.0])
        np.testing.assert_array_equal(
            nc["lon_bnds"][:], [[1.40625, 2.34375], [359.53125, 360.46875]]
        )
        np.testing.assert_array_equal(nc["ta"][:], expected["ta"].values)


def test_negative_longitudes_select_from_a_0_to_360_grid(client: TestClient) -> None:
    r = client.get(_url(AWI_AMON_TA), params={"lon": "-1/1", "isel": "time:0", "format": "json"})
    assert r.status_code == 200, r.text
    assert r.json()["coords"]["lon"]["data"] == [0.0, 0.9375]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"variables": "tas"}, ["'tas'", "it has ta"]),
        ({"variables": "ta;rm"}, ["'ta;rm'", "variables=ta,tas"]),
        ({"time": "2050/2060"}, ["selects nothing", "1950-01-16", "2014-12-16"]),
        ({"time": "1990-13"}, ["'1990-13'", "month"]),
        ({"time": "yesterday"}, ["'yesterday'", "YYYY-MM"]),
        ({"time": "1990-02-30"}, ["'1990-02-30'", "gregorian"]),
        ({"lat": "-10/10"}, ["lat=-10/10 selects nothing", "87.5387 to 88.9277"]),
        ({"lat": "95"}, ["lat='95'", "-90 and 90"]),
        ({"lat": "0"}, ["lat=0", "outside the grid"]),
        ({"lon": "east"}, ["lon='east'", "LO/HI"]),
        ({"lon": "nan"}, ["lon='nan'", "finite"]),
        ({"level": "1/2/3"}, ["level='1/2/3'", "LO/HI"]),
        ({"level": "10/20"}, ["level=10/20 selects nothing", "92500 to 100000 Pa"]),
        ({"isel": "foo:0"}, ["'foo'", "time, plev, lat, lon"]),
        ({"isel": "time:a:b"}, ["'time:a:b'", "integer"]),
        ({"isel": "time:5000:6000"}, ["selects nothing", "780 positions"]),
        ({"isel": "time:0:1:0"}, ["step"]),
        ({"isel": "time:0", "time": "1990"}, ["both by coordinate and by isel"]),
        ({"format": "xml"}, ["'xml'", "netcdf, csv, json"]),
        ({"variable": "ta"}, ["Unknown parameter 'variable'", "Did you mean 'variables'?"]),
    ],
)
def test_bad_requests_get_400_naming_the_value(
    client: TestClient, params: dict[str, str], words: list[str]
) -> None:
    r = client.get(_url(MIROC_AMON_TA), params=params)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    for word in words:
        assert word in message, message


def test_unknown_dataset_is_404(client: TestClient) -> None:
    r = client.get(_url("CMIP6.no.such.dataset"))
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "DatasetNotFound"


def test_too_big_a_csv_is_413_with_advice_and_no_data(client: TestClient) -> None:
    """23,741 daily steps are 1.3 MiB as NetCDF but about 15 MiB as CSV text."""
    r = client.get(_url(IPSL_DAY_TA), params={"format": "csv"})
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/json"
    assert len(r.content) < 2000  # an error, not the start of a table
    error = r.json()["error"]
    assert error["type"] == "TooLarge"
    message = error["message"]
    for word in ("MiB as csv", "limit of 4.0 MiB", "'time'", "23741", "time=START/END"):
        assert word in message, message
    assert "format=netcdf" in message and "POST /api/v1/jobs" in message
    # The advice works: the number of steps it says fit, fits.
    fit = int(message.split("about ")[2].split(" of them")[0])
    ok = client.get(_url(IPSL_DAY_TA), params={"format": "csv", "isel": f"time:0:{fit}"})
    assert ok.status_code == 200


def test_too_big_a_netcdf_is_413(small_limit_client: TestClient) -> None:
    r = small_limit_client.get(_url(MIROC_AMON_TA))
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    assert f"limit of {SMALL_LIMIT / 1024:.1f} KiB" in message
    assert "'time' is the largest dimension (780 positions)" in message
    assert "POST /api/v1/jobs" in message
    assert small_limit_client.get(_url(MIROC_AMON_TA), params={"time": "1990"}).status_code == 200


def test_a_small_subset_that_reads_too_much_is_413(small_limit_client: TestClient) -> None:
    """Three values of a one-file daily dataset read the whole file (742 KiB)."""
    params = {"isel": "time:0:3000:1000,plev:0,lat:0,lon:0"}
    r = small_limit_client.get(_url(IPSL_DAY_TA), params=params)
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    for word in ("is small", "read about", "16 x its limit of 8.0 KiB", "Submit a job"):
        assert word in message, message
    assert "POST /api/v1/jobs" in message


def test_if_none_match_gives_304(client: TestClient) -> None:
    first = client.get(_url(MIROC_AMON_TA), params=QUERY)
    etag = first.headers["etag"]
    again = client.get(_url(MIROC_AMON_TA), params=QUERY, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    # The same selection spelt differently has the same tag; another selection another.
    same = client.get(
        _url(MIROC_AMON_TA),
        params={"variables": "ta", "time": "1990/1990-12", "lat": "88/90.0", "level": "92500.0"},
        headers={"If-None-Match": etag},
    )
    assert same.status_code == 304
    other = client.get(_url(MIROC_AMON_TA), params={**QUERY, "format": "csv"})
    assert other.headers["etag"] != etag


def test_restricted_collection_needs_a_granted_token(
    client: TestClient, access_env: AccessEnv
) -> None:
    url = _url(RESTRICTED_IDS[0])
    params = {"time": "1990-01"}
    assert client.get(url, params=params).status_code == 404
    denied = client.get(url, params=params, headers=bearer(access_env.secrets.demo_only))
    assert denied.status_code == 403
    ok = client.get(url, params=params, headers=bearer(access_env.secrets.restricted))
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/x-netcdf"


def test_a_360_day_calendar_subset_keeps_its_calendar(
    client: TestClient, access_env: AccessEnv
) -> None:
    r = client.get(_url(KACE_DAY_TA), params={"time": "2001-02-30/2001-03-01", "format": "json"})
    assert r.status_code == 200, r.text
    body = json.loads(r.content)
    assert body["coords"]["time"]["data"] == ["2001-02-30T12:00:00", "2001-03-01T12:00:00"]


def test_the_read_factor_is_a_setting(access_env: AccessEnv) -> None:
    """The subset refused above (it reads 742 KiB for three values) is served when the
    operator lets a request read 200 times its answer limit."""
    access = access_env.settings.access.model_copy(
        update={"max_slice_bytes": SMALL_LIMIT, "subset_read_factor": 200}
    )
    settings = access_env.settings.model_copy(update={"access": access})
    app = build_app(settings, catalog=access_env.catalog, tokens=access_env.tokens)
    with TestClient(app) as client:
        params = {"isel": "time:0:3000:1000,plev:0,lat:0,lon:0"}
        r = client.get(_url(IPSL_DAY_TA), params=params)
        assert r.status_code == 200, r.text
