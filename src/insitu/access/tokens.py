"""API tokens: created and revoked by an operator, stored hashed, checked on every request.

A token is a random secret shown once at creation. The store keeps only its SHA-256 (the
secret has 256 bits of entropy, so a slow hash adds nothing), its scopes and the collections
it may read. Tokens live in their own table of the catalog's database, so SQLite and
PostgreSQL both work and a revocation is seen by every service process at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from insitu.errors import InvalidRequest, NotFound, StoreError

__all__ = ["SCOPES", "TOKEN_PREFIX", "Token", "TokenStore"]

SCOPES: dict[str, str] = {
    "read": "search, metadata, Zarr chunks, subsets and quicklooks of granted collections",
    "compute": "submit, follow and cancel server-side operations on granted collections",
}
TOKEN_PREFIX = "ins_"

_meta = sa.MetaData()
_tokens = sa.Table(
    "access_tokens",
    _meta,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("collections", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.DateTime(timezone=True)),
)
# Collections granted to hub users (who log in through JupyterHub rather than with a token).
_grants = sa.Table(
    "access_user_grants",
    _meta,
    sa.Column("user", sa.String(200), primary_key=True),
    sa.Column("collection", sa.String(200), primary_key=True),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class Token:
    """What a token may do. ``collections`` holds names, or ``"*"`` for every collection."""

    id: str
    name: str
    scopes: frozenset[str]
    collections: frozenset[str]
    created: datetime
    revoked: datetime | None = None

    def grants(self, collection: str, scope: str = "read") -> bool:
        """True when this token may use ``scope`` on ``collection``."""
        return (
            self.revoked is None
            and scope in self.scopes
            and ("*" in self.collections or collection in self.collections)
        )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(text: str) -> frozenset[str]:
    return frozenset(x for x in text.split(",") if x)


class TokenStore:
    """Tokens in a SQL database (the catalog's, by default). Safe to share between threads."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._ready = False
        self._lock = threading.Lock()

    @classmethod
    def from_uri(cls, uri: str) -> TokenStore:
        """A store on the database at ``uri`` (a SQLAlchemy URL)."""
        try:
            url = sa.make_url(uri)
            # Every request verifies its token: keep a connection per server thread.
            pool = (
                {"pool_size": 32, "max_overflow": 32} if url.get_backend_name() == "sqlite" else {}
            )
            return cls(sa.create_engine(url, **pool))
        except Exception as exc:
            raise StoreError(f"Cannot open the token store at {uri!r}: {exc}") from exc

    def _setup(self) -> None:
        if not self._ready:
            with self._lock:
                if not self._ready:
                    _meta.create_all(self._engine, checkfirst=True)
                    self._ready = True

    def create(
        self, name: str, *, scopes: Iterable[str] = ("read",), collections: Iterable[str] = ("*",)
    ) -> tuple[Token, str]:
        """A new token and its secret; the secret is not kept and cannot be shown again."""
        scopes, colls = frozenset(scopes), frozenset(collections)
        unknown = sorted(scopes - SCOPES.keys())
        if unknown:
            raise InvalidRequest(f"Unknown token scope(s) {unknown}. Choose from {sorted(SCOPES)}.")
        if not scopes or not colls:
            raise InvalidRequest("A token needs at least one scope and one collection (or '*').")
        if not name.strip():
            raise InvalidRequest("Give the token a name that says who or what it is for.")
        self._setup()
        token = Token(secrets.token_hex(6), name, scopes, colls, datetime.now(UTC))
        secret = f"{TOKEN_PREFIX}{token.id}_{secrets.token_urlsafe(32)}"
        with self._engine.begin() as conn:
            conn.execute(
                _tokens.insert().values(
                    id=token.id,
                    name=name,
                    digest=_digest(secret),
                    scopes=",".join(sorted(scopes)),
                    collections=",".join(sorted(colls)),
                    created=token.created,
                )
            )
        return token, secret

    def tokens(self, *, include_revoked: bool = False) -> list[Token]:
        """Every token, oldest first (without secrets)."""
        self._setup()
        query = _tokens.select().order_by(_tokens.c.created)
        if not include_revoked:
            query = query.where(_tokens.c.revoked.is_(None))
        with self._engine.connect() as conn:
            return [self._token(row) for row in conn.execute(query)]

    def revoke(self, id_or_name: str) -> list[Token]:
        """Revoke the token with this id, or every live token with this name; return them."""
        self._setup()
        now = datetime.now(UTC)
        match = sa.or_(_tokens.c.id == id_or_name, _tokens.c.name == id_or_name)
        with self._engine.begin() as conn:
            rows = conn.execute(
                _tokens.select().where(match, _tokens.c.revoked.is_(None))
            ).fetchall()
            if not rows:
                raise NotFound(
                    f"No live token has id or name {id_or_name!r}. "
                    "Run 'insitu token list' to see them."
                )
            conn.execute(
                _tokens.update().where(match, _tokens.c.revoked.is_(None)).values(revoked=now)
            )
        return [self._token(r) for r in rows]

    def verify(self, secret: str) -> Token | None:
        """The live token whose secret this is, or None (unknown, malformed or revoked)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        self._setup()
        with self._engine.connect() as conn:
            row = conn.execute(_tokens.select().where(_tokens.c.digest == _digest(secret))).first()
        if row is None or row.revoked is not None:
            return None
        return self._token(row)

    def grant(self, user: str, collections: Iterable[str]) -> None:
        """Let hub user ``user`` read and compute on ``collections`` (names, or '*')."""
        self._setup()
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            have = self._granted(conn, user)
            for name in sorted(set(collections) - have):
                conn.execute(_grants.insert().values(user=user, collection=name, created=now))

    def ungrant(self, user: str, collections: Iterable[str]) -> None:
        """Take back what :meth:`grant` gave."""
        self._setup()
        with self._engine.begin() as conn:
            conn.execute(
                _grants.delete().where(
                    _grants.c.user == user, _grants.c.collection.in_(list(collections))
                )
            )

    def granted(self, user: str) -> frozenset[str]:
        """The collections granted to hub user ``user``."""
        self._setup()
        with self._engine.connect() as conn:
            return frozenset(self._granted(conn, user))

    def grants(self) -> dict[str, frozenset[str]]:
        """Every hub user's grants."""
        self._setup()
        out: dict[str, set[str]] = {}
        with self._engine.connect() as conn:
            for row in conn.execute(sa.select(_grants.c.user, _grants.c.collection)):
                out.setdefault(row.user, set()).add(row.collection)
        return {user: frozenset(c) for user, c in sorted(out.items())}

    @staticmethod
    def _granted(conn: sa.Connection, user: str) -> set[str]:
        rows = conn.execute(sa.select(_grants.c.collection).where(_grants.c.user == user))
        return {r.collection for r in rows}

    @staticmethod
    def _token(row: sa.Row[tuple[object, ...]]) -> Token:
        created: datetime = row.created
        revoked: datetime | None = row.revoked
        return Token(
            row.id, row.name, _split(row.scopes), _split(row.collections), created, revoked
        )

    def close(self) -> None:
        """Release connections."""
        self._engine.dispose()
