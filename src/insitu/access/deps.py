"""What every route needs: the services of the app, who is asking, and what they may read.

A request names its token as ``Authorization: Bearer <token>`` or in the ``insitu_token``
cookie (the web pages), never in the query string (which ends up in logs, history and
``Referer`` headers): a ``token`` query parameter is refused. A browser link to something
restricted is a short-lived signed link instead (:mod:`insitu.access.signing`). Without a
token a request may read public collections only, and a dataset or collection it may not
read is answered exactly as one that does not exist.

The event loop never waits on a database server: who is asking is read from the token
store and the catalog's generation in the thread pool, unless both are SQLite files on
this machine (a read there takes microseconds and, with WAL, never waits for a writer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from insitu._util import LRU
from insitu.access.hubauth import HUB_COOKIE, HubLogin, HubUser
from insitu.access.signing import UrlSigner, signed_by
from insitu.access.tokens import TOKEN_PREFIX, Token, TokenStore
from insitu.catalog import Catalog, DatasetRecord
from insitu.errors import (
    CollectionNotFound,
    DatasetNotFound,
    Forbidden,
    InvalidRequest,
    Unauthorized,
)
from insitu.settings import Settings

if TYPE_CHECKING:
    from insitu.access.jobs import JobManager

__all__ = [
    "COOKIE",
    "CatalogSnapshot",
    "CurrentPrincipal",
    "CurrentServices",
    "Principal",
    "Services",
    "cache_headers",
    "check_collection",
    "check_readable",
    "get_principal",
    "get_services",
    "link_signer_id",
    "not_modified",
    "readable_dataset",
    "run_here_or_in_thread",
    "strong_etag",
]

_T = TypeVar("_T")

COOKIE = "insitu_token"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CatalogSnapshot:
    """What every request asks of the catalog, kept per store generation.

    A chunk request would otherwise cost three queries (collections, the dataset record
    with its variables decoded from JSON, the generation) before any data is read. Every
    write to the store bumps its generation, including a collection made public or
    private, so one cheap read of the generation per request keeps this exact.
    """

    def __init__(self, catalog: Catalog, size: int = 4096) -> None:
        self.catalog = catalog
        self.size = size
        self.generation = -1
        self._public: frozenset[str] = frozenset()
        self._names: tuple[str, ...] = ()
        self._records: LRU[str, DatasetRecord] = LRU(size)
        self._lock = threading.Lock()

    def refresh(self) -> int:
        """Read the store's generation; forget everything if it moved. Returns it."""
        gen = self.catalog.store.generation()
        if gen != self.generation:
            collections = self.catalog.collections()
            with self._lock:
                self._public = frozenset(c.name for c in collections if c.public)
                self._names = tuple(c.name for c in collections)
                self._records.clear()
                self.generation = gen
        return gen

    @property
    def public(self) -> frozenset[str]:
        """Names of the public collections (as of the last :meth:`refresh`)."""
        return self._public

    @property
    def names(self) -> tuple[str, ...]:
        """Names of every collection (as of the last :meth:`refresh`)."""
        return self._names

    def cached(self, dataset_id: str) -> DatasetRecord | None:
        """The record of a dataset if it is at hand (no query), else None."""
        return self._records.get(dataset_id)

    def dataset(self, dataset_id: str) -> DatasetRecord:
        """The record of a dataset; raises ``DatasetNotFound`` like the catalog."""
        record = self._records.get(dataset_id)
        if record is None:
            record = self.catalog.dataset(dataset_id)
            self._records.put(dataset_id, record)
        return record


@dataclass
class Services:
    """The long-lived objects one app serves from, built once by ``build_app``."""

    settings: Settings
    catalog: Catalog
    tokens: TokenStore
    jobs: JobManager | None = None
    hub: HubLogin | None = None
    signer: UrlSigner | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    snapshot: CatalogSnapshot = field(init=False)
    db_local: bool = field(init=False)

    def __post_init__(self) -> None:
        self.snapshot = CatalogSnapshot(self.catalog)
        catalog_db = sa.make_url(self.settings.catalog_uri).get_backend_name()
        self.db_local = self.tokens.local and catalog_db == "sqlite"

    async def read_db(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``, which reads the databases: in the thread pool unless they are
        local SQLite files (see the module doc), so the event loop never waits on a
        database server's round trip."""
        return await run_here_or_in_thread(self.db_local, fn, *args)


# The dependencies below are ``async``: a sync one costs a hop to the thread pool and back,
# about 0.4 ms of CPU on this machine, which is more than the work of a small chunk or a
# search. They read the databases through ``Services.read_db``.
async def get_services(request: Request) -> Services:
    """The app's :class:`Services`."""
    services: Services = request.app.state.services
    return services


CurrentServices = Annotated[Services, Depends(get_services)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a token (or nobody) and the collections anyone may read."""

    token: Token | None
    public: frozenset[str]
    hub_user: HubUser | None = None  # who logged in through JupyterHub, if anyone

    @property
    def hub_admin(self) -> bool:
        """True for an administrator of the hub (the data service runs under it)."""
        return self.hub_user is not None and self.hub_user.admin

    def can(self, collection: str, scope: str = "read") -> bool:
        """True when this request may use ``scope`` on ``collection``."""
        if self.token is not None and self.token.grants(collection, scope):
            return True
        return scope == "read" and collection in self.public

    def readable(self, collections: Iterable[str]) -> list[str]:
        """The names among ``collections`` this request may read, sorted."""
        return sorted(c for c in collections if self.can(c))

    def require(self, collection: str, scope: str = "read") -> None:
        """Raise :class:`Unauthorized` or :class:`Forbidden` unless :meth:`can` is true."""
        if self.can(collection, scope):
            return
        if self.token is None:
            raise Unauthorized(
                f"Collection {collection!r} is not public. Send a token with the "
                f"{scope!r} scope as 'Authorization: Bearer <token>' (an operator creates "
                "one with 'insitu token create')."
            )
        raise Forbidden(
            f"Token {self.token.name!r} ({self.token.id}) is not granted {scope!r} on "
            f"collection {collection!r}. Ask an operator for a token that includes it."
        )


def _secret(request: Request) -> str | None:
    if "token" in request.query_params:
        raise InvalidRequest(
            "Tokens are not accepted in the query string: URLs end up in server logs, "
            "browser history and Referer headers. Send it as 'Authorization: Bearer "
            "<token>'; for a link a browser opens, ask for a signed link "
            "(POST /api/v1/links). Revoke a token that was sent in a URL "
            "('insitu token revoke ID')."
        )
    auth = request.headers.get("authorization")
    if auth:
        kind, _, value = auth.partition(" ")
        if kind.lower() not in ("bearer", "token") or not value.strip():
            raise Unauthorized(
                "The Authorization header must be 'Bearer <token>'; got another form."
            )
        return value.strip()
    return request.cookies.get(COOKIE)


def _read_token(
    services: Services, secret: str | None, token_id: str | None = None
) -> tuple[frozenset[str], Token | None]:
    """The public collections and the token (by secret or id): both reads in one go."""
    services.snapshot.refresh()
    tokens = services.tokens
    if secret is not None:
        token = tokens.lookup(secret)
    else:
        token = tokens.get(token_id) if token_id is not None else None
    return services.snapshot.public, token


def _refusal(token: Token | None) -> Unauthorized:
    if token is None:
        return Unauthorized(
            "The token sent is not valid. Ask an operator for a new one "
            "('insitu token create'), or send none to read public collections."
        )
    if token.revoked is not None:
        when, what = token.revoked, "was revoked"
    else:
        assert token.expires is not None
        when, what = token.expires, "expired"
    return Unauthorized(
        f"Token {token.name!r} ({token.id}) {what} on {when:%Y-%m-%d %H:%M} UTC. Ask an "
        "operator for a new one ('insitu token create'), or send none to read public "
        "collections."
    )


async def _token_principal(services: Services, public: frozenset[str], token: Token) -> Principal:
    if token.use_due():
        await run_in_threadpool(services.tokens.record_use, token.id)
    return Principal(token, public)


async def get_principal(request: Request, services: CurrentServices) -> Principal:
    """Who is asking. A token that is unknown, revoked or expired is an error, not
    anonymity; a signed link acts as the token that it names, for reading only.

    The token is looked up on every request, so a revocation takes effect at once.
    """
    signer = signed_by(request.scope)
    if signer is not None:
        return await _link_principal(services, signer)
    secret = _secret(request)
    hub = services.hub
    if hub is not None:
        hub_token = request.cookies.get(HUB_COOKIE) if secret is None else secret
        if hub_token and not hub_token.startswith(TOKEN_PREFIX):
            user = await hub.user(hub_token)
            if user is None:
                raise Unauthorized(
                    "The JupyterHub token sent is not valid (expired, revoked, or without "
                    f"access to this service). Log in to the hub again and reload {hub.prefix}/."
                )
            return Principal(await _hub_principal(services, user), services.snapshot.public, user)
    public, token = await services.read_db(_read_token, services, secret)
    if secret is None:
        return Principal(None, public)
    if token is None or not token.live:
        raise _refusal(token)
    return await _token_principal(services, public, token)


def link_signer_id(principal: Principal) -> str | None:
    """The ``by`` of a signed link made for ``principal`` (None for anonymous callers,
    who need no link)."""
    if principal.hub_user is not None:
        kind = "hub-admin" if principal.hub_user.admin else "hub"
        return f"{kind}:{principal.hub_user.name}"
    return principal.token.id if principal.token is not None else None


async def _link_principal(services: Services, signer: str) -> Principal:
    """Who a signed link acts as: the token (or hub user) it names, read scope only."""
    kind, _, name = signer.partition(":")
    if kind in ("hub", "hub-admin") and name:
        token = await _hub_principal(services, HubUser(name, kind == "hub-admin", ()))
        public = services.snapshot.public
    else:
        public, found = await services.read_db(_read_token, services, None, signer)
        if found is None or not found.live:
            raise Unauthorized(
                "The token this link was made with has been revoked or has expired. Ask "
                "for a new link with a valid token."
            )
        token = found
        if token.use_due():
            await run_in_threadpool(services.tokens.record_use, token.id)
    return Principal(dataclasses.replace(token, scopes=token.scopes & {"read"}), public)


def _hub_grants(services: Services, user: str) -> frozenset[str]:
    services.snapshot.refresh()
    return services.tokens.granted(user)


async def _hub_principal(services: Services, user: HubUser) -> Token:
    """What a hub user may do: public collections, the ones granted to them, all if admin."""
    granted = await run_in_threadpool(_hub_grants, services, user.name)
    collections = {"*"} if user.admin else set(granted)
    return Token(
        id=f"hub:{user.name}",
        name=f"hub user {user.name}",
        scopes=frozenset({"read", "compute", "workflows"}),
        collections=frozenset(collections | services.snapshot.public),
        created=_EPOCH,
    )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def readable_dataset(services: Services, principal: Principal, dataset_id: str) -> DatasetRecord:
    """The record of a dataset this request may read (404 if unknown, or restricted and the
    request anonymous; 401/403 if the token is not granted)."""
    record = services.snapshot.dataset(dataset_id)
    check_readable(principal, record)
    return record


def check_readable(principal: Principal, record: DatasetRecord) -> None:
    """Raise unless ``principal`` may read the dataset. An anonymous caller gets the very
    404 of a dataset that does not exist: restricted ids are not told apart from missing
    ones. A caller with a token gets 403 naming the grant it lacks."""
    if principal.token is None and not principal.can(record.collection):
        raise DatasetNotFound(record.dataset_id)
    principal.require(record.collection)


def check_collection(services: Services, principal: Principal, name: str) -> None:
    """Raise unless ``principal`` may read collection ``name``; to an anonymous caller a
    restricted collection is as missing as an unknown one (and the hint lists only what
    it may read)."""
    if principal.token is None and not principal.can(name):
        raise CollectionNotFound(name, principal.readable(services.snapshot.names))
    services.catalog.collection(name)  # 404 for an unknown name
    principal.require(name)


def strong_etag(*parts: object) -> str:
    """A quoted ETag from the parts that identify a content (e.g. files' size and mtime)."""
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:32]
    return f'"{digest}"'


def not_modified(request: Request, etag: str, *, max_age: int = 3600) -> Response | None:
    """A 304 answer if the client already holds ``etag``, else None.

    Content behind an ETag built from file identities never changes under the same tag, so
    it may be cached; ``private`` because access depends on the token.
    """
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={max_age}"}
    match = request.headers.get("if-none-match")
    if match and etag in {m.strip() for m in match.split(",")}:
        return Response(status_code=304, headers=headers)
    return None


def cache_headers(etag: str, *, max_age: int = 3600) -> dict[str, str]:
    """Headers for an answer that carries ``etag``."""
    return {"ETag": etag, "Cache-Control": f"private, max-age={max_age}"}


async def run_here_or_in_thread(quick: bool, fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` on the event loop when ``quick`` (work well under a millisecond that
    cannot block on I/O or a lock), else in the thread pool.

    The thread pool keeps long work (building an index, opening files, reading big slabs)
    off the event loop; the hop itself costs about 0.4 ms of CPU, which would be most of the
    cost of a search or a small chunk if every request paid it.
    """
    if quick:
        return fn(*args)
    return await run_in_threadpool(fn, *args)
