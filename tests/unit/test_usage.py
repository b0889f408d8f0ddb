"""Core-hours from usage intervals: split at midnight, open ones counted up to now."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from insitu.access.usage import UsageLog


def _t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_intervals_are_split_at_midnight_and_summed_per_user_day_kind(tmp_path: Path) -> None:
    log = UsageLog(tmp_path / "usage.db")
    log.start("server", "server:alice/", "alice", 1, when=_t("2026-12-01T22:00"))
    log.stop("server:alice/", when=_t("2026-12-02T01:00"))
    log.start("worker", "worker:c1/w1", "alice", 2, when=_t("2026-12-02T10:00"))
    log.stop("worker:c1/w1", when=_t("2026-12-02T10:30"))
    log.start("worker", "worker:c2/w1", "bob", 4, when=_t("2026-12-02T12:00"))  # still running
    rows = {
        (r.day.isoformat(), r.user, r.kind): round(r.core_hours, 6)
        for r in log.daily(now=_t("2026-12-02T13:00"))
    }
    assert rows == {
        ("2026-12-01", "alice", "server"): 2.0,
        ("2026-12-02", "alice", "server"): 1.0,
        ("2026-12-02", "alice", "worker"): 1.0,
        ("2026-12-02", "bob", "worker"): 4.0,
    }
    since = {r.day for r in log.daily(since=date(2026, 12, 2), now=_t("2026-12-02T13:00"))}
    assert since == {date(2026, 12, 2)}


def test_a_restart_closes_what_was_left_open_and_csv_lists_rows(tmp_path: Path) -> None:
    log = UsageLog(tmp_path / "usage.db")
    log.start("server", "server:alice/", "alice", 1, when=_t("2026-12-01T10:00"))
    assert log.close_open(when=_t("2026-12-01T11:00")) == 1
    # Starting the same key again closes an interval still open, never counts twice.
    log.start("server", "server:bob/", "bob", 1, when=_t("2026-12-01T10:00"))
    log.start("server", "server:bob/", "bob", 1, when=_t("2026-12-01T10:30"))
    log.stop("server:bob/", when=_t("2026-12-01T11:00"))
    text = log.csv()
    assert text.splitlines() == [
        "day,user,kind,core_hours",
        "2026-12-01,alice,server,1.0000",
        "2026-12-01,bob,server,1.0000",
    ]
