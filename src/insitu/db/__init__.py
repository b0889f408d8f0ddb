"""The database: one engine per database URL, and its schema kept at the newest revision.

The catalog, the token store and the job store keep their tables in one database (the
catalog's URL); each defines its tables on :data:`metadata`. :func:`engine` gives the one
engine of a URL in this process (SQLite pragmas and pool, PostgreSQL pool checks);
:func:`upgrade` brings its schema to the newest Alembic revision (``migrations/``), in
place, the first time a store opens it, so every command upgrades a database an older
version made.
"""

from sqlalchemy.engine import Engine

from insitu.db.engines import engine, release
from insitu.db.schema import HEAD, metadata, revision, upgrade

__all__ = ["HEAD", "engine", "metadata", "opened", "release", "revision", "upgrade"]


def opened(uri: str) -> Engine:
    """:func:`engine` of ``uri`` with its schema upgraded (the engine given back if that
    fails): what a store's constructor starts with. Give it back with :func:`release`."""
    used = engine(uri)
    try:
        upgrade(used)
    except BaseException:
        release(used)
        raise
    return used
