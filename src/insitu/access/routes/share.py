"""The sharing page: a hub user shares their default server with other users, or stops.

For people who do not use JupyterHub's REST API. The page lists who may open the logged-in
user's server and has a form to share it with another user name or to revoke a share. The
data service does it through the hub's sharing API with the user's own hub session token
(issued to the service's OAuth client with ``shares!user`` and ``access:servers!user``: the
service itself holds no right to anyone's server), so only ever on the server of the user the
hub session names: the form says with whom, never whose.

A POST carries a token bound to the hub session (an HMAC of the session cookie under a key
derived from the service's hub token), and a POST whose ``Origin`` is another site is
refused; the hub session cookie itself is ``SameSite=Lax``, so other sites' forms do not
carry it either. The page is only there when the service runs under the hub.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from insitu.access.deps import CurrentPrincipal, CurrentServices, Principal, Services
from insitu.access.hubauth import HUB_COOKIE, HubLogin, HubUser
from insitu.access.routes.web import PageRoute, render
from insitu.errors import BackendUnavailable, NotFound, Unauthorized

if TYPE_CHECKING:
    import httpx

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

# JupyterHub's user names are at most 255 characters and never contain a '/'.
_MAX_NAME = 255


class _Page:
    """What one request of the page works with: the hub, the user, their session."""

    def __init__(self, request: Request, services: Services) -> None:
        if services.hub is None:
            raise NotFound(
                "The sharing page exists when the data service runs under JupyterHub "
                "('insitu up'): there are no user servers to share here."
            )
        self.request = request
        self.settings = services.settings
        self.hub: HubLogin = services.hub
        self.session = request.cookies.get(HUB_COOKIE, "")
        self.api = str(self.hub.auth.api_url).rstrip("/")
        # The key of the form tokens: the service's own secret, never sent anywhere.
        self.key = str(self.hub.auth.api_token)

    async def user(self) -> HubUser:
        """The user of the hub session; raises :class:`Unauthorized` without one."""
        user = await self.hub.user(self.session) if self.session else None
        if user is None:
            raise Unauthorized(
                "Sharing needs a hub login: open this page from the hub "
                f"({self.hub.prefix}/share) after logging in there."
            )
        return user

    def csrf(self) -> str:
        """The form token of this session (the same for every form of the session)."""
        key = hashlib.sha256(b"insitu share page\0" + self.key.encode()).digest()
        return hmac.new(key, self.session.encode(), hashlib.sha256).hexdigest()

    def refusal(self, form: dict[str, str]) -> str | None:
        """Why a POST is refused (from another site, or without this session's form
        token), or None when it may go ahead."""
        origin = self.request.headers.get("origin")
        if origin is not None and origin not in self._origins():
            return f"A form of another site ({origin}) cannot change your shares."
        sent = form.get("csrf", "")
        if not self.session or not hmac.compare_digest(sent, self.csrf()):
            return (
                "The form was stale or not from this page (its token did not match your "
                "session). Nothing was changed: try again with the form below."
            )
        return None

    def _origins(self) -> set[str]:
        """Origins this page is served from: this request's host and the public URL."""
        url = self.request.base_url
        origins = {f"{url.scheme}://{url.netloc}"}
        parts = urlsplit(self.settings.service_url)
        origins.add(f"{parts.scheme}://{parts.netloc}")
        return origins

    async def call(
        self, method: str, path: str, body: dict[str, str] | None = None
    ) -> httpx.Response:
        """The hub's REST API at ``path`` as the logged-in user (their hub session's token,
        which the hub issued with ``shares!user``: the service itself holds no right to
        anyone's server)."""
        import httpx

        try:
            async with httpx.AsyncClient(timeout=30) as client:
                return await client.request(
                    method,
                    f"{self.api}/{path}",
                    json=body,
                    headers={"Authorization": f"token {self.session}"},
                )
        except httpx.HTTPError as exc:
            raise BackendUnavailable(
                f"The hub's API at {self.api} did not answer ({type(exc).__name__}). "
                "Try again in a moment; if it persists, tell the operator."
            ) from exc

    def unexpected(self, response: httpx.Response, what: str) -> BackendUnavailable:
        """The error for an answer of the hub that the page cannot explain to the user."""
        log.warning("hub API %s: %s %s", what, response.status_code, response.text[:300])
        hint = (
            " The data service's OAuth client needs the 'shares!user', "
            "'access:servers!user' and 'read:users:name' scopes (hub services config)."
            if response.status_code == 403
            else ""
        )
        return BackendUnavailable(
            f"The hub refused to {what} ({response.status_code}: {_hub_message(response)})."
            f"{hint} Tell the operator."
        )


def _hub_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


async def _shares(page: _Page, owner: str) -> list[dict[str, str]] | None:
    """Who may open ``owner``'s default server; None when it does not exist yet."""
    response = await page.call("GET", f"shares/{quote(owner, safe='')}/")
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise page.unexpected(response, "list your shares")
    out = []
    for share in response.json().get("items", []):
        kind = "group" if share.get("kind") == "group" else "user"
        name = (share.get(kind) or {}).get("name", "")
        out.append({"kind": kind, "name": name, "since": share.get("created_at") or ""})
    return sorted(out, key=lambda s: (s["kind"], s["name"]))


async def _show(
    page: _Page,
    user: HubUser,
    principal: Principal,
    *,
    status: int = 200,
    done: str | None = None,
    error: str | None = None,
) -> HTMLResponse:
    shares = await _shares(page, user.name)
    base = str(page.hub.auth.base_url).rstrip("/")
    server_path = f"{base}/user/{quote(user.name, safe='')}/"
    hub_url = page.settings.hub_url
    return render(
        page.request,
        "share.html",
        principal=principal,
        status=status,
        user=user.name,
        shares=shares,
        server_path=server_path,
        server_url=f"{hub_url}/user/{quote(user.name, safe='')}/",
        csrf=page.csrf(),
        done=done,
        error=error,
    )


@router.get("/share", response_class=HTMLResponse)
async def share_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """Who may open your server, a form to share it with someone, and buttons to revoke."""
    page = _Page(request, services)
    return await _show(page, await page.user(), principal)


def _name(value: str) -> str | None:
    name = value.strip()
    if not name or len(name) > _MAX_NAME or "/" in name:
        return None
    return name


@router.post("/share", response_class=HTMLResponse)
async def share_action(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """Share your server with a user (``action=share``) or revoke a user's or a group's
    share (``action=revoke``). Whose server is always the logged-in user's."""
    page = _Page(request, services)
    user = await page.user()
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    refused = page.refusal(form)
    if refused is not None:
        log.warning("share form of %s refused: %s", user.name, refused)
        return await _show(page, user, principal, status=403, error=refused)
    owner = quote(user.name, safe="")
    action = form.get("action", "")
    kind = "group" if action == "revoke" and form.get("group") else "user"
    name = _name(form.get(kind, ""))
    if action not in ("share", "revoke") or name is None:
        return await _show(
            page,
            user,
            principal,
            status=400,
            error="Give the user name to share with (at most 255 characters, no '/').",
        )
    if action == "share":
        if name == user.name:
            return await _show(
                page, user, principal, status=400, error="It is your own server already."
            )
        response = await page.call("POST", f"shares/{owner}/", {"user": name})
        if response.status_code == 400:
            return await _show(
                page,
                user,
                principal,
                status=400,
                error=f"The hub did not share your server with {name!r}: "
                f"{_hub_message(response)}. Check the spelling of the name.",
            )
        if response.status_code == 404:
            return await _show(
                page,
                user,
                principal,
                status=409,
                error="Your server has never been started: start it once from the hub's "
                "home page, then share it.",
            )
        if response.status_code != 200:
            raise page.unexpected(response, f"share your server with {name!r}")
        log.info("%s shared their server with user %s", user.name, name)
        done = f"{name} may now open your server."
    else:
        response = await page.call("PATCH", f"shares/{owner}/", {kind: name})
        if response.status_code not in (200, 404):
            raise page.unexpected(response, f"revoke the share of {kind} {name!r}")
        log.info("%s revoked the share of %s %s", user.name, kind, name)
        done = f"{name} may no longer open your server."
    return await _show(page, user, principal, done=done)
