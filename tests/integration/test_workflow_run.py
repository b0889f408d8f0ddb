"""Workflows run: the differential test of the specification in its acceptance form — for
the ten notebooks of the corpus (workflow_corpus.py), the notebook run top to bottom in one
IPython namespace and its generated workflow run by the local executor and by the Dask
executor (a LocalCluster of 2 workers, once per module) give the same value for every live
variable — plus T06 and T30 at workflow level, the content-hash cache (hits, misses, the
downstream cone of an edited cell), validation errors, a fan-out (map), and a failing node
that stops its downstream and names itself, its exit code and its log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from insitu.workflows import (
    DaskBackend,
    LocalBackend,
    RunRecord,
    Workflow,
    WorkflowFailed,
    WorkflowInvalid,
    load_workflow,
    notebook_from_sources,
    read_outputs,
    run_workflow,
    workflow_from_notebook,
)
from tests.integration.workflow_corpus import CORPUS, Notebook, assert_same, run_in_one_namespace


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> str:
    from insitu.catalog import Catalog

    uri = f"sqlite:///{tmp_path_factory.mktemp('wfruncat') / 'catalog.db'}"
    with Catalog(uri) as cat:
        cat.add_collection("demo", demo_root, template="cmip6")
        cat.scan(workers=1)
    return uri


def make_workflow(
    tmp_path: Path, sources: list[str], parameters_cell: int | None = None, **options: Any
) -> Workflow:
    nb = notebook_from_sources(sources)
    if parameters_cell is not None:
        nb.cells[parameters_cell].metadata["tags"] = ["parameters"]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    workflow_from_notebook(tmp_path / "nb.ipynb", tmp_path / "wf", python=sys.executable, **options)
    return load_workflow(tmp_path / "wf" / "workflow.yaml")


def values(record: RunRecord) -> dict[str, dict[str, Any]]:
    """Every node's outputs, read back from the run's folders."""
    return {n: read_outputs(Path(r.workdir or "") / "out") for n, r in record.nodes.items()}


def by_cell(wf: Workflow, got: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {wf.nodes[n].cell or n: v for n, v in got.items()}


@pytest.mark.parametrize("notebook", CORPUS, ids=[n.name for n in CORPUS])
def test_notebook_and_its_workflow_give_the_same_values(
    tmp_path: Path,
    notebook: Notebook,
    dask_client: Any,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {}
    if notebook.demo:
        env["INSITU_CATALOG__URI"] = request.getfixturevalue("demo_catalog")
        monkeypatch.setenv("INSITU_CATALOG__URI", env["INSITU_CATALOG__URI"])
    wf = make_workflow(tmp_path, notebook.sources, notebook.parameters_cell)
    nb = nbformat.read(tmp_path / "nb.ipynb", as_version=4)
    from insitu.workflows import analyse_notebook

    graph = analyse_notebook(nb)
    expected = run_in_one_namespace(notebook.sources, [c.outputs for c in graph.cells])
    local = run_workflow(wf, LocalBackend(2), env=env)
    dask = run_workflow(wf, DaskBackend(dask_client), env=env, use_cache=False)
    assert dask.executor == "dask" and not dask.cache_hits
    for record in (local, dask):
        assert record.status == "done"
        got = by_cell(wf, values(record))
        for cell, want in zip(graph.cells, expected, strict=True):
            if cell.parameter_cell:
                continue
            assert set(got[cell.id]) == set(cell.outputs), (record.executor, cell.id)
            for name, value in want.items():
                assert_same(f"{record.executor}:{name}@{cell.id}", value, got[cell.id][name])
    run = json.loads((Path(local.directory) / "run.json").read_text())
    assert run["workflow_hash"] == wf.hash and run["status"] == "done"
    assert run["environment"]["python_version"] and run["environment"]["packages"]
    for node in run["nodes"].values():
        assert node["exit_code"] == 0 and Path(node["log"]).is_file()
        assert node["seconds"] is not None and node["cache_key"]


def _edit(path: Path, edit: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc))


def test_t30_one_component_twice_and_same_type_ports(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["a = 1", "b = a + 1", "d = a * 10 + b"], export_all=True)
    node = {n.cell: n for n in wf.nodes.values()}
    path = tmp_path / "wf" / "workflow.yaml"

    def twice(doc: dict[str, Any]) -> None:
        inc = doc["nodes"].pop(node["c1"].id)
        doc["nodes"]["inc1"] = inc
        doc["nodes"]["inc2"] = dict(inc)
        src, comb = node["c0"].id, node["c2"].id
        doc["edges"] = [
            {"from": f"{src}.a", "to": "inc1.a"},
            {"from": "inc1.b", "to": "inc2.a"},
            {"from": f"{src}.a", "to": f"{comb}.a"},
            {"from": "inc2.b", "to": f"{comb}.b"},
        ]

    _edit(path, twice)
    wf = load_workflow(path)
    assert wf.nodes["inc1"].hash == wf.nodes["inc2"].hash
    got = values(run_workflow(wf, LocalBackend(2)))
    assert got["inc1"] == {"b": 2} and got["inc2"] == {"b": 3}
    assert got[node["c2"].id] == {"d": 13}  # a=1, b=3: not 31 (ports swapped)


def test_cache_hits_and_the_downstream_cone_of_an_edited_cell(tmp_path: Path) -> None:
    cells = ["a = 1", "b = a + 1", "c = b * 2", "d = a + 100", "e = c + d"]
    wf = make_workflow(tmp_path, cells, export_all=True)
    first = run_workflow(wf, LocalBackend(2))
    assert not first.cache_hits
    again = run_workflow(load_workflow(tmp_path / "wf"), LocalBackend(2))
    assert again.cache_hits == sorted(wf.nodes)
    assert values(again) == values(first)
    assert all(r.log is None for r in again.nodes.values())  # nothing ran
    forced = run_workflow(wf, LocalBackend(2), force=True)
    assert not forced.cache_hits
    assert not run_workflow(wf, LocalBackend(2), use_cache=False).cache_hits

    cells[1] = "b = a + 2  # edited"
    wf2 = make_workflow(tmp_path, cells, export_all=True)
    edited = run_workflow(wf2, LocalBackend(2))
    status = {wf2.nodes[n].cell: r.status for n, r in edited.nodes.items()}
    assert status == {"c0": "cached", "c1": "done", "c2": "done", "c3": "cached", "c4": "done"}
    assert by_cell(wf2, values(edited))["c4"] == {"e": 6 + 101}

    cells[2] = "c = 2 * b  # same value, new code"
    wf3 = make_workflow(tmp_path, cells, export_all=True)
    status = {wf3.nodes[n].cell: r.status for n, r in run_workflow(wf3).nodes.items()}
    assert status["c2"] == "done" and status["c4"] == "cached"  # same inputs: no re-run


def test_params_override_and_invalidate(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["param_n = 3", "x = param_n * 2", "y = x + 1"])
    got = by_cell(wf, values(run_workflow(wf, params={"param_n": 5})))
    assert got["c1"] == {"x": 10}
    with pytest.raises(ValueError, match=r"unknown parameter 'param_m'.*param_n"):
        run_workflow(wf, params={"param_m": 1})
    with pytest.raises(ValueError, match=r"parameter 'param_n' is str '5x', but node .* int"):
        run_workflow(wf, params={"param_n": "5x"})


def test_validation_errors_name_the_node_and_port(tmp_path: Path) -> None:
    make_workflow(tmp_path, ["a = 1", "b = a + 1", "c = b * 2", "d = 4"], export_all=True)
    path = tmp_path / "wf" / "workflow.yaml"
    original = path.read_text()
    wf = load_workflow(path)
    assert [w.code for w in wf.warnings] == ["W-WF-UNCONNECTED"]
    nodes = {n.cell: n.id for n in wf.nodes.values()}
    a, b, c = nodes["c0"], nodes["c1"], nodes["c2"]

    def codes(edit: Any) -> list[tuple[str, str | None]]:
        path.write_text(original)
        _edit(path, edit)
        with pytest.raises(WorkflowInvalid) as info:
            load_workflow(path)
        assert str(path) in str(info.value)
        return [(d.code, d.name) for d in info.value.diagnostics]

    assert codes(lambda d: d["edges"].pop(0)) == [("E-WF-UNBOUND", f"{b}.a")]
    twice = codes(lambda d: d["edges"].append({"from": f"{c}.c", "to": f"{b}.a"}))
    assert ("E-WF-BOUND-TWICE", f"{b}.a") in twice and ("E-WF-CYCLE", None) in twice
    assert codes(lambda d: d["edges"].append({"from": f"{a}.zz", "to": f"{c}.q"})) == [
        ("E-WF-PORT", f"{a}.zz"),
        ("E-WF-PORT", f"{c}.q"),
    ]
    assert codes(lambda d: d["edges"].append({"from": "nope.x", "to": f"{c}.b"})) == [
        ("E-WF-PORT", "nope")
    ]
    assert codes(lambda d: d["nodes"][a].update(hash="0" * 64)) == [("E-WF-COMPONENT", a)]
    assert codes(lambda d: d["nodes"][c].update(map={"over": "zz"})) == [("E-WF-MAP", c)]

    path.write_text(original)
    comp = Path(tmp_path / "wf" / load_workflow(path).nodes[b].component) / "component.json"
    meta = json.loads(comp.read_text())
    meta["inputs"][0]["type"] = "str"
    comp.write_text(json.dumps(meta))
    comp_a = tmp_path / "wf" / load_workflow(path, validate=False).nodes[a].component
    meta_a = json.loads((comp_a / "component.json").read_text())
    meta_a["outputs"][0]["type"] = "int"
    (comp_a / "component.json").write_text(json.dumps(meta_a))
    with pytest.raises(WorkflowInvalid, match=r"E-WF-TYPE.*int does not fit input type str"):
        load_workflow(path)

    (tmp_path / "bad.yaml").write_text("schema: other\n")
    with pytest.raises(ValueError, match=r"expected 'insitu\.workflow/1'"):
        load_workflow(tmp_path / "bad.yaml")


def test_a_failing_node_stops_its_downstream_cone(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["a = 1", "b = 1 / (a - 1)", "c = b + 1", "d = a + 2"])
    nodes = {n.cell: n.id for n in wf.nodes.values()}
    with pytest.raises(WorkflowFailed) as info:
        run_workflow(wf, LocalBackend(2))
    record = info.value.record
    failed = record.nodes[nodes["c1"]]
    assert (failed.status, failed.exit_code) == ("failed", 1)
    assert failed.log and "ZeroDivisionError" in Path(failed.log).read_text()
    assert f"node {nodes['c1']!r} exited with 1 (log: {failed.log})" in str(info.value)
    assert record.nodes[nodes["c2"]].status == "skipped"
    assert record.nodes[nodes["c3"]].status == "done"
    assert json.loads((Path(record.directory) / "run.json").read_text())["status"] == "failed"

    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    done = subprocess.run(
        [sys.executable, "-m", "insitu.cli", "workflow", "run", str(tmp_path / "wf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "E-WF-NODE-FAILED" in done.stderr and f"{nodes['c1']}: failed" in done.stderr
    assert "ZeroDivisionError" in done.stderr


def test_t06_hidden_mutation_reported_by_the_executor(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["l = []", "def add(v):\n    v.append(1)", "add(l)", "print(l)"])
    record = run_workflow(wf, LocalBackend(2), check_mutation=True)
    warned = {wf.nodes[n].cell: r.warnings for n, r in record.nodes.items()}
    assert warned["c2"] == ["W-HIDDEN-MUTATION: l"] and warned["c3"] == []


def test_map_fans_out_over_a_list(tmp_path: Path, dask_client: Any) -> None:
    cells = ["items = [1, 2, 3, 4, 5]", "sq = items * 10", "total = sum(sq)", "n = total + 1"]
    wf = make_workflow(tmp_path, cells, export_all=True)
    nodes = {n.cell: n.id for n in wf.nodes.values()}
    path = tmp_path / "wf" / "workflow.yaml"
    _edit(path, lambda d: d["nodes"][nodes["c1"]].update(map={"over": "items", "max_branches": 2}))
    wf = load_workflow(path)
    for backend in (LocalBackend(2), DaskBackend(dask_client)):
        record = run_workflow(wf, backend, use_cache=False)
        got = values(record)
        assert got[nodes["c1"]] == {"sq": [10, 20, 30, 40, 50]}
        assert got[nodes["c2"]] == {"total": 150}
        assert record.nodes[nodes["c1"]].branches == 5
    _edit(path, lambda d: d["nodes"][nodes["c3"]].update(map={"over": "total"}))
    with pytest.raises(WorkflowFailed, match=r"E-WF-MAP.*'total', which is a int, not a list"):
        run_workflow(load_workflow(path), LocalBackend(2), use_cache=False)


def test_cli_from_notebook_and_run_local_and_dask(tmp_path: Path) -> None:
    nbformat.write(
        notebook_from_sources(["param_n = 3", "x = param_n * 2", "y = x + 1\nprint(y)"]),
        tmp_path / "nb.ipynb",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    cli = [sys.executable, "-m", "insitu.cli", "workflow"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args], env=env, capture_output=True, text=True, timeout=300, check=False
        )

    made = run("from-notebook", str(tmp_path / "nb.ipynb"), "--out", str(tmp_path / "wf"))
    assert made.returncode == 0, made.stderr
    assert "2 nodes, 1 edges, params param_n" in made.stdout
    local = run("run", str(tmp_path / "wf"), "--param", "param_n=5", "--workers", "2")
    assert local.returncode == 0, local.stderr
    assert "[2/2]" in local.stderr and "2 nodes done (0 from the cache)" in local.stdout
    dask = run("run", str(tmp_path / "wf"), "--executor", "dask", "--workers", "1", "--no-cache")
    assert dask.returncode == 0, dask.stderr
    runs = sorted((tmp_path / "wf" / "runs").glob("*/run.json"))
    records = [json.loads(p.read_text()) for p in runs]
    assert sorted(r["executor"] for r in records) == ["dask", "local"]
    for r in records:
        x = next(n for n in r["nodes"].values() if "x" in n["outputs"])
        assert x["outputs"]["x"]["value"] == (10 if r["executor"] == "local" else 6)
    bad = run("run", str(tmp_path / "wf"), "--param", "param_m=1")
    assert bad.returncode != 0 and "unknown parameter 'param_m'" in bad.stderr
