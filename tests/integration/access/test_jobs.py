"""Server-side operations as jobs, against the real app, the demo archive and a real Dask
cluster: submit, poll, download, compare with ``insitu.compute.run``; the cache; every
refusal; who may see a job; cancel; a restart; the bounded queue.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import xarray as xr
from fastapi import FastAPI
from fastapi.testclient import TestClient

from insitu.access import build_app
from insitu.access.jobs import JobManager
from insitu.access.jobstore import Job, JobStore
from insitu.compute import run

from .conftest import MIROC_AMON_TA, RESTRICTED_IDS, AccessEnv, bearer

JOBS = "/api/v1/jobs"
MIROC_DAY_TA = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.day.ta.gn.v20191016"
TWO_MODELS = {"collection": "demo", "source_id": ["MIROC6", "CanESM5"], "table_id": "Amon"}


@pytest.fixture(scope="module")
def api(app: FastAPI) -> Iterator[TestClient]:
    """One in-process client for the module, so the job cluster starts once."""
    with TestClient(app) as c:
        yield c


@pytest.fixture
def everything(access_env: AccessEnv) -> dict[str, str]:
    return bearer(access_env.secrets.everything)


def _wait(client: Any, job: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while True:
        r = client.get(job["links"]["self"], headers=headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] not in ("queued", "running"):
            return body
        assert time.monotonic() < deadline, f"job still {body['status']} after 180 s"
        time.sleep(0.1)


def _submit(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post(JOBS, json=body, headers=headers)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    assert r.headers["location"] == job["links"]["self"] == f"{JOBS}/{job['id']}"
    assert job["status"] in ("queued", "running", "done")
    return job


def _download(client: Any, job: dict[str, Any], headers: dict[str, str], out: Path) -> Path:
    r = client.get(job["links"]["result"], headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-netcdf"
    assert f"{job['operation']}-{job['id']}.nc" in r.headers["content-disposition"]
    assert r.headers["etag"] == f'"{job["result"]["key"]}"'
    assert "immutable" in r.headers["cache-control"]
    out.write_bytes(r.content)
    return out


def test_time_mean_job_equals_direct_run_and_is_cached_the_second_time(
    api: TestClient, access_env: AccessEnv, everything: dict[str, str], tmp_path: Path
) -> None:
    job = _submit(api, everything, operation="time_mean", datasets=[MIROC_AMON_TA])
    done = _wait(api, job, everything)
    assert done["status"] == "done", done
    assert done["error"] is None and done["run_seconds"] is not None
    prov = done["provenance"]
    assert prov["operation"] == "time_mean"
    assert [i["dataset_id"] for i in prov["inputs"]] == [MIROC_AMON_TA]

    path = _download(api, done, everything, tmp_path / "job.nc")
    direct = run(
        access_env.catalog, "time_mean", [MIROC_AMON_TA], cache=False, out=tmp_path / "direct.nc"
    )
    with xr.open_dataset(path) as got, xr.open_dataset(direct.path) as want:
        np.testing.assert_array_equal(got["ta"].values, want["ta"].values)
        assert got["ta"].dims == want["ta"].dims
        assert "insitu_provenance" in got.attrs
    assert direct.key == done["result"]["key"]

    again = api.get(
        done["links"]["result"], headers={**everything, "If-None-Match": f'"{direct.key}"'}
    )
    assert again.status_code == 304 and not again.content

    second = _wait(
        api, _submit(api, everything, operation="time_mean", datasets=[MIROC_AMON_TA]), everything
    )
    assert second["status"] == "done" and second["cached"] is True
    assert second["result"] == done["result"] and second["id"] != done["id"]
    listed = api.get(JOBS, headers=everything).json()["jobs"]
    assert {done["id"], second["id"]} <= {j["id"] for j in listed}


def test_the_jobs_cluster_is_not_the_servers_default_scheduler(
    api: TestClient, everything: dict[str, str]
) -> None:
    """Subsets and quicklooks compute in the server process; were the jobs' client Dask's
    default, they would be shipped to the cluster and xarray would take distributed locks
    that outlive it."""
    import dask
    from distributed.client import _get_global_client

    job = _submit(
        api, everything, operation="zonal_mean", datasets=[MIROC_AMON_TA], time="2000/2001"
    )
    assert _wait(api, job, everything)["status"] == "done"
    assert _get_global_client() is None
    assert dask.config.get("scheduler", None) != "dask.distributed"


def test_multi_model_field_mean_over_a_search(
    api: TestClient, access_env: AccessEnv, everything: dict[str, str], tmp_path: Path
) -> None:
    ids = access_env.catalog.search(**TWO_MODELS).all_ids  # type: ignore[arg-type]
    assert len(ids) == 2
    done = _wait(
        api, _submit(api, everything, operation="field_mean", search=TWO_MODELS), everything
    )
    assert done["status"] == "done", done
    assert sorted(done["datasets"]) == sorted(ids)
    path = _download(api, done, everything, tmp_path / "ens.nc")
    direct = run(access_env.catalog, "field_mean", done["datasets"], cache=False)
    with xr.open_dataset(path) as got:
        assert got["ta"].dims == ("dataset", "time", "plev")
        assert got["dataset"].values.tolist() == done["datasets"]
        np.testing.assert_array_equal(got["ta"].values, direct.open()["ta"].values)
        steps = got.sizes["time"]
    values = api.get(done["links"]["result"], params={"format": "json"}, headers=everything)
    assert values.status_code == 200, values.text
    ta = values.json()["data_vars"]["ta"]
    assert ta["dims"] == ["dataset", "time", "plev"]
    assert len(ta["data"]) == 2 and len(ta["data"][0]) == steps


def test_end_to_end_over_http_with_parameters_and_time(
    live_url: str, access_env: AccessEnv, everything: dict[str, str], tmp_path: Path
) -> None:
    with httpx.Client(base_url=live_url, timeout=30) as http:
        job = _submit(
            http,
            everything,
            operation="climatology",
            datasets=[MIROC_AMON_TA],
            params={"period": "season"},
            time="1990/1999",
        )
        done = _wait(http, job, everything)
        assert done["status"] == "done", done
        assert done["params"] == {"period": "season"} and done["time"] == "1990/1999"
        path = _download(http, done, everything, tmp_path / "clim.nc")
    direct = run(
        access_env.catalog,
        "climatology",
        [MIROC_AMON_TA],
        params={"period": "season"},
        time=slice("1990", "1999"),
        cache=False,
    )
    with xr.open_dataset(path) as got:
        assert got.sizes["season"] == 4
        np.testing.assert_array_equal(got["ta"].values, direct.open()["ta"].values)
        assert got.attrs["history"].splitlines()[0].endswith(MIROC_AMON_TA)


@pytest.mark.parametrize(
    ("who", "body", "status", "words"),
    [
        ("everything", {"operation": "median", "datasets": [MIROC_AMON_TA]}, 400, "time_mean"),
        (
            "everything",
            {"operation": "climatology", "datasets": [MIROC_AMON_TA], "params": {"period": 3}},
            400,
            "period",
        ),
        ("everything", {"operation": "time_mean", "params": {"x": 1}, "datasets": ["x"]}, 400, "x"),
        ("everything", {"operation": "time_mean", "datasets": ["CMIP6.nope"]}, 404, "CMIP6.nope"),
        (
            "everything",
            {"operation": "time_mean", "search": {"source_id": "NoModel"}},
            404,
            "NoModel",
        ),
        ("everything", {"operation": "time_mean", "search": {"limit": "5"}}, 400, "not a facet"),
        ("everything", {"operation": "time_mean", "search": {"nofacet": "x"}}, 400, "nofacet"),
        ("everything", {"operation": "time_mean", "search": {}}, 400, "no constraint"),
        (
            "everything",
            {"operation": "time_mean", "datasets": [f"d{i}" for i in range(101)]},
            413,
            "at most 100",
        ),
        (
            "everything",
            {"operation": "time_mean", "datasets": [MIROC_AMON_TA], "time": "1990-13/"},
            400,
            "1990-13",
        ),
        (
            "everything",
            {"operation": "time_mean", "datasets": [MIROC_AMON_TA], "variable": "pr"},
            400,
            "'pr'",
        ),
        ("everything", {"operation": "time_mean"}, 422, "datasets"),
        ("everything", {"operation": "time_mean", "datasets": ["x"], "search": {}}, 422, "either"),
        ("demo_only", {"operation": "time_mean", "datasets": [MIROC_AMON_TA]}, 403, "'compute'"),
        (
            "restricted",
            {"operation": "time_mean", "datasets": [RESTRICTED_IDS[0]]},
            403,
            "'compute'",
        ),
        (
            "compute_restricted",
            {"operation": "time_mean", "datasets": [MIROC_AMON_TA]},
            403,
            "'demo'",
        ),
        (None, {"operation": "time_mean", "datasets": [MIROC_AMON_TA]}, 401, "compute"),
        # Anonymous: a restricted dataset is answered as a missing one.
        (None, {"operation": "time_mean", "datasets": [RESTRICTED_IDS[0]]}, 404, "not in the"),
        ("revoked", {"operation": "time_mean", "datasets": [MIROC_AMON_TA]}, 401, "revoked"),
    ],
)
def test_refused_submissions_say_why_and_queue_nothing(
    api: TestClient,
    access_env: AccessEnv,
    who: str | None,
    body: dict[str, Any],
    status: int,
    words: str,
) -> None:
    headers = bearer(getattr(access_env.secrets, who)) if who else {}
    jobs = api.app.state.services.jobs  # type: ignore[attr-defined]
    before = len(jobs._futures)
    r = api.post(JOBS, json=body, headers=headers)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"], r.text
    assert len(jobs._futures) == before


def test_a_job_on_a_restricted_collection_is_hidden_without_its_grant(
    api: TestClient, access_env: AccessEnv
) -> None:
    s = access_env.secrets
    owner = bearer(s.compute_restricted)
    job = _submit(api, owner, operation="time_mean", datasets=[RESTRICTED_IDS[0]])
    for url in (job["links"]["self"], job["links"]["result"]):
        r = api.get(url, headers=bearer(s.demo_only))
        assert r.status_code == 403 and "'restricted'" in r.json()["error"]["message"], r.text
        assert api.get(url).status_code == 404  # anonymous: as if there were no such job
        # Granted, but not the submitter: the job does not exist for them.
        assert api.get(url, headers=bearer(s.restricted)).status_code == 404
        assert api.get(url, headers=bearer(s.everything)).status_code == 404
    assert api.delete(job["links"]["cancel"], headers=bearer(s.demo_only)).status_code == 403
    assert job["id"] not in {
        j["id"] for j in api.get(JOBS, headers=bearer(s.everything)).json()["jobs"]
    }
    done = _wait(api, job, owner)
    assert done["status"] == "done", done
    assert api.get(job["links"]["result"], headers=owner).status_code == 200
    assert api.get(job["links"]["result"], headers=bearer(s.demo_only)).status_code == 403
    assert api.get(JOBS, headers=owner).json()["jobs"][0]["id"] == job["id"]


@pytest.fixture(scope="module")
def one_worker(access_env: AccessEnv) -> Iterator[TestClient]:
    """A second app on the same database, as another server process would be: one job
    worker and a one-process cluster (so jobs wait their turn), anonymous jobs allowed."""
    s = access_env.settings
    settings = s.model_copy(
        update={
            "access": s.access.model_copy(update={"job_workers": 1, "anonymous_compute": True}),
            "compute": s.compute.model_copy(update={"workers": 1}),
        }
    )
    with TestClient(build_app(settings, catalog=access_env.catalog, tokens=access_env.tokens)) as c:
        yield c


def test_cancel_queued_and_running_jobs_and_the_queue_bounds(
    one_worker: TestClient, api: TestClient, access_env: AccessEnv, everything: dict[str, str]
) -> None:
    jobs: JobManager = one_worker.app.state.services.jobs  # type: ignore[attr-defined]
    other = bearer(access_env.secrets.compute_restricted)
    assert jobs._runner is None  # the first job below starts the pool and the cluster
    assert (jobs.max_pending, jobs.max_per_caller) == (8, 4)
    # The first job is running while its cluster starts (seconds); the others wait.
    first = _submit(one_worker, everything, operation="trend", datasets=[MIROC_DAY_TA])
    quantile = {"operation": "quantile", "datasets": [MIROC_DAY_TA], "params": {"q": 0.9}}
    queued = [_submit(one_worker, everything, **quantile) for _ in range(3)]
    theirs = [
        _submit(one_worker, other, operation="time_mean", datasets=[RESTRICTED_IDS[1]])
        for _ in range(4)
    ]
    full = one_worker.post(JOBS, json=quantile, headers=everything)
    assert full.status_code == 503 and "Try again" in full.json()["error"]["message"]
    assert one_worker.delete(theirs[0]["links"]["cancel"], headers=other).status_code == 200
    share = one_worker.post(JOBS, json=quantile, headers=everything)
    assert share.status_code == 429 and "This token" in share.json()["error"]["message"]

    waiting = queued[0]
    early = one_worker.get(waiting["links"]["result"], headers=everything)
    assert early.status_code == 409 and "Poll GET" in early.json()["error"]["message"]
    # Another server process (the session app, same database) sees and cancels the job.
    assert api.get(waiting["links"]["self"], headers=everything).json()["status"] == "queued"
    for job in queued:
        cancelled = api.delete(job["links"]["cancel"], headers=everything)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = one_worker.delete(waiting["links"]["cancel"], headers=everything)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"
    for job in theirs[1:]:
        assert one_worker.delete(job["links"]["cancel"], headers=other).status_code == 200

    deadline = time.monotonic() + 30
    while one_worker.get(first["links"]["self"], headers=everything).json()["status"] == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stopped = one_worker.delete(first["links"]["cancel"], headers=everything).json()
    assert stopped.get("status") == "cancelled" and stopped["started"] is not None, stopped

    # The next job runs once the cancelled one's computation is over: by then the
    # cancelled jobs have kept their status and never pointed at a result.
    after = _wait(
        one_worker,
        _submit(one_worker, everything, operation="time_mean", datasets=[MIROC_DAY_TA]),
        everything,
    )
    assert after["status"] == "done", after
    for job, headers in [(first, everything), *((j, everything) for j in queued)] + [
        (j, other) for j in theirs
    ]:
        body = one_worker.get(job["links"]["self"], headers=headers).json()
        assert body["status"] == "cancelled" and body["result"] is None, body
        assert body["started"] is None or job is first, body
    # Cancelled through the process that ran it, the running job stopped on the cluster:
    # it wrote no result (its operation is used by no other test).
    assert not list((access_env.settings.data_dir / "results").glob("trend-*.nc"))
    late = one_worker.get(first["links"]["result"], headers=everything)
    assert late.status_code == 409 and "cancelled" in late.json()["error"]["message"]
    ended = one_worker.delete(after["links"]["cancel"], headers=everything)
    assert ended.status_code == 409 and "already ended" in ended.json()["error"]["message"]


def test_anonymous_jobs_when_the_operator_allows_them(
    one_worker: TestClient, access_env: AccessEnv
) -> None:
    c = one_worker
    refused = c.post(JOBS, json={"operation": "time_mean", "datasets": [RESTRICTED_IDS[0]]})
    assert refused.status_code == 404 and "not in the catalog" in refused.text
    job = _submit(c, {}, operation="time_mean", datasets=[MIROC_AMON_TA])
    assert _wait(c, job, {})["status"] == "done"
    # Anyone with the id sees an anonymous job on public data; nobody lists it.
    assert (
        c.get(job["links"]["self"], headers=bearer(access_env.secrets.demo_only)).status_code == 200
    )
    assert c.get(job["links"]["result"]).status_code == 200
    assert c.get(JOBS).json() == {"jobs": []}


def test_a_cached_result_needs_no_cluster(
    access_env: AccessEnv, everything: dict[str, str]
) -> None:
    key = run(access_env.catalog, "time_mean", [MIROC_AMON_TA]).key  # in the cache now
    app = build_app(access_env.settings, catalog=access_env.catalog, tokens=access_env.tokens)
    with TestClient(app) as c:
        t0 = time.monotonic()
        done = _wait(
            c, _submit(c, everything, operation="time_mean", datasets=[MIROC_AMON_TA]), everything
        )
        seconds = time.monotonic() - t0
        runner = app.state.services.jobs._runner
        assert done["status"] == "done" and done["cached"] is True
        assert done["result"]["key"] == key
        assert runner is not None and runner.client is None, "a cluster was started"
    assert seconds < 5, seconds


_DIES_WHILE_RUNNING = """
import sys
from datetime import UTC, datetime
from insitu.access.jobstore import Job, JobStore
store = JobStore.from_uri(sys.argv[1])
now = datetime.now(UTC)
import os, socket
server = f"{socket.gethostname()}:{os.getpid()}:dead"
store.insert(Job(sys.argv[2], "queued", "time_mean", (sys.argv[3],), ("demo",), None, {},
                 None, sys.argv[4], now, server))
assert store.update(sys.argv[2], ["queued"], status="running", started=now)
os._exit(0)  # no cleanup: as if the server had been killed
"""


def test_a_job_running_when_its_server_died_is_failed_on_start(
    access_env: AccessEnv, everything: dict[str, str]
) -> None:
    token = next(t for t in access_env.tokens.tokens() if t.name == "everything")
    uri = access_env.settings.catalog_uri
    subprocess.run(
        [sys.executable, "-c", _DIES_WHILE_RUNNING, uri, "f" * 24, MIROC_AMON_TA, token.id],
        check=True,
    )
    app = build_app(access_env.settings, catalog=access_env.catalog, tokens=access_env.tokens)
    with TestClient(app) as c:
        body = c.get(f"{JOBS}/{'f' * 24}", headers=everything).json()
    assert body["status"] == "failed", body
    assert body["error"]["type"] == "ServiceStopped"
    assert "stopped while the job was running" in body["error"]["message"]


def test_job_store_recovery_on_sqlite_and_postgres(store_uri: str) -> None:
    from datetime import UTC, datetime, timedelta

    store = JobStore.from_uri(store_uri)
    now = datetime.now(UTC)
    old = now - timedelta(hours=1)

    def job(job_id: str, server: str, created: datetime) -> None:
        store.insert(
            Job(
                job_id,
                "queued",
                "time_mean",
                ("d",),
                ("demo",),
                None,
                {},
                None,
                None,
                created,
                server,
            )
        )

    job("a" * 24, "elsewhere:1:x", old)  # another host, silent for an hour
    job("b" * 24, "elsewhere:1:y", now)  # another host, alive
    job("c" * 24, "here:999999999:z", now)  # this host, a pid that cannot exist
    store.update("b" * 24, ["queued"], status="running")
    failed = store.fail_abandoned("here:1:me")
    assert sorted(failed) == ["a" * 24, "c" * 24]
    assert store.get("b" * 24).status == "running"  # type: ignore[union-attr]
    gone = store.get("a" * 24)
    assert gone is not None and gone.status == "failed" and "no sign of life" in (gone.error or "")
    store.close()


def test_the_job_limits_are_settings(access_env: AccessEnv, everything: dict[str, str]) -> None:
    """An operator's limits: inputs per job (ids or a search), queue depth, a caller's share."""
    s = access_env.settings
    access = s.access.model_copy(
        update={"job_max_inputs": 2, "jobs_per_worker": 3, "jobs_per_caller_per_worker": 1}
    )
    app = build_app(
        s.model_copy(update={"access": access}),
        catalog=access_env.catalog,
        tokens=access_env.tokens,
    )
    with TestClient(app) as client:
        jobs: JobManager = app.state.services.jobs
        assert (jobs.max_inputs, jobs.max_pending, jobs.max_per_caller) == (2, 3 * 2, 1 * 2)
        three = {"operation": "time_mean", "datasets": [MIROC_AMON_TA, *RESTRICTED_IDS[:2]]}
        r = client.post(JOBS, json=three, headers=everything)
        assert r.status_code == 413 and "at most 2" in r.json()["error"]["message"], r.text
        search = {"operation": "time_mean", "search": {"source_id": "MIROC6"}}
        r = client.post(JOBS, json=search, headers=everything)
        assert r.status_code == 413, r.text
        assert "The search matches" in r.json()["error"]["message"]
        assert "access.job_max_inputs" in r.json()["error"]["message"]
        assert not jobs._futures
