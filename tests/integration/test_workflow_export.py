"""Workflow export: CWL v1.2 checked by the real cwltool (``--validate`` on every tool and
workflow, and tiny workflows run with ``--no-container`` giving the outputs the local
executor gives: a chain with parameters and numpy/pandas/xarray values, a map fan-out, and
T30, one component used twice)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from insitu.workflows import (
    LocalBackend,
    Workflow,
    load_workflow,
    notebook_from_sources,
    read_outputs,
    run_workflow,
    workflow_from_notebook,
)
from insitu.workflows._adapter import format_of
from insitu.workflows._runtime import _insitu_read
from insitu.workflows.cwl import export_cwl
from tests.integration.workflow_corpus import assert_same

CHAIN = [
    "param_n = 4\nparam_label = 'run a'",
    "import numpy as np\narr = np.arange(param_n, dtype='float64')",
    "import pandas as pd\ndf = pd.DataFrame({'x': arr, 'y': arr * 2})\ntag = param_label + '!'",
    "import xarray as xr\nda = xr.DataArray(df['y'].to_numpy(), dims='t', name='y')",
    "total = float(da.sum()) + len(tag)\nnote = None",
]
FANOUT = ["items = [1, 2, 3, 4, 5]", "sq = items * 10", "total = sum(sq)"]


def make_workflow(tmp_path: Path, sources: list[str], **options: Any) -> Workflow:
    nbformat.write(notebook_from_sources(sources), tmp_path / "nb.ipynb")
    workflow_from_notebook(tmp_path / "nb.ipynb", tmp_path / "wf", python=sys.executable, **options)
    return load_workflow(tmp_path / "wf" / "workflow.yaml")


def edit(wf: Workflow, change: Any) -> Workflow:
    path = wf.directory / "workflow.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc))
    return load_workflow(path)


def cwltool(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real cwltool, with this interpreter's folder first on PATH (--no-container runs
    'python' from there)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [sys.executable, "-m", "cwltool", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def validate_all(export: Path) -> None:
    documents = [export / "workflow.cwl", *sorted(export.glob("components/*/tool.cwl"))]
    assert len(documents) > 1
    for doc in documents:
        done = cwltool("--validate", doc, cwd=export)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "is valid CWL" in done.stdout + done.stderr


def cwl_values(export: Path, *job: str) -> dict[str, dict[str, Any]]:
    """Run workflow.cwl with cwltool --no-container; each node's outputs, read back."""
    outdir = export.parent / "cwl-out"
    done = cwltool("--no-container", "--outdir", outdir, export / "workflow.cwl", *job, cwd=export)
    assert done.returncode == 0, done.stderr[-4000:]
    got: dict[str, dict[str, Any]] = {}

    def read(name: str, f: dict[str, Any]) -> Any:
        # the format from the basename: cwltool --outdir renames a second 'sq.json' 'sq.json_2'
        entry = {"kind": "file", "path": f["path"], "format": format_of(f["basename"])}
        return _insitu_read(name, entry, "/")

    for key, value in json.loads(done.stdout).items():
        node, port = key.rsplit("-", 1)
        got.setdefault(node, {})[port] = (
            [read(port, f) for f in value] if isinstance(value, list) else read(port, value)
        )
    return got


def local_values(wf: Workflow, **options: Any) -> dict[str, dict[str, Any]]:
    record = run_workflow(wf, LocalBackend(2), use_cache=False, **options)
    assert record.status == "done"
    return {n: read_outputs(Path(r.workdir or "") / "out") for n, r in record.nodes.items()}


def assert_parity(cwl: dict[str, dict[str, Any]], local: dict[str, dict[str, Any]]) -> None:
    assert set(cwl) == set(local)
    for node, outputs in local.items():
        assert set(cwl[node]) == set(outputs), node
        for name, value in outputs.items():
            assert_same(f"{node}.{name}", value, cwl[node][name])


def test_cwl_chain_with_params_and_data_files_matches_the_local_executor(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, CHAIN, export_all=True)
    export = export_cwl(wf, tmp_path / "cwl").parent
    validate_all(export)
    tool = yaml.safe_load(next(export.glob("components/arr-*/tool.cwl")).read_text())
    assert tool["inputs"]["param_n"]["type"] == ["null", "int"]
    assert tool["hints"]["DockerRequirement"]["dockerPull"].startswith("localhost/insitu/arr:")
    cwl = cwl_values(export)
    assert_parity(cwl, local_values(wf))
    by_cell = {wf.nodes[n].cell: n for n in wf.nodes}
    assert cwl[by_cell["c4"]]["total"] == 12.0 + len("run a!")
    # a workflow parameter given to cwltool, as --param to insitu workflow run
    cwl = cwl_values(export, "--param_n", "6", "--param_label", "b")
    assert_parity(cwl, local_values(wf, params={"param_n": 6, "param_label": "b"}))
    assert cwl[by_cell["c4"]]["total"] == 30.0 + 2


def test_cwl_map_is_a_scatter_with_the_same_outputs(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, FANOUT, export_all=True)
    by_cell = {wf.nodes[n].cell: n for n in wf.nodes}
    wf = edit(wf, lambda d: d["nodes"][by_cell["c1"]].update(map={"over": "items"}))
    export = export_cwl(wf, tmp_path / "cwl").parent
    validate_all(export)
    step = yaml.safe_load((export / "workflow.cwl").read_text())["steps"][by_cell["c1"]]
    assert step["scatter"] == ["items"]
    assert step["in"]["items"]["source"] == f"{by_cell['c0']}/items__items"
    cwl = cwl_values(export)
    assert cwl[by_cell["c1"]]["sq"] == [10, 20, 30, 40, 50]
    assert cwl[by_cell["c2"]]["total"] == 150
    assert_parity(cwl, local_values(wf))


def test_t30_one_component_twice_exports_one_tool_two_steps(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["a = 1", "b = a + 1", "d = a * 10 + b"], export_all=True)
    node = {n.cell: n.id for n in wf.nodes.values()}

    def twice(doc: dict[str, Any]) -> None:
        inc = doc["nodes"].pop(node["c1"])
        doc["nodes"]["inc1"], doc["nodes"]["inc2"] = inc, dict(inc)
        src, comb = node["c0"], node["c2"]
        doc["edges"] = [
            {"from": f"{src}.a", "to": "inc1.a"},
            {"from": "inc1.b", "to": "inc2.a"},
            {"from": f"{src}.a", "to": f"{comb}.a"},
            {"from": "inc2.b", "to": f"{comb}.b"},
        ]

    wf = edit(wf, twice)
    export = export_cwl(wf, tmp_path / "cwl").parent
    validate_all(export)
    steps = yaml.safe_load((export / "workflow.cwl").read_text())["steps"]
    assert steps["inc1"]["run"] == steps["inc2"]["run"]
    assert len(list(export.glob("components/*/tool.cwl"))) == 3
    assert steps[node["c2"]]["in"] == {
        "a": {"source": f"{node['c0']}/a"},
        "b": {"source": "inc2/b"},
    }
    cwl = cwl_values(export)
    assert cwl["inc1"] == {"b": 2} and cwl["inc2"] == {"b": 3} and cwl[node["c2"]] == {"d": 13}
    assert_parity(cwl, local_values(wf))


def test_cwl_export_refuses_a_map_over_a_mapped_output(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["xs = [[1], [2]]", "ys = xs", "zs = ys"], export_all=True)
    by_cell = {wf.nodes[n].cell: n for n in wf.nodes}

    def maps(doc: dict[str, Any]) -> None:
        doc["nodes"][by_cell["c1"]]["map"] = {"over": "xs"}
        doc["nodes"][by_cell["c2"]]["map"] = {"over": "ys"}

    wf = edit(wf, maps)
    with pytest.raises(ValueError, match=r"nested maps do not export to CWL"):
        export_cwl(wf, tmp_path / "cwl")


def test_cli_export_cwl(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, [*FANOUT[:1], "n = len(items)"])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "insitu.cli",
            "workflow",
            "export",
            str(wf.directory),
            "--to",
            "cwl",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (wf.directory / "export-cwl" / "workflow.cwl").is_file()
    assert "cwltool --validate" in done.stdout
