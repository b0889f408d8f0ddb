"""Reading a notebook (nbformat v4, any minor version) and resolving its code cells."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from insitu.errors import InvalidRequest, NotFound
from insitu.workflows.resolve import NotebookGraph, resolve_cells

__all__ = ["analyse_notebook", "load_notebook", "notebook_from_sources"]


def load_notebook(notebook: str | os.PathLike[str] | Any) -> Any:
    """An nbformat v4 notebook node from a path, or the node given, normalized.

    Raises :class:`~insitu.errors.NotFound` for a missing file and
    :class:`~insitu.errors.InvalidRequest` for a file that is not a notebook.
    """
    import nbformat

    if isinstance(notebook, str | os.PathLike):
        path = Path(notebook)
        if not path.is_file():
            raise NotFound(
                f"Notebook {str(path)!r} does not exist; give the path of an .ipynb file."
            )
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as exc:  # nbformat raises several unrelated types
            raise InvalidRequest(
                f"{str(path)!r} is not a Jupyter notebook nbformat can read ({exc}); "
                "open and save it in JupyterLab, or check it is an .ipynb file."
            ) from exc
    else:
        nb = notebook
    if int(nb.get("nbformat", 4)) != 4:
        nb = nbformat.convert(nb, 4)
    _changes, nb = nbformat.validator.normalize(nb)
    return nbformat.from_dict(nb)


def notebook_from_sources(sources: list[str], ids: list[str] | None = None) -> Any:
    """A notebook of code cells with the given sources (ids ``c0, c1, ...`` by default)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    ids = ids or [f"c{i}" for i in range(len(sources))]
    nb.cells = [nbformat.v4.new_code_cell(s, id=i) for s, i in zip(sources, ids, strict=True)]
    return nb


def _title(markdown: str) -> str:
    for line in markdown.splitlines():
        if line.lstrip().startswith("#"):
            return line.strip().lstrip("#").strip()
    return ""


def analyse_notebook(
    notebook: str | os.PathLike[str] | Any,
    *,
    allow_star_imports: bool = False,
    export_all: bool = False,
) -> NotebookGraph:
    """Analyse every code cell of a notebook (path or nbformat node) and resolve the DAG.

    Cell ids are the nbformat ``id`` when the notebook has them, else the cell's index.
    Each code cell's title is the last Markdown heading above it.
    """
    nb = load_notebook(notebook)
    sources: list[str] = []
    ids: list[str] = []
    tags: list[list[str]] = []
    titles: list[str] = []
    indexes: list[int] = []
    title = ""
    for index, cell in enumerate(nb.cells):
        source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
        if cell.cell_type == "markdown":
            title = _title(source) or title
        if cell.cell_type != "code":
            continue
        sources.append(source)
        ids.append(str(cell.get("id") or index))
        tags.append(list(cell.get("metadata", {}).get("tags", [])))
        titles.append(title)
        indexes.append(index)
    return resolve_cells(
        sources,
        ids,
        tags=tags,
        titles=titles,
        indexes=indexes,
        allow_star_imports=allow_star_imports,
        export_all=export_all,
    )
