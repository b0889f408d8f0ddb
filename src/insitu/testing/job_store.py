"""Contract tests of the data service's :class:`~insitu.access.jobstore.JobStore`.

One suite for every database the store runs on: subclass :class:`JobStoreTests` and
provide a ``database_uri`` fixture that yields the SQLAlchemy URL of a fresh, empty
database (a SQLite file, a new PostgreSQL database), as for
:class:`~insitu.testing.token_store.TokenStoreTests`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from insitu.access import ACTIVE, Job, JobStore

__all__ = ["JobStoreTests", "sample_job"]

_HOST = socket.gethostname()


def sample_job(job_id: str = "j1", **kw: object) -> Job:
    """A queued job with every field a submission sets."""
    base = Job(
        id=job_id,
        status="queued",
        operation="time_mean",
        datasets=("CMIP6.a.v1", "CMIP6.b.v1"),
        collections=("demo",),
        variable="tas",
        params={"period": "season", "weights": [1, 2.5], "nested": {"k": None}},
        time="1990/2000",
        token_id="tok1",
        created=datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
        server=f"{_HOST}:{os.getpid()}:x",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class JobStoreTests:
    """What the job store promises, on whichever database ``database_uri`` names."""

    @pytest.fixture
    def database_uri(self) -> str:
        raise NotImplementedError("subclasses provide a fresh, empty database's URL")

    @pytest.fixture
    def store(self, database_uri: str) -> Iterator[JobStore]:
        s = JobStore.from_uri(database_uri)
        yield s
        s.close()

    def test_a_job_reads_back_as_written(self, store: JobStore) -> None:
        job = sample_job()
        store.insert(job)
        got = store.get(job.id)
        assert got == job
        assert got.created.tzinfo is not None
        assert store.get("missing") is None

    def test_jobs_of_a_token_newest_first(self, store: JobStore) -> None:
        t0 = datetime(2024, 1, 1, tzinfo=UTC)
        for i in range(5):
            store.insert(sample_job(f"j{i}", created=t0 + timedelta(minutes=i)))
        store.insert(sample_job("other", token_id="tok2"))
        store.insert(sample_job("anon", token_id=None))
        assert [j.id for j in store.jobs("tok1")] == ["j4", "j3", "j2", "j1", "j0"]
        assert [j.id for j in store.jobs("tok1", limit=2)] == ["j4", "j3"]
        assert store.update("j2", ACTIVE, status="running")
        assert [j.id for j in store.jobs("tok1", status="running")] == ["j2"]
        assert [j.id for j in store.jobs("tok2")] == ["other"]

    def test_state_changes_are_conditional(self, store: JobStore) -> None:
        store.insert(sample_job())
        now = datetime.now(UTC)
        assert store.update("j1", ("queued",), status="running", started=now)
        assert not store.update("j1", ("queued",), status="cancelled")
        assert store.update(
            "j1",
            ("running",),
            status="done",
            finished=now,
            cached=True,
            result_key="k" * 64,
            result_path="/results/k.nc",
            provenance='{"operation": "time_mean"}',
        )
        done = store.get("j1")
        assert done is not None and done.status == "done" and done.cached
        assert done.provenance == {"operation": "time_mean"}
        assert done.to_json()["result"] == {"key": "k" * 64}
        assert not store.update("missing", ACTIVE, status="failed")

    def test_one_of_racing_updates_wins(self, store: JobStore, database_uri: str) -> None:
        for i in range(10):
            store.insert(sample_job(f"r{i}", status="running"))
        others = [JobStore.from_uri(database_uri) for _ in range(4)]
        wins: list[tuple[str, str]] = []
        lock = threading.Lock()

        def race(s: JobStore, status: str) -> None:
            for i in range(10):
                if s.update(f"r{i}", ("running",), status=status, finished=datetime.now(UTC)):
                    with lock:
                        wins.append((f"r{i}", status))

        threads = [
            threading.Thread(target=race, args=(s, st))
            for s, st in zip(others, ("done", "cancelled", "failed", "done"), strict=True)
        ]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            for s in others:
                s.close()
        assert sorted(job for job, _ in wins) == [f"r{i}" for i in range(10)]
        for job_id, status in wins:
            assert store.get(job_id).status == status  # type: ignore[union-attr]

    def test_heartbeats_and_abandoned_jobs(self, store: JobStore) -> None:
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        dead_pid = int(dead.stdout)
        me = f"{_HOST}:{os.getpid()}:me"
        now = datetime.now(UTC)
        old = now - timedelta(hours=1)
        store.insert(sample_job("mine", server=me, created=old))
        store.insert(sample_job("dead", server=f"{_HOST}:{dead_pid}:x", created=now))
        store.insert(sample_job("far", server="elsewhere:1:x", created=old))
        store.insert(sample_job("far-alive", server="elsewhere:2:x", created=now))
        store.insert(sample_job("ended", server=f"{_HOST}:{dead_pid}:x", status="done"))
        store.beat(me)  # "mine" is alive although created long ago
        failed = store.fail_abandoned(me, stale=60)
        assert sorted(failed) == ["dead", "far"]
        for job_id in ("dead", "far"):
            job = store.get(job_id)
            assert job is not None and job.status == "failed"
            assert job.error_type == "ServiceStopped" and "Submit it again" in (job.error or "")
        assert store.get("mine").status == "queued"  # type: ignore[union-attr]
        assert store.get("far-alive").status == "queued"  # type: ignore[union-attr]
        assert store.get("ended").status == "done"  # type: ignore[union-attr]
        assert store.fail_abandoned(me, stale=60) == []

    def test_several_processes_open_the_same_database(self, database_uri: str) -> None:
        errors: list[BaseException] = []
        stores: list[JobStore] = []

        def open_one() -> None:
            try:
                stores.append(JobStore.from_uri(database_uri))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            assert not errors, errors
            stores[0].insert(sample_job("shared"))
            assert all(s.get("shared") is not None for s in stores)
        finally:
            for s in stores:
                s.close()
