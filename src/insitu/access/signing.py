"""Short-lived signed URLs: a link a browser can follow without a token in it.

Tokens never travel in query strings (those end up in server logs, browser history and
``Referer`` headers). Where a browser needs a plain link to something restricted (a
quicklook ``<img>``, a download), the service hands out the path with three parameters
added: ``expires`` (Unix time), ``by`` (the id of the token, or ``hub:NAME`` for a hub
user, whose rights the link carries) and ``signature``, an HMAC-SHA256 of the method, the
path, the other query parameters, ``expires`` and ``by`` under a key that only the service
holds (``DATA_DIR/access/url-signing.key``, mode 0600, made on first use and shared by
every server process on the data directory).

:class:`SignedLinks` (an ASGI middleware) checks the signature and the expiry before the
route runs, so a bad or stale link gets its 401 before the first byte, and takes the three
parameters out of the query the route sees. The route then runs as the token named by
``by``, read scope only, looked up as on every request: revoking the token kills its links.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from insitu.errors import ConfigError, InsituError, InvalidRequest, Unauthorized

__all__ = ["SIGNABLE", "SIGNED_BY", "SignedLinks", "UrlSigner", "signed_by"]

# Where a signed link may point (paths after the API prefix), all GET: what a browser shows
# or downloads. Anything else keeps needing a header or the login cookie.
SIGNABLE = re.compile(
    r"^/api/v1/(?:datasets/[^/]+/(?:subset|quicklook/(?:map|series)\.png)|jobs/[^/]+/result)$"
)
SIGNED_BY = "insitu.signed_by"  # key in the ASGI scope's state: whose rights a link carries
_PARAMS = ("expires", "by", "signature")
KEY_FILE = "url-signing.key"
MAX_LIFETIME = 7 * 86400


class UrlSigner:
    """Signs and checks links with one secret key."""

    def __init__(self, key: bytes, lifetime: int = 600) -> None:
        if len(key) < 32:
            raise ConfigError("The URL-signing key must be at least 32 bytes.")
        if not 1 <= lifetime <= MAX_LIFETIME:
            raise ConfigError(
                f"Signed links must live 1 s to {MAX_LIFETIME} s; got {lifetime} s "
                "(access.signed_url_seconds)."
            )
        self._key = key
        self.lifetime = lifetime

    @classmethod
    def from_data_dir(cls, data_dir: Path, lifetime: int = 600) -> UrlSigner:
        """The signer with the key kept in ``DATA_DIR/access`` (made on first use, 0600)."""
        return cls(_key(data_dir / "access" / KEY_FILE), lifetime)

    def _mac(self, method: str, path: str, query: list[tuple[str, str]], exp: int, by: str) -> str:
        message = "\n".join((method.upper(), path, urlencode(sorted(query)), str(exp), by))
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def sign(
        self,
        path: str,
        query: list[tuple[str, str]],
        by: str,
        *,
        lifetime: int | None = None,
        now: float | None = None,
    ) -> tuple[str, int]:
        """The query string (without '?') of a signed link to ``path``, and its expiry.

        The expiry is rounded up to a quarter of the lifetime, so a page shown twice in a
        row links the same URLs and the browser's cache still works.
        """
        if not SIGNABLE.match(path):
            raise InvalidRequest(
                f"{path!r} cannot be signed: links are for dataset subsets, quicklooks and "
                "job results (GET /api/v1/datasets/ID/subset, .../quicklook/map.png, "
                ".../quicklook/series.png, /api/v1/jobs/ID/result)."
            )
        clean = [(k, v) for k, v in query if k not in _PARAMS]
        life = lifetime or self.lifetime
        if not 1 <= life <= MAX_LIFETIME:
            raise InvalidRequest(f"A link lives 1 to {MAX_LIFETIME} seconds; got {life}.")
        step = max(1, life // 4)
        exp = math.ceil(((now or time.time()) + life) / step) * step
        mac = self._mac("GET", path, clean, exp, by)
        return urlencode([*clean, ("expires", str(exp)), ("by", by), ("signature", mac)]), exp

    def check(
        self, method: str, path: str, query: list[tuple[str, str]], *, now: float | None = None
    ) -> tuple[str, list[tuple[str, str]]] | None:
        """``(by, query without the link's parameters)`` for a valid signed link; None for
        a request that carries no signature; raises :class:`Unauthorized` for a bad or
        expired one."""
        given = {k: v for k, v in query if k in _PARAMS}
        if "signature" not in given:
            return None
        rest = [(k, v) for k, v in query if k not in _PARAMS]
        exp_text, by, mac = given.get("expires", ""), given.get("by", ""), given["signature"]
        if (
            method.upper() not in ("GET", "HEAD")
            or not SIGNABLE.match(path)
            or not exp_text.isdigit()
            or not by
            or len([k for k, _ in query if k in _PARAMS]) != len(_PARAMS)
            or not hmac.compare_digest(mac, self._mac("GET", path, rest, int(exp_text), by))
        ):
            raise Unauthorized(
                "This link's signature does not match it (the link was changed, or is not "
                "from this service). Ask the service for a new link, or send a token as "
                "'Authorization: Bearer <token>'."
            )
        if int(exp_text) < (now or time.time()):
            raise Unauthorized(
                "This link has expired. Reload the page it came from, or ask for a new link "
                "(POST /api/v1/links)."
            )
        return by, rest


def _key(path: Path) -> bytes:
    """The key in ``path``; made (32 random bytes, hex, 0600) if there is none yet."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise ConfigError(
            f"The URL-signing key {path} is not hex text. Delete it: the service makes a new "
            "one (links already handed out stop working)."
        ) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)  # atomic, and never replaces a key another process made first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


def signed_by(scope: Scope) -> str | None:
    """Whose rights the request's signed link carries (set by :class:`SignedLinks`)."""
    by = scope.get("state", {}).get(SIGNED_BY)
    return str(by) if by is not None else None


class SignedLinks:
    """ASGI middleware: checks a signed link before the route runs (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        signer: UrlSigner,
        answer: Callable[[InsituError, str], ASGIApp],
    ) -> None:
        self.app = app
        self.signer = signer
        self.answer = answer  # the app's answer to one of our errors, given a request id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or b"signature=" not in scope.get("query_string", b""):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        path = get_route_path(scope)
        try:
            checked = self.signer.check(scope["method"], path, query)
        except Unauthorized as exc:
            rid = scope.get("state", {}).get("request_id", "-")
            await self.answer(exc, rid)(scope, receive, send)
            return
        if checked is not None:
            by, rest = checked
            scope = {**scope, "query_string": urlencode(rest).encode("latin-1")}
            scope["state"] = {**scope.get("state", {}), SIGNED_BY: by}
        await self.app(scope, receive, send)
