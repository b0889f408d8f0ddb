"""The workflow web pages over real workflows: a notebook's workflow run twice by the
local executor (the second run all from the cache), one whose node fails, one whose
workflow.yaml is broken, and its components registered in the catalog. The component
search filters as the CLI does, a component page shows its interface, code, dependencies
and versions, a workflow page draws its graph and lists its runs with their nodes and
provenance; every page is for callers with a token only."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path

import nbformat
import pytest
from fastapi.testclient import TestClient

from insitu.access import TokenStore, build_app
from insitu.catalog import Catalog
from insitu.settings import Settings
from insitu.workflows import (
    ComponentCatalog,
    LocalBackend,
    RunRecord,
    WorkflowFailed,
    load_workflow,
    notebook_from_sources,
    run_workflow,
    workflow_from_notebook,
)
from tests.integration.access.conftest import bearer

CELLS = [
    "param_n = 6",
    "import numpy as np\n# Make the series\nseries = np.arange(param_n, dtype=float)",
    "# Scale it\nscaled = series * 3",
    "# Offset it\noffset = series + 1",
    "# Combine both\ntotal = float(scaled.sum() + offset.sum())",
    "print(total)",
]
FAILING = ["param_d = 0", "# Divide\nratio = 1 / param_d", "# Never reached\nhalf = ratio / 2"]


@dataclass(frozen=True)
class Site:
    client: TestClient
    user: dict[str, str]  # a token granting one unrelated collection only
    runs: list[RunRecord]  # of 'analysis/demo': first everything ran, then from the cache
    failed: RunRecord
    hashes: dict[str, str]  # node -> component hash


def _notebook(path: Path, cells: list[str]) -> Path:
    nbformat.write(notebook_from_sources(cells, ids=[f"c{i}" for i in range(len(cells))]), path)
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("workflow-pages")
    root = tmp / "workflows"
    settings = Settings(
        data_dir=tmp / "data",
        catalog={"uri": f"sqlite:///{tmp / 'catalog.db'}"},
        workflows_dir=root,
    )
    workflow_from_notebook(_notebook(tmp / "analysis.ipynb", CELLS), root / "analysis" / "demo")
    demo = load_workflow(root / "analysis" / "demo")
    runs = [run_workflow(demo, LocalBackend(2)) for _ in range(2)]
    workflow_from_notebook(_notebook(tmp / "fails.ipynb", FAILING), root / "fails")
    with pytest.raises(WorkflowFailed) as failed:
        run_workflow(load_workflow(root / "fails"), LocalBackend(2))
    (root / "broken").mkdir()
    (root / "broken" / "workflow.yaml").write_text("nodes: [unclosed\n")
    (root / "broken" / "runs" / "20260101T000000Z-aaaaaa").mkdir(parents=True)
    (root / "broken" / "runs" / "20260101T000000Z-aaaaaa" / "run.json").write_text("{cut")
    (root / "broken" / "runs" / "20260101T000000Z-bbbbbb").mkdir()  # killed at once
    with ComponentCatalog.from_settings(settings) as components:
        components.register(root / "analysis" / "demo" / "components")
    catalog = Catalog(settings)
    tokens = TokenStore.from_uri(settings.catalog_uri)
    user = tokens.create("someone", collections=["elsewhere"])[1]
    app = build_app(settings, catalog=catalog, tokens=tokens)
    hashes = {n: spec.hash for n, spec in demo.nodes.items()}
    with TestClient(app) as client:
        yield Site(client, bearer(user), runs, failed.value.record, hashes)
    tokens.close()
    catalog.close()


def text(html: str) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html)))


def rows(html: str, table: str) -> list[str]:
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no table {table}"
    return [text(r).strip() for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)]


def test_every_page_is_for_callers_with_a_token(site: Site) -> None:
    ref = site.hashes["series"]
    for url in ("/components", f"/components/{ref}", "/workflows", "/workflows/analysis/demo"):
        anonymous = site.client.get(url)
        assert anonymous.status_code == 401, url
        assert "shown to logged-in users" in text(anonymous.text)
        assert site.client.get(url, headers=site.user).status_code == 200, url
    home = site.client.get("/", headers=site.user).text
    assert 'href="/workflows"' in home  # the navigation's link


def test_the_component_search(site: Site) -> None:
    def found(**query: str) -> list[str]:
        page = site.client.get("/components", params=query, headers=site.user)
        assert page.status_code == 200
        if "No component matches" in page.text:
            return []
        return sorted(r.split()[0] for r in rows(page.text, "components"))

    assert found() == ["cell-5", "offset", "scaled", "series", "total"]
    assert found(q="scale") == ["scaled", "total"]  # total reads scaled
    assert found(q="scale it") == ["scaled"]
    assert found(q="combine both") == ["total"]
    assert found(port="series") == ["offset", "scaled", "series"]
    assert found(type="int") == ["series"]  # the parameter param_n
    assert found(port="param_n", type="int") == ["series"]
    assert found(uses="numpy") == ["series"]
    assert found(q="offset", uses="numpy") == []
    page = site.client.get("/components", params={"q": "scale"}, headers=site.user).text
    assert f'href="/components/{site.hashes["scaled"]}"' in page
    assert 'value="scale"' in page  # the form keeps what was asked
    bad = site.client.get("/components", params={"q": "--"}, headers=site.user)
    assert bad.status_code == 400 and "no word to look for" in text(bad.text)


def test_a_component_page(site: Site) -> None:
    ref = site.hashes["series"]
    page = site.client.get(f"/components/{ref[:10]}", headers=site.user)
    assert page.status_code == 200
    assert ref in page.text and "Make the series" in text(page.text)
    ports = rows(page.text, "ports")
    assert any(r.startswith("param_n parameter int") and "default 6" in r for r in ports)
    assert any(r.startswith("series output") for r in ports)
    assert rows(page.text, "dependencies")[0].startswith("numpy ")
    assert "np.arange(param_n, dtype=float)" in unescape(page.text)
    assert "(this one)" in text(page.text)
    missing = site.client.get("/components/ffffffff", headers=site.user)
    assert missing.status_code == 404 and "insitu cells search" in text(missing.text)
    assert site.client.get("/components/nothex", headers=site.user).status_code == 400


def test_the_workflows_page(site: Site) -> None:
    page = site.client.get("/workflows", headers=site.user)
    listed = rows(page.text, "workflows")
    demo = next(r for r in listed if r.startswith("analysis analysis/demo "))  # name, folder
    assert f"{site.runs[1].run_id} done" in demo and "demo 5 5 " in demo  # nodes, edges
    fails = next(r for r in listed if r.startswith("fails "))
    assert f"{site.failed.run_id} failed" in fails
    broken = next(r for r in listed if r.startswith("broken "))
    assert "cannot be read" in broken and "not valid YAML" in broken


def test_a_workflow_page_draws_its_graph_and_shows_its_runs(site: Site) -> None:
    first, second = site.runs
    page = site.client.get("/workflows/analysis/demo", headers=site.user)
    assert page.status_code == 200
    svg = re.search(r"<svg .*?</svg>", page.text, re.S)
    assert svg is not None
    drawn = re.findall(r'<g class="node" data-node="([^"]+)"', svg.group(0))
    assert sorted(drawn) == sorted(site.hashes)
    pairs = {(e.source, e.target) for e in load_workflow(Path(site.runs[0].workflow)).edges}
    assert svg.group(0).count('<path class="edge"') == len(pairs) == 5  # one per linked pair
    # nodes of the catalog link to their component page; the newest run colours the graph
    assert f'href="/components/{site.hashes["total"]}"' in svg.group(0)
    assert svg.group(0).count('fill="#ddf4ff"') == 5  # all from the cache
    runs = rows(page.text, "runs")
    assert [r.split()[0] for r in runs] == [second.run_id, first.run_id]
    assert runs[0].split()[-1] == "5" and runs[1].split()[-1] == "0"  # cache hits
    nodes = rows(page.text, "run-nodes")
    assert all("cached from the cache" in r for r in nodes)
    provenance = text(page.text.split('id="provenance"')[1])
    assert second.environment["python_version"] in provenance
    assert "param_n=6" in provenance
    older = site.client.get(
        "/workflows/analysis/demo", params={"run": first.run_id}, headers=site.user
    ).text
    ran = rows(older, "run-nodes")
    assert all(" done " in f" {r} " for r in ran)
    timed = next(r for r in ran if r.startswith("series "))
    seconds = first.nodes["series"].seconds
    assert seconds is not None and f"{seconds:.2f}" in timed
    assert first.nodes["series"].outputs["series"]["sha256"][:12] in timed


def test_a_failed_run_and_bad_addresses(site: Site) -> None:
    page = site.client.get("/workflows/fails", headers=site.user).text
    nodes = {r.split()[0]: r for r in rows(page, "run-nodes")}
    failing = next(n for n, r in site.failed.nodes.items() if r.status == "failed")
    assert "failed" in nodes[failing] and "skipped" in " ".join(nodes.values())
    assert 'fill="#ffebe9"' in page  # drawn red
    broken = site.client.get("/workflows/broken", headers=site.user)
    assert broken.status_code == 200 and "cannot be read" in text(broken.text)
    runs = rows(broken.text, "runs")  # listed with the reason, not hidden
    assert [r.split()[:2] for r in runs] == [
        ["20260101T000000Z-bbbbbb", "unreadable"],
        ["20260101T000000Z-aaaaaa", "unreadable"],
    ]
    assert "no run.json" in runs[0] and "run.json cannot be read" in runs[1]
    for bad in ("/workflows/nothing", "/workflows/analysis"):
        assert site.client.get(bad, headers=site.user).status_code == 404, bad
    outside = site.client.get("/workflows/.hidden/x", headers=site.user)
    assert outside.status_code == 400
    unknown = site.client.get("/workflows/fails", params={"run": "nope"}, headers=site.user)
    assert unknown.status_code == 404 and "has no run 'nope'" in text(unknown.text)
