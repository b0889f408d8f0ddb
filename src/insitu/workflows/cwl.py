"""Export to CWL v1.2 (``insitu workflow export WF --to cwl``): a ``tool.cwl``
CommandLineTool per component and one ``workflow.cwl`` Workflow (specification section 7).

The export is a folder that runs anywhere a CWL runner does::

    OUT/workflow.cwl                      steps, source: links, scatter for map
    OUT/components/<name>-<hash8>/        a copy of the component, plus
        tool.cwl                          its CommandLineTool
        insitu_adapter.py                 the task runtime + the adapter (_adapter.py)

Every port that carries data is a ``File`` (``OUT/<name>.<ext>``, a JSON value as
``.json``), so values of any size pass the same way (CWL's ``loadContents`` stops at 64 KiB,
an inline ``outputs.json`` entry may reach that alone); parameters are typed CWL values
(``int``, ``double``, ``string``, ``boolean``, else ``Any``). The tool runs ``python
insitu_adapter.py cwl``, which writes ``inputs.json`` from the CWL inputs (staged as
``cwl_inputs.json`` by ``InitialWorkDirRequirement``), runs ``python task.py --inputs
inputs.json --outdir task_out`` unchanged and gives each output its own file. A node with
``map`` is a scattered step over ``<port>__items`` (the producer's list, one file per
element); its outputs are then arrays of files, which the consumer's adapter turns back into
one list, as the executors' merge does. No JavaScript: no node.js needed to run it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from insitu.errors import InvalidRequest
from insitu.workflows.workflow import Workflow

__all__ = ["CWL_VERSION", "component_tool", "export_cwl", "image_name", "map_splits"]

CWL_VERSION = "v1.2"
ADAPTER = "insitu_adapter.py"
ITEMS = "__items"  # suffix of a list output's per-element files
_SCALARS = {"int": "int", "float": "double", "str": "string", "bool": "boolean"}


def image_name(metadata: dict[str, Any], prefix: str = "localhost/insitu") -> str:
    """The container image of a component: ``PREFIX/<name>:<hash12>`` (what ``insitu
    workflow build`` tags)."""
    return f"{prefix}/{metadata['name']}:{str(metadata['hash'])[:12]}"


def adapter_source() -> str:
    """``insitu_adapter.py``: the task runtime followed by the adapter, importing nothing
    of insitu."""
    here = Path(__file__).parent
    runtime = (here / "_runtime.py").read_text(encoding="utf-8")
    adapter = (here / "_adapter.py").read_text(encoding="utf-8")
    return runtime + "\n\n# --- the export adapter (insitu/workflows/_adapter.py)\n" + adapter


def param_type(param: dict[str, Any]) -> str:
    """A component parameter's CWL type (``Any`` when it has no scalar type)."""
    return _SCALARS.get(str(param.get("type")), "Any")


def _data_ports(metadata: dict[str, Any], kind: str) -> list[str]:
    return [p["name"] for p in metadata.get(kind, []) if p.get("kind", "value") != "code"]


def component_tool(
    metadata: dict[str, Any], *, image_prefix: str = "localhost/insitu"
) -> dict[str, Any]:
    """The CommandLineTool of one component (its component.json as ``metadata``)."""
    outputs = _data_ports(metadata, "outputs")
    for name in outputs:
        if name + ITEMS in outputs:
            raise InvalidRequest(
                f"component {metadata['name']!r}: outputs {name!r} and {name + ITEMS!r} "
                f"collide in CWL (the second names the first's elements); rename one"
            )
    files = {"type": ["File", {"type": "array", "items": "File"}]}
    inputs: dict[str, Any] = {name: dict(files) for name in _data_ports(metadata, "inputs")}
    for p in metadata.get("params", []):
        inputs[p["name"]] = {"type": ["null", param_type(p)], "default": p.get("default")}
        if p.get("default") is None:
            del inputs[p["name"]]["default"]
    inputs["insitu_split"] = {
        "type": {"type": "array", "items": "string"},
        "default": [],
        "doc": "Outputs to also write one file per element of (a later map runs over them)",
    }
    tool_outputs: dict[str, Any] = {}
    for name in outputs:
        tool_outputs[name] = {"type": "File", "outputBinding": {"glob": f"OUT/{name}.*"}}
        tool_outputs[name + ITEMS] = {
            "type": {"type": "array", "items": "File"},
            "outputBinding": {"glob": f"items/{name}/*"},
        }
    secrets = [s["name"] for s in metadata.get("secrets", [])]
    doc = metadata.get("description") or metadata.get("title") or metadata["name"]
    if secrets:
        doc += (
            f"\nSecrets come from environment variables only: {', '.join(secrets)} "
            f"(cwltool --preserve-environment {' --preserve-environment '.join(secrets)})."
        )
    return {
        "cwlVersion": CWL_VERSION,
        "class": "CommandLineTool",
        "id": metadata["name"],
        "label": metadata.get("title") or metadata["name"],
        "doc": doc,
        # a hint: a runner with a container engine uses the image, cwltool --no-container
        # runs the tool where it is (requirements would make --no-container refuse it)
        "hints": {"DockerRequirement": {"dockerPull": image_name(metadata, image_prefix)}},
        "requirements": {
            "InitialWorkDirRequirement": {
                "listing": [
                    {"entryname": "cwl_inputs.json", "entry": "$(inputs)"},
                    {"class": "File", "location": "task.py"},
                    {"class": "File", "location": ADAPTER},
                    *_local_modules(metadata),
                ]
            },
        },
        "baseCommand": ["python", ADAPTER, "cwl"],
        "inputs": inputs,
        "outputs": tool_outputs,
    }


def _local_modules(metadata: dict[str, Any]) -> list[dict[str, str]]:
    """Modules and packages of the notebook's folder copied into the component
    (W-LOCAL-MODULE), as File and Directory objects to stage beside task.py."""
    folder = metadata.get("_directory")
    if not folder:
        return []
    out = []
    for p in sorted(Path(folder).iterdir()):
        if p.is_dir() and (p / "__init__.py").is_file():
            out.append({"class": "Directory", "location": p.name})
        elif p.suffix == ".py" and p.name not in ("task.py", ADAPTER):
            out.append({"class": "File", "location": p.name})
    return out


def _dump(doc: dict[str, Any], path: Path) -> Path:
    import yaml  # type: ignore[import-untyped]

    text = "#!/usr/bin/env cwl-runner\n" + yaml.safe_dump(doc, sort_keys=False, width=100)
    path.write_text(text, encoding="utf-8")
    return path


def write_component_tool(
    source: Path, target: Path, *, image_prefix: str = "localhost/insitu"
) -> Path:
    """Copy the component folder ``source`` to ``target`` with its tool.cwl and adapter."""
    if source.resolve() != target.resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)
    (target / ADAPTER).write_text(adapter_source(), encoding="utf-8")
    meta = json.loads((target / "component.json").read_text(encoding="utf-8"))
    meta["_directory"] = str(target)
    return _dump(component_tool(meta, image_prefix=image_prefix), target / "tool.cwl")


def map_splits(wf: Workflow, engine: str) -> dict[str, set[str]]:
    """The outputs each node must also give element by element, for the mapped nodes that
    run over them; a map over a mapped node's output is refused (``engine`` names the
    export in the message)."""
    mapped = {nid for nid, n in wf.nodes.items() if n.map}
    split: dict[str, set[str]] = {}
    for nid, node in wf.nodes.items():
        for e in wf.inputs_of(nid):
            if node.map and node.map.over == e.target_port:
                if e.source in mapped:
                    raise InvalidRequest(
                        f"node {nid!r} maps over {e.source}.{e.source_port}, an output of "
                        f"another mapped node: nested maps do not export to {engine}; merge "
                        "the lists first (a node between them)"
                    )
                split.setdefault(e.source, set()).add(e.source_port)
    return split


def workflow_document(wf: Workflow, tools: dict[str, str]) -> dict[str, Any]:
    """The CWL Workflow of ``wf`` (validated, so node metadata is loaded); ``tools`` maps
    each node to its tool.cwl, relative to the workflow document."""
    inputs: dict[str, Any] = {}
    for nid in sorted(wf.nodes):
        for p in wf.nodes[nid].metadata.get("params", []):
            if p["name"] in wf.params and p["name"] not in inputs:
                inputs[p["name"]] = {"type": param_type(p), "default": wf.params[p["name"]]}
    split = map_splits(wf, "CWL")
    mapped = {nid for nid, n in wf.nodes.items() if n.map}
    steps: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for nid in wf.order():
        node = wf.nodes[nid]
        step_in: dict[str, Any] = {}
        scatter: list[str] = []
        for e in wf.inputs_of(nid):
            if node.map and node.map.over == e.target_port:
                step_in[e.target_port] = {"source": f"{e.source}/{e.source_port}{ITEMS}"}
                scatter.append(e.target_port)
            else:
                step_in[e.target_port] = {"source": f"{e.source}/{e.source_port}"}
        for p in node.metadata.get("params", []):
            if p["name"] in inputs:
                step_in[p["name"]] = {"source": p["name"]}
        outs = _data_ports(node.metadata, "outputs")
        steps[nid] = {
            "run": tools[nid],
            "in": step_in,
            "out": [x for name in outs for x in (name, name + ITEMS)],
        }
        if scatter:
            steps[nid]["scatter"] = scatter
        for name in outs:
            kind: Any = "File"
            if node.map:
                kind = {"type": "array", "items": "File"}
            outputs[f"{nid}-{name}"] = {"type": kind, "outputSource": f"{nid}/{name}"}
    for nid, ports in split.items():
        steps[nid]["in"]["insitu_split"] = {"default": sorted(ports)}
    requirements: dict[str, Any] = {}
    if mapped:
        requirements["ScatterFeatureRequirement"] = {}
    doc: dict[str, Any] = {
        "cwlVersion": CWL_VERSION,
        "class": "Workflow",
        "id": wf.name,
        "label": wf.name,
        "doc": f"Exported by insitu from {wf.name}'s workflow.yaml (hash {wf.hash[:12]}).",
    }
    if requirements:
        doc["requirements"] = requirements
    doc.update({"inputs": inputs, "outputs": outputs, "steps": steps})
    return doc


def export_cwl(
    wf: Workflow, out: str | os.PathLike[str], *, image_prefix: str = "localhost/insitu"
) -> Path:
    """Write ``out/workflow.cwl`` and ``out/components/<dir>/tool.cwl`` (each component
    copied with its adapter); the path of workflow.cwl."""
    target = Path(out)
    (target / "components").mkdir(parents=True, exist_ok=True)
    tools: dict[str, str] = {}
    written: dict[Path, str] = {}
    for nid in sorted(wf.nodes):
        source = wf.component_dir(nid)
        if source not in written:
            dest = target / "components" / source.name
            write_component_tool(source, dest, image_prefix=image_prefix)
            written[source] = f"components/{source.name}/tool.cwl"
        tools[nid] = written[source]
    return _dump(workflow_document(wf, tools), target / "workflow.cwl")
