"""``extract``: a notebook's cells to components, the call behind ``insitu cells extract``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from insitu.errors import InvalidRequest
from insitu.workflows.component import Component, build_component, write_component
from insitu.workflows.deps import kernel_python, probe
from insitu.workflows.notebook import analyse_notebook, load_notebook
from insitu.workflows.resolve import CellNode, NotebookGraph

__all__ = ["Extraction", "extract"]


@dataclass(frozen=True)
class Extraction:
    """The resolved notebook and the components made from its selected cells.

    ``skipped`` maps the id of each selected cell that gave no component to the reason
    (a syntax error, a star import, or a cell that only holds parameters).
    """

    graph: NotebookGraph
    components: tuple[Component, ...]
    selected: tuple[str, ...]
    skipped: dict[str, str]

    @property
    def ok(self) -> bool:
        """No selected cell has an ``E-`` finding."""
        return not any(self.graph.cell(c).errors for c in self.selected)

    def report(self) -> list[dict[str, Any]]:
        """Per selected cell: inputs, outputs, parameters, imports, warnings (with codes),
        and the component made (``--json``)."""
        made = {c.cell: c for c in self.components}
        out = []
        for cell_id in self.selected:
            entry = self.graph.cell(cell_id).as_dict()
            comp = made.get(cell_id)
            if comp is not None:
                entry["component"] = {
                    "name": comp.name,
                    "hash": comp.hash,
                    "directory": str(comp.directory) if comp.directory else None,
                    "dependencies": comp.metadata["dependencies"],
                }
                entry["warnings"] = comp.metadata["warnings"]
            else:
                entry["component"] = None
                entry["skipped"] = self.skipped.get(cell_id, "")
            out.append(entry)
        return out


def _select(graph: NotebookGraph, cells: list[str] | None) -> list[CellNode]:
    if not cells:
        return list(graph.cells)
    known = {c.id: c for c in graph.cells} | {str(c.index): c for c in graph.cells}
    missing = [c for c in cells if c not in known]
    if missing:
        raise InvalidRequest(
            f"No code cell {', '.join(map(repr, missing))} in the notebook. Cells are named by "
            f"their id or their index; the code cells are: "
            f"{', '.join(f'{c.index}={c.id}' for c in graph.cells)}."
        )
    return list(dict.fromkeys(known[c] for c in cells))


def extract(
    notebook: str | os.PathLike[str] | Any,
    out: str | os.PathLike[str] | None = None,
    *,
    cells: list[str] | None = None,
    allow_star_imports: bool = False,
    export_all: bool = False,
    python: str | None = None,
    base_image: str | None = None,
) -> Extraction:
    """Turn the cells of a notebook into components; write them under ``out`` if given.

    Parameters
    ----------
    notebook
        Path of an ``.ipynb`` file, or an nbformat notebook node.
    out
        Directory to write ``<slug>-<hash8>/`` component folders into (None: analyse and
        build the components in memory only).
    cells
        Cell ids or indexes to extract (default: every code cell).
    allow_star_imports
        Bind names no cell defines to the last ``from m import *`` instead of reporting
        ``E-UNRESOLVED``.
    export_all
        Make every public name a cell binds an output, not only those a later cell reads.
    python
        Interpreter whose installed distributions pin the requirements (default: the
        notebook's kernel if Jupyter knows it, else this interpreter).
    base_image
        Container base image (default ``python:<kernel version>-slim``).

    Raises :class:`~insitu.errors.NotFound` for a missing notebook and
    :class:`~insitu.errors.InvalidRequest` for an unreadable one or an unknown cell.
    Cells with ``E-`` findings are reported, not raised: see :attr:`Extraction.ok`.
    """
    nb = load_notebook(notebook)
    path = Path(notebook) if isinstance(notebook, str | os.PathLike) else None
    graph = analyse_notebook(nb, allow_star_imports=allow_star_imports, export_all=export_all)
    selected = _select(graph, cells)
    if python is None:
        kernel = nb.get("metadata", {}).get("kernelspec", {}).get("name")
        python = kernel_python(kernel)
    tops = sorted({i.top for c in graph.cells for i in c.analysis.imports if i.top})
    env = probe(python, tops)
    components = []
    skipped: dict[str, str] = {}
    target = Path(out) if out is not None else None
    for node in selected:
        if any(d.code in ("E-SYNTAX", "E-STAR-IMPORT") for d in node.errors):
            skipped[node.id] = "; ".join(d.code for d in node.errors)
            continue
        if node.parameter_cell:
            skipped[node.id] = "parameter cell: its names are workflow parameters"
            continue
        comp = build_component(
            graph,
            node.id,
            env,
            source_notebook=str(path) if path else "",
            notebook_dir=path.parent if path else None,
            base_image=base_image,
        )
        if target is not None:
            comp = write_component(comp, target)
        components.append(comp)
    return Extraction(graph, tuple(components), tuple(n.id for n in selected), skipped)
