"""Generated components actually run: each notebook is run top to bottom in one IPython
namespace, recording every output of every cell right after the cell ran; then each
cell's task.py runs in its own process (inputs.json → OUT/outputs.json, inputs taken from
the producers' outputs) and must give the same values. The start of the differential test
of the workflows specification; test_workflow_run.py runs the same corpus
(workflow_corpus.py) as workflows with the local and Dask executors. Also the runtime
halves of T12 (E-OUTPUT-UNDEFINED), T27 (E-OUTPUT-NOT-SERIALIZABLE) and T28 (a 50 MB
DataFrame goes to parquet, not inline)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from insitu.workflows import Extraction, extract, notebook_from_sources, read_outputs
from tests.integration.workflow_corpus import (
    AWAIT_FUTURE,
    CLASSES,
    CONTROL_FLOW,
    DEMO_ANOMALY,
    DEMO_DATASET,
    DEMO_OPEN,
    FUNCTIONS,
    GROUPBY,
    MAGICS,
    NUMPY_PANDAS,
    PAPERMILL,
    assert_same,
    run_in_one_namespace,
)


def run_task(
    task_py: Path,
    inputs: dict[str, Any],
    work: Path,
    env: dict[str, str] | None = None,
    flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``python task.py --inputs work/inputs.json --outdir work/out``, as every backend runs it."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "inputs.json").write_text(json.dumps(inputs))
    return subprocess.run(
        [
            sys.executable,
            str(task_py),
            "--inputs",
            str(work / "inputs.json"),
            "--outdir",
            str(work / "out"),
            *flags,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=work,
    )


def run_chain(result: Extraction, work: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run every component in notebook order, feeding each the outputs it reads; return the
    outputs of every cell by cell id."""
    outdirs: dict[str, Path] = {}
    values: dict[str, Any] = {}
    for comp in result.components:
        assert comp.directory is not None
        node = result.graph.cell(comp.cell)
        inputs = {}
        for edge in node.inputs:
            entry = json.loads((outdirs[edge.producer] / "outputs.json").read_text())[edge.name]
            if entry["kind"] == "file":
                entry["path"] = str(outdirs[edge.producer] / entry["path"])
            inputs[edge.name] = entry
        run = work / comp.cell
        done = run_task(comp.directory / "task.py", inputs, run, env)
        assert done.returncode == 0, (comp.cell, done.stderr)
        outdirs[comp.cell] = run / "out"
        values[comp.cell] = read_outputs(run / "out")
    return values


def differential(
    tmp_path: Path, sources: list[str], env: dict[str, str] | None = None
) -> Extraction:
    nb = notebook_from_sources(sources)
    nbformat.write(nb, tmp_path / "nb.ipynb")
    result = extract(tmp_path / "nb.ipynb", tmp_path / "components", python=sys.executable)
    assert result.ok, [d for c in result.graph.cells for d in c.errors]
    cells = result.graph.cells
    old = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        expected = run_in_one_namespace(sources, [c.outputs for c in cells])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    got = run_chain(result, tmp_path / "runs", env)
    for cell, want in zip(cells, expected, strict=True):
        if cell.parameter_cell:
            continue
        assert set(got[cell.id]) == set(cell.outputs)
        for name, value in want.items():
            assert_same(f"{name}@{cell.id}", value, got[cell.id][name])
    return result


def test_functions_mutation_and_parameters(tmp_path: Path) -> None:
    result = differential(
        tmp_path,
        FUNCTIONS,
    )
    assert [e.label for e in result.graph.cell("c3").inputs] == ["base@c1"]
    assert result.graph.cell("c5").params == ("param_scale",)


def test_numpy_and_pandas(tmp_path: Path) -> None:
    differential(
        tmp_path,
        NUMPY_PANDAS,
    )


def test_magics_and_shell(tmp_path: Path) -> None:
    result = differential(
        tmp_path,
        MAGICS,
    )
    codes = [d.code for d in result.graph.diagnostics]
    assert codes.count("W-MAGIC-DROPPED") == 2  # %load_ext, and %time kept its statement


def test_classes_closures_and_globals(tmp_path: Path) -> None:
    result = differential(
        tmp_path,
        CLASSES,
    )
    assert "count" in result.graph.cell("c4").outputs
    assert {e.name for e in result.graph.cell("c6").code} >= {"Scaler", "make_adder"}


def test_control_flow_imports_and_walrus(tmp_path: Path) -> None:
    differential(
        tmp_path,
        CONTROL_FLOW,
    )


def test_top_level_await_and_future_imports(tmp_path: Path) -> None:
    differential(
        tmp_path,
        AWAIT_FUTURE,
    )


def test_papermill_parameters_cell(tmp_path: Path) -> None:
    nb = notebook_from_sources(PAPERMILL)
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, tmp_path / "nb.ipynb")
    result = extract(tmp_path / "nb.ipynb", tmp_path / "components", python=sys.executable)
    params = {p.name: (p.kind, p.default) for p in result.graph.params}
    assert params == {
        "years": ("param", [1990, 2000]),
        "label": ("param", "run a"),
        "root": ("conf", None),
    }
    assert "c0" in result.skipped
    got = run_chain(result, tmp_path / "runs")
    assert got["c2"] == {} and got["c1"] == {"span": 10, "name": "RUN A:/tmp/x"}


@pytest.fixture(scope="module")
def demo_catalog(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> str:
    from insitu.catalog import Catalog

    uri = f"sqlite:///{tmp_path_factory.mktemp('wfcat') / 'catalog.db'}"
    with Catalog(uri) as cat:
        cat.add_collection("demo", demo_root, template="cmip6")
        cat.scan(workers=1)
    return uri


def test_demo_archive_through_open_dataset(tmp_path: Path, demo_catalog: str) -> None:
    dataset = DEMO_DATASET
    result = differential(
        tmp_path,
        DEMO_OPEN,
        env={"INSITU_CATALOG__URI": demo_catalog},
    )
    c2 = result.graph.cell("c2")
    assert c2.outputs == ("ta",) and c2.params == ("param_dataset",)
    (comp,) = [c for c in result.components if c.cell == "c2"]
    assert json.loads((comp.directory / "component.json").read_text())["params"] == [  # type: ignore[operator]
        {"name": "param_dataset", "type": "str", "default": dataset}
    ]


def test_demo_archive_multi_model_anomaly(tmp_path: Path, demo_catalog: str) -> None:
    differential(
        tmp_path,
        DEMO_ANOMALY,
        env={"INSITU_CATALOG__URI": demo_catalog},
    )


def test_pandas_groupby_and_strings(tmp_path: Path) -> None:
    differential(
        tmp_path,
        GROUPBY,
    )


def _one(
    tmp_path: Path, sources: list[str], cell: str, inputs: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    result = extract(notebook_from_sources(sources), tmp_path / "c", python=sys.executable)
    (comp,) = [c for c in result.components if c.cell == cell]
    assert comp.directory is not None
    return run_task(comp.directory / "task.py", inputs, tmp_path)


def test_t12_maybe_written_output_not_bound_fails(tmp_path: Path) -> None:
    done = _one(
        tmp_path,
        ["flag = True", "if flag:\n    z = 1", "print(z)"],
        "c1",
        {"flag": {"kind": "json", "value": False}},
    )
    assert done.returncode == 3
    assert "E-OUTPUT-UNDEFINED" in done.stderr and "'z'" in done.stderr


def test_t27_open_file_output_fails_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    done = _one(
        tmp_path,
        [
            f"p = {str(tmp_path / 'x.txt')!r}",
            "with open(p) as fh:\n    text = fh.read()",
            "print(fh, text)",
        ],
        "c1",
        {"p": {"kind": "json", "value": str(tmp_path / "x.txt")}},
    )
    assert done.returncode == 4
    assert "E-OUTPUT-NOT-SERIALIZABLE" in done.stderr and "'fh'" in done.stderr


def test_t28_large_dataframe_goes_to_parquet(tmp_path: Path) -> None:
    done = _one(
        tmp_path,
        [
            "import numpy as np\nimport pandas as pd",
            "df = pd.DataFrame(np.arange(6_553_600, dtype='float64').reshape(-1, 8))",
            "print(df.shape)",
        ],
        "c1",
        {},
    )
    assert done.returncode == 0, done.stderr
    entry = json.loads((tmp_path / "out" / "outputs.json").read_text())["df"]
    assert (entry["kind"], entry["format"], entry["path"]) == ("file", "parquet", "df.parquet")
    assert "value" not in entry
    assert read_outputs(tmp_path / "out")["df"].shape == (819_200, 8)  # 50 MiB of float64


def test_secret_comes_from_the_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = ["secret_token = 'never-stored'", "n = len(secret_token)", "print(n)"]
    result = extract(notebook_from_sources(sources), tmp_path / "c", python=sys.executable)
    (comp,) = [c for c in result.components if c.cell == "c1"]
    assert "never-stored" not in comp.task
    assert comp.directory is not None
    monkeypatch.delenv("secret_token", raising=False)
    missing = run_task(comp.directory / "task.py", {}, tmp_path)
    assert missing.returncode == 2 and "secret_token" in missing.stderr
    done = run_task(comp.directory / "task.py", {}, tmp_path, {"secret_token": "abc"})
    assert done.returncode == 0, done.stderr
    assert read_outputs(tmp_path / "out") == {"n": 3}


def test_cli_extract_json_and_exit_status(tmp_path: Path) -> None:
    nb = notebook_from_sources(
        ["%matplotlib inline\nimport numpy as np", "a = np.ones(2)", "b = a.sum() + missing"]
    )
    nbformat.write(nb, tmp_path / "nb.ipynb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    cmd = [sys.executable, "-m", "insitu.cli", "cells", "extract", str(tmp_path / "nb.ipynb")]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "c"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr  # c2 reads a name no cell defines
    cells = {c["cell"]: c for c in json.loads(done.stdout)}
    assert cells["c1"]["inputs"] == [] and cells["c1"]["imports"] == ["numpy"]
    assert cells["c1"]["outputs"] == ["a"]
    assert [w["code"] for w in cells["c0"]["warnings"]] == ["W-MAGIC-DROPPED"]
    assert [(w["code"], w["name"]) for w in cells["c2"]["warnings"]] == [
        ("E-UNRESOLVED", "missing")
    ]
    made = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(made) == 3 and all((tmp_path / "c" / m / "task.py").exists() for m in made)
    one = subprocess.run(
        [*cmd, "--cells", "1"], env=env, capture_output=True, text=True, timeout=300
    )
    assert one.returncode == 0, one.stderr
    assert one.stdout.startswith("cell c1: in -; out a -> a")


def test_t06_hidden_mutation_is_reported_with_check_mutation(tmp_path: Path) -> None:
    sources = ["l = []", "def add(v):\n    v.append(1)", "add(l)", "print(l)", "l.append(2)"]
    result = extract(notebook_from_sources(sources), tmp_path / "c", python=sys.executable)
    tasks = {c.cell: c.directory / "task.py" for c in result.components if c.directory}
    lst = {"l": {"kind": "json", "value": []}}
    for cell, check, hidden in (("c2", True, ["l"]), ("c4", True, []), ("c2", False, None)):
        work = tmp_path / f"{cell}-{check}"
        done = run_task(tasks[cell], lst, work, flags=("--check-mutation",) if check else ())
        assert done.returncode == 0, done.stderr
        checks = work / "out" / "checks.json"
        if hidden is None:
            assert not checks.exists() and "W-HIDDEN-MUTATION" not in done.stderr
        else:
            assert json.loads(checks.read_text()) == {"W-HIDDEN-MUTATION": hidden}
            assert ("W-HIDDEN-MUTATION" in done.stderr) == bool(hidden)


def test_shipped_example_notebooks_extract_cleanly() -> None:
    notebooks = sorted((Path(insitu_pkg_dir()) / "hub" / "notebooks").glob("*.ipynb"))
    assert notebooks
    for nb in notebooks:
        result = extract(nb, python=sys.executable)
        assert result.ok, (nb.name, [d for d in result.graph.diagnostics])
        assert len(result.components) >= 4, nb.name
        for comp in result.components:
            compile(comp.task, f"{nb.name}:{comp.dirname}", "exec")


def insitu_pkg_dir() -> str:
    import insitu

    return str(Path(insitu.__file__).parent)
