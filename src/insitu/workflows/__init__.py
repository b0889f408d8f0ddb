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
"""

from __future__ import annotations

from insitu.workflows.analysis import MUTATORS, analyse_cell
from insitu.workflows.cell import CellAnalysis, CodeDef, Import
from insitu.workflows.codes import CODES, Code, Diagnostic
from insitu.workflows.component import (
    ENTRYPOINT,
    Component,
    build_component,
    read_outputs,
    write_component,
)
from insitu.workflows.deps import Dependency, Environment, kernel_python, probe
from insitu.workflows.extraction import Extraction, extract
from insitu.workflows.notebook import analyse_notebook, load_notebook, notebook_from_sources
from insitu.workflows.resolve import PREFIXES, CellNode, Edge, NotebookGraph, Param, resolve_cells

__all__ = [
    "CODES",
    "ENTRYPOINT",
    "MUTATORS",
    "PREFIXES",
    "CellAnalysis",
    "CellNode",
    "Code",
    "CodeDef",
    "Component",
    "Dependency",
    "Diagnostic",
    "Edge",
    "Environment",
    "Extraction",
    "Import",
    "NotebookGraph",
    "Param",
    "analyse_cell",
    "analyse_notebook",
    "build_component",
    "extract",
    "kernel_python",
    "load_notebook",
    "notebook_from_sources",
    "probe",
    "read_outputs",
    "resolve_cells",
    "write_component",
]
