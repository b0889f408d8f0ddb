"""API tokens: created and revoked by an operator, stored hashed, checked on every request.

A token is a random secret shown once at creation. The store keeps only its SHA-256 (the
secret has 256 bits of entropy, so a slow hash adds nothing), its scopes, the collections
it may read, when it expires (if ever) and when it was last used. Tokens live in their own
table of the catalog's database, so SQLite and PostgreSQL both work and a revocation is
seen by every service process at once.

The last use is written at most once per :data:`USE_RESOLUTION` seconds per token, so a
busy client costs one small write a minute, not one per request. The tables are made,
and a token table of an earlier version gains its ``expires`` and ``last_used`` columns,
by the database's schema upgrade (:func:`insitu.db.upgrade`) on first use.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from insitu import db
from insitu.errors import InvalidRequest, NotFound

__all__ = ["SCOPES", "TOKEN_PREFIX", "USE_RESOLUTION", "Token", "TokenStore"]

SCOPES: dict[str, str] = {
    "read": "search, metadata, Zarr chunks, subsets and quicklooks of granted collections",
    "compute": "submit, follow and cancel server-side operations on granted collections",
    "workflows": "run the workflows an operator published, as server-side jobs",
}
TOKEN_PREFIX = "ins_"
USE_RESOLUTION = 60.0  # seconds: a token's last use is recorded to this precision

_tokens = sa.Table(
    "access_tokens",
    db.metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("collections", sa.Text, nullable=False),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked", sa.DateTime(timezone=True)),
    # Added after the first release: the schema's first revision adds them to older tables.
    sa.Column("expires", sa.DateTime(timezone=True)),
    sa.Column("last_used", sa.DateTime(timezone=True)),
)
# Collections granted to hub users (who log in through JupyterHub rather than with a token).
_grants = sa.Table(
    "access_user_grants",
    db.metadata,
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
    expires: datetime | None = None
    last_used: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        """True once the token's expiry time has passed."""
        return self.expires is not None and self.expires <= (now or datetime.now(UTC))

    @property
    def live(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked is None and not self.expired()

    def grants(self, collection: str, scope: str = "read") -> bool:
        """True when this token may use ``scope`` on ``collection``."""
        return (
            self.live
            and scope in self.scopes
            and ("*" in self.collections or collection in self.collections)
        )

    def use_due(self, now: datetime | None = None) -> bool:
        """True when this use should be recorded (the last one is older than
        :data:`USE_RESOLUTION` seconds, or none is recorded)."""
        now = now or datetime.now(UTC)
        return self.last_used is None or now - self.last_used >= timedelta(seconds=USE_RESOLUTION)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(text: str) -> frozenset[str]:
    return frozenset(x for x in text.split(",") if x)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite gives naive datetimes back; every stored time is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class TokenStore:
    """Tokens in a SQL database (the catalog's, by default). Safe to share between threads."""

    def __init__(self, engine: sa.Engine) -> None:
        """A store on ``engine``'s database; its schema is upgraded on first use."""
        self._engine = engine
        self._closed = False

    @classmethod
    def from_uri(cls, uri: str) -> TokenStore:
        """A store on the database at ``uri`` (a SQLAlchemy URL); nothing is read yet."""
        return cls(db.engine(uri))

    @property
    def local(self) -> bool:
        """True for a database file on this machine (SQLite): a read is a few microseconds
        of file access, never a network round trip."""
        return self._engine.dialect.name == "sqlite"

    def _setup(self) -> None:
        db.upgrade(self._engine)  # once per engine: then a set lookup

    def create(
        self,
        name: str,
        *,
        scopes: Iterable[str] = ("read",),
        collections: Iterable[str] = ("*",),
        expires_in: timedelta | None = None,
    ) -> tuple[Token, str]:
        """A new token and its secret; the secret is not kept and cannot be shown again.

        ``expires_in``: the token stops working that long from now (default: never).
        """
        scopes, colls = frozenset(scopes), frozenset(collections)
        unknown = sorted(scopes - SCOPES.keys())
        if unknown:
            raise InvalidRequest(f"Unknown token scope(s) {unknown}. Choose from {sorted(SCOPES)}.")
        if not scopes or not colls:
            raise InvalidRequest("A token needs at least one scope and one collection (or '*').")
        if not name.strip():
            raise InvalidRequest("Give the token a name that says who or what it is for.")
        if expires_in is not None and expires_in <= timedelta(0):
            raise InvalidRequest(
                f"A token's lifetime must be positive; got {expires_in}. Give e.g. 30 days, "
                "or none for a token that does not expire."
            )
        self._setup()
        now = datetime.now(UTC)
        expires = now + expires_in if expires_in is not None else None
        token = Token(secrets.token_hex(6), name, scopes, colls, now, expires=expires)
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
                    expires=expires,
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

    def lookup(self, secret: str) -> Token | None:
        """The token whose secret this is, live or not (revoked, expired); None if unknown."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        self._setup()
        with self._engine.connect() as conn:
            row = conn.execute(_tokens.select().where(_tokens.c.digest == _digest(secret))).first()
        return self._token(row) if row is not None else None

    def verify(self, secret: str) -> Token | None:
        """The live token whose secret this is, or None (unknown, malformed, revoked or
        expired)."""
        token = self.lookup(secret)
        return token if token is not None and token.live else None

    def get(self, token_id: str) -> Token | None:
        """The token with this id, live or not; None if there is none."""
        self._setup()
        with self._engine.connect() as conn:
            row = conn.execute(_tokens.select().where(_tokens.c.id == token_id)).first()
        return self._token(row) if row is not None else None

    def record_use(self, token_id: str, when: datetime | None = None) -> None:
        """Record that the token was used at ``when`` (default now); an earlier time than
        the one recorded changes nothing."""
        self._setup()
        when = when or datetime.now(UTC)
        last = _tokens.c.last_used
        with self._engine.begin() as conn:
            conn.execute(
                _tokens.update()
                .where(_tokens.c.id == token_id, sa.or_(last.is_(None), last < when))
                .values(last_used=when)
            )

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
        created = _utc(row.created)
        assert created is not None
        return Token(
            row.id,
            row.name,
            _split(row.scopes),
            _split(row.collections),
            created,
            revoked=_utc(row.revoked),
            expires=_utc(row.expires),
            last_used=_utc(row.last_used),
        )

    def close(self) -> None:
        """Release connections."""
        if not self._closed:
            self._closed = True
            db.release(self._engine)
