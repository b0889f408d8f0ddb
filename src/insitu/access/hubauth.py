"""Logins through JupyterHub, when the data service runs as the hub's service 'insitu'.

JupyterHub starts the service with its OAuth client in the environment
(``JUPYTERHUB_API_TOKEN``, ``JUPYTERHUB_CLIENT_ID``, ``JUPYTERHUB_SERVICE_PREFIX``, ...).
A browser without a session is sent through the hub's OAuth authorisation (no second login
for someone logged in to the hub); the access token it comes back with is kept in an
HttpOnly cookie scoped to the service's path. A notebook sends its server's hub token as
``Authorization: token ...``. Either way the hub says who it is (JupyterHub's ``HubOAuth``
does the exchange, the lookup and its short cache) and the token store says which
restricted collections that user was granted (``insitu user grant``).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

__all__ = ["HUB_COOKIE", "STATE_COOKIE", "HubLogin", "HubUser"]

HUB_COOKIE = "insitu_hub"
STATE_COOKIE = "insitu_hub_state"


@dataclass(frozen=True, slots=True)
class HubUser:
    """A user the hub vouched for."""

    name: str
    admin: bool
    groups: tuple[str, ...]


class HubLogin:
    """The service's side of the hub's OAuth, built from the environment the hub sets."""

    def __init__(self, cache_seconds: int = 60) -> None:
        from jupyterhub.services.auth import HubOAuth

        self.auth = HubOAuth(cache_max_age=cache_seconds)
        self.prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").rstrip("/")

    @staticmethod
    def available() -> bool:
        """True when this process was started by JupyterHub as a service with OAuth."""
        return bool(
            os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get("JUPYTERHUB_CLIENT_ID")
        )

    def authorize_url(self, state: str) -> str:
        """Where to send a browser to log in (the hub skips it for a logged-in user)."""
        query = urlencode(
            {
                "client_id": self.auth.oauth_client_id,
                "redirect_uri": self.auth.oauth_redirect_uri,
                "response_type": "code",
                "state": state,
            }
        )
        return f"{self.auth.oauth_authorization_url}?{query}"

    @staticmethod
    def new_state() -> str:
        return secrets.token_urlsafe(24)

    async def exchange(self, code: str) -> str:
        """The access token for an authorisation code."""
        token: str = await self.auth.token_for_code(code, sync=False)
        return token

    async def user(self, token: str) -> HubUser | None:
        """Who the hub says holds ``token``, if it may use this service; else None."""
        model: dict[str, Any] | None = await self.auth.user_for_token(token, sync=False)
        if not model or model.get("kind", "user") != "user":
            return None
        if not self.auth.check_scopes(self.auth.access_scopes, model):
            return None
        return HubUser(
            name=str(model["name"]),
            admin=bool(model.get("admin")),
            groups=tuple(model.get("groups") or ()),
        )
