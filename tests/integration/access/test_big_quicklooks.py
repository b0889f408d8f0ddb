"""Quicklooks of a dataset larger than one request may read: the field-mean series comes
from a server-side job and the results cache instead of 413, the page says "computing"
until it is ready, and the map of one time step reads one stored chunk."""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
import xarray as xr
from fastapi.testclient import TestClient
from matplotlib.image import imread

from insitu import formats
from insitu.access import build_app
from insitu.access.jobstore import Job, JobStore
from insitu.access.series import cached_series, kept_png
from insitu.catalog import Catalog
from insitu.compute import run
from insitu.settings import Settings
from tests.integration.access.bigdataset import BIG_ID, BROKEN_ID, big_service

SERIES = f"/api/v1/datasets/{BIG_ID}/quicklook/series.png"
MAP = f"/api/v1/datasets/{BIG_ID}/quicklook/map.png"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Catalog, TestClient]]:
    with big_service(tmp_path_factory.mktemp("big")) as (settings, cat, app), TestClient(app) as c:
        yield settings, cat, c


def _until_ready(client: TestClient, url: str, params: dict[str, str]) -> tuple[Any, list[Any]]:
    """The final answer, and the 202 answers before it."""
    pending = []
    deadline = time.monotonic() + 180
    while True:
        r = client.get(url, params=params)
        if r.status_code != 202:
            return r, pending
        pending.append(r)
        assert time.monotonic() < deadline, f"still computing after 180 s: {r.text}"
        time.sleep(0.2)


def test_a_field_mean_too_large_to_read_is_computed_on_the_server(
    big: tuple[Settings, Catalog, TestClient],
) -> None:
    settings, cat, client = big
    record = cat.dataset(BIG_ID)
    assert cached_series(cat, record, "tas", None) is None
    page = client.get(f"/datasets/{BIG_ID}")
    assert 'class="pending"' in page.text and '<img id="quicklook-series"' not in page.text

    r, pending = _until_ready(client, SERIES, {"mean": "field"})
    assert r.status_code == 200, r.text
    assert pending, "the first answer should say that the series is being computed"
    first = pending[0]
    assert first.headers["retry-after"] == "1" and first.headers["cache-control"] == "no-store"
    body = first.json()
    assert body["status"] in ("queued", "running")
    assert "field mean of 'tas'" in body["message"]
    assert {j.json()["job"]["id"] for j in pending} == {body["job"]["id"]}  # one job only
    job = client.get(body["job"]["links"]["self"]).json()
    assert job["status"] == "done" and job["operation"] == "field_mean"
    image = np.asarray(imread(io.BytesIO(r.content), format="png"))
    assert image.shape == (380, 800, 4)

    # The series is the compute engine's field mean, kept in the results cache.
    path = cached_series(cat, record, "tas", None)
    assert path is not None
    with xr.open_dataset(path) as got:
        expected = run(cat, "field_mean", [BIG_ID], cache=False).open()
        np.testing.assert_array_equal(got["tas"].values, expected["tas"].values)
        assert got.sizes["time"] == 72

    # Again: the PNG at once; a new server sends the PNG kept beside the result at once;
    # the page shows the image itself.
    again = client.get(SERIES, params={"mean": "field"})
    assert again.status_code == 200 and again.content == r.content
    with TestClient(build_app(settings, catalog=cat)) as fresh:
        restarted = fresh.get(SERIES, params={"mean": "field"})
        assert restarted.status_code == 200, restarted.text
        assert restarted.headers["etag"] == r.headers["etag"]
        named = fresh.get(SERIES, params={"mean": "field", "variable": "tas"})  # as the page
        assert named.status_code == 200, named.text
        assert named.content == restarted.content
        page = fresh.get(f"/datasets/{BIG_ID}")
        assert '<img id="quicklook-series"' in page.text and 'class="pending"' not in page.text


def test_a_restarted_service_sends_the_png_kept_beside_the_result(
    big: tuple[Settings, Catalog, TestClient],
) -> None:
    """The first drawing of a computed series is kept beside its result: a new server sends
    it as it is, without decoding the result (here changed since: the PNG stays)."""
    settings, cat, client = big
    r, _ = _until_ready(client, SERIES, {"mean": "field", "variable": "tas"})
    assert r.status_code == 200, r.text
    path = cached_series(cat, cat.dataset(BIG_ID), "tas", None)
    assert path is not None
    kept = kept_png(path, r.headers["etag"])
    assert kept.parent == path.parent and kept.read_bytes() == r.content
    with xr.open_dataset(path) as result:
        changed = result.load()
    changed["tas"] = changed["tas"] * 2  # drawn from this, the picture would differ
    changed.to_netcdf(path)
    with TestClient(build_app(settings, catalog=cat)) as fresh:
        restarted = fresh.get(SERIES, params={"mean": "field", "variable": "tas"})
        assert restarted.status_code == 200, restarted.text
        assert restarted.content == r.content
    kept.unlink()  # without it, the series is drawn from the result again
    with TestClient(build_app(settings, catalog=cat)) as fresh:
        drawn = fresh.get(SERIES, params={"mean": "field", "variable": "tas"})
        assert drawn.status_code == 200 and drawn.content != r.content


def test_the_series_request_starts_the_jobs_cluster_its_job_then_uses(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The first request of a series to compute starts the cluster in the background,
    before the job needs it; the job then computes on that one."""
    with big_service(tmp_path_factory.mktemp("ahead")) as (_, _, app), TestClient(app) as c:
        jobs = app.state.services.jobs
        assert jobs._runner is None, "no cluster before a job is in sight"
        first = c.get(SERIES, params={"mean": "field", "variable": "tas"})
        assert first.status_code == 202, first.text
        runner = jobs._runner
        assert runner is not None and runner.prepared
        deadline = time.monotonic() + 120
        while runner.client is None:
            assert time.monotonic() < deadline, "no cluster 120 s after the request"
            time.sleep(0.1)
        started = runner.client
        r, _ = _until_ready(c, SERIES, {"mean": "field", "variable": "tas"})
        assert r.status_code == 200, r.text
        assert jobs._runner.client is started
        jobs.prepare()  # running: nothing more starts
        assert jobs._runner.client is started


def test_a_series_at_a_point_too_large_to_read_is_still_413(
    big: tuple[Settings, Catalog, TestClient],
) -> None:
    r = big[2].get(SERIES, params={"lat": "10", "lon": "10"})
    assert r.status_code == 413
    message = r.json()["error"]["message"]
    assert "Even one of its files is more than that: Select the point in a notebook" in message
    assert f"insitu.open_dataset('{BIG_ID}')['tas'].sel(lat=Y, lon=X" in message


def test_the_map_of_one_time_step_reads_one_chunk(
    big: tuple[Settings, Catalog, TestClient],
) -> None:
    _, cat, client = big
    for when in ("1902-07", "1905-12", "1900-01"):
        before = formats.chunks_read()
        r = client.get(MAP, params={"time": when})
        assert r.status_code == 200, r.text
        assert formats.chunks_read() - before == 1, when
    # The file holds twelve chunks: a read of the whole file counts twelve.
    (one,) = [f for f in cat.locate(BIG_ID) if f.record.path.endswith("190201-190212.nc")]
    before = formats.chunks_read()
    formats.read(str(one.path), "tas", (slice(0, 12),))
    assert formats.chunks_read() - before == 12


def test_a_failed_field_mean_is_an_error_with_the_jobs_message(
    big: tuple[Settings, Catalog, TestClient],
) -> None:
    client = big[2]
    url = f"/api/v1/datasets/{BROKEN_ID}/quicklook/series.png"
    r, pending = _until_ready(client, url, {"mean": "field"})
    assert pending and r.status_code == 500, r.text
    message = r.json()["error"]["message"]
    job = pending[0].json()["job"]["id"]
    assert f"The field mean of 'tas' of '{BROKEN_ID}' failed on the server (job {job})" in message
    assert message.endswith("Reload to try again.")
    # Asked again, it is tried again (a new job), not answered from the failure.
    again = client.get(url, params={"mean": "field"})
    assert again.status_code == 202 and again.json()["job"]["id"] != job
    _until_ready(client, url, {"mean": "field"})


def test_a_series_job_of_another_server_process_is_waited_for(
    big: tuple[Settings, Catalog, TestClient],
) -> None:
    """A job of the same series that another process of the service started (recorded in
    the shared job store) is the one this process answers with, not a second computation."""
    settings, _, client = big
    store = JobStore.from_uri(settings.catalog_uri)
    other = Job(
        id="f" * 24,
        status="running",
        operation="field_mean",
        datasets=(BIG_ID,),
        collections=("big",),
        variable="tas",
        params={},
        time="1901/1903",
        token_id=None,
        created=datetime.now(UTC),
        server=f"{socket.gethostname()}:{os.getpid()}:other",
    )
    store.insert(other)
    try:
        r = client.get(SERIES, params={"mean": "field", "time": "1901/1903"})
        assert r.status_code == 202, r.text
        assert r.json()["job"]["id"] == other.id
        again = client.get(SERIES, params={"mean": "field", "time": "1901/1903"})
        assert again.json()["job"]["id"] == other.id
    finally:
        store.update(other.id, ("running",), status="cancelled", finished=datetime.now(UTC))
        store.close()
    # Once that job is gone without a result, this process computes it.
    r, pending = _until_ready(client, SERIES, {"mean": "field", "time": "1901/1903"})
    assert r.status_code == 200, r.text
    assert pending and pending[0].json()["job"]["id"] != other.id


def test_the_job_store_finds_the_running_job_of_a_series(store_uri: str) -> None:
    """Only a queued or running anonymous job of exactly that operation, datasets,
    variable and time range; the newest if several."""
    store = JobStore.from_uri(store_uri)
    now = datetime.now(UTC)

    def job(n: int, **kw: Any) -> Job:
        values: dict[str, Any] = {
            "status": "running",
            "operation": "field_mean",
            "datasets": (BIG_ID,),
            "variable": "tas",
            "time": None,
            "token_id": None,
            **kw,
        }
        made = Job(
            id=f"{n:024x}",
            collections=("big",),
            params={},
            created=now.replace(microsecond=n),
            server="here",
            **values,
        )
        store.insert(made)
        return made

    try:
        assert store.active("field_mean", [BIG_ID], "tas", None) is None
        job(1, status="done")
        job(2, status="failed")
        job(3, token_id="t1")  # a caller's own job
        job(4, variable="pr")
        job(5, time="1901/1903")
        job(6, operation="time_mean")
        job(7, datasets=(BIG_ID, BROKEN_ID))
        assert store.active("field_mean", [BIG_ID], "tas", None) is None
        job(8, status="queued")
        newest = job(9)
        assert store.active("field_mean", [BIG_ID], "tas", None) == store.get(newest.id)
        found = store.active("field_mean", [BIG_ID], "tas", "1901/1903")
        assert found is not None and found.id == f"{5:024x}"
    finally:
        store.close()
