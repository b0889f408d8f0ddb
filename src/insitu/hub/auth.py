"""The embedded default authenticator: the platform's own accounts (``insitu user add``).

It is JupyterHub's :class:`~jupyterhub.auth.Authenticator` with the check done against the
accounts file (scrypt hashes); sessions, cookies and tokens stay JupyterHub's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from traitlets import Unicode

from insitu.hub.users import UserRegistry

__all__ = ["InsituAuthenticator"]


class InsituAuthenticator(Authenticator):  # type: ignore[misc]
    """Log in with a name and password from the platform's accounts file."""

    accounts_file = Unicode(
        help="The accounts file written by 'insitu user add' (DATA_DIR/hub/users.json).",
        config=True,
    )

    @property
    def registry(self) -> UserRegistry:
        return UserRegistry(Path(self.accounts_file))

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        name = self.normalize_username(data.get("username", ""))
        account = self.registry.check(name, data.get("password", ""))
        if account is None:
            self.log.warning("Failed login for %r", name)
            return None
        return {"name": account.name, "admin": account.admin}

    def check_allowed(self, username: str, authentication: Any = None) -> bool:
        return self.registry.get(username) is not None

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any]:
        """Sessions of a removed account end: JupyterHub refreshes a user's auth before a
        spawn and after ``auth_refresh_age`` (set short by the platform); False logs out."""
        account = self.registry.get(user.name)
        return False if account is None else {"name": user.name, "admin": account.admin}

    def check_blocked_users(self, username: str, authentication: Any = None) -> bool:
        return self.registry.get(username) is not None
