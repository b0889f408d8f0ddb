"""The hub's OAuth for the web pages, when the service runs under JupyterHub.

A page asked for without a session goes through the hub's authorisation and comes back to
``/oauth_callback`` with a code; the access token it is exchanged for is kept in an
HttpOnly cookie limited to the service's path. API requests are never redirected: they
send a token or read public collections.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from starlette._utils import get_route_path

from insitu.access.deps import COOKIE
from insitu.access.hubauth import HUB_COOKIE, STATE_COOKIE, HubLogin
from insitu.errors import Forbidden

__all__ = ["install_hub_login"]

_NO_LOGIN = ("/static/", "/oauth_callback", "/api/", "/favicon")


def _local(path: str, fallback: str) -> str:
    if path.startswith("/") and not path.startswith("//") and "\\" not in path:
        return path
    return fallback


def install_hub_login(app: FastAPI, hub: HubLogin) -> None:
    """Send pages without a hub session through the hub's login; add the callback."""
    cookie_path = f"{hub.prefix}/"

    def _start(request: Request) -> Response:
        state = hub.new_state()
        path = request.scope["path"]  # the whole path, prefix included
        query = request.url.query
        target = _local(path + (f"?{query}" if query else ""), cookie_path)
        response = RedirectResponse(hub.authorize_url(state), status_code=302)
        response.set_cookie(
            STATE_COOKIE,
            f"{state}|{target}",
            max_age=600,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=cookie_path,
        )
        return response

    @app.middleware("http")
    async def hub_session(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = get_route_path(request.scope)
        if (
            request.method == "GET"
            and not path.startswith(_NO_LOGIN)
            and COOKIE not in request.cookies
        ):
            token = request.cookies.get(HUB_COOKIE)
            if not token or await hub.user(token) is None:
                return _start(request)
        return await call_next(request)

    @app.get("/oauth_callback", include_in_schema=False)
    async def oauth_callback(
        request: Request, code: str | None = None, state: str | None = None
    ) -> Response:
        """Where the hub sends the browser back with an authorisation code."""
        expected, _, target = request.cookies.get(STATE_COOKIE, "").partition("|")
        if not code or not state or not expected or not secrets.compare_digest(state, expected):
            raise Forbidden(
                f"The login through the hub could not be checked (no or a stale state). "
                f"Start again from {cookie_path}."
            )
        token = await hub.exchange(code)
        response = RedirectResponse(_local(target, cookie_path), status_code=303)
        response.set_cookie(
            HUB_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path=cookie_path,
        )
        response.delete_cookie(STATE_COOKIE, path=cookie_path)
        return response
