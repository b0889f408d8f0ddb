"""Job records: one table of the catalog's database, shared by every server process.

Each change of state is a conditional update (``WHERE status IN ...``): whoever changes a
job first wins, whichever process it runs in. :meth:`JobStore.fail_abandoned` marks
failed the active jobs of server processes that are gone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from insitu import db

__all__ = ["ACTIVE", "STALE_SECONDS", "STATES", "Job", "JobStore"]

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = ("queued", "running")
STALE_SECONDS = 300.0  # an active job whose process wrote no heartbeat for this long is gone

_jobs = sa.Table(
    "access_jobs",
    db.metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("token_id", sa.String(16), index=True),
    sa.Column("operation", sa.String(64), nullable=False),
    sa.Column("datasets", sa.Text, nullable=False),
    sa.Column("collections", sa.Text, nullable=False),
    sa.Column("variable", sa.String(200)),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("time", sa.String(100)),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started", sa.DateTime(timezone=True)),
    sa.Column("finished", sa.DateTime(timezone=True)),
    sa.Column("server", sa.String(300), nullable=False),
    sa.Column("heartbeat", sa.DateTime(timezone=True)),
    sa.Column("cached", sa.Boolean, nullable=False, default=False),
    sa.Column("result_key", sa.String(64)),
    sa.Column("result_path", sa.Text),
    sa.Column("provenance", sa.Text),
    sa.Column("error_type", sa.String(100)),
    sa.Column("error", sa.Text),
)


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(value: datetime | None) -> datetime | None:
    # SQLite gives naive datetimes back; every stored time is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else None


@dataclass(frozen=True, slots=True)
class Job:
    """One job as recorded. ``token_id`` is None for an anonymous submission."""

    id: str
    status: str
    operation: str
    datasets: tuple[str, ...]
    collections: tuple[str, ...]
    variable: str | None
    params: dict[str, Any]
    time: str | None
    token_id: str | None
    created: datetime
    server: str
    started: datetime | None = None
    finished: datetime | None = None
    cached: bool = False
    result_key: str | None = None
    result_path: str | None = None
    provenance: dict[str, Any] | None = None
    error_type: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """What the API tells about the job (without links)."""
        end = self.finished
        return {
            "id": self.id,
            "status": self.status,
            "operation": self.operation,
            "variable": self.variable,
            "params": self.params,
            "time": self.time,
            "datasets": list(self.datasets),
            "collections": list(self.collections),
            "created": _iso(self.created),
            "started": _iso(self.started),
            "finished": _iso(end),
            "queued_seconds": _seconds(self.created, self.started or end),
            "run_seconds": _seconds(self.started, end),
            "cached": self.cached,
            "result": {"key": self.result_key} if self.status == "done" else None,
            "error": (
                {"type": self.error_type, "message": self.error}
                if self.status == "failed"
                else None
            ),
            # a failed workflow run keeps its record too (which node failed, its log)
            "provenance": self.provenance if self.status in ("done", "failed") else None,
        }


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def _job(row: sa.Row[Any]) -> Job:
    created = _utc(row.created)
    assert created is not None
    return Job(
        id=row.id,
        status=row.status,
        operation=row.operation,
        datasets=tuple(json.loads(row.datasets)),
        collections=tuple(json.loads(row.collections)),
        variable=row.variable,
        params=json.loads(row.params),
        time=row.time,
        token_id=row.token_id,
        created=created,
        server=row.server,
        started=_utc(row.started),
        finished=_utc(row.finished),
        cached=bool(row.cached),
        result_key=row.result_key,
        result_path=row.result_path,
        provenance=json.loads(row.provenance) if row.provenance else None,
        error_type=row.error_type,
        error=row.error,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class JobStore:
    """Job records in a SQL database (the catalog's). Safe to share between threads."""

    def __init__(self, engine: sa.Engine) -> None:
        """A store on ``engine``'s database, upgraded to the newest schema if older."""
        self._engine = engine
        self._closed = False
        db.upgrade(engine)

    @classmethod
    def from_uri(cls, uri: str) -> JobStore:
        """A store on the database at ``uri`` (a SQLAlchemy URL)."""
        engine = db.engine(uri)
        try:
            return cls(engine)
        except BaseException:
            db.release(engine)
            raise

    def insert(self, job: Job) -> None:
        """Record a new job."""
        with self._engine.begin() as conn:
            conn.execute(
                _jobs.insert().values(
                    id=job.id,
                    status=job.status,
                    token_id=job.token_id,
                    operation=job.operation,
                    datasets=json.dumps(list(job.datasets)),
                    collections=json.dumps(list(job.collections)),
                    variable=job.variable,
                    params=json.dumps(job.params),
                    time=job.time,
                    created=job.created,
                    server=job.server,
                    heartbeat=job.created,
                    cached=False,
                )
            )

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or None."""
        with self._engine.connect() as conn:
            row = conn.execute(_jobs.select().where(_jobs.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def jobs(self, token_id: str, *, status: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs submitted with ``token_id``, newest first."""
        query = _jobs.select().where(_jobs.c.token_id == token_id)
        if status is not None:
            query = query.where(_jobs.c.status == status)
        query = query.order_by(_jobs.c.created.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [_job(row) for row in conn.execute(query)]

    def active(
        self, operation: str, datasets: Iterable[str], variable: str | None, time: str | None
    ) -> Job | None:
        """The newest queued or running anonymous job of exactly this operation, datasets,
        variable and time range, or None: another process's, to wait for instead of
        computing the same again."""
        query = _jobs.select().where(
            _jobs.c.status.in_(ACTIVE),
            _jobs.c.token_id.is_(None),
            _jobs.c.operation == operation,
            _jobs.c.datasets == json.dumps(list(datasets)),
            _jobs.c.variable.is_(None) if variable is None else _jobs.c.variable == variable,
            _jobs.c.time.is_(None) if time is None else _jobs.c.time == time,
        )
        with self._engine.connect() as conn:
            row = conn.execute(query.order_by(_jobs.c.created.desc()).limit(1)).first()
        return _job(row) if row is not None else None

    def update(self, job_id: str, states: Iterable[str], **values: Any) -> bool:
        """Set ``values`` if the job is in one of ``states``; True if it was."""
        query = _jobs.update().where(_jobs.c.id == job_id, _jobs.c.status.in_(list(states)))
        with self._engine.begin() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def beat(self, server: str) -> None:
        """Mark the active jobs of ``server`` as alive now."""
        query = _jobs.update().where(_jobs.c.server == server, _jobs.c.status.in_(ACTIVE))
        with self._engine.begin() as conn:
            conn.execute(query.values(heartbeat=_now()))

    def fail_abandoned(self, server: str, stale: float = STALE_SECONDS) -> list[str]:
        """Mark failed the active jobs whose server process is gone; return their ids.

        ``server`` is this process (``host:pid:instance``): jobs of a dead process on the
        same host are gone at once, others when their heartbeat is ``stale`` seconds old.
        """
        host = server.split(":", 1)[0]
        cutoff = _now() - timedelta(seconds=stale)
        with self._engine.connect() as conn:
            rows = conn.execute(_jobs.select().where(_jobs.c.status.in_(ACTIVE))).fetchall()
        failed = []
        for row in rows:
            their_host, _, rest = str(row.server).partition(":")
            pid = rest.partition(":")[0]
            beat = _utc(row.heartbeat) or _utc(row.created)
            if their_host == host and pid.isdigit() and not _alive(int(pid)):
                why = f"process {pid} on {their_host}"
            elif beat is not None and beat < cutoff:
                why = f"{their_host} (no sign of life since {_iso(beat)})"
            else:
                continue
            message = (
                f"The data service process that had this job ({why}) stopped while the job "
                f"was {row.status}. Submit it again."
            )
            if self.update(
                row.id,
                ACTIVE,
                status="failed",
                finished=_now(),
                error_type="ServiceStopped",
                error=message,
            ):
                failed.append(row.id)
        return failed

    def close(self) -> None:
        """Release connections."""
        if not self._closed:
            self._closed = True
            db.release(self._engine)
