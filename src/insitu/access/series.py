"""Field-mean series of datasets too large to read in one request: a server-side result.

A quicklook reads a series itself while the files it needs are within the per-request
limit (``access.max_slice_bytes`` x ``access.subset_read_factor``). Past that, the
area-weighted field mean is the compute engine's ``field_mean`` operation, run as a job of
the service's :class:`~insitu.access.jobs.JobManager` (on its cluster, with its queue
bounds) and kept in the compute results cache, whose key names every input file: the first
request starts the job, the requests while it runs get its state (202), and every request
after it gets the plot drawn from the result (a few kB), also after a restart.

A series job is the service's own (no token: anyone who may read the dataset may see it),
and one per dataset, variable and time range is started however many pages ask for it at
once: a server process waits for the job another one started (found in the job store).
The PNG drawn from a result is kept beside it (:func:`kept_png`), so that a restarted
service sends it without decoding the result's thousands of dates again.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from insitu._util import write_atomic
from insitu.access.jobstore import ACTIVE, Job
from insitu.access.selection import TimeRange
from insitu.compute import cached_result
from insitu.errors import ComputeError

if TYPE_CHECKING:
    from insitu.access.jobs import JobManager
    from insitu.catalog import Catalog, DatasetRecord

__all__ = ["FIELD_MEAN", "SeriesJobs", "SeriesResult", "cached_series", "keep_png", "kept_png"]

log = logging.getLogger(__name__)

FIELD_MEAN = "field_mean"


@dataclass(frozen=True, slots=True)
class SeriesResult:
    """Where a field mean stands: its result file once computed, else the job computing it."""

    path: Path | None
    job: Job | None


def _time_slice(time: TimeRange | None) -> slice | None:
    # As the job runs it: JobManager.check keeps "START/END", the run takes slice(START, END).
    return None if time is None else slice(time.start or None, time.end or None)


def _time_text(time: TimeRange | None) -> str | None:
    return None if time is None else f"{time.start or ''}/{time.end or ''}"


def cached_series(
    catalog: Catalog, record: DatasetRecord, variable: str, time: TimeRange | None
) -> Path | None:
    """The results-cache file of the field mean of ``variable`` over ``time``, if computed."""
    found = cached_result(
        catalog, FIELD_MEAN, [record.dataset_id], variable=variable, time=_time_slice(time)
    )
    return None if found is None else found.path


def kept_png(result: Path, etag: str) -> Path:
    """Where the quicklook PNG of ETag ``etag`` drawn from ``result`` is kept: beside it,
    named by both (a result that leaves the cache leaves its PNG unused)."""
    tag = etag.strip('"')
    return result.with_name(f"{result.stem}.{tag}.png")


def keep_png(path: Path, png: bytes) -> None:
    """Write ``png`` to ``path`` whole or not at all (another process may be reading it);
    where the results cache cannot be written, it is drawn again next time."""
    try:
        write_atomic(path, png)
    except OSError as exc:
        log.warning("the series PNG was not kept in the results cache (%s): %s", path, exc)


class SeriesJobs:
    """The field-mean jobs a server process started for quicklooks, one per series."""

    def __init__(self, jobs: JobManager) -> None:
        self.jobs = jobs
        self._lock = threading.Lock()
        self._started: dict[str, str] = {}  # series key -> job id

    def running(self, key: str) -> Job | None:
        """The job started for the series ``key`` (the quicklook's ETag), while it is
        queued or running: what a request asks many times, so it costs one lookup."""
        with self._lock:
            job_id = self._started.get(key)
        job = self.jobs.store.get(job_id) if job_id else None
        return job if job is not None and job.status in ACTIVE else None

    def result(
        self, key: str, record: DatasetRecord, variable: str, time: TimeRange | None
    ) -> SeriesResult:
        """The computed field mean, or the job computing it (submitted if none runs for
        the series ``key``).

        Raises :class:`~insitu.errors.ComputeError` with the job's message if it failed
        (the next call submits it again), and the manager's ServiceBusy or TooManyJobs
        when its queue is full.
        """
        path = cached_series(self.jobs.catalog, record, variable, time)
        if path is not None:
            return SeriesResult(path, None)
        with self._lock:
            job_id = self._started.get(key)
            job = self.jobs.store.get(job_id) if job_id else None
            if job is not None and job.status in ACTIVE:
                return SeriesResult(None, job)
            if job is not None and job.status == "done" and job.result_path:
                done = Path(job.result_path)
                if done.is_file():
                    return SeriesResult(done, None)
            self._started.pop(key, None)
            if job is not None and job.status == "failed":
                raise ComputeError(
                    f"The field mean of {variable!r} of {record.dataset_id!r} failed on the "
                    f"server (job {job.id}): {job.error} Reload to try again."
                )
            span = _time_text(time)
            # Another server process may have started it (its pages polled there).
            job = self.jobs.store.active(FIELD_MEAN, [record.dataset_id], variable, span)
            if job is None:
                self.jobs.prepare()  # the cluster starts while the job makes its graph
                job = self.jobs.submit(
                    FIELD_MEAN, [record], variable=variable, time=span, token_id=None
                )
            self._started[key] = job.id
        return SeriesResult(None, job)
