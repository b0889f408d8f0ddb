"""Export to Argo Workflows (``insitu workflow export WF --to argo``): one ``Workflow``
manifest with a DAG template (specification section 7).

* one container template per component (two nodes of one component share it, T30), one
  DAG task per node, ``dependencies`` from the edges;
* the workflow's ``params`` are ``spec.arguments.parameters`` (JSON text), passed to the
  tasks as ``{{workflow.parameters.NAME}}``; secrets are environment variables from a
  Kubernetes Secret (``secretKeyRef``), never parameters;
* every output is an output parameter holding its ``outputs.json`` entry: the value itself
  when it is small JSON, else a reference to the file. The pod's adapter keeps the
  parameters of one pod below ``budget`` bytes (Argo keeps them in one annotation; 256 KiB
  by default), sending the largest values by reference until the rest fits;
* the files go as artifacts (``storage="artifacts"``: each output also an artifact,
  ``spec.artifactRepositoryRef`` naming the repository) or on a ReadWriteMany volume made
  for the run (``storage="pvc"``: ``volumeClaimTemplates``, files named by path);
* ``map`` is ``withParam`` over the producer's ``<port>-items`` parameter (the list's
  elements, each an entry), and the consumers of a mapped node get the list of its
  branches' entries, merged into one list by their adapter.

The pod runs ``python -c BOOT <adapter> argo SPEC NAME=VALUE ...`` in the component's image
(``/component/task.py``): BOOT unpacks ``insitu_adapter.py``, kept once in the manifest as
the workflow parameter ``insitu-adapter``; the run contract is unchanged.
:func:`validate_argo` checks a manifest offline against Hera's models of the Argo API
(nothing is dropped as unknown) and its references (templates, dependencies, parameters);
no cluster is needed, or used.
"""

from __future__ import annotations

import base64
import json
import os
import re
import zlib
from pathlib import Path
from typing import Any

from insitu.errors import InvalidRequest
from insitu.workflows.cwl import adapter_source, image_name, map_splits
from insitu.workflows.workflow import Workflow

__all__ = ["PARAMETER_BUDGET", "argo_workflow", "export_argo", "validate_argo"]

PARAMETER_BUDGET = 256 * 1024
# The adapter (22 kB of Python) is in the manifest once, as a workflow parameter (zlib,
# base64: nothing for Argo's templating to escape), not in every template: a manifest of
# 50 components stays far below what the Kubernetes API takes.
ADAPTER_PARAM = "insitu-adapter"
BOOT = (
    "import base64, sys, zlib; "
    "exec(compile(zlib.decompress(base64.b64decode(sys.argv.pop(1))), 'insitu_adapter.py', 'exec'))"
)
ROOT = "/insitu"
VOLUME = "insitu-data"
_NAME = re.compile(r"[^a-z0-9-]+")


def packed_adapter() -> str:
    """``insitu_adapter.py`` compressed and base64-encoded, as :data:`BOOT` unpacks it."""
    return base64.b64encode(zlib.compress(adapter_source().encode(), 9)).decode()


def _dns(text: str) -> str:
    """A name Argo takes for a task or template: lowercase letters, digits and '-'."""
    return _NAME.sub("-", text.lower()).strip("-")[:63] or "node"


def _ports(meta: dict[str, Any], kind: str) -> list[str]:
    return [p["name"] for p in meta.get(kind, []) if p.get("kind", "value") != "code"]


def _template(
    meta: dict[str, Any], storage: str, image_prefix: str, secret_name: str
) -> dict[str, Any]:
    """The container template of one component."""
    ins, outs = _ports(meta, "inputs"), _ports(meta, "outputs")
    params = [p["name"] for p in meta.get("params", [])]
    inputs: dict[str, Any] = {
        "parameters": [
            {"name": "spec"},
            *({"name": f"in-{p}", "default": ""} for p in ins),
            *({"name": p, "default": ""} for p in params),
        ]
    }
    if storage == "artifacts" and ins:
        # optional: a value that comes inline (a map's element, a merged map) has none
        inputs["artifacts"] = [
            {"name": f"in-{p}", "path": f"{ROOT}/in/{p}", "optional": True} for p in ins
        ]
    outputs: dict[str, Any] = {
        "parameters": [
            x
            for o in outs
            for x in (
                {"name": o, "valueFrom": {"path": f"{ROOT}/params/{o}"}},
                {
                    "name": f"{o}-items",
                    "valueFrom": {"path": f"{ROOT}/params/{o}-items", "default": "[]"},
                },
            )
        ]
    }
    if storage == "artifacts" and outs:
        outputs["artifacts"] = [{"name": o, "path": f"{ROOT}/ports/{o}"} for o in outs]
    args = [f"{{{{workflow.parameters.{ADAPTER_PARAM}}}}}", "argo", "{{inputs.parameters.spec}}"]
    args += [f"in-{p}={{{{inputs.parameters.in-{p}}}}}" for p in ins]
    args += [f"{p}={{{{inputs.parameters.{p}}}}}" for p in params]
    container: dict[str, Any] = {
        "image": image_name(meta, image_prefix),
        "command": ["python", "-c", BOOT],
        "args": args,
    }
    secrets = [s["name"] for s in meta.get("secrets", [])]
    if secrets:
        container["env"] = [
            {"name": s, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": s}}}
            for s in secrets
        ]
    if storage == "pvc":
        args.append(f"work=/{VOLUME}/{{{{pod.name}}}}")
        container["volumeMounts"] = [{"name": VOLUME, "mountPath": f"/{VOLUME}"}]
    return {
        "name": f"{_dns(meta['name'])}-{str(meta['hash'])[:8]}",
        "inputs": inputs,
        "outputs": outputs,
        "container": container,
    }


def argo_workflow(
    wf: Workflow,
    *,
    storage: str = "artifacts",
    artifact_repository: str | None = None,
    volume_size: str = "10Gi",
    storage_class: str | None = None,
    secret_name: str | None = None,
    image_prefix: str = "localhost/insitu",
    budget: int = PARAMETER_BUDGET,
) -> dict[str, Any]:
    """The Argo ``Workflow`` manifest of a validated workflow, as a dict.

    ``artifact_repository`` is ``CONFIGMAP#KEY`` or ``KEY`` (of the ``artifact-repositories``
    config map; default: the namespace's default repository). ``secret_name`` is the
    Kubernetes Secret holding the secrets (default ``<workflow>-secrets``)."""
    if storage not in ("artifacts", "pvc"):
        raise InvalidRequest(f"storage {storage!r}: choose 'artifacts' or 'pvc'")
    secret_name = secret_name or f"{_dns(wf.name)}-secrets"
    templates: dict[str, dict[str, Any]] = {}
    task_of = {nid: _dns(nid) for nid in wf.nodes}
    if len(set(task_of.values())) < len(task_of):
        raise InvalidRequest(
            f"node ids {sorted(wf.nodes)} give the same Argo task name once lowercased with "
            "'-' for other characters; rename the nodes in workflow.yaml"
        )
    mapped = {nid for nid, n in wf.nodes.items() if n.map}
    split = map_splits(wf, "Argo")
    tasks = []
    for nid in wf.order():
        node, meta = wf.nodes[nid], wf.nodes[nid].metadata
        template = _template(meta, storage, image_prefix, secret_name)
        templates.setdefault(template["name"], template)
        merges: dict[str, bool] = {}
        names = [p["name"] for p in meta.get("params", [])]
        spec = {
            "task": "/component/task.py",
            "inputs": merges,
            "params": names,
            "split": sorted(split.get(nid, ())),
            "storage": storage,
            "budget": budget,
        }
        parameters: list[dict[str, str]] = []
        artifacts: list[dict[str, str]] = []
        task: dict[str, Any] = {"name": task_of[nid], "template": template["name"]}
        for e in sorted(wf.inputs_of(nid), key=lambda e: e.target_port):
            src = task_of[e.source]
            scattered = bool(node.map and node.map.over == e.target_port)
            if scattered:
                task["withParam"] = f"{{{{tasks.{src}.outputs.parameters.{e.source_port}-items}}}}"
                value = "{{item}}"
            else:
                value = f"{{{{tasks.{src}.outputs.parameters.{e.source_port}}}}}"
            merges[e.target_port] = e.source in mapped
            parameters.append({"name": f"in-{e.target_port}", "value": value})
            if storage == "artifacts" and not scattered and e.source not in mapped:
                artifacts.append(
                    {
                        "name": f"in-{e.target_port}",
                        "from": f"{{{{tasks.{src}.outputs.artifacts.{e.source_port}}}}}",
                    }
                )
        for p in names:
            if p in wf.params:
                parameters.append({"name": p, "value": f"{{{{workflow.parameters.{p}}}}}"})
        parameters.insert(0, {"name": "spec", "value": json.dumps(spec, sort_keys=True)})
        task["arguments"] = {"parameters": parameters}
        if artifacts:
            task["arguments"]["artifacts"] = artifacts
        deps = sorted({task_of[s] for s in wf.upstream()[nid]})
        if deps:
            task["dependencies"] = deps
        tasks.append(task)
    spec_doc: dict[str, Any] = {
        "entrypoint": "main",
        "arguments": {
            "parameters": [
                *({"name": k, "value": json.dumps(v)} for k, v in sorted(wf.params.items())),
                {"name": ADAPTER_PARAM, "value": packed_adapter()},
            ]
        },
        "templates": [{"name": "main", "dag": {"tasks": tasks}}, *templates.values()],
    }
    if storage == "artifacts" and artifact_repository:
        config_map, _, key = artifact_repository.rpartition("#")
        spec_doc["artifactRepositoryRef"] = {
            "configMap": config_map or "artifact-repositories",
            "key": key,
        }
    if storage == "pvc":
        claim: dict[str, Any] = {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": volume_size}},
        }
        if storage_class:
            claim["storageClassName"] = storage_class
        spec_doc["volumeClaimTemplates"] = [{"metadata": {"name": VOLUME}, "spec": claim}]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{_dns(wf.name)}-",
            "labels": {"insitu/workflow-hash": wf.hash[:12]},
        },
        "spec": spec_doc,
    }


def _dropped(given: Any, kept: Any, where: str) -> list[str]:
    """Keys of ``given`` that Hera's model did not keep (unknown to the Argo API)."""
    if isinstance(given, dict) and isinstance(kept, dict):
        out = [f"{where}.{k}" for k in given if k not in kept]
        return out + [
            x for k in given if k in kept for x in _dropped(given[k], kept[k], f"{where}.{k}")
        ]
    if isinstance(given, list) and isinstance(kept, list):
        return [
            x
            for i, (g, k) in enumerate(zip(given, kept, strict=False))
            for x in _dropped(g, k, f"{where}[{i}]")
        ]
    return []


def validate_argo(doc: dict[str, Any]) -> None:
    """Check a Workflow manifest offline: Hera's pydantic models of the Argo API (types,
    required fields, and no field they do not know), then the DAG's references."""
    from hera.workflows.models import Workflow as ArgoWorkflow
    from pydantic import ValidationError

    try:
        model = ArgoWorkflow.model_validate(doc)
    except ValidationError as exc:
        raise InvalidRequest(f"not a valid Argo Workflow: {exc}") from exc
    unknown = _dropped(doc, model.model_dump(by_alias=True, exclude_none=True), "")
    if unknown:
        raise InvalidRequest(f"fields the Argo Workflow API does not have: {', '.join(unknown)}")
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    if doc["spec"]["entrypoint"] not in templates:
        raise InvalidRequest(f"entrypoint {doc['spec']['entrypoint']!r} is no template")
    wf_params = {p["name"] for p in doc["spec"].get("arguments", {}).get("parameters", [])}
    for t in templates.values():
        tasks = {k["name"]: k for k in (t.get("dag") or {}).get("tasks", [])}
        for task in tasks.values():
            where = f"task {task['name']!r}"
            if task["template"] not in templates:
                raise InvalidRequest(f"{where}: no template {task['template']!r}")
            missing = set(task.get("dependencies", [])) - set(tasks)
            if missing:
                raise InvalidRequest(f"{where}: depends on unknown tasks {sorted(missing)}")
            declared = {
                p["name"]
                for p in templates[task["template"]].get("inputs", {}).get("parameters", [])
            }
            for p in task.get("arguments", {}).get("parameters", []):
                if p["name"] not in declared:
                    raise InvalidRequest(f"{where}: template has no input parameter {p['name']!r}")
                for ref in re.findall(r"\{\{workflow\.parameters\.([^}]+)\}\}", p.get("value", "")):
                    if ref not in wf_params:
                        raise InvalidRequest(f"{where}: no workflow parameter {ref!r}")
                for ref in re.findall(r"\{\{tasks\.([^.}]+)\.", p.get("value", "")):
                    if ref not in task.get("dependencies", []):
                        raise InvalidRequest(f"{where}: reads task {ref!r} without depending on it")


def export_argo(wf: Workflow, out: str | os.PathLike[str], **options: Any) -> Path:
    """Write ``out/workflow.yaml`` (an Argo Workflow, validated offline); its path.
    ``options`` as for :func:`argo_workflow`."""
    import yaml  # type: ignore[import-untyped]

    doc = argo_workflow(wf, **options)
    validate_argo(doc)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    path = target / "workflow.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=100), encoding="utf-8")
    return path
