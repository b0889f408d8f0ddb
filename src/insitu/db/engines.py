"""One SQLAlchemy engine per database URL in a process, shared by every store on it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from insitu.errors import StoreError

__all__ = ["engine", "release"]

_lock = threading.Lock()
_engines: dict[str, Engine] = {}  # by URL, with its password
_users: dict[Engine, int] = {}  # stores holding each engine


def engine(uri: str) -> Engine:
    """The engine of the database at ``uri`` (a SQLAlchemy URL), made on first use.

    No connection is opened here. Give it back with :func:`release` when done.
    """
    try:
        url = sa.make_url(uri)
    except sa.exc.ArgumentError as exc:
        raise StoreError(
            f"Database URL {uri!r} is not a database URL. Use 'sqlite:///PATH' or "
            "'postgresql+psycopg://USER@HOST:PORT/DB'."
        ) from exc
    key = url.render_as_string(hide_password=False)
    with _lock:
        found = _engines.get(key)
        if found is None:
            found = _engines[key] = _create(url)
        _users[found] = _users.get(found, 0) + 1
        return found


def release(used: Engine) -> None:
    """One store fewer uses ``used``; the last one closes its connections."""
    with _lock:
        left = _users.get(used, 0) - 1
        if left > 0:
            _users[used] = left
            return
        _users.pop(used, None)
        for key in [k for k, e in _engines.items() if e is used]:
            del _engines[key]
    used.dispose()


def _create(url: sa.URL) -> Engine:
    try:
        if url.get_backend_name() != "sqlite":
            # A server may drop idle connections (restart, failover): test each on checkout.
            # 30 at most, as the catalog's and the token store's engines had together.
            return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
        if not url.database or url.database == ":memory:":
            return sa.create_engine(url)  # one connection per thread, as SQLAlchemy does
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # A service answers from dozens of threads at once: with the default pool (5 + 10
        # overflow) most of them opened a fresh connection, with its pragmas, per query.
        made = sa.create_engine(url, connect_args={"timeout": 60}, pool_size=32, max_overflow=32)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise StoreError(
            f"Cannot open the database at {url.render_as_string()}: {exc}. Check the URL in "
            "INSITU_CATALOG__URI (PostgreSQL needs the 'postgres' extra: insitu[postgres])."
        ) from exc

    @sa.event.listens_for(made, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return made
