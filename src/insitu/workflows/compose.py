"""A notebook to a workflow: its components plus ``workflow.yaml`` (``insitu workflow
from-notebook``). One node per component, named after it (the cell id is added when two
components share a name), one edge per value a cell reads from an earlier one, and the
notebook's ``param_`` parameters as the workflow's ``params`` with their defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from insitu.errors import InvalidRequest
from insitu.workflows.extraction import Extraction, extract
from insitu.workflows.workflow import Node, Workflow, WorkflowEdge

__all__ = ["workflow_from_extraction", "workflow_from_notebook"]


def workflow_from_extraction(result: Extraction, directory: Path, name: str = "") -> Workflow:
    """The workflow of an extraction whose components were written under ``directory``."""
    names = [c.name for c in result.components]
    node_of: dict[str, str] = {}
    nodes: dict[str, Node] = {}
    for comp in result.components:
        if comp.directory is None:
            raise InvalidRequest("the components must be written first: pass extract(out=...)")
        nid = comp.name if names.count(comp.name) == 1 else f"{comp.name}-{comp.cell}"
        node_of[comp.cell] = nid
        rel = os.path.relpath(comp.directory, directory)
        nodes[nid] = Node(nid, Path(rel).as_posix(), comp.hash, comp.cell)
    edges: list[WorkflowEdge] = []
    for comp in result.components:
        for e in result.graph.cell(comp.cell).inputs:
            if e.producer not in node_of:
                raise InvalidRequest(
                    f"cell {comp.cell} reads {e.label}, but cell {e.producer} gave no component "
                    f"({result.skipped.get(e.producer, 'not selected')}); fix that cell first"
                )
            edges.append(WorkflowEdge(node_of[e.producer], e.name, node_of[comp.cell], e.name))
    params: dict[str, Any] = {p.name: p.default for p in result.graph.params if p.kind == "param"}
    secrets = [p.name for p in result.graph.params if p.kind == "secret"]
    source = result.components[0].metadata.get("source_notebook", "") if result.components else ""
    return Workflow(
        name=name or (Path(source).stem if source else "workflow"),
        nodes=nodes,
        edges=edges,
        params=params,
        source_notebook=os.path.relpath(source, directory) if source else "",
        secrets=secrets,
        directory=directory,
    )


def workflow_from_notebook(
    notebook: str | os.PathLike[str],
    out: str | os.PathLike[str],
    **extract_options: Any,
) -> tuple[Workflow, Extraction]:
    """Extract ``notebook``'s cells to ``out/components/`` and write ``out/workflow.yaml``.

    ``extract_options`` go to :func:`~insitu.workflows.extract`. Raises
    :class:`~insitu.errors.InvalidRequest` when a cell has an ``E-`` finding (nothing is
    written then but the components), and :class:`~insitu.workflows.WorkflowInvalid` when
    the workflow does not validate.
    """
    directory = Path(out).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    result = extract(notebook, directory / "components", **extract_options)
    if not result.ok:
        found = "; ".join(
            f"cell {c.id}: {d.code} {d.message}" for c in result.graph.cells for d in c.errors
        )
        raise InvalidRequest(
            f"{notebook}: some cells have errors, so no workflow.yaml was written ({found}). "
            "Fix them in the notebook and run from-notebook again."
        )
    wf = workflow_from_extraction(result, directory)
    wf.validate(str(directory / "workflow.yaml"))
    wf.write(directory / "workflow.yaml")
    return wf, result
