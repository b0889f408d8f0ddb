"""Usage accounting: core-hours per user per day, from server and Dask cluster events.

The platform records an interval each time a user's server, a Dask scheduler or a Dask
worker starts and stops (the hub's spawner hooks, the gateway's backend), with the cores
it held. Intervals are split at midnight (UTC) when summed, so a server running over
night counts on both days. Open intervals count up to now. One SQLite file
(``DATA_DIR/hub/usage.db``), written by the hub and the gateway, read by the admin page.
"""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

__all__ = ["DailyUsage", "UsageLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    kind TEXT NOT NULL,          -- server | scheduler | worker
    key TEXT NOT NULL,           -- what started: a server or cluster/worker name
    user TEXT NOT NULL,
    cores REAL NOT NULL,
    started REAL NOT NULL,       -- seconds since the epoch (UTC)
    stopped REAL                 -- NULL while it runs
);
CREATE INDEX IF NOT EXISTS usage_open ON usage (key, stopped);
"""


@dataclass(frozen=True)
class DailyUsage:
    """Core-hours of one user on one day, by kind."""

    day: date
    user: str
    kind: str
    core_hours: float


class UsageLog:
    """The usage intervals of a platform."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            conn.executescript(_SCHEMA)
            with conn:
                yield conn
        finally:
            conn.close()

    def start(
        self, kind: str, key: str, user: str, cores: float, when: float | None = None
    ) -> None:
        """``key`` of ``user`` started holding ``cores`` (closing an interval left open)."""
        now = time.time() if when is None else when
        with self._db() as db:
            db.execute("UPDATE usage SET stopped=? WHERE key=? AND stopped IS NULL", (now, key))
            db.execute(
                "INSERT INTO usage (kind, key, user, cores, started) VALUES (?, ?, ?, ?, ?)",
                (kind, key, user, float(cores), now),
            )

    def stop(self, key: str, when: float | None = None) -> None:
        """``key`` stopped."""
        now = time.time() if when is None else when
        with self._db() as db:
            db.execute("UPDATE usage SET stopped=? WHERE key=? AND stopped IS NULL", (now, key))

    def close_open(self, when: float | None = None) -> int:
        """Stop every open interval (the platform stopped); how many there were."""
        now = time.time() if when is None else when
        with self._db() as db:
            return db.execute("UPDATE usage SET stopped=? WHERE stopped IS NULL", (now,)).rowcount

    def daily(self, since: date | None = None, now: float | None = None) -> list[DailyUsage]:
        """Core-hours per day, user and kind, oldest first."""
        end_now = time.time() if now is None else now
        start = datetime.combine(since, datetime.min.time(), UTC).timestamp() if since else 0.0
        with self._db() as db:
            rows = db.execute(
                "SELECT kind, user, cores, started, stopped FROM usage "
                "WHERE stopped IS NULL OR stopped > ?",
                (start,),
            ).fetchall()
        totals: dict[tuple[date, str, str], float] = defaultdict(float)
        for kind, user, cores, started, stopped in rows:
            a, b = max(started, start), min(stopped if stopped is not None else end_now, end_now)
            while a < b:
                day = datetime.fromtimestamp(a, UTC).date()
                midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
                cut = min(b, midnight.timestamp())
                totals[(day, user, kind)] += cores * (cut - a) / 3600
                a = cut
        return [DailyUsage(d, u, k, h) for (d, u, k), h in sorted(totals.items())]

    def csv(self, since: date | None = None) -> str:
        """:meth:`daily` as CSV: day,user,kind,core_hours."""
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["day", "user", "kind", "core_hours"])
        for row in self.daily(since):
            writer.writerow([row.day.isoformat(), row.user, row.kind, f"{row.core_hours:.4f}"])
        return out.getvalue()
