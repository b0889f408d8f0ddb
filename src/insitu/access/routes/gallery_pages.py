"""The gallery's pages: the list of published notebooks, each readable as a page or file."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from insitu.access.deps import CurrentPrincipal, CurrentServices
from insitu.access.routes.gallery import gallery_of
from insitu.access.routes.web import PageRoute, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/gallery", response_class=HTMLResponse)
async def gallery_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """Published notebooks, newest first, with how to publish one."""
    entries = await run_in_threadpool(gallery_of(services).entries)
    return render(request, "gallery.html", principal=principal, entries=entries)


@router.get("/gallery/{author}/{name}.ipynb")
async def notebook_file(author: str, name: str, services: CurrentServices) -> Response:
    """The notebook as published."""
    data = await run_in_threadpool(gallery_of(services).read, author, name)
    return Response(
        data,
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="{name}.ipynb"'},
    )


def _html(data: bytes) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic")  # no scripts: the pages' CSP holds
    body, _ = exporter.from_notebook_node(nbformat.reads(data.decode("utf-8"), as_version=4))
    return str(body)


@router.get("/gallery/{author}/{name}", response_class=HTMLResponse)
async def notebook_page(
    request: Request,
    author: str,
    name: str,
    services: CurrentServices,
    principal: CurrentPrincipal,
) -> Response:
    """The notebook rendered as a page (inputs and outputs, plots included)."""
    data = await run_in_threadpool(gallery_of(services).read, author, name)
    body = await run_in_threadpool(_html, data)
    return render(
        request, "notebook.html", principal=principal, author=author, name=name, body=body
    )
