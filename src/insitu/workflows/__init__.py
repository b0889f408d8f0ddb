"""Notebook cells to catalogued, runnable components.

Static analysis of each cell (:func:`analyse_cell`), the notebook resolved to a
variable-level DAG (:func:`analyse_notebook`), and components with a generated entrypoint,
pinned requirements and a container build context (:func:`extract`, the call behind
``insitu cells extract``). Importing this package loads neither IPython nor nbformat; they
load on first use (the ``workflows`` extra).

From a notebook::

    from insitu.workflows import extract
    result = extract("analysis.ipynb", out="components")
    result.report()        # per cell: inputs, outputs, parameters, imports, warnings

Composed into a workflow and run (``insitu workflow from-notebook`` / ``workflow run``)::

    from insitu.workflows import load_workflow, run_workflow, workflow_from_notebook
    workflow_from_notebook("analysis.ipynb", "wf")
    record = run_workflow(load_workflow("wf/workflow.yaml"))   # record.nodes, run.json
"""

from __future__ import annotations

from insitu.workflows.analysis import MUTATORS, analyse_cell
from insitu.workflows.argo import export_argo, validate_argo
from insitu.workflows.cache import NodeCache, cache_key
from insitu.workflows.cell import CellAnalysis, CodeDef, Import
from insitu.workflows.codes import CODES, Code, Diagnostic
from insitu.workflows.component import (
    ENTRYPOINT,
    Component,
    build_component,
    read_outputs,
    write_component,
)
from insitu.workflows.compose import workflow_from_extraction, workflow_from_notebook
from insitu.workflows.cwl import export_cwl
from insitu.workflows.demo import DEMO_CELLS, DEMO_WORKFLOW, install_demo_workflow
from insitu.workflows.deps import Dependency, Environment, kernel_python, probe
from insitu.workflows.drawing import workflow_svg
from insitu.workflows.executor import (
    DaskBackend,
    LocalBackend,
    WorkflowCancelled,
    WorkflowFailed,
    check_run_params,
    run_workflow,
)
from insitu.workflows.extraction import Extraction, extract
from insitu.workflows.images import BuiltImage, build_images
from insitu.workflows.noderun import NodeJob, run_node
from insitu.workflows.notebook import analyse_notebook, load_notebook, notebook_from_sources
from insitu.workflows.provenance import NodeRecord, RunRecord
from insitu.workflows.published import PublishedWorkflow, PublishedWorkflows
from insitu.workflows.registry import ComponentCatalog, ComponentEntry
from insitu.workflows.resolve import PREFIXES, CellNode, Edge, NotebookGraph, Param, resolve_cells
from insitu.workflows.runs import (
    RunView,
    WorkflowView,
    find_workflows,
    open_workflow,
    workflows_root,
)
from insitu.workflows.workflow import MapSpec, Node, Workflow, WorkflowInvalid, load_workflow

__all__ = [
    "CODES",
    "DEMO_CELLS",
    "DEMO_WORKFLOW",
    "ENTRYPOINT",
    "MUTATORS",
    "PREFIXES",
    "BuiltImage",
    "CellAnalysis",
    "CellNode",
    "Code",
    "CodeDef",
    "Component",
    "ComponentCatalog",
    "ComponentEntry",
    "DaskBackend",
    "Dependency",
    "Diagnostic",
    "Edge",
    "Environment",
    "Extraction",
    "Import",
    "LocalBackend",
    "MapSpec",
    "Node",
    "NodeCache",
    "NodeJob",
    "NodeRecord",
    "NotebookGraph",
    "Param",
    "PublishedWorkflow",
    "PublishedWorkflows",
    "RunRecord",
    "RunView",
    "Workflow",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowInvalid",
    "WorkflowView",
    "analyse_cell",
    "analyse_notebook",
    "build_component",
    "build_images",
    "cache_key",
    "check_run_params",
    "export_argo",
    "export_cwl",
    "extract",
    "find_workflows",
    "install_demo_workflow",
    "kernel_python",
    "load_notebook",
    "load_workflow",
    "notebook_from_sources",
    "open_workflow",
    "probe",
    "read_outputs",
    "resolve_cells",
    "run_node",
    "run_workflow",
    "validate_argo",
    "workflow_from_extraction",
    "workflow_from_notebook",
    "workflow_svg",
    "workflows_root",
    "write_component",
]
