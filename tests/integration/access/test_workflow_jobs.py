"""Published workflows run as server-side jobs of the data service, against the real app,
the real job queue and a real Dask cluster: an operator publishes (CLI and API of
:class:`PublishedWorkflows`), a user with the ``workflows`` scope starts a run with
parameter values, follows the job, fetches its run record, finds the run on the workflow's
page; every refusal comes before anything is queued; a published folder changed afterwards
is refused; cancelling a running workflow stops it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from insitu.access import TokenStore, build_app
from insitu.access.jobstore import JobStore
from insitu.catalog import Catalog
from insitu.cli.main import cli
from insitu.errors import Conflict, InvalidRequest, NotFound
from insitu.settings import Settings
from insitu.workflows import (
    PublishedWorkflows,
    WorkflowInvalid,
    notebook_from_sources,
    workflow_from_notebook,
)
from tests.integration.access.conftest import bearer

CELLS = [
    "param_n = 6",
    "import numpy as np\n# Make the series\nseries = np.arange(param_n, dtype=float)",
    "# Sum it\ntotal = float(series.sum())",
    "print(total)",
]
SLOW = [
    "param_wait = 0.1",
    "import time\n# Wait\ntime.sleep(param_wait)\nwaited = param_wait",
    "# After\nafter = waited + 1",
]


@dataclass(frozen=True)
class Site:
    client: TestClient
    settings: Settings
    source: Path  # the workflow folder the operator published from
    slow: Path
    runner: dict[str, str]  # a token with the workflows scope
    reader: dict[str, str]  # read and compute, no workflows scope
    runner_id: str


def _workflow(tmp: Path, name: str, cells: list[str]) -> Path:
    nb = tmp / f"{name}.ipynb"
    nbformat.write(notebook_from_sources(cells, ids=[f"c{i}" for i in range(len(cells))]), nb)
    out = tmp / "mine" / name
    workflow_from_notebook(nb, out)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("workflow-jobs")
    settings = Settings(
        data_dir=tmp / "data",
        catalog={"uri": f"sqlite:///{tmp / 'catalog.db'}"},
        workflows_dir=tmp / "served",
        compute={"workers": 2},
    )
    source, slow = _workflow(tmp, "demo", CELLS), _workflow(tmp, "slow", SLOW)
    with PublishedWorkflows.from_settings(settings) as published:
        published.publish(source, "demo", by="operator")
        published.publish(slow, "slow", by="operator")
    catalog = Catalog(settings)
    tokens = TokenStore.from_uri(settings.catalog_uri)
    runner_token, runner = tokens.create("runner", scopes=["read", "workflows"])
    reader = tokens.create("reader", scopes=["read", "compute"])[1]
    app = build_app(settings, catalog=catalog, tokens=tokens)
    with TestClient(app) as client:
        yield Site(client, settings, source, slow, bearer(runner), bearer(reader), runner_token.id)
    tokens.close()
    catalog.close()


def _run(site: Site, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    r = site.client.post(
        f"/api/v1/workflows/{name}/runs", json={"params": params or {}}, headers=site.runner
    )
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    assert r.headers["location"] == job["links"]["self"] == f"/api/v1/jobs/{job['id']}"
    assert job["operation"] == "workflow" and job["params"]["workflow"] == name
    return job


def _wait(site: Site, job: dict[str, Any], until: tuple[str, ...] = ("done", "failed")) -> Any:
    deadline = time.monotonic() + 120
    while True:
        body = site.client.get(job["links"]["self"], headers=site.runner).json()
        if body["status"] in until or body["status"] in ("done", "failed", "cancelled"):
            return body
        assert time.monotonic() < deadline, f"job still {body['status']}"
        time.sleep(0.1)


def test_a_published_workflow_runs_on_the_server_with_the_values_given(site: Site) -> None:
    listed = site.client.get("/api/v1/workflows", headers=site.runner)
    assert listed.status_code == 200
    demo = next(w for w in listed.json()["workflows"] if w["name"] == "demo")
    assert demo["params"] == {"param_n": {"default": 6, "type": "int"}}
    assert demo["published_by"] == "operator" and demo["changed"] is False

    job = _wait(site, _run(site, "demo", {"param_n": 10}))
    assert job["status"] == "done", job
    assert job["provenance"]["nodes"] == {"done": 3}
    record = site.client.get(job["links"]["result"], headers=site.runner)
    assert record.status_code == 200 and record.headers["content-type"] == "application/json"
    doc = record.json()
    assert doc["status"] == "done" and doc["executor"] == "dask"
    assert doc["params"] == {"param_n": 10}
    assert doc["origin"]["job"] == job["id"] and doc["origin"]["token"] == site.runner_id
    served = Path(site.settings.workflows_dir or "") / "demo"
    assert Path(doc["directory"]).parent == served / "runs"  # in the published folder
    out = doc["nodes"]["total"]["outputs"]["total"]
    assert out["kind"] == "json" and out["value"] == sum(range(10))

    again = _wait(site, _run(site, "demo", {"param_n": 10}))
    assert again["status"] == "done" and again["cached"] is True  # every node from the cache
    assert again["provenance"]["cache_hits"] == sorted(doc["nodes"])

    page = site.client.get("/workflows/demo", headers=site.runner).text
    assert 'id="run-form"' in page and "/api/v1/workflows/demo/runs" in page
    assert "on the server" in page
    chosen = site.client.get(
        "/workflows/demo", params={"run": doc["run_id"]}, headers=site.runner
    ).text
    assert f"server-side job <code>{job['id']}</code>" in chosen


def test_every_refusal_comes_before_anything_is_queued(site: Site) -> None:
    store = JobStore.from_uri(site.settings.catalog_uri)
    before = len(store.jobs(site.runner_id, limit=1000))

    def post(name: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        r = site.client.post(f"/api/v1/workflows/{name}/runs", json=body, headers=headers)
        return r.status_code, r.json()["error"]["message"]

    status, message = post("demo", {"params": {}})
    assert status == 401 and "'workflows' scope" in message
    status, message = post("demo", {"params": {}}, site.reader)
    assert status == 403 and "insitu token create --scope workflows" in message
    assert site.client.get("/api/v1/workflows", headers=site.reader).status_code == 403
    status, message = post("nothing", {"params": {}}, site.runner)
    assert status == 404 and "published: demo, slow" in message
    status, message = post("demo", {"params": {"param_m": 1}}, site.runner)
    assert status == 400 and "'param_m'" in message and "param_n" in message
    status, message = post("demo", {"params": {"param_n": "ten"}}, site.runner)
    assert status == 400 and "'param_n' is str 'ten'" in message
    status, _ = post("demo", {"params": {}, "code": "import os"}, site.runner)
    assert status == 422  # nothing but parameter values is accepted
    status, _ = post("-etc", {"params": {}}, site.runner)
    assert status == 422
    assert len(store.jobs(site.runner_id, limit=1000)) == before
    store._engine.dispose()


def test_a_published_folder_changed_afterwards_is_refused_until_published_again(
    site: Site, tmp_path: Path
) -> None:
    with PublishedWorkflows.from_settings(site.settings) as published:
        entry = published.publish(site.source, "edited", by="operator")
    task = next((entry.directory / "components").glob("series-*/task.py"))
    task.write_text(task.read_text() + "\nimport os  # added later\n")
    r = site.client.post("/api/v1/workflows/edited/runs", json={}, headers=site.runner)
    assert r.status_code == 409 and "publish it again" in r.json()["error"]["message"]
    listed = site.client.get("/api/v1/workflows", headers=site.runner).json()["workflows"]
    assert any(w["name"] == "edited" for w in listed)

    with PublishedWorkflows.from_settings(site.settings) as published:
        with pytest.raises(Conflict, match="already published"):
            published.publish(site.source, "edited")
        published.publish(site.source, "edited", replace=True)
    assert _wait(site, _run(site, "edited"))["status"] == "done"


def test_cancelling_a_running_workflow_stops_it(site: Site) -> None:
    job = _run(site, "slow", {"param_wait": 60.0})
    deadline = time.monotonic() + 60
    while site.client.get(job["links"]["self"], headers=site.runner).json()["status"] != (
        "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    runs = Path(site.settings.workflows_dir or "") / "slow" / "runs"
    while not list(runs.glob("*/waited/inputs.json")):  # the node has started on a worker
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    r = site.client.delete(job["links"]["cancel"], headers=site.runner)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    record = None
    while record is None:
        found = [p for p in runs.glob("*/run.json") if json.loads(p.read_text())["origin"]]
        mine = [json.loads(p.read_text()) for p in found]
        record = next((d for d in mine if d["origin"]["job"] == job["id"]), None)
        assert time.monotonic() - started < 30, "the run did not stop"
        time.sleep(0.1)
    assert record["status"] == "cancelled"
    assert record["nodes"]["waited"]["status"] == "cancelled"
    assert record["nodes"]["after"]["status"] == "cancelled"
    assert not (Path(record["directory"]) / "after").exists()  # never started
    body = site.client.get(job["links"]["self"], headers=site.runner).json()
    assert body["status"] == "cancelled"


def test_publishing_checks_the_workflow_and_the_name(site: Site, tmp_path: Path) -> None:
    with PublishedWorkflows.from_settings(site.settings) as published:
        with pytest.raises(InvalidRequest, match="cannot name a published workflow"):
            published.publish(site.source, "../up")
        broken = tmp_path / "broken"
        broken.mkdir()
        (broken / "workflow.yaml").write_text(
            "schema: insitu.workflow/1\nname: b\nparams: {}\n"
            "nodes:\n  a: {component: components/missing, hash: abc}\nedges: []\n"
        )
        with pytest.raises((WorkflowInvalid, InvalidRequest)):
            published.publish(broken, "broken")
        with pytest.raises(NotFound, match="No workflow 'gone' is published"):
            published.get("gone")
        assert not (Path(site.settings.workflows_dir or "") / "broken").exists()


def test_the_cli_publishes_lists_and_unpublishes(site: Site, tmp_path: Path) -> None:
    env = {
        "INSITU_DATA_DIR": str(site.settings.data_dir),
        "INSITU_CATALOG__URI": site.settings.catalog_uri,
        "INSITU_WORKFLOWS_DIR": str(site.settings.workflows_dir),
    }
    runner = CliRunner()
    done = runner.invoke(
        cli, ["workflow", "publish", str(site.source), "--name", "viacli"], env=env
    )
    assert done.exit_code == 0, done.output
    assert "published viacli" in done.output and "/api/v1/workflows/viacli/runs" in done.output
    listed = runner.invoke(cli, ["workflow", "published", "--json"], env=env)
    names = [w["name"] for w in json.loads(listed.output)]
    assert "viacli" in names and "demo" in names
    again = runner.invoke(
        cli, ["workflow", "publish", str(site.source), "--name", "viacli"], env=env
    )
    assert again.exit_code != 0 and "--replace" in again.output
    gone = runner.invoke(cli, ["workflow", "unpublish", "viacli"], env=env)
    assert gone.exit_code == 0 and "its runs stay" in gone.output
    r = site.client.post("/api/v1/workflows/viacli/runs", json={}, headers=site.runner)
    assert r.status_code == 404


def test_the_run_form_is_for_published_workflows_and_callers_with_the_scope(site: Site) -> None:
    page = site.client.get("/workflows/demo", headers=site.reader).text
    assert "Run on the server" in page and 'id="run-form"' not in page
    assert "needs the <code>workflows</code> scope" in page
    with PublishedWorkflows.from_settings(site.settings) as published:
        published.publish(site.source, "withdrawn")
        published.unpublish("withdrawn")
    page = site.client.get("/workflows/withdrawn", headers=site.runner)
    assert page.status_code == 200 and "Run on the server" not in page.text
