"""Workflow export: CWL v1.2 checked by the real cwltool (``--validate`` on every tool and
workflow, and tiny workflows run with ``--no-container`` giving the outputs the local
executor gives: a chain with parameters and numpy/pandas/xarray values, a map fan-out, and
T30, one component used twice); Argo manifests checked offline against Hera's models of the
Argo API (there is no cluster here), their pods' script run here as Argo would run it (T28:
a large output goes as an artifact, the parameters of a pod stay under the budget, a map
with withParam merged like the executors' merge)."""

from __future__ import annotations

import json
import os
import shutil
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
from insitu.workflows.argo import argo_workflow, export_argo, validate_argo
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


def insitu(*args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "insitu.cli", *map(str, args)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


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


def cwl_values(
    export: Path, *job: str, engine: tuple[str, ...] = ("--no-container",)
) -> dict[str, dict[str, Any]]:
    """Run workflow.cwl with cwltool (--no-container by default); each node's outputs."""
    outdir = export.parent / "cwl-out"
    done = cwltool(*engine, "--outdir", outdir, export / "workflow.cwl", *job, cwd=export)
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


def one_component_twice(tmp_path: Path) -> tuple[Workflow, dict[str, str]]:
    """T30: the component of ``b = a + 1`` used by nodes inc1 and inc2 (inc2 reads inc1's
    b as its a), and ``d = a * 10 + b`` reading two same-type ports by name."""
    wf = make_workflow(tmp_path, ["a = 1", "b = a + 1", "d = a * 10 + b"], export_all=True)
    node = {n.cell or "": n.id for n in wf.nodes.values()}

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

    return edit(wf, twice), node


def test_t30_one_component_twice_exports_one_tool_two_steps(tmp_path: Path) -> None:
    wf, node = one_component_twice(tmp_path)
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


def test_cwl_stages_the_notebooks_local_modules(tmp_path: Path) -> None:
    (tmp_path / "helper.py").write_text("def double(v):\n    return 2 * v\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("OFFSET = 100\n")
    cells = ["a = 4", "import helper\nfrom tools import OFFSET\nb = helper.double(a) + OFFSET"]
    wf = make_workflow(tmp_path, cells, export_all=True)
    export = export_cwl(wf, tmp_path / "cwl").parent
    validate_all(export)
    by_cell = {wf.nodes[n].cell: n for n in wf.nodes}
    cwl = cwl_values(export)
    assert cwl[by_cell["c1"]] == {"b": 108}
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


# --------------------------------------------------------------------------- Argo
def argo_task(doc: dict[str, Any], task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A DAG task of the manifest and its template."""
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    tasks = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    return tasks[task], templates[tasks[task]["template"]]


def run_pod(
    wf: Workflow, doc: dict[str, Any], node: str, root: Path, **values: str
) -> dict[str, Any]:
    """What a pod of ``node`` does, here: the template's own command and the manifest's
    adapter (the ``insitu-adapter`` parameter), its spec
    (task.py from the component folder instead of the image's /component), the values Argo
    would substitute; the output parameters it leaves for Argo, parsed."""
    task, template = argo_task(doc, node)
    args = {p["name"]: p["value"] for p in task["arguments"]["parameters"]}
    spec = json.loads(args["spec"])
    spec["task"] = str(wf.component_dir(node) / "task.py")
    boot = template["container"]["command"][2]
    adapter = {p["name"]: p["value"] for p in doc["spec"]["arguments"]["parameters"]}
    assert template["container"]["args"][0] == "{{workflow.parameters.insitu-adapter}}"
    argv = [f"{k}={v}" for k, v in values.items()]
    done = subprocess.run(
        [sys.executable, "-c", boot, adapter["insitu-adapter"], "argo", json.dumps(spec), *argv],
        env={**os.environ, "INSITU_ARGO_ROOT": str(root)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return {p.name: json.loads(p.read_text()) for p in (root / "params").iterdir()}


def test_argo_manifest_validates_offline_and_has_the_dag(tmp_path: Path) -> None:
    cells = ["param_n = 3\nsecret_k = 'x'", "items = list(range(param_n))\nk = len(secret_k)"]
    wf = make_workflow(tmp_path, [*cells, *FANOUT[1:]], export_all=True)
    by_cell = {wf.nodes[n].cell: n for n in wf.nodes}
    doc = argo_workflow(wf)
    validate_argo(doc)
    assert doc["spec"]["arguments"]["parameters"][0] == {"name": "param_n", "value": "3"}
    task, template = argo_task(doc, by_cell["c1"])
    assert {"name": "param_n", "value": "{{workflow.parameters.param_n}}"} in task["arguments"][
        "parameters"
    ]
    env = template["container"]["env"]
    assert env == [
        {
            "name": "secret_k",
            "valueFrom": {"secretKeyRef": {"name": "nb-secrets", "key": "secret_k"}},
        }
    ]
    for storage in ("artifacts", "pvc"):
        path = export_argo(wf, tmp_path / storage, storage=storage, artifact_repository="s3-main")
        validate_argo(yaml.safe_load(path.read_text()))
    pvc = yaml.safe_load((tmp_path / "pvc" / "workflow.yaml").read_text())["spec"]
    assert pvc["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteMany"]
    art = yaml.safe_load((tmp_path / "artifacts" / "workflow.yaml").read_text())["spec"]
    assert art["artifactRepositoryRef"] == {"configMap": "artifact-repositories", "key": "s3-main"}


def test_argo_validation_rejects_what_the_api_does_not_have(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["a = 1", "b = a + 1"])
    doc = argo_workflow(wf)
    doc["spec"]["templates"][1]["container"]["imagePulPolicy"] = "Always"
    with pytest.raises(ValueError, match=r"\.container\.imagePulPolicy"):
        validate_argo(doc)
    doc = argo_workflow(wf)
    doc["spec"]["templates"][0]["dag"]["tasks"][1]["dependencies"] = ["nope"]
    with pytest.raises(ValueError, match=r"depends on unknown tasks \['nope'\]"):
        validate_argo(doc)
    doc = argo_workflow(wf)
    doc["spec"]["entrypoint"] = 3
    with pytest.raises(ValueError, match="not a valid Argo Workflow"):
        validate_argo(doc)


def test_t28_argo_a_large_output_goes_as_an_artifact_not_a_parameter(tmp_path: Path) -> None:
    cells = [
        "import numpy as np\nimport pandas as pd\n"
        "df = pd.DataFrame({'x': np.random.default_rng(0).random(6_600_000)})",  # ~50 MB
        "n = len(df)",
        "print(n)",
    ]
    wf = make_workflow(tmp_path, cells)
    by_cell = {wf.nodes[n].cell: n for n in wf.nodes}
    doc = yaml.safe_load(export_argo(wf, tmp_path / "argo").read_text())
    _, producer = argo_task(doc, by_cell["c0"])
    assert {"name": "df", "path": "/insitu/ports/df"} in producer["outputs"]["artifacts"]
    consumer, _ = argo_task(doc, by_cell["c1"])
    assert consumer["arguments"]["artifacts"] == [
        {"name": "in-df", "from": f"{{{{tasks.{by_cell['c0']}.outputs.artifacts.df}}}}"}
    ]
    out = run_pod(wf, doc, by_cell["c0"], tmp_path / "pod0")
    assert out["df"] == {"kind": "file", "format": "parquet", "path": "df.parquet"}
    data = tmp_path / "pod0" / "ports" / "df" / "df.parquet"
    assert data.stat().st_size > 40_000_000
    # what Argo does with the artifact: the consumer pod finds it under /insitu/in/df
    (tmp_path / "pod1" / "in").mkdir(parents=True)
    (tmp_path / "pod0" / "ports" / "df").rename(tmp_path / "pod1" / "in" / "df")
    out = run_pod(wf, doc, by_cell["c1"], tmp_path / "pod1", **{"in-df": json.dumps(out["df"])})
    assert out["n"]["kind"] == "json" and out["n"]["value"] == 6_600_000


def test_argo_parameters_of_one_pod_stay_under_the_budget(tmp_path: Path) -> None:
    cell = "\n".join(f"{v} = '{v}' * 60_000" for v in "abcde")  # five inline values, 300 kB
    wf = make_workflow(tmp_path, [cell], export_all=True)
    doc = argo_workflow(wf)
    out = run_pod(wf, doc, next(iter(wf.nodes)), tmp_path / "pod")
    sizes = {n: len(json.dumps(v)) for n, v in out.items() if not n.endswith("-items")}
    assert sum(sizes.values()) < 256 * 1024
    by_ref = [n for n, v in out.items() if v.get("kind") == "file"]
    assert len(by_ref) == 1 and out[by_ref[0]]["path"] == f"{by_ref[0]}.json"
    assert (tmp_path / "pod" / "ports" / by_ref[0] / f"{by_ref[0]}.json").is_file()


def test_argo_map_is_with_param_and_merges_like_the_executor(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, FANOUT, export_all=True)
    node = {wf.nodes[n].cell: n for n in wf.nodes}
    wf = edit(wf, lambda d: d["nodes"][node["c1"]].update(map={"over": "items"}))
    doc = argo_workflow(wf)
    validate_argo(doc)
    mapped, _ = argo_task(doc, node["c1"])
    assert mapped["withParam"] == f"{{{{tasks.{node['c0']}.outputs.parameters.items-items}}}}"
    items = run_pod(wf, doc, node["c0"], tmp_path / "p0")["items-items"]
    assert [e["value"] for e in items] == [1, 2, 3, 4, 5]
    branches = [  # Argo runs one pod per element, {{item}} its JSON
        run_pod(wf, doc, node["c1"], tmp_path / f"b{k}", **{"in-items": json.dumps(item)})["sq"]
        for k, item in enumerate(items)
    ]
    # a later task reads the branches' parameter as one JSON list of their values
    gathered = json.dumps([json.dumps(b) for b in branches])
    out = run_pod(wf, doc, node["c2"], tmp_path / "p2", **{"in-sq": gathered})
    assert out["total"]["value"] == 150


def test_t30_argo_one_template_two_tasks(tmp_path: Path) -> None:
    wf, node = one_component_twice(tmp_path)
    doc = argo_workflow(wf)
    validate_argo(doc)
    (_, tpl1), (t2, tpl2) = argo_task(doc, "inc1"), argo_task(doc, "inc2")
    assert tpl1 is tpl2 and len(doc["spec"]["templates"]) == 4  # main + 3 components
    assert t2["dependencies"] == ["inc1"]
    comb, _ = argo_task(doc, node["c2"])
    values = {p["name"]: p["value"] for p in comb["arguments"]["parameters"]}
    assert values["in-b"] == "{{tasks.inc2.outputs.parameters.b}}"
    assert values["in-a"] == f"{{{{tasks.{node['c0']}.outputs.parameters.a}}}}"


def test_cli_export_argo(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["a = 1", "b = a + 1"])
    done = subprocess.run(
        [
            *(sys.executable, "-m", "insitu.cli", "workflow", "export", str(wf.directory)),
            *("--to", "argo", "--storage", "pvc", "--out", str(tmp_path / "argo")),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "no cluster used" in done.stdout
    validate_argo(yaml.safe_load((tmp_path / "argo" / "workflow.yaml").read_text()))


# --------------------------------------------------------------------------- images
def test_build_without_an_engine_says_so(tmp_path: Path) -> None:
    wf = make_workflow(tmp_path, ["a = 1", "b = a + 1"])
    done = insitu("workflow", "build", wf.directory, PATH=str(tmp_path / "no-engine-here"))
    assert done.returncode == 1
    assert "No container engine here: neither podman nor buildah" in done.stderr
    assert "scripts/podman.sh image" in done.stderr


def test_build_without_the_base_image_says_so(tmp_path: Path) -> None:
    assert shutil.which("podman"), "podman is needed: scripts/podman.sh image installs it"
    wf = make_workflow(tmp_path, ["a = 1", "b = a + 1"])
    done = insitu("workflow", "build", wf.directory, "--base-image", "localhost/insitu-no-base:0")
    assert done.returncode == 1
    assert "'localhost/insitu-no-base:0' is not on this machine" in done.stderr


def test_built_images_run_the_cwl_export_with_the_same_outputs(tmp_path: Path) -> None:
    """The real thing: podman builds each component's image offline from the local base
    image (scripts/podman.sh makes it), and cwltool runs the exported workflow in them."""
    assert shutil.which("podman"), "podman is needed: scripts/podman.sh image installs it"
    cells = ["import numpy as np\narr = np.arange(4.0)\nitems = [1, 2, 3]", *FANOUT[1:]]
    wf = make_workflow(tmp_path, [*cells, "r = float(arr.sum()) + total"], export_all=True)
    by_cell = {wf.nodes[n].cell: n for n in wf.nodes}
    wf = edit(wf, lambda d: d["nodes"][by_cell["c1"]].update(map={"over": "items"}))
    done = insitu("workflow", "build", wf.directory)
    assert done.returncode == 0, done.stderr
    assert "of 4 images built" in done.stdout
    export = export_cwl(wf, tmp_path / "cwl").parent
    # cwltool's --podman maps the user with --userns=keep-id, which rootful podman refuses;
    # as a user-space engine it runs the images as they are
    cwl = cwl_values(export, engine=("--user-space-docker-cmd", "podman"))
    assert cwl[by_cell["c3"]]["r"] == 6.0 + 60
    assert_parity(cwl, local_values(wf))
    again = insitu("workflow", "build", wf.directory)
    assert "0 of 4 images built" in again.stdout and "already there" in again.stdout


def test_argo_manifest_holds_the_adapter_once(tmp_path: Path) -> None:
    cells = ["x0 = 0", *(f"x{i} = x{i - 1} + {i}" for i in range(1, 40)), "print(x39)"]
    wf = make_workflow(tmp_path, cells)
    path = export_argo(wf, tmp_path / "argo")
    text = path.read_text()
    doc = yaml.safe_load(text)
    assert len(doc["spec"]["templates"]) == 42  # main + one per component (41 cells)
    assert text.count("import base64, sys, zlib") == 41 and len(text) < 150_000
