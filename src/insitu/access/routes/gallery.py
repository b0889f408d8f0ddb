"""The gallery's API: publish a notebook, list the published ones, withdraw one's own.

Publishing needs a hub login (the author is the hub user, never a field of the request).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from insitu.access.deps import CurrentPrincipal, CurrentServices, Principal, Services
from insitu.access.gallery import MAX_NOTEBOOK_BYTES, Gallery
from insitu.errors import InvalidRequest, TooLarge, Unauthorized

__all__ = ["gallery_of", "require_member", "router"]

router = APIRouter(tags=["gallery"])


def gallery_of(services: Services) -> Gallery:
    """The platform's gallery (``DATA_DIR/gallery``)."""
    return Gallery(services.settings.data_dir / "gallery")


def require_member(principal: Principal) -> None:
    """The gallery is for the platform's people: a hub login or a token, never anonymous
    (outputs of published notebooks may come from restricted collections)."""
    if principal.hub_user is None and principal.token is None:
        raise Unauthorized(
            "The gallery is for people with an account: log in through the hub, or send a "
            "token ('Authorization: Bearer ...')."
        )


def _author(principal: Principal) -> str:
    if principal.hub_user is None:
        raise Unauthorized(
            "Publishing needs a hub login: from a notebook on the hub, run "
            "'insitu publish NOTEBOOK.ipynb' (it sends your hub token)."
        )
    return principal.hub_user.name


@router.get("/gallery", summary="The published notebooks, newest first")
async def list_published(services: CurrentServices, principal: CurrentPrincipal) -> dict[str, Any]:
    """Every notebook of the gallery: author, name, title, time, size and links."""
    require_member(principal)
    entries = await run_in_threadpool(gallery_of(services).entries)
    return {
        "notebooks": [
            {
                "author": e.author,
                "name": e.name,
                "title": e.title,
                "published": e.published.isoformat(),
                "size": e.size,
                "path": f"{e.author}/{e.name}.ipynb",
            }
            for e in entries
        ]
    }


@router.put("/gallery/{name}", status_code=201, summary="Publish a notebook as NAME")
async def publish(
    name: str, request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The body is the .ipynb file; it replaces the author's earlier notebook of that name."""
    author = _author(principal)
    declared = request.headers.get("content-length")
    if declared is None:
        raise InvalidRequest("Send the notebook with a Content-Length header.")
    if not declared.isdigit():
        raise InvalidRequest(f"Content-Length {declared!r} is not a number of bytes.")
    if int(declared) > MAX_NOTEBOOK_BYTES:  # refused before a byte of it is read
        raise TooLarge(
            f"The notebook is {int(declared) / 2**20:.1f} MiB; the gallery takes up to "
            f"{MAX_NOTEBOOK_BYTES // 2**20} MiB. Clear large outputs and publish again."
        )
    body = await request.body()
    entry = await run_in_threadpool(gallery_of(services).publish, author, name, body)
    return {"author": entry.author, "name": entry.name, "title": entry.title}


@router.delete("/gallery/{author}/{name}", status_code=204, summary="Withdraw a notebook")
async def withdraw(
    author: str, name: str, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """Only the author (or a hub admin) may withdraw a notebook."""
    by = _author(principal)
    await run_in_threadpool(
        lambda: gallery_of(services).withdraw(author, name, by=by, admin=principal.hub_admin)
    )
    return Response(status_code=204)
