"""Signed links: a URL a browser can open without a token (see :mod:`insitu.access.signing`).

``POST /links`` with ``{"path": "/api/v1/datasets/ID/subset?format=csv&time=1990"}`` gives
that path back with ``expires``, ``by`` and ``signature`` added: a link that reads as the
caller's token, for reading only, until it expires or the token is revoked. The web pages
link their quicklook images the same way (:func:`signed_path`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    Principal,
    Services,
    link_signer_id,
    readable_dataset,
)
from insitu.access.signing import MAX_LIFETIME, SIGNABLE
from insitu.errors import InvalidRequest

__all__ = ["LinkRequest", "page_link", "router", "signed_path"]

router = APIRouter(tags=["links"])
API = "/api/v1"


class LinkRequest(BaseModel):
    """What to sign: a path of this service with its query, and for how long."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "path": f"{API}/datasets/CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta."
                    "gn.v20190311/subset?variables=ta&time=1990&format=csv"
                }
            ]
        },
    )

    path: str = Field(
        min_length=1,
        max_length=4000,
        description="A dataset subset or quicklook, or a job result, with its query string "
        "(e.g. /api/v1/datasets/ID/subset?format=csv), relative to the service.",
    )
    expires_in: int | None = Field(
        default=None,
        ge=1,
        le=MAX_LIFETIME,
        description="Seconds the link lives (default: the service's access.signed_url_seconds).",
    )


def signed_path(
    services: Services,
    principal: Principal,
    path: str,
    query: list[tuple[str, str]],
    *,
    lifetime: int | None = None,
) -> tuple[str, int] | None:
    """``PATH?QUERY`` signed for ``principal`` and its expiry (Unix time); None for an
    anonymous caller, who needs no link (public data opens without one)."""
    by = link_signer_id(principal)
    if by is None or services.signer is None:
        return None
    signed, expires = services.signer.sign(path, query, by, lifetime=lifetime)
    return f"{quote(path, safe='/')}?{signed}", expires


def page_link(
    services: Services, principal: Principal, path: str, query: list[tuple[str, str]]
) -> str:
    """A link for a page to show: signed for a caller with a token, plain for others."""
    signed = signed_path(services, principal, path, query)
    if signed is not None:
        return signed[0]
    return f"{quote(path, safe='/')}?{urlencode(query)}" if query else quote(path, safe="/")


@router.post(
    "/links",
    status_code=201,
    summary="A short-lived signed link for a browser",
    description="For a download or an image a browser opens by itself (no header can be "
    "set): the path comes back with expires, by and signature added. The link reads as "
    "the caller's token (read scope only) until it expires or the token is revoked. "
    "Anonymous callers need no link: public data opens without one.",
    responses={
        400: {"description": "The path is not one that can be signed, or no token was sent."},
        401: {"description": "The token is not valid."},
        403: {"description": "The token may not read that dataset."},
        404: {"description": "No such dataset."},
    },
)
def create_link(
    body: LinkRequest, request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The signed link (relative to the service) and when it expires."""
    parts = urlsplit(body.path)
    if parts.scheme or parts.netloc or parts.fragment:
        raise InvalidRequest(
            f"Give the path of the link without scheme, host or fragment (got {body.path!r}), "
            f"e.g. {API}/datasets/ID/subset?format=csv."
        )
    root = str(request.scope.get("root_path", "")).rstrip("/")
    path = unquote(parts.path).removeprefix(root) if root else unquote(parts.path)
    if not SIGNABLE.match(path):
        raise InvalidRequest(
            f"{path!r} cannot be signed: links are for dataset subsets and quicklooks "
            f"({API}/datasets/ID/subset, .../quicklook/map.png, .../quicklook/series.png) "
            f"and job results ({API}/jobs/ID/result)."
        )
    if path.startswith(f"{API}/datasets/"):
        readable_dataset(services, principal, path.split("/")[4])  # 404/403 now, not later
    query = parse_qsl(parts.query, keep_blank_values=True)
    signed = signed_path(services, principal, path, query, lifetime=body.expires_in)
    if signed is None:
        raise InvalidRequest(
            "Signed links carry a token's rights; this request sent none. Public data opens "
            "without a link; for restricted data send 'Authorization: Bearer <token>'."
        )
    url, expires = signed
    return {
        "url": f"{root}{url}",
        "expires": datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds"),
    }
