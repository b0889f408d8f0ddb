"""Server-side operations as jobs: checked, queued, run on the compute cluster, recorded.

A job is one call of :func:`insitu.compute.run` on catalog datasets. Its record lives in
the ``access_jobs`` table of the catalog's database, so every server process sees the
same status and a restart keeps it. The process that accepted a job runs it, in a pool
of ``access.job_workers`` threads that share one Dask client (the cluster of ``insitu
cluster up`` if one runs, else a cluster of ``compute.backend`` started when a job first
needs to compute, so a cached result needs none, or ahead of it by
:meth:`JobManager.prepare`, and stopped by :meth:`JobManager.close`).
At most ``access.jobs_per_worker`` jobs per worker may be pending
(:class:`~insitu.errors.ServiceBusy` past that), and at most
``access.jobs_per_caller_per_worker`` per worker for one token
(:class:`~insitu.errors.TooManyJobs`), so that one busy client cannot fill the queue for
everyone. A job combines at most ``access.job_max_inputs`` datasets.

Every change of state is a conditional update (``WHERE status IN ...``), so a cancel from
any process is safe: a queued job that was cancelled never starts, and a running one
keeps its ``cancelled`` status when its computation ends. A running job cancelled through
the process that runs it stops on the cluster at once; one cancelled through another
process stops at that process's next heartbeat (``BEAT_SECONDS``). A result that was
written all the same stays in the compute cache, where it serves the next identical
job, but is not given to the cancelled one::

    queued --> running --> done | failed
       |          |
       +----------+--> cancelled

A job whose server process died stays active in the table. A manager starting on the
same host marks those of dead processes failed; any manager marks failed the active jobs
whose process has written no heartbeat for ``STALE_SECONDS``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import socket
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from insitu.access.jobstore import ACTIVE, Job, JobStore
from insitu.access.workflow_jobs import (
    WORKFLOW,
    check_workflow_job,
    run_summary,
    run_workflow_job,
)
from insitu.catalog import Catalog, DatasetRecord
from insitu.errors import (
    BackendUnavailable,
    Conflict,
    InsituError,
    InvalidRequest,
    NotFound,
    ServiceBusy,
    TooLarge,
    TooManyJobs,
)
from insitu.settings import Settings

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "INPUTS_CEILING",
    "JobManager",
    "job_not_found",
    "result_values",
]

log = logging.getLogger(__name__)

# The most dataset ids a request body may list at all (past access.job_max_inputs it gets
# 413 with advice; past this, 422 from validation), whatever the settings say.
INPUTS_CEILING = 10_000
BEAT_SECONDS = 15.0
MAX_JSON_VALUES = 100_000


def _now() -> datetime:
    return datetime.now(UTC)


def _time_slice(text: str | None) -> slice | None:
    if not text:
        return None
    start, sep, end = text.partition("/")
    return slice(start or None, end or None) if sep else slice(start, start)


@dataclass
class _Runner:
    """The pool, the heartbeat and the cluster of one start of the manager."""

    pool: ThreadPoolExecutor
    stop: threading.Event
    stack: ExitStack = field(default_factory=ExitStack)
    client: Client | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    prepared: bool = False  # the cluster was started ahead of a job (JobManager.prepare)


class _JobClient:
    """The runner's Dask client as one job sees it.

    The cluster starts when the job first uses it, so a job whose result is in the cache
    starts none; and the job's futures are kept, so that cancelling a running job stops
    its computation on the cluster instead of only discarding its result.
    """

    def __init__(self, manager: JobManager, runner: _Runner) -> None:
        self._manager, self._runner = manager, runner
        self._futures: list[Any] = []
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled.is_set()

    @property
    def stop_event(self) -> threading.Event:
        """Set by :meth:`cancel` (what a workflow run watches)."""
        return self._cancelled

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        if self._cancelled.is_set():
            raise CancelledError("the job was cancelled")
        client: Any = self._manager._client(self._runner)
        future = client.submit(*args, **kwargs)
        with self._lock:
            self._futures.append(future)
            if self._cancelled.is_set():
                client.cancel([future])
        return future

    def compute(self, *args: Any, **kwargs: Any) -> Any:
        if self._cancelled.is_set():  # before the cluster was even needed
            raise CancelledError("the job was cancelled")
        client: Any = self._manager._client(self._runner)  # distributed is untyped here
        futures = client.compute(*args, **kwargs)
        with self._lock:
            self._futures.append(futures)
            if self._cancelled.is_set():  # cancel() ran while the graph was sent
                client.cancel(futures)
        return futures

    def cancel(self) -> None:
        with self._lock:
            self._cancelled.set()
            live: Any = self._runner.client
            if self._futures and live is not None:
                live.cancel(self._futures)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._manager._client(self._runner), name)


def job_not_found(job_id: str) -> NotFound:
    """The error for a job id that names no job (or none the caller may know of)."""
    return NotFound(
        f"There is no job {job_id!r}. Job ids come from the answer to the submission; "
        "list yours with GET /api/v1/jobs."
    )


class JobManager:
    """Accepts jobs, runs them in the background and keeps their records.

    No web framework here: the routes check who may submit and see what, then call
    :meth:`check`, :meth:`submit`, :meth:`get`, :meth:`jobs` and :meth:`cancel`. A closed
    manager starts again on the next submission (an app's lifespan may run more than
    once, e.g. under test clients).
    """

    def __init__(self, settings: Settings, catalog: Catalog, store: JobStore | None = None):
        self.settings = settings
        self.catalog = catalog
        self.store = store or JobStore.from_uri(settings.catalog_uri)
        self.server = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lock = threading.RLock()
        self._runner: _Runner | None = None
        self._futures: dict[str, Future[None]] = {}
        self._callers: dict[str, str | None] = {}  # pending job -> its token id
        self._running: dict[str, _JobClient] = {}
        for job_id in self.store.fail_abandoned(self.server):
            log.warning("job %s was left active by a stopped server; marked failed", job_id)

    @property
    def max_pending(self) -> int:
        """How many jobs this process accepts at once (queued plus running)."""
        return self.settings.access.job_workers * self.settings.access.jobs_per_worker

    @property
    def max_per_caller(self) -> int:
        """How many of those one token (or anonymous callers together) may have."""
        access = self.settings.access
        return access.job_workers * access.jobs_per_caller_per_worker

    def check(
        self, operation: str, params: dict[str, Any] | None, time: str | None
    ) -> tuple[dict[str, Any], str | None]:
        """Validated parameters (defaults filled in) and time range; raises InvalidRequest."""
        from insitu.catalog import parse_time_range
        from insitu.compute import get_operation

        validated = get_operation(operation).validate(params).model_dump(mode="json")
        span = _time_slice(time)
        if span is None or (span.start is None and span.stop is None):
            return validated, None
        parse_time_range(span.start, span.stop)
        return validated, f"{span.start or ''}/{span.stop or ''}"

    @property
    def max_inputs(self) -> int:
        """How many datasets one job may combine (``access.job_max_inputs``)."""
        return self.settings.access.job_max_inputs

    def check_inputs(self, count: int, what: str | None = None) -> None:
        """TooLarge if a job would combine more than :attr:`max_inputs` datasets."""
        if count > self.max_inputs:
            raise TooLarge(
                f"{what or f'The job names {count} datasets'}; one job may combine at most "
                f"{self.max_inputs} (setting access.job_max_inputs). Narrow the search (e.g. "
                "add table_id, variable_id or experiment_id) or split it into several jobs."
            )

    def submit(
        self,
        operation: str,
        inputs: Sequence[DatasetRecord],
        *,
        variable: str | None = None,
        params: dict[str, Any] | None = None,
        time: str | None = None,
        token_id: str | None = None,
    ) -> Job:
        """Record a job and queue it. The caller has checked that ``token_id`` may.

        Raises InvalidRequest (operation, parameters, time, variable), TooLarge (more than
        :attr:`max_inputs` datasets), ServiceBusy (the queue is full) or TooManyJobs (this caller
        has its share of it).
        """
        validated, span = self.check(operation, params, time)
        records = list({r.dataset_id: r for r in inputs}.values())
        if not records:
            raise InvalidRequest("A job needs at least one dataset; none was given.")
        self.check_inputs(len(records))
        if variable is not None:
            for r in records:
                names = [v.name for v in r.variables]
                if variable not in names:
                    raise InvalidRequest(
                        f"Variable {variable!r} is not in dataset {r.dataset_id!r}; it has "
                        f"{', '.join(names)}. Name one of them, or leave variable out to use "
                        "each dataset's own."
                    )
        job = Job(
            id=secrets.token_hex(12),
            status="queued",
            operation=operation,
            datasets=tuple(r.dataset_id for r in records),
            collections=tuple(sorted({r.collection for r in records})),
            variable=variable,
            params=validated,
            time=span,
            token_id=token_id,
            created=_now(),
            server=self.server,
        )
        self._queue(job)
        log.info("job %s queued: %s on %d datasets", job.id, operation, len(records))
        return job

    def submit_workflow(
        self, name: str, params: dict[str, Any] | None = None, *, token_id: str | None = None
    ) -> Job:
        """Record a run of published workflow ``name`` and queue it (see
        :mod:`insitu.access.workflow_jobs`); the caller has checked that ``token_id`` may.

        Raises NotFound (not published), Conflict (changed since), InvalidRequest (a
        parameter), ServiceBusy or TooManyJobs.
        """
        _, wf, _ = check_workflow_job(self.settings, name, params)
        job = Job(
            id=secrets.token_hex(12),
            status="queued",
            operation=WORKFLOW,
            datasets=(),
            collections=(),
            variable=None,
            params={"workflow": name, "workflow_hash": wf.hash, "params": dict(params or {})},
            time=None,
            token_id=token_id,
            created=_now(),
            server=self.server,
        )
        self._queue(job)
        log.info("job %s queued: workflow %s (%d nodes)", job.id, name, len(wf.nodes))
        return job

    def _queue(self, job: Job) -> None:
        """Insert ``job`` and hand it to the pool, within the queue's limits."""
        token_id = job.token_id
        with self._lock:
            mine = sum(1 for c in self._callers.values() if c == token_id)
            if len(self._futures) >= self.max_pending or mine >= self.max_per_caller:
                self._drop_ended()
                mine = sum(1 for c in self._callers.values() if c == token_id)
            if len(self._futures) >= self.max_pending:
                raise ServiceBusy(
                    f"The service already has {len(self._futures)} jobs queued or running, "
                    "as many as it accepts. Try again in a minute, once some have finished."
                )
            if mine >= self.max_per_caller:
                raise TooManyJobs(
                    f"{'This token' if token_id else 'Anonymous callers'} already "
                    f"{'has' if token_id else 'have'} {mine} jobs queued or running, as many "
                    "as one caller may. Wait for one to finish (poll its status), or cancel "
                    "one you no longer need."
                )
            runner = self._start()
            self.store.insert(job)
            future = runner.pool.submit(self._execute, job.id, runner)
            self._futures[job.id] = future
            self._callers[job.id] = token_id
        future.add_done_callback(lambda _: self._forget(job.id))

    def prepare(self) -> None:
        """Start the jobs' cluster in the background, unless it runs or is starting: for a
        job that will compute soon (a series the service must compute was asked for), so
        that the cluster starts while the request and the job prepare their work instead
        of after. The job waits for this start, or makes its own (and says why it fails) if
        this one failed."""
        with self._lock:
            runner = self._start()
            if runner.prepared or runner.client is not None:
                return
            runner.prepared = True
        threading.Thread(
            target=self._prepare, args=(runner,), name="insitu-job-cluster", daemon=True
        ).start()

    def _prepare(self, runner: _Runner) -> None:
        try:
            self._client(runner)
        except Exception as exc:  # the first job starts it again and reports the error
            if not runner.stop.is_set():
                log.warning("the jobs' cluster did not start ahead of a job: %s", exc)

    def get(self, job_id: str) -> Job:
        """The job with this id; NotFound if there is none."""
        job = self.store.get(job_id)
        if job is None:
            raise job_not_found(job_id)
        return job

    def jobs(self, token_id: str, *, status: str | None = None, limit: int = 100) -> list[Job]:
        """Jobs submitted with ``token_id``, newest first."""
        return self.store.jobs(token_id, status=status, limit=limit)

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (idempotent); Conflict if it already ended."""
        job = self.get(job_id)
        if job.status in ACTIVE:
            self.store.update(job_id, ACTIVE, status="cancelled", finished=_now())
            log.info("job %s cancelled", job_id)
            job = self.get(job_id)
        with self._lock:
            future = self._futures.get(job_id)
            running = self._running.get(job_id)
        if job.status == "cancelled":
            if future is not None:
                future.cancel()  # a queued job leaves the pool
            if running is not None:
                running.cancel()  # a running one stops on the cluster
        if job.status != "cancelled":
            raise Conflict(
                f"Job {job_id!r} has already ended ({job.status}); there is nothing to cancel."
            )
        return job

    def result_path(self, job: Job) -> Path:
        """Where the result of a done job lies; NotFound if the results cache lost it."""
        if job.status != "done" or not job.result_path:
            raise Conflict(f"Job {job.id!r} is {job.status}; it has no result.")
        path = Path(job.result_path)
        if not path.is_file():
            raise NotFound(
                f"The result of job {job.id!r} is no longer stored (the results cache was "
                "cleared). Submit the job again."
            )
        return path

    def close(self) -> None:
        """Stop the workers and the cluster; jobs still active here are marked failed."""
        with self._lock:
            runner, self._runner = self._runner, None
            ids = list(self._futures)
            self._futures.clear()
            self._callers.clear()
        if runner is None:
            return
        runner.stop.set()
        runner.pool.shutdown(wait=False, cancel_futures=True)
        for job_id in ids:
            self.store.update(
                job_id,
                ACTIVE,
                status="failed",
                finished=_now(),
                error_type="ServiceStopped",
                error="The data service stopped before the job finished. Submit it again.",
            )
        with runner.lock:
            runner.stack.close()
            runner.client = None

    # -- running ---------------------------------------------------------------------------

    def _start(self) -> _Runner:
        if self._runner is None:
            pool = ThreadPoolExecutor(
                self.settings.access.job_workers, thread_name_prefix="insitu-job"
            )
            self._runner = _Runner(pool, threading.Event())
            threading.Thread(
                target=self._beat, args=(self._runner.stop,), name="insitu-job-beat", daemon=True
            ).start()
        return self._runner

    def _beat(self, stop: threading.Event) -> None:
        """Say that this process's jobs are alive; stop those another process cancelled."""
        while not stop.wait(BEAT_SECONDS):
            try:
                self.store.beat(self.server)
                with self._lock:
                    running = list(self._running.items())
                for job_id, client in running:
                    job = self.store.get(job_id)
                    if job is not None and job.status == "cancelled":
                        client.cancel()
            except sa.exc.SQLAlchemyError as exc:
                log.warning("job heartbeat not written: %s", exc)

    def _drop_ended(self) -> None:
        """Take out of the pool the queued jobs that another process has cancelled."""
        for job_id, future in list(self._futures.items()):
            job = self.store.get(job_id)
            if job is None or job.status not in ACTIVE:
                future.cancel()

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._futures.pop(job_id, None)
            self._callers.pop(job_id, None)

    def _client(self, runner: _Runner) -> Client:
        from insitu.compute import cluster

        with runner.lock:
            if runner.stop.is_set():
                raise BackendUnavailable("The data service is stopping; submit the job again.")
            if runner.client is None:
                runner.client = runner.stack.enter_context(
                    # Subsets and quicklooks compute in the server's own process: they
                    # must not go to the jobs' cluster by way of Dask's default client.
                    cluster(self.settings, set_as_default=False)
                )
            return runner.client

    def _execute(self, job_id: str, runner: _Runner) -> None:
        from insitu.compute import run

        job = self.store.get(job_id)
        now = _now()
        if job is None or not self.store.update(
            job_id, ("queued",), status="running", started=now, heartbeat=now
        ):
            return  # cancelled while it waited
        log.info("job %s running", job_id)
        client = _JobClient(self, runner)
        with self._lock:
            self._running[job_id] = client
        try:
            if job.operation == WORKFLOW:
                end = self._run_workflow(job, client)
            else:
                result = run(
                    self.catalog,
                    job.operation,
                    list(job.datasets),
                    variable=job.variable,
                    params=job.params,
                    time=_time_slice(job.time),
                    client=cast("Client", client),
                )
                end = {
                    "status": "done",
                    "cached": result.cached,
                    "result_key": result.key,
                    "result_path": str(result.path),
                    "provenance": json.dumps(result.provenance),
                }
        except Exception as exc:
            if runner.stop.is_set() or client.cancelled:  # the status says why already
                log.info("job %s stopped: %s: %s", job_id, type(exc).__name__, exc)
                return
            self._failed(job_id, exc)
        else:
            status = end.pop("status")
            if not self._end(job_id, status, **end):
                log.info("job %s ended after it was cancelled; result not kept", job_id)
        finally:
            with self._lock:
                self._running.pop(job_id, None)

    def _run_workflow(self, job: Job, client: _JobClient) -> dict[str, Any]:
        """Run a workflow job; how its record ends. A failed node ends it ``failed`` with
        the run's record; a cancelled run raises (WorkflowCancelled)."""
        from insitu.workflows import WorkflowFailed

        try:
            record = run_workflow_job(self.settings, job, client, client.stop_event)
        except WorkflowFailed as exc:
            return {
                "status": "failed",
                "error_type": "WorkflowFailed",
                "error": str(exc),
                "result_path": f"{exc.record.directory}/run.json",
                "provenance": json.dumps(run_summary(exc.record)),
            }
        summary = run_summary(record)
        return {
            "status": "done",
            "cached": len(record.cache_hits) == len(record.nodes),
            "result_key": record.run_id,
            "result_path": summary["run_record"],
            "provenance": json.dumps(summary),
        }

    def _failed(self, job_id: str, exc: Exception) -> None:
        if isinstance(exc, InsituError):  # our messages say what to do: pass them on
            log.warning("job %s failed: %s", job_id, exc)
            self._end(job_id, "failed", error_type=type(exc).__name__, error=str(exc))
        else:
            log.error("job %s failed unexpectedly", job_id, exc_info=exc)
            self._end(
                job_id,
                "failed",
                error_type="InternalError",
                error=f"The job failed unexpectedly. Report job id {job_id} to the operator.",
            )

    def _end(self, job_id: str, status: str, **values: Any) -> bool:
        try:
            return self.store.update(job_id, ("running",), status=status, finished=_now(), **values)
        except sa.exc.SQLAlchemyError:
            log.exception("job %s: its end (%s) could not be recorded", job_id, status)
            return False


# -- results as JSON --------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if hasattr(value, "isoformat"):  # datetime, cftime
        return value.isoformat()
    return str(value)


def _values(array: Any) -> Any:
    import numpy as np

    if array.dtype.kind == "M":
        return np.datetime_as_string(array, unit="s").tolist()
    return _json_safe(array.tolist())


def result_values(path: Path, *, max_values: int = MAX_JSON_VALUES) -> dict[str, Any]:
    """A result file as JSON: ``{"attrs", "coords", "data_vars"}``, each variable with its
    ``dims``, ``attrs`` and ``data`` (NaN as null, times as ISO text), like xarray's
    ``to_dict``. TooLarge when it holds more than ``max_values`` values."""
    import xarray as xr

    with xr.open_dataset(path) as ds:
        size = sum(int(v.size) for v in ds.variables.values())
        if size > max_values:
            raise TooLarge(
                f"The result holds {size} values; JSON is offered up to {max_values}. "
                "Download it as NetCDF (leave out format=json)."
            )
        ds.load()

        def var(name: Any) -> dict[str, Any]:
            v = ds[name]
            return {
                "dims": [str(d) for d in v.dims],
                "attrs": _json_safe(dict(v.attrs)),
                "data": _values(v.values),
            }

        return {
            "attrs": _json_safe(dict(ds.attrs)),
            "coords": {str(n): var(n) for n in ds.coords},
            "data_vars": {str(n): var(n) for n in ds.data_vars},
        }
