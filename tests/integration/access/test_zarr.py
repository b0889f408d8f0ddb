"""The read-only Zarr view, with real clients: fsspec's HTTP filesystem (aiohttp), zarr 3
and xarray against uvicorn on loopback.

The view must give exactly what ``Catalog.open_dataset`` gives locally, read only the chunks
a slice needs (counted server-side by an ASGI wrapper), and refuse what it must refuse.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import httpx
import netCDF4
import numpy as np
import pytest
import uvicorn
import xarray as xr
import zarr
import zarr.storage
from fastapi import FastAPI
from fastapi.testclient import TestClient

from insitu.access import build_app
from insitu.access.routes import zarr as zarr_route
from insitu.access.zarrview import WouldBlock, ZarrViews
from insitu.catalog import Catalog
from insitu.settings import Settings
from tests.integration.access.conftest import (
    MIROC_AMON_TA,
    RESTRICTED_IDS,
    AccessEnv,
    bearer,
)

API = "/api/v1/zarr"
MIROC_DAY_TA = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.day.ta.gn.v20191016"
BCC_AMON_TA = "CMIP6.CMIP.BCC.BCC-CSM2-MR.historical.r1i1p1f1.Amon.ta.gn.v20181126"  # 3 units
CAMS_AMON_TA = "CMIP6.CMIP.CAMS.CAMS-CSM1-0.historical.r1i1p1f1.Amon.ta.gn.v20190708"  # 5 units
KACE_DAY_TA = "CMIP6.CMIP.NIMS-KMA.KACE-1-0-G.historical.r1i1p1f1.day.ta.gr.v20191220"  # 360_day
EC_AMON_TA = "CMIP6.CMIP.EC-Earth-Consortium.EC-Earth3.historical.r1i1p1f1.Amon.ta.gr.v20200310"
FAKE_ID = "CMIP6.CMIP.TEST.FAKE-ESM.historical.r1i1p1f1.Amon.ta.gn.v20200101"
SMALL_CHUNKS = 4096  # the smallest chunk size the settings allow
ZLIB = {"id": "zlib", "level": 1}
_METADATA = (".zmetadata", ".zgroup", ".zattrs", ".zarray", "zarr.json")


# -- serving --------------------------------------------------------------------------------


class RequestLog:
    """An ASGI wrapper that records the path of every HTTP request the app receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: list[str] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            with self._lock:
                self.paths.append(scope["path"])
        await self.app(scope, receive, send)

    def clear(self) -> None:
        with self._lock:
            self.paths.clear()

    def chunks(self, dataset_id: str) -> list[str]:
        """Chunk keys requested (metadata documents and probes left out), sorted."""
        prefix = f"{API}/{dataset_id}/"
        with self._lock:
            keys = [p[len(prefix) :] for p in self.paths if p.startswith(prefix)]
        return sorted(k for k in keys if not k.endswith(_METADATA))


@contextmanager
def serve(asgi: Any) -> Iterator[str]:
    """``asgi`` on a real uvicorn server on 127.0.0.1 (the URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(asgi, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def small_chunk_settings(settings: Settings) -> Settings:
    access = settings.access.model_copy(update={"zarr_chunk_bytes": SMALL_CHUNKS})
    return settings.model_copy(update={"access": access})


@dataclass
class Served:
    url: str
    log: RequestLog


@pytest.fixture(scope="module")
def small(access_env: AccessEnv) -> Iterator[Served]:
    """The test catalog served with 4 KiB chunks (so that chunking shows on the demo's
    small grids), every request counted."""
    app = build_app(
        small_chunk_settings(access_env.settings),
        catalog=access_env.catalog,
        tokens=access_env.tokens,
    )
    log = RequestLog(app)
    with serve(log) as url:
        yield Served(url, log)


def open_remote(url: str, dataset_id: str, headers: dict[str, str] | None = None) -> xr.Dataset:
    mapper = fsspec.get_mapper(f"{url}{API}/{dataset_id}", client_kwargs={"headers": headers or {}})
    return xr.open_zarr(mapper, consolidated=True)


# -- a synthetic archive: packed integers, fill values, a static field, two time units -----


def write_fake_archive(root: Path) -> list[Path]:
    """Two files of a CMIP6-like dataset whose times count from different dates (noleap),
    with ``ta`` packed as int16 (scale, offset, fill), a time-invariant data variable with
    NaN fill, time bounds, and grids big enough to be split into chunks."""
    folder = root / "CMIP6/CMIP/TEST/FAKE-ESM/historical/r1i1p1f1/Amon/ta/gn/v20200101"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for year0, nyears, units in (
        (1850, 2, "days since 1850-01-01"),
        (1852, 1, "days since 1852-01-01"),
    ):
        n = 12 * nyears
        path = (
            folder / f"ta_Amon_FAKE-ESM_historical_r1i1p1f1_gn_{year0}01-{year0 + nyears - 1}12.nc"
        )
        with netCDF4.Dataset(path, "w") as nc:
            nc.Conventions = "CF-1.7"
            nc.source_id = "FAKE-ESM"
            nc.realization_index = np.int32(1)
            for dim, size in (("time", None), ("bnds", 2), ("plev", 8), ("lat", 16), ("lon", 32)):
                nc.createDimension(dim, size)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.bounds, t.axis = units, "noleap", "time_bnds", "T"
            mid = np.arange(n) * 365 / 12 + 15
            t[:] = mid
            tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
            tb[:] = np.stack([mid - 15, mid + 15], axis=1)
            for name, size, units_ in (
                ("plev", 8, "Pa"),
                ("lat", 16, "degrees_north"),
                ("lon", 32, "degrees_east"),
            ):
                v = nc.createVariable(name, "f8", (name,))
                v.units = units_
                v[:] = np.linspace(0, 100, size)
            ta = nc.createVariable(
                "ta", "i2", ("time", "plev", "lat", "lon"), zlib=True, fill_value=np.int16(-32767)
            )
            ta.set_auto_maskandscale(False)
            ta.scale_factor, ta.add_offset = 0.01, 250.0  # float64, as xarray writes them
            ta.missing_value = np.int16(-32767)
            ta.units, ta.standard_name = "K", "air_temperature"
            raw = rng.integers(-5000, 5000, size=(n, 8, 16, 32), dtype=np.int16)
            raw[:, 0, 0, 0] = -32767  # a missing point
            ta[:] = raw
            # Packed with float32 factors: JSON attributes cannot say float32 (see below).
            huss = nc.createVariable("huss", "i2", ("time", "lat", "lon"))
            huss.set_auto_maskandscale(False)
            huss.scale_factor, huss.add_offset = np.float32(1e-5), np.float32(0.01)
            huss[:] = rng.integers(-1000, 1000, size=(n, 16, 32), dtype=np.int16)
            huss.coordinates = "height"
            height = nc.createVariable("height", "f8", ())  # a scalar coordinate
            height.units = "m"
            height[...] = 2.0
            orog = nc.createVariable("orog", "f4", ("lat", "lon"), fill_value=np.float32(np.nan))
            orog.units = "m"
            values = rng.random((16, 32), dtype=np.float32) * 1000
            values[0, :3] = np.nan
            orog[:] = values
        paths.append(path)
    return paths


@dataclass
class FakeEnv:
    catalog: Catalog
    root: Path
    paths: list[Path]
    url: str
    log: RequestLog
    app: FastAPI


@contextmanager
def fake_env(tmp: Path) -> Iterator[FakeEnv]:
    root = tmp / "archive"
    paths = write_fake_archive(root)
    settings = small_chunk_settings(
        Settings.load(data_dir=tmp / "data", catalog={"uri": f"sqlite:///{tmp / 'c.db'}"})
    )
    catalog = Catalog(settings)
    catalog.add_collection("fake", root, public=True)
    catalog.scan(workers=1)
    app = build_app(settings, catalog=catalog)
    log = RequestLog(app)
    try:
        with serve(log) as url:
            yield FakeEnv(catalog, root, paths, url, log, app)
    finally:
        app.state.services.tokens.close()
        catalog.close()


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeEnv]:
    with fake_env(tmp_path_factory.mktemp("fake")) as env:
        yield env


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset_id",
    [
        MIROC_AMON_TA,  # 4-D Amon ta with plev, 7 files
        MIROC_DAY_TA,  # daily, files of 366 and 365 days
        BCC_AMON_TA,  # files with 3 different time units, 365_day
        CAMS_AMON_TA,  # 5 files, 5 time units
        KACE_DAY_TA,  # 360_day
        EC_AMON_TA,  # 65 files of 12 months
    ],
)
def test_open_zarr_equals_open_dataset(
    live_url: str, small: Served, access_env: AccessEnv, dataset_id: str
) -> None:
    local = access_env.catalog.open_dataset(dataset_id).load()
    for url in (live_url, small.url):  # default chunks (one per file) and 4 KiB chunks
        remote = open_remote(url, dataset_id).load()
        xr.testing.assert_identical(remote, local)
        assert remote.time.dtype == local.time.dtype  # cftime objects or datetime64 alike
    assert {"lat_bnds", "lon_bnds", "plev"} <= set(local.variables)  # time-invariant ones


def test_packed_filled_static_and_two_time_units_decode_alike(fake: FakeEnv) -> None:
    local = fake.catalog.open_dataset(FAKE_ID).load()
    remote = open_remote(fake.url, FAKE_ID).load()
    xr.testing.assert_identical(remote.drop_vars("huss"), local.drop_vars("huss"))
    # A known limit: Zarr attributes are JSON, so a float32 scale_factor reaches xarray
    # as a float and it unpacks to float64 (locally: float32). Same values to float32
    # precision.
    assert local.huss.dtype == np.float32 and remote.huss.dtype == np.float64
    xr.testing.assert_allclose(remote.huss, local.huss.astype("float64"), rtol=1e-6)
    assert remote.ta.dtype == np.float64 and np.isnan(remote.ta[:, 0, 0, 0]).all()
    assert np.isnan(remote.orog[0, :3]).all() and "time" not in remote.orog.dims
    # The second file counts from 1852: its bounds were put on the first file's footing.
    assert remote.time_bnds.values[24, 0] == local.time_bnds.values[24, 0]
    meta = json.loads(fsspec.get_mapper(f"{fake.url}{API}/{FAKE_ID}")[".zmetadata"])["metadata"]
    assert meta["ta/.zarray"]["fill_value"] == -32767
    assert meta["ta/.zarray"]["chunks"] == [1, 4, 16, 32]  # 8 KiB records split in two
    assert meta["orog/.zarray"]["fill_value"] == "NaN"
    assert meta["ta/.zattrs"]["_ARRAY_DIMENSIONS"] == ["time", "plev", "lat", "lon"]
    assert "_FillValue" not in meta["ta/.zattrs"]
    assert meta["height/.zarray"]["shape"] == [] and float(remote.height) == 2.0


def test_restricted_dataset_opens_with_a_granted_token(
    live_url: str, access_env: AccessEnv
) -> None:
    headers = bearer(access_env.secrets.restricted)
    remote = open_remote(live_url, RESTRICTED_IDS[0], headers).load()
    xr.testing.assert_identical(remote, access_env.catalog.open_dataset(RESTRICTED_IDS[0]).load())


# -- requests per slice ----------------------------------------------------------------------


def test_a_small_slice_reads_only_its_chunks(small: Served) -> None:
    small.log.clear()
    ds = open_remote(small.url, MIROC_AMON_TA)
    # Opening reads the consolidated metadata, the index coordinates (one chunk each) and
    # the first and last time bounds (xarray checks that they decode). xarray reads the
    # time chunk for its first and last value and then whole: 3 GETs of one chunk.
    opened = small.log.chunks(MIROC_AMON_TA)
    expected = {"lat/0", "lon/0", "plev/0", "time/0", "time_bnds/0.0", "time_bnds/6.0"}
    assert set(opened) == expected and len(opened) <= 9, opened
    assert len(small.log.paths) - len(opened) <= 4, (
        small.log.paths
    )  # zarr.json probe, .zmetadata...
    assert ds.ta.encoding["chunks"] == (120, 2, 2, 2)  # one chunk per 10-year file

    small.log.clear()
    ds.ta.isel(time=0, plev=0).load()
    assert small.log.chunks(MIROC_AMON_TA) == ["ta/0.0.0.0"]

    small.log.clear()
    ds.ta.sel(time="1975").isel(plev=1, lat=0, lon=1).load()  # one year of the 1970s file
    assert small.log.chunks(MIROC_AMON_TA) == ["ta/2.0.0.0"]


def test_daily_files_of_unequal_length_share_few_chunks(small: Served) -> None:
    ds = open_remote(small.url, MIROC_DAY_TA)
    # gcd(366, 365) = 1 would make one chunk per day: the view uses 128 days (4 KiB).
    assert ds.ta.encoding["chunks"] == (128, 2, 2, 2)
    small.log.clear()
    ds.ta.isel(time=slice(300, 400)).load()  # crosses the first file's end (day 366)
    assert small.log.chunks(MIROC_DAY_TA) == ["ta/2.0.0.0", "ta/3.0.0.0"]


def test_split_records_read_one_chunk_per_request(fake: FakeEnv) -> None:
    ds = open_remote(fake.url, FAKE_ID)

    def chunks_read() -> list[str]:
        # A scalar coordinate belongs to every variable: xarray may load it with any.
        keys = fake.log.chunks(FAKE_ID)
        assert keys.count("height/0") <= 1, keys
        return [k for k in keys if k != "height/0"]

    fake.log.clear()
    ds.ta.isel(time=0, plev=0).load()
    assert chunks_read() == ["ta/0.0.0.0"]
    fake.log.clear()
    ds.ta.sel(time="1851").isel(plev=5, lat=3, lon=7).load()  # a point's series of one year
    assert chunks_read() == sorted(f"ta/{t}.1.0.0" for t in range(12, 24))


# -- chunks are the files' slabs -------------------------------------------------------------


def _chunk(client: TestClient, dataset_id: str, name: str, key: str) -> np.ndarray[Any, Any]:
    zarray = client.get(f"{API}/{dataset_id}/{name}/.zarray").json()
    body = client.get(f"{API}/{dataset_id}/{name}/{key}")
    assert body.status_code == 200, body.text
    assert body.headers["content-type"] == "application/octet-stream"
    raw = zlib.decompress(body.content) if zarray["compressor"] else body.content
    return np.frombuffer(raw, dtype=zarray["dtype"]).reshape(zarray["chunks"])


def test_a_chunk_is_the_slab_of_its_file(client: TestClient, access_env: AccessEnv) -> None:
    files = access_env.catalog.files(MIROC_AMON_TA)
    root = access_env.catalog.collection("demo").root
    second = sorted(files, key=lambda f: f.tkey_start or 0)[1]
    with netCDF4.Dataset(os.path.join(root, second.path)) as nc:
        nc.set_auto_maskandscale(False)
        expected = np.asarray(nc.variables["ta"][...])
    # Default chunks: one per 120-month file, so chunk 1 is the whole second file.
    assert np.array_equal(_chunk(client, MIROC_AMON_TA, "ta", "1.0.0.0"), expected)


def test_a_split_chunk_is_the_slab_of_its_file(fake: FakeEnv) -> None:
    with TestClient(fake.app) as client:
        got = _chunk(client, FAKE_ID, "ta", "25.1.0.0")  # 2nd file, 2nd month, levels 4-7
        assert _chunk(client, FAKE_ID, "height", "0").tolist() == 2.0  # a 0-d array's chunk
        for key in ("height/1", "height/0.0", "height/", "ta/36.0.0.0", "ta/0.2.0.0"):
            assert client.get(f"{API}/{FAKE_ID}/{key}").status_code == 404, key
    with netCDF4.Dataset(fake.paths[1]) as nc:
        nc.set_auto_maskandscale(False)
        expected = np.asarray(nc.variables["ta"][1:2, 4:8])
    assert got.dtype == np.int16 and np.array_equal(got, expected)


# -- what is refused -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "zarr.json",  # zarr 3 probes for format 3 first
        "ta/zarr.json",
        "ta/.zgroup",
        "nope/.zarray",
        "nope/0.0.0.0",
        "ta/0.0.0",  # too few indices
        "ta/0.0.0.0.0",  # too many
        "ta/7.0.0.0",  # out of range (7 chunks along time: 0 to 6)
        "ta/0.0.0.a",
        "ta/-1.0.0.0",
        "ta/00.0.0.0",  # not canonical
        "ta/01.0.0.0",
        "ta/99999999999999999999999.0.0.0",
        "ta/" + "9" * 5000 + ".0.0.0",  # more digits than int() accepts
        "ta/\u0661.0.0.0",  # a digit, but not ASCII
        "ta/ 1.0.0.0",
        "ta/+1.0.0.0",
        "ta/0.0.0.0/",
        "ta/0/0/0/0",
        ".zmetadata/x",
        "",
    ],
)
def test_missing_keys_are_404(client: TestClient, key: str) -> None:
    r = client.get(f"{API}/{MIROC_AMON_TA}/{key}")
    assert r.status_code == 404, (key, r.status_code, r.text)
    assert r.json()["error"]["type"] == "NotFound"
    assert MIROC_AMON_TA in r.json()["error"]["message"]


def test_unknown_dataset_is_404(client: TestClient) -> None:
    r = client.get(f"{API}/CMIP6.nothing.v1/.zmetadata")
    assert r.status_code == 404 and r.json()["error"]["type"] == "DatasetNotFound"


@pytest.mark.parametrize(
    "path",
    [
        f"{API}/{MIROC_AMON_TA}/../../../../etc/passwd",
        f"{API}/{MIROC_AMON_TA}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{API}/{MIROC_AMON_TA}/ta/..%2f..%2f..%2fetc%2fpasswd",
        f"{API}/{MIROC_AMON_TA}//etc/passwd",
        f"{API}/{MIROC_AMON_TA}/%2fetc%2fpasswd",
        f"{API}/..%2f..%2fetc/passwd",
        f"{API}/%2e%2e/.zmetadata",
    ],
)
def test_traversal_attempts_are_404(live_url: str, path: str) -> None:
    # http.client sends the path as written: no client-side normalisation of '..'.
    parts = urlsplit(live_url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        body = r.read()
    finally:
        conn.close()
    assert r.status == 404, (path, r.status, body[:200])
    assert b"root:" not in body


@pytest.mark.parametrize("key", [".zmetadata", "ta/.zarray", "ta/0.0.0.0", "ta/99.0.0.0"])
def test_restricted_keys_need_the_grant(
    client: TestClient, access_env: AccessEnv, key: str
) -> None:
    url = f"{API}/{RESTRICTED_IDS[0]}/{key}"
    secrets = access_env.secrets
    assert client.get(url).status_code == 404  # anonymous: as if it did not exist
    assert client.get(url, headers=bearer(secrets.demo_only)).status_code == 403
    assert client.get(url, headers=bearer(secrets.revoked)).status_code == 401
    granted = client.get(url, headers=bearer(secrets.restricted)).status_code
    assert granted == (404 if key.startswith("ta/99") else 200)
    assert client.get(url, params={"token": secrets.everything}).status_code == 400


@pytest.mark.parametrize("key", [".zmetadata", "lat/.zattrs", "time/0", "ta/3.0.0.0"])
def test_etags_give_304(client: TestClient, key: str) -> None:
    url = f"{API}/{MIROC_AMON_TA}/{key}"
    first = client.get(url)
    etag = first.headers["etag"]
    assert first.status_code == 200 and "max-age" in first.headers["cache-control"]
    again = client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200


def test_chunks_have_their_own_etags(client: TestClient) -> None:
    tags = {client.get(f"{API}/{MIROC_AMON_TA}/ta/{t}.0.0.0").headers["etag"] for t in range(7)}
    assert len(tags) == 7


def test_a_file_changed_since_the_scan_is_a_clear_500(tmp_path: Path) -> None:
    with fake_env(tmp_path) as env, TestClient(env.app) as client:
        assert client.get(f"{API}/{FAKE_ID}/ta/0.0.0.0").status_code == 200
        os.utime(env.paths[0], ns=(time.time_ns(), time.time_ns()))  # the file was rewritten
        r = client.get(f"{API}/{FAKE_ID}/ta/0.0.0.0")
        assert r.status_code == 500
        error = r.json()["error"]
        assert error["type"] == "DataError" and "rescan" in error["message"]
        # Overwritten with as many zero bytes, its mtime put back: only netCDF can tell.
        st = env.paths[1].stat()
        env.paths[1].write_bytes(bytes(st.st_size))
        os.utime(env.paths[1], ns=(st.st_atime_ns, st.st_mtime_ns))
        r = client.get(f"{API}/{FAKE_ID}/ta/30.0.0.0")
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error["type"] == "DataError" and "rescan" in error["message"]
        assert str(env.root) not in error["message"]  # paths relative to the collection
        # Metadata comes from the index and the time axis too: no file is read for them.
        assert client.get(f"{API}/{FAKE_ID}/.zmetadata").status_code == 200
        assert client.get(f"{API}/{FAKE_ID}/time/0").status_code == 200


def test_zarr_python_reads_the_view(live_url: str, access_env: AccessEnv) -> None:
    store = zarr.storage.FsspecStore.from_url(f"{live_url}{API}/{MIROC_AMON_TA}", read_only=True)
    group = zarr.open_consolidated(store, zarr_format=2, mode="r")
    assert sorted(group.array_keys()) == sorted(
        access_env.catalog.open_dataset(MIROC_AMON_TA).variables
    )
    local = access_env.catalog.open_dataset(MIROC_AMON_TA).ta  # no fill value, no scale
    assert np.array_equal(group["ta"][130:140, 1], local.values[130:140, 1])


def test_a_zlib_compressed_view_decodes_alike(tmp_path: Path) -> None:
    with fake_env(tmp_path) as env:
        services = env.app.state.services
        services.extras[zarr_route._EXTRA] = ZarrViews(SMALL_CHUNKS, compressor=ZLIB)
        remote = open_remote(env.url, FAKE_ID)
        assert remote.ta.encoding["compressors"][0].get_config() == ZLIB
        local = env.catalog.open_dataset(FAKE_ID).load()
        xr.testing.assert_identical(remote.ta.load(), local.ta)


# -- small chunks on the event loop, and never a wait there ---------------------------------


def test_a_read_that_would_wait_says_so(access_env: AccessEnv) -> None:
    """``wait=False`` reads only what is at hand: a file whose layout is known is decoded
    without the HDF5 lock; through the library it needs an open file and the lock free."""
    from xarray.backends.locks import HDF5_LOCK

    for direct in (True, False):
        views = ZarrViews(SMALL_CHUNKS, direct=direct)
        try:
            view = views.get(access_env.catalog, access_env.catalog.dataset(MIROC_AMON_TA))
            ref = view.lookup("ta/0.0.0.0")
            assert not isinstance(ref, bytes) and ref.nbytes <= zarr_route.INLINE_CHUNK_BYTES
            with pytest.raises(WouldBlock):
                view.read(ref, wait=False)  # the file is not open yet
            expected = bytes(view.read(ref))  # opens it
            assert bytes(view.read(ref, wait=False)) == expected
            # The lock held, as by a thread reading a big slab through netCDF-C:
            with HDF5_LOCK:
                if direct:  # chunks decoded by insitu need no lock
                    assert bytes(view.read(ref, wait=False)) == expected
                else:
                    with pytest.raises(WouldBlock):
                        view.read(ref, wait=False)
            assert bytes(view.read(ref, wait=False)) == expected
        finally:
            views.close()


def test_a_chunk_waiting_for_the_hdf5_lock_leaves_the_event_loop_free(
    access_env: AccessEnv,
) -> None:
    """A small chunk is read on the event loop only when that cannot wait: while another
    thread holds the HDF5 lock, a chunk of a file whose layout is not read yet waits in the
    thread pool, the service goes on answering, and the chunk comes right once the lock is
    free. (Waiting for the lock on the event loop would hang the health request below.)"""
    from xarray.backends.locks import HDF5_LOCK

    app = build_app(  # its own service: no file of it read yet
        small_chunk_settings(access_env.settings),
        catalog=access_env.catalog,
        tokens=access_env.tokens,
    )
    with serve(app) as base, httpx.Client(timeout=30) as http:
        small = Served(base, RequestLog(app))
        url = f"{small.url}{API}/{MIROC_AMON_TA}/ta/0.0.0.0"
        meta = http.get(f"{small.url}{API}/{MIROC_AMON_TA}/.zmetadata")  # the view is built
        assert meta.status_code == 200, meta.text
        answers: dict[str, httpx.Response] = {}
        waiting = threading.Thread(target=lambda: answers.update(chunk=http.get(url)))
        with HDF5_LOCK:
            waiting.start()
            time.sleep(0.3)
            assert "chunk" not in answers  # it waits for the lock...
            t0 = time.perf_counter()
            health = http.get(f"{small.url}/api/v1/health", timeout=5)
            assert health.status_code == 200
            assert time.perf_counter() - t0 < 2  # ...but not on the event loop
        waiting.join(timeout=30)
        first = http.get(url)
    assert answers["chunk"].status_code == 200
    assert answers["chunk"].content == first.content


# -- decoded slabs kept for chunks that come again ------------------------------------------


@pytest.mark.parametrize("cache_bytes", [0, 16 * 2**20])
def test_decoded_slabs_are_kept_up_to_the_setting(access_env: AccessEnv, cache_bytes: int) -> None:
    """``access.chunk_cache_bytes`` reaches the service's views; a chunk read twice is
    decoded once when it fits (0 keeps nothing)."""
    access = access_env.settings.access.model_copy(
        update={"chunk_cache_bytes": cache_bytes, "zarr_chunk_bytes": SMALL_CHUNKS}
    )
    settings = access_env.settings.model_copy(update={"access": access})
    app = build_app(settings, catalog=access_env.catalog, tokens=access_env.tokens)
    with TestClient(app) as client:
        first = _chunk(client, MIROC_AMON_TA, "ta", "0.0.0.0")
        views = zarr_route.zarr_views(app.state.services)
        assert views.handles.cache_bytes == cache_bytes
        kept = views.handles.cached_bytes
        assert kept == (first.nbytes if cache_bytes else 0)
        assert np.array_equal(_chunk(client, MIROC_AMON_TA, "ta", "0.0.0.0"), first)
        assert views.handles.cached_bytes == kept  # the second read decoded nothing new
