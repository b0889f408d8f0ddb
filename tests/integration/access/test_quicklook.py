"""Quicklooks: real PNGs of a map and of series at a point and of the field mean, the one
record a map reads, calendar-aware time ticks, refusals, ETags and the PNG cache."""

from __future__ import annotations

import io

import cftime
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from matplotlib.image import imread

from insitu.access.quicklook import (
    MapQuery,
    PngCache,
    parse_map_query,
    read_map_field,
    time_ticks,
)
from tests.integration.access.conftest import (
    MIROC_AMON_TA,
    RESTRICTED_IDS,
    AccessEnv,
    bearer,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KACE_DAY_TA = "CMIP6.CMIP.NIMS-KMA.KACE-1-0-G.historical.r1i1p1f1.day.ta.gr.v20191220"
IPSL_DAY_TA = "CMIP6.CMIP.IPSL.IPSL-CM6A-LR.historical.r1i1p1f1.day.ta.gr.v20180803"
CANESM_DAY_TA = "CMIP6.CMIP.CCCma.CanESM5.historical.r1i1p1f1.day.ta.gn.v20190429"


def _url(dataset_id: str, kind: str) -> str:
    return f"/api/v1/datasets/{dataset_id}/quicklook/{kind}.png"


def _image(content: bytes) -> np.ndarray:
    assert content.startswith(PNG_SIGNATURE)
    return np.asarray(imread(io.BytesIO(content), format="png"))


def test_map_is_a_png_of_the_size_the_web_page_reserves(live_url: str) -> None:
    r = httpx.get(
        live_url + _url(MIROC_AMON_TA, "map"),
        params={"variable": "ta", "time": "1990-07", "level": "92500"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert "max-age" in r.headers["cache-control"]
    image = _image(r.content)
    assert image.shape == (410, 820, 4)
    assert image[..., :3].std() > 0.1  # a picture, not a blank canvas


def test_map_defaults_to_the_main_variable_first_step_and_level(client: TestClient) -> None:
    r = client.get(_url(MIROC_AMON_TA, "map"))
    assert r.status_code == 200
    assert _image(r.content).shape[:2] == (410, 820)


def test_map_reads_the_one_record_it_shows(access_env: AccessEnv) -> None:
    """The field comes straight from the file that holds 1990-07, and equals the lazy one."""
    record = access_env.catalog.dataset(MIROC_AMON_TA)
    files = access_env.catalog.files(MIROC_AMON_TA)
    got = read_map_field(
        access_env.catalog, record, files, parse_map_query("ta", "1990-07", "92500")
    )
    expected = (
        access_env.catalog.open_dataset(MIROC_AMON_TA)["ta"]
        .sel(time="1990-07", plev=92500.0)
        .isel(time=0)
    )
    np.testing.assert_array_equal(got.field.values, expected.values)
    assert got.time == "1990-07-16T12:00:00"
    assert got.level == "925 hPa"
    # With no time the first step of the record is shown.
    first = read_map_field(access_env.catalog, record, files, MapQuery(None, None, None))
    assert first.time == "1950-01-16T12:00:00" and first.level == "1000 hPa"


def test_series_at_a_point_and_of_the_field_mean(client: TestClient) -> None:
    point = client.get(_url(MIROC_AMON_TA, "series"), params={"lat": "88", "lon": "1"})
    assert point.status_code == 200, point.text
    assert _image(point.content).shape == (380, 800, 4)
    mean = client.get(_url(MIROC_AMON_TA, "series"), params={"mean": "field", "time": "1990/1995"})
    assert mean.status_code == 200, mean.text
    assert _image(mean.content).shape == (380, 800, 4)
    assert point.headers["etag"] != mean.headers["etag"]


def test_series_of_a_360_day_calendar(client: TestClient) -> None:
    r = client.get(
        _url(KACE_DAY_TA, "series"),
        params={"mean": "field", "time": "2001-01/2001-03", "level": "100000"},
    )
    assert r.status_code == 200, r.text


def test_time_ticks_follow_the_calendar() -> None:
    days = [cftime.datetime(2001, 1, 1, calendar="360_day") + i * _DAY for i in range(90)]
    x, ticks, labels = time_ticks(np.array(days, dtype=object))
    assert x[0] == 0 and x[-1] == 89
    assert labels[:2] == ["2001-01-01", "2001-01-16"]
    # Months of 30 days: 1 March is day 60 (it would be 59 in the standard calendar).
    assert dict(zip(labels, ticks, strict=True))["2001-03-01"] == 60
    years = np.arange("1950-01", "2015-01", dtype="datetime64[M]")
    _, ticks, labels = time_ticks(years.astype("datetime64[ns]"))
    assert labels == [str(y) for y in range(1950, 2015, 10)]
    assert len(ticks) == len(labels)


_DAY = cftime.datetime(2001, 1, 2, calendar="360_day") - cftime.datetime(
    2001, 1, 1, calendar="360_day"
)


@pytest.mark.parametrize(
    ("kind", "params", "words"),
    [
        ("map", {"variable": "tas"}, ["'tas'", "it has ta"]),
        ("map", {"variable": "ta,tas"}, ["one variable"]),
        ("map", {"variable": "time_bnds"}, ["no latitude and longitude", "map needs both"]),
        ("map", {"time": "2050"}, ["selects nothing", "1950-01-16"]),
        ("map", {"time": "July"}, ["'July'", "YYYY-MM"]),
        ("map", {"level": "high"}, ["level='high'"]),
        ("map", {"variables": "ta"}, ["Did you mean 'variable'?"]),
        ("map", {"level": "10"}, ["level=10", "outside the grid", "Pa"]),
        ("series", {}, ["lat=Y&lon=X", "mean=field"]),
        ("series", {"lat": "88"}, ["lat=Y&lon=X"]),
        ("series", {"lat": "88", "lon": "1", "mean": "field"}, ["not both"]),
        ("series", {"mean": "zonal"}, ["mean='zonal'", "mean=field"]),
        ("series", {"lat": "95", "lon": "0"}, ["lat='95'", "-90 and 90"]),
        ("series", {"lat": "0", "lon": "0"}, ["lat=0", "outside the grid", "87.5387"]),
        ("series", {"lat": "88", "lon": "inf"}, ["lon='inf'", "finite"]),
        ("series", {"mean": "field", "time": "1800/1900"}, ["selects nothing"]),
        ("series", {"mean": "field", "variable": "lat_bnds"}, ["no time dimension"]),
    ],
)
def test_bad_quicklook_requests_get_400(
    client: TestClient, kind: str, params: dict[str, str], words: list[str]
) -> None:
    r = client.get(_url(MIROC_AMON_TA, kind), params=params)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    for word in words:
        assert word in message, message


def test_a_series_that_reads_too_much_is_413_with_advice(small_limit_client: TestClient) -> None:
    """Files are read whole: IPSL's one daily file is too big whatever the time range;
    CanESM5's two files are too big together but not one at a time. (A field mean that
    large is computed on the server instead: test_big_quicklooks.)"""
    r = small_limit_client.get(_url(IPSL_DAY_TA, "series"), params={"lat": "0", "lon": "1"})
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    for word in (
        "741.9 KiB from 1 file(s)",
        "23741 time steps",
        "16 x its limit of 8.0 KiB per answer = 128.0 KiB",
        "Even one of its files is more than that: Select the point in a notebook",
        f"insitu.open_dataset('{IPSL_DAY_TA}')['ta'].sel(lat=Y, lon=X, method='nearest')",
    ):
        assert word in message, message
    r = small_limit_client.get(_url(CANESM_DAY_TA, "series"), params={"lat": "89", "lon": "1"})
    assert r.status_code == 413
    assert "narrow time=START/END to about 1 of the 2 files" in r.json()["error"]["message"]
    short = small_limit_client.get(
        _url(CANESM_DAY_TA, "series"), params={"lat": "89", "lon": "1", "time": "1995/2000"}
    )
    assert short.status_code == 200, short.text


def test_if_none_match_gives_304_and_renders_come_from_the_cache(
    client: TestClient, app: FastAPI
) -> None:
    params = {"time": "1991-01"}
    first = client.get(_url(MIROC_AMON_TA, "map"), params=params)
    etag = first.headers["etag"]
    again = client.get(_url(MIROC_AMON_TA, "map"), params=params, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    cache = app.state.services.extras["quicklook.png_cache"]
    assert isinstance(cache, PngCache)
    assert cache.get(etag) == first.content
    second = client.get(_url(MIROC_AMON_TA, "map"), params=params)
    assert second.content == first.content and second.headers["etag"] == etag


def test_png_cache_is_bounded_and_least_recently_used() -> None:
    cache = PngCache(max_items=2, max_bytes=10)
    cache.put("a", b"1234")
    cache.put("b", b"1234")
    assert cache.get("a") == b"1234"  # now b is the oldest
    cache.put("c", b"1234")
    assert cache.get("b") is None and len(cache) == 2
    cache.put("d", b"12345678")  # over the byte bound: evicts until it fits
    assert len(cache) == 1 and cache.get("d") == b"12345678"
    cache.put("e", b"x" * 11)  # larger than the whole cache: not kept
    assert cache.get("e") is None


def test_restricted_quicklooks_need_a_granted_token(
    client: TestClient, access_env: AccessEnv
) -> None:
    for kind, params in (("map", {}), ("series", {"mean": "field", "time": "1990"})):
        url = _url(RESTRICTED_IDS[0], kind)
        assert client.get(url, params=params).status_code == 404
        denied = client.get(url, params=params, headers=bearer(access_env.secrets.demo_only))
        assert denied.status_code == 403
        ok = client.get(url, params=params, headers=bearer(access_env.secrets.restricted))
        assert ok.status_code == 200
        assert ok.content.startswith(PNG_SIGNATURE)
