"""Workflows found in a folder and their runs, as the web pages show them.

The executor writes each run's provenance to ``<workflow>/runs/<run_id>/run.json``
(:class:`~insitu.workflows.RunRecord`) and keeps no other record, so the runs are read from
those files: :func:`find_workflows` lists the folders holding a ``workflow.yaml`` under a
root (``Settings.workflows_dir``, default ``DATA_DIR/workflows``), :func:`read_runs` a
workflow's runs, newest first. A run whose ``run.json`` cannot be read is listed with the
reason rather than hidden.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insitu.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from insitu.settings import Settings
    from insitu.workflows.workflow import Workflow

__all__ = [
    "RunView",
    "WorkflowView",
    "find_workflows",
    "open_workflow",
    "read_runs",
    "workflows_root",
]

DEPTH = 3  # folders below the root a workflow.yaml is looked for in
_SKIP = {"runs", ".cache", "components", "node_modules", ".git"}


def workflows_root(settings: Settings) -> Path:
    """The folder the pages find workflows in."""
    return (settings.workflows_dir or settings.data_dir / "workflows").expanduser()


@dataclass
class RunView:
    """One run as run.json records it (``doc``), or why it cannot be read (``error``)."""

    run_id: str
    path: Path
    doc: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def status(self) -> str:
        return str(self.doc.get("status", "unreadable" if self.error else "unknown"))

    @property
    def started(self) -> float:
        value = self.doc.get("started")
        return float(value) if isinstance(value, int | float) else 0.0

    @property
    def seconds(self) -> float | None:
        end = self.doc.get("finished")
        return float(end) - self.started if isinstance(end, int | float) else None

    @property
    def nodes(self) -> dict[str, dict[str, Any]]:
        nodes = self.doc.get("nodes")
        return nodes if isinstance(nodes, dict) else {}

    @property
    def cache_hits(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.get("cached")]


@dataclass
class WorkflowView:
    """A workflow folder under the root: ``id`` is its path relative to the root."""

    id: str
    directory: Path
    workflow: Workflow | None = None
    error: str | None = None
    runs: list[RunView] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.workflow.name if self.workflow else self.id


def read_runs(directory: Path, limit: int | None = None) -> list[RunView]:
    """The runs of the workflow in ``directory``, newest start first (``limit``: the
    newest ones only; a run id begins with its start time, to the second)."""
    runs_dir = directory / "runs"
    if not runs_dir.is_dir():
        return []
    found = sorted((p for p in runs_dir.iterdir() if p.is_dir()), key=lambda p: p.name)[::-1]
    if limit is not None and len(found) > limit:
        # run ids start with the second they began: read every run of the last second kept
        second = found[limit - 1].name.split("-")[0] if limit > 0 else None
        extra = [p for p in found[limit:] if p.name.split("-")[0] == second]
        found = found[:limit] + extra
    out = []
    for path in found:
        run = RunView(path.name, path / "run.json")
        try:
            doc = json.loads(run.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            run.error = "no run.json (the run is still starting, or was killed)"
        except (OSError, ValueError) as exc:
            run.error = f"run.json cannot be read: {exc}"
        else:
            if isinstance(doc, dict):
                run.doc = doc
            else:
                run.error = "run.json cannot be read: not a JSON object"
        out.append(run)
    out.sort(key=lambda r: (r.started, r.run_id), reverse=True)
    return out[:limit]


def _open(root: Path, folder: Path, runs: int | None) -> WorkflowView:
    from insitu.workflows.workflow import load_workflow

    rel = folder.relative_to(root).as_posix()
    view = WorkflowView(rel, folder)
    try:
        view.workflow = load_workflow(folder / "workflow.yaml", validate=False)
    except (InvalidRequest, NotFound, OSError) as exc:
        view.error = str(exc)
    view.runs = read_runs(folder, runs)
    return view


def find_workflows(root: Path, runs: int | None = 1) -> list[WorkflowView]:
    """The workflows under ``root`` (``runs``: how many of each one's newest runs to read)."""
    if not root.is_dir():
        return []
    folders: list[Path] = []
    for here, dirs, files in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        if "workflow.yaml" in files and depth > 0:  # each workflow in a folder of its own
            folders.append(Path(here))
        dirs[:] = sorted(d for d in dirs if d not in _SKIP and not d.startswith("."))
        if depth >= DEPTH:
            dirs[:] = []
    return [_open(root, f, runs) for f in sorted(folders)]


def open_workflow(root: Path, ident: str) -> WorkflowView:
    """The workflow of id ``ident`` under ``root``, with all its runs; never outside it."""
    parts = [p for p in ident.split("/") if p not in ("", ".")]
    if not parts or any(p.startswith(".") for p in parts) or len(parts) > DEPTH:
        raise InvalidRequest(f"{ident!r} is not a workflow id; the Workflows page lists them.")
    folder = root.joinpath(*parts)
    if not (folder / "workflow.yaml").is_file():
        raise NotFound(f"No workflow {ident!r}; the Workflows page lists the ones there are.")
    return _open(root, folder, None)
