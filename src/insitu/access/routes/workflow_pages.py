"""Web pages of the workflows subsystem: the component catalog (search by text, port name,
port type and dependency; one component's interface, code, dependencies and versions) and
the workflows found under the workflows folder (each one's graph drawn as SVG on the server,
its runs with status, per-node timings, cache hits and provenance; a published one with a
form that starts a run on the server through ``POST /api/v1/workflows/NAME/runs``).

Who may see them: any caller with a token (an API token, or a hub user's login), whatever
collections it grants; an anonymous caller is asked to log in (401). Components and
workflows belong to no collection: they are code and its run records, which the platform's
users share with each other (the hub's users extract and run them), but which need not be
shown to the public even where some collections are public. The data a run read or wrote
is not served by these pages, only its hashes, sizes and paths.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from insitu.access.deps import CurrentPrincipal, CurrentServices, Principal, Services
from insitu.access.routes.web import PageRoute, render
from insitu.errors import NotFound, Unauthorized

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LIMIT = 100  # components a search page lists


def _require_login(principal: Principal) -> None:
    if principal.token is None:
        raise Unauthorized(
            "Components and workflows are shown to logged-in users: log in with a token "
            "(or through the hub), then open this page again."
        )


def _when(epoch: Any) -> str:
    """A run's time (seconds since the epoch) as UTC text."""
    if not isinstance(epoch, int | float):
        return "–"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _catalog(services: Services) -> Any:
    from insitu.workflows import ComponentCatalog

    return ComponentCatalog.from_settings(services.settings)


def _published_as(services: Services, directory: Any) -> Any:
    """The published entry whose folder this is (the service can run it), or None."""
    from insitu.workflows import PublishedWorkflows

    with PublishedWorkflows.from_settings(services.settings) as published:
        return published.for_directory(directory)


@router.get("/components", response_class=HTMLResponse)
def components_page(
    request: Request,
    services: CurrentServices,
    principal: CurrentPrincipal,
    q: str = "",
    port: str = "",
    type: str = "",  # the query parameter's name
    uses: str = "",
) -> Response:
    """The component catalog's search form and the components matching it (every one,
    newest first, when nothing is asked)."""
    _require_login(principal)
    asked = {"q": q.strip(), "port": port.strip(), "type": type.strip(), "uses": uses.strip()}
    with _catalog(services) as catalog:
        total = catalog.count()
        found = catalog.search(
            asked["q"] or None,
            port=asked["port"] or None,
            type=asked["type"] or None,
            uses=asked["uses"] or None,
            limit=LIMIT,
        )
    return render(
        request,
        "components.html",
        principal=principal,
        asked=asked,
        searched=any(asked.values()),
        found=found,
        total=total,
        limit=LIMIT,
    )


@router.get("/components/{ref}", response_class=HTMLResponse)
def component_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal, ref: str
) -> Response:
    """One component: its interface, code, dependencies and versions."""
    _require_login(principal)
    with _catalog(services) as catalog:
        entry = catalog.get(ref)
        versions = catalog.versions(entry)
    return render(request, "component.html", principal=principal, entry=entry, versions=versions)


@router.get("/workflows", response_class=HTMLResponse)
def workflows_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """The workflows under the workflows folder, each with its newest run."""
    from insitu.workflows import find_workflows, workflows_root

    _require_login(principal)
    root = workflows_root(services.settings)
    return render(
        request,
        "workflows.html",
        principal=principal,
        root_dir=root,
        workflows=find_workflows(root, runs=1),
        when=_when,
    )


@router.get("/workflows/{ident:path}", response_class=HTMLResponse)
def workflow_page(
    request: Request,
    services: CurrentServices,
    principal: CurrentPrincipal,
    ident: str,
    run: str = "",
) -> Response:
    """One workflow: its graph (coloured by the chosen run, else the newest), nodes and
    edges, its runs, and the chosen run's nodes and provenance."""
    from insitu.workflows import open_workflow, workflow_svg, workflows_root

    _require_login(principal)
    view = open_workflow(workflows_root(services.settings), ident)
    chosen = view.runs[0] if view.runs and not run else None
    if run:
        chosen = next((r for r in view.runs if r.run_id == run), None)
        if chosen is None:
            raise NotFound(f"Workflow {ident!r} has no run {run!r}; its page lists its runs.")
    published = _published_as(services, view.directory)
    svg = None
    known: set[str] = set()
    if view.workflow is not None:
        wf = view.workflow
        with _catalog(services) as catalog:
            known = catalog.known([n.hash for n in wf.nodes.values()])
        root = str(request.scope.get("root_path", "")).rstrip("/")
        statuses = {n: str(r.get("status")) for n, r in chosen.nodes.items()} if chosen else None

        def link(node: str) -> str | None:
            h = wf.nodes[node].hash
            return f"{root}/components/{quote(h)}" if h in known else None

        svg = Markup(workflow_svg(wf, statuses, link))  # every text in it escaped
    return render(
        request,
        "workflow.html",
        principal=principal,
        view=view,
        chosen=chosen,
        svg=svg,
        known=known,
        when=_when,
        published=published,
        may_run=principal.token is not None and "workflows" in principal.token.scopes,
        stale=chosen is not None
        and view.workflow is not None
        and chosen.doc.get("workflow_hash") not in (None, view.workflow.hash),
    )
