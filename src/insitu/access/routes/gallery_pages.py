"""The gallery's pages: the list of published notebooks, each readable as a page or file."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from insitu.access.deps import CurrentPrincipal, CurrentServices
from insitu.access.routes.gallery import gallery_of, require_member
from insitu.access.routes.web import PageRoute, render

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/gallery", response_class=HTMLResponse)
async def gallery_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """Published notebooks, newest first, with how to publish one."""
    require_member(principal)
    entries = await run_in_threadpool(gallery_of(services).entries)
    return render(request, "gallery.html", principal=principal, entries=entries)


@router.get("/gallery/{author}/{name}.ipynb")
async def notebook_file(
    author: str, name: str, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """The notebook as published."""
    require_member(principal)
    data = await run_in_threadpool(gallery_of(services).read, author, name)
    return Response(
        data,
        media_type="application/x-ipynb+json",
        headers={"Content-Disposition": f'attachment; filename="{name}.ipynb"'},
    )


# What a rendered notebook may contain: text, code, tables and images (plots as data: URLs).
# Markdown HTML and text/html outputs are someone else's: scripts, forms, meta refreshes
# and event handlers are taken out, whatever the pages' CSP would have stopped.
_TAGS = {
    *("a", "abbr", "b", "blockquote", "code", "em", "i", "li", "ol", "strong", "ul"),
    *("p", "div", "span", "pre", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "img"),
    *("table", "thead", "tbody", "tr", "th", "td", "sub", "sup", "dl", "dt", "dd"),
}
_ATTRS = {
    "*": ["class", "id"],
    "a": ["href", "title"],
    "img": ["src", "alt", "width", "height"],
    "th": ["colspan", "rowspan"],
    "td": ["colspan", "rowspan"],
}


def _html(data: bytes) -> str:
    import bleach
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="basic")
    body, _ = exporter.from_notebook_node(nbformat.reads(data.decode("utf-8"), as_version=4))
    return str(
        bleach.clean(
            str(body),
            tags=_TAGS,
            attributes=_ATTRS,
            protocols={"http", "https", "data"},
            strip=True,
        )
    )


@router.get("/gallery/{author}/{name}", response_class=HTMLResponse)
async def notebook_page(
    request: Request,
    author: str,
    name: str,
    services: CurrentServices,
    principal: CurrentPrincipal,
) -> Response:
    """The notebook rendered as a page (inputs and outputs, plots included)."""
    require_member(principal)
    data = await run_in_threadpool(gallery_of(services).read, author, name)
    body = await run_in_threadpool(_html, data)
    return render(
        request, "notebook.html", principal=principal, author=author, name=name, body=body
    )
