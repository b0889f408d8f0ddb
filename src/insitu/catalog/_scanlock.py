"""One scan of a collection at a time, across processes and hosts, released if its holder dies.

PostgreSQL: a session advisory lock on a connection held for the scan (the server drops it
with the connection). SQLite: ``flock`` on a file beside the database (the kernel drops it
with the process). Either way a crashed scan never leaves a collection locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from insitu.errors import ScanInProgress, StoreError

__all__ = ["scan_lock"]


@contextlib.contextmanager
def scan_lock(
    engine: Engine, collection: str, failed: Callable[[sa.exc.DBAPIError], StoreError]
) -> Iterator[None]:
    """Hold the scan lock of ``collection`` or raise :class:`ScanInProgress` (``failed``
    makes the error for a database that does not answer)."""
    if engine.dialect.name == "postgresql":
        with _advisory(engine, collection, failed):
            yield
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _flock(str(engine.url.database), collection):
            yield
    else:  # an in-memory database belongs to one process: nothing to guard against
        yield


@contextlib.contextmanager
def _advisory(
    engine: Engine, collection: str, failed: Callable[[sa.exc.DBAPIError], StoreError]
) -> Iterator[None]:
    digest = hashlib.sha256(f"insitu-scan:{collection}".encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)
    try:
        conn = engine.connect()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise failed(exc) from exc
    with conn:
        try:
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise failed(exc) from exc
        if not got:
            raise ScanInProgress(collection, "another process (it holds the database's lock)")
        try:
            yield
        finally:
            # If the server went away meanwhile, the lock went with the session.
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


@contextlib.contextmanager
def _flock(database: str, collection: str) -> Iterator[None]:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", collection)
    path = f"{database}.scan-{safe}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise ScanInProgress(collection, holder or "another process") from None
        os.ftruncate(fd, 0)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
