"""The schema of insitu's database: the tables every store defines, brought to the newest
Alembic revision in place.

A database made before migrations existed (no ``alembic_version`` table) holds some of
the first revision's tables, as the stores then created them; that revision creates only
what is missing and adds the token columns an older token table lacks, then Alembic
records it, so such a database is upgraded with its data. Two processes never migrate at
once: PostgreSQL holds an advisory lock for the transaction, SQLite its write lock.
"""

from __future__ import annotations

import threading
import weakref

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from insitu.errors import StoreError

__all__ = ["HEAD", "metadata", "revision", "upgrade"]

metadata = sa.MetaData()
"""Every table of the database: each store defines its own on it."""

HEAD = "0007"
"""The newest revision in ``migrations/versions`` (a test checks): a database already
there is not touched, and Alembic is not even imported."""

_LOCK_KEY = 0x1A5C_0DB0_0001  # pg_advisory_xact_lock key of schema upgrades
_current: weakref.WeakSet[Engine] = weakref.WeakSet()  # engines known to be at HEAD
_lock = threading.Lock()


def revision(conn: Connection) -> str | None:
    """The database's schema revision, or None before any (new, or made by an older
    version of insitu)."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    found = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return None if found is None else str(found)


def upgrade(engine: Engine) -> None:
    """Bring the database of ``engine`` to :data:`HEAD`, once per engine and process.

    Raises :class:`StoreError` when the database cannot be reached or upgraded.
    """
    if engine in _current:
        return
    with _lock:
        if engine in _current:
            return
        where = engine.url.render_as_string()
        try:
            with engine.connect() as conn:
                if revision(conn) != HEAD:
                    _migrate(conn)
        except sa.exc.SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            raise StoreError(
                f"Cannot open the database at {where}: {exc.__class__.__name__}: {reason}. "
                "Check the URL in INSITU_CATALOG__URI and that the database is running."
            ) from exc
        _current.add(engine)


def _migrate(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    conn.rollback()  # end the read above: the lock is taken first in the transaction
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    elif conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits for another writer (60 s)
    config = Config()
    config.set_main_option("script_location", "insitu.db:migrations")
    config.attributes["connection"] = conn
    try:
        command.upgrade(config, "head")  # another process may have done it: then nothing
    except CommandError as exc:
        raise StoreError(
            f"The database at {conn.engine.url.render_as_string()} has schema revision "
            f"{revision(conn)!r}, which this version of insitu (newest revision {HEAD!r}) "
            f"does not know: {exc}. Upgrade insitu to the version that wrote it."
        ) from exc
    conn.commit()
