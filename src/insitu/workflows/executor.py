"""Running a workflow: one scheduler, two backends, one run contract (specification section 6).

The scheduler (:func:`run_workflow`) walks the graph in topological order: a node whose
producers have finished gets its ``inputs.json`` (each input the producer's ``outputs.json``
entry: small JSON values inline, files by absolute path; each parameter its value), is
looked up in the content-hash cache, and otherwise is handed to the backend, which calls
:func:`run_node` — ``python task.py --inputs inputs.json --outdir out/`` in
``runs/<run_id>/<node>/`` with its output in ``log``. Both backends run that same function:

* ``local``: ``workers`` task processes at a time on this machine, started and awaited by a
  :class:`concurrent.futures.ThreadPoolExecutor` (see :class:`LocalBackend` for why not a
  process pool; started only when some node is not in the cache);
* ``dask``: one task per node on a Dask cluster (a ``distributed.Client``; by default the
  compute subsystem's, :func:`insitu.compute.cluster`), submitted as its producers finish.

A node that fails stops its downstream cone (``skipped``) while the others go on; the run
then ends ``failed`` naming the node, its exit code and its log. ``run.json`` records the
run (:mod:`insitu.workflows.provenance`).
"""

from __future__ import annotations

import os
import secrets as _secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from insitu.errors import InsituError, InvalidRequest
from insitu.workflows.cache import NodeCache, cache_key
from insitu.workflows.fanout import merge_branches, split_branches
from insitu.workflows.noderun import NodeJob, run_node
from insitu.workflows.provenance import NodeRecord, RunRecord, environment
from insitu.workflows.workflow import Workflow

__all__ = [
    "DaskBackend",
    "LocalBackend",
    "NodeJob",
    "Progress",
    "WorkflowCancelled",
    "WorkflowFailed",
    "check_run_params",
    "run_node",
    "run_workflow",
]

Progress = Callable[[int, int, NodeRecord], None]
"""Called after each node: (nodes finished, total, that node's record)."""


class WorkflowFailed(InsituError):
    """A run in which some node failed; ``record`` is its provenance."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        parts = [
            f"node {r.node!r} exited with {r.exit_code} (log: {r.log})"
            + (f": {r.error}" if r.error else "")
            for r in record.failed
        ]
        skipped = sorted(n for n, r in record.nodes.items() if r.status == "skipped")
        tail = f"; not run because of it: {', '.join(skipped)}" if skipped else ""
        super().__init__(
            f"E-WF-NODE-FAILED: {'; '.join(parts)}{tail}. Read the log, fix the cell or its "
            f"inputs, and run again (finished nodes come from the cache). Run record: "
            f"{record.directory}/run.json"
        )


class WorkflowCancelled(InsituError):
    """A run stopped by its ``stop`` event; ``record`` is its provenance."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        ran = sorted(n for n, r in record.nodes.items() if r.status in ("done", "cached"))
        super().__init__(
            f"the run was cancelled; finished before that: {', '.join(ran) or 'no node'}. "
            f"Run record: {record.directory}/run.json"
        )


class Backend(Protocol):
    name: str
    workers: int | None

    def submit(self, job: NodeJob) -> Any: ...
    def wait_any(self, futures: list[Any]) -> list[Any]: ...
    def cancel(self, futures: list[Any]) -> None: ...
    def close(self) -> None: ...


class LocalBackend:
    """Nodes run on this machine, ``workers`` at a time (default: the CPU count).

    Each node is its own process (``python task.py``, the isolation the run contract
    needs); the ``concurrent.futures`` pool that starts and waits for them is a pool of
    threads, not of processes: a process pool would add a second process per node, and its
    ``forkserver``/``spawn`` workers re-import the caller's ``__main__`` (a script without an
    ``if __name__ == "__main__"`` guard breaks, and a heavy one costs seconds per worker:
    2.5 s measured), while ``fork`` is unsafe in a process with threads (a Dask client).
    """

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers: int | None = workers or os.cpu_count() or 1
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, job: NodeJob) -> Future[dict[str, Any]]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="insitu-node")
        return self._pool.submit(run_node, job)

    def wait_any(self, futures: list[Any]) -> list[Any]:
        return list(wait(futures, return_when=FIRST_COMPLETED).done)

    def cancel(self, futures: list[Any]) -> None:
        for future in futures:  # queued ones never start; a started process runs on
            future.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class DaskBackend:
    """One Dask task per node (or batch of branches) on ``client``'s cluster."""

    name = "dask"

    def __init__(self, client: Any) -> None:
        self.client = client
        self.workers: int | None = len(client.scheduler_info().get("workers", {})) or None
        self._completed: Any = None

    def submit(self, job: NodeJob) -> Any:
        from distributed import as_completed

        key = f"insitu-node-{job.node}-{_secrets.token_hex(4)}"
        future = self.client.submit(run_node, job, key=key, pure=False)
        if self._completed is None:  # works with a client that is not the default one
            self._completed = as_completed([future], loop=self.client.loop)
        else:
            self._completed.add(future)
        return future

    def wait_any(self, futures: list[Any]) -> list[Any]:
        assert self._completed is not None
        first = next(self._completed)
        return [first, *self._completed.next_batch(block=False)]

    def cancel(self, futures: list[Any]) -> None:
        if futures:
            self.client.cancel(futures)

    def close(self) -> None:
        self._completed = None


def _run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{_secrets.token_hex(3)}"


def _absolute(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    if entry.get("kind") == "file":
        return {**entry, "path": str(base / entry["path"])}
    return dict(entry)


def _node_params(wf: Workflow, node: str, params: dict[str, Any]) -> dict[str, Any]:
    declared = wf.nodes[node].ports("params")
    return {p: params[p] for p in sorted(declared) if p in params}


_JSON_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def _check_param_types(wf: Workflow, given: dict[str, Any]) -> None:
    """A parameter given for the run must have the type the components declare (an int
    fits a float)."""
    for nid in sorted(wf.nodes):
        for name, port in wf.nodes[nid].ports("params").items():
            if name not in given:
                continue
            want, got = str(port.get("type") or "any"), _JSON_TYPES.get(type(given[name]), "any")
            if want not in ("any", got) and not (want == "float" and got == "int"):
                raise InvalidRequest(
                    f"parameter {name!r} is {got} {given[name]!r}, but node {nid!r} takes a "
                    f"{want} (default {port.get('default')!r}); give a {want}"
                )


def check_run_params(wf: Workflow, params: dict[str, Any] | None) -> dict[str, Any]:
    """The run's parameter values (the workflow's, overridden by ``params``); InvalidRequest
    for a name the workflow does not have or a value of the wrong type."""
    unknown = sorted(set(params or {}) - set(wf.params))
    if unknown:
        raise InvalidRequest(
            f"unknown parameter {', '.join(map(repr, unknown))}; the workflow's parameters "
            f"are {', '.join(sorted(wf.params)) or 'none'}"
        )
    _check_param_types(wf, params or {})
    return {**wf.params, **(params or {})}


def run_workflow(
    wf: Workflow,
    backend: Backend | None = None,
    *,
    params: dict[str, Any] | None = None,
    use_cache: bool = True,
    force: bool = False,
    check_mutation: bool = False,
    env: dict[str, str] | None = None,
    progress: Progress | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    stop: threading.Event | None = None,
    origin: dict[str, Any] | None = None,
) -> RunRecord:
    """Run a validated workflow; its :class:`RunRecord` (also in ``runs/<run_id>/run.json``).

    ``params`` override the workflow's; ``use_cache=False`` neither reads nor fills the
    cache, ``force`` runs every node but still fills it. ``env`` is added to each task's
    environment (secrets: the workflow's ``secrets`` are taken from this process's
    environment too). Raises :class:`WorkflowFailed` when a node fails.

    ``stop``, once set, cancels the run: no further node starts, the pending ones are
    recorded ``cancelled`` and so is the run (:class:`WorkflowCancelled`); the backend is
    told to drop the running ones (a Dask future is cancelled; a task process that has
    started runs to its end, its result unused). ``origin`` (who asked for the run, e.g. a
    server-side job) is kept in run.json.
    """
    values = check_run_params(wf, params)
    run: Backend = backend or LocalBackend()
    run_id = _run_id()
    rundir = Path(runs_dir or wf.directory / "runs") / run_id
    rundir.mkdir(parents=True)
    cache = NodeCache(cache_dir or wf.directory / ".cache")
    task_env = {s: os.environ[s] for s in wf.secrets if s in os.environ} | (env or {})
    flags = ("--check-mutation",) if check_mutation else ()
    record = RunRecord(
        run_id,
        str(wf.directory / "workflow.yaml"),
        wf.hash,
        run.name,
        run.workers,
        str(rundir),
        values,
        time.time(),
        origin=dict(origin or {}),
    )
    for nid, spec in wf.nodes.items():
        record.nodes[nid] = NodeRecord(nid, spec.component, spec.hash)
    deps = wf.upstream()
    down: dict[str, set[str]] = {nid: set() for nid in wf.nodes}
    for nid, ups in deps.items():
        for u in ups:
            down[u].add(nid)
    outs: dict[str, tuple[Path, dict[str, Any]]] = {}
    running: dict[Any, tuple[str, int]] = {}
    batches: dict[str, list[dict[str, Any] | None]] = {}
    finished = 0

    def done(rec: NodeRecord) -> None:
        nonlocal finished
        finished += 1
        if progress:
            progress(finished, len(wf.nodes), rec)

    def skip_cone(nid: str) -> None:
        for d in sorted(down[nid]):
            rec = record.nodes[d]
            if rec.status == "pending":
                rec.status, rec.error = "skipped", f"upstream node {nid!r} failed"
                done(rec)
                skip_cone(d)

    def start(nid: str) -> None:
        rec = record.nodes[nid]
        node = wf.nodes[nid]
        work = rundir / nid
        inputs = {
            e.target_port: _absolute(outs[e.source][1][e.source_port], outs[e.source][0])
            for e in wf.inputs_of(nid)
        }
        own = _node_params(wf, nid, values)
        rec.inputs = {k: v.get("sha256", "") for k, v in inputs.items()}
        rec.workdir, rec.log = str(work), str(work / "log")
        rec.cache_key = cache_key(node.hash, inputs, own, {"map": node.map} if node.map else None)
        rec.started = time.time()
        hit = cache.get(rec.cache_key, work / "out") if use_cache and not force else None
        if hit is not None:
            rec.status, rec.cached, rec.exit_code = "cached", True, 0
            rec.finished, rec.seconds, rec.log = time.time(), 0.0, None
            rec.outputs = hit
            outs[nid] = (work / "out", hit)
            done(rec)
            return
        task = str(wf.component_dir(nid) / "task.py")
        full = {**inputs, **{k: {"kind": "json", "value": v} for k, v in own.items()}}
        if node.map is None:
            jobs = [NodeJob(nid, task, (str(work),), (full,), flags, task_env)]
        else:
            jobs = split_branches(nid, node.map, full, work, task, flags, task_env)
            rec.branches = sum(len(j.workdirs) for j in jobs)
        batches[nid] = [None] * len(jobs)
        rec.status = "running"
        if not jobs:  # a map over an empty list: every output is an empty list
            finish(nid)
        for i, job in enumerate(jobs):
            running[run.submit(job)] = (nid, i)

    def finish(nid: str) -> None:
        rec = record.nodes[nid]
        results = batches.pop(nid)
        work = Path(rec.workdir or rundir / nid)
        failed = [r for r in results if r and r["exit_code"] != 0]
        rec.finished = max((r["finished"] for r in results if r), default=time.time())
        rec.seconds = rec.finished - (rec.started or rec.finished)
        if failed:
            rec.status, rec.exit_code = "failed", failed[0]["exit_code"]
            rec.log, rec.error = failed[0]["log"], failed[0]["error"]
            done(rec)
            skip_cone(nid)
            return
        runs = [o for r in results if r for o in r["outputs"]]
        if wf.nodes[nid].map is None:
            outputs = runs[0]["outputs"]
        else:
            outputs = merge_branches(wf.nodes[nid].metadata, runs, work)
        for run in runs:
            rec.warnings += [
                f"W-HIDDEN-MUTATION: {n}" for n in run["checks"].get("W-HIDDEN-MUTATION", [])
            ]
        rec.status, rec.exit_code, rec.outputs = "done", 0, outputs
        outs[nid] = (work / "out", outputs)
        if use_cache and rec.cache_key:
            cache.put(rec.cache_key, work / "out")
        done(rec)

    def cancel_pending() -> None:
        for rec in record.nodes.values():
            if rec.status in ("pending", "running"):
                rec.status, rec.error = "cancelled", "the run was cancelled"
                done(rec)
        run.cancel(list(running))
        running.clear()

    order = wf.order()
    try:
        while True:
            if stop is not None and stop.is_set():
                cancel_pending()
                break
            for nid in order:
                rec = record.nodes[nid]
                if rec.status == "pending" and all(d in outs for d in deps[nid]):
                    try:
                        start(nid)
                    except InvalidRequest as exc:  # a map over a value that is not a list
                        rec.status, rec.exit_code, rec.error = "failed", None, str(exc)
                        done(rec)
                        skip_cone(nid)
            if not running:
                break
            for fut in run.wait_any(list(running)):
                if fut not in running:
                    continue
                nid, i = running.pop(fut)
                try:
                    batches[nid][i] = fut.result()
                except Exception as exc:  # the backend lost the job (a worker died)
                    if stop is not None and stop.is_set():
                        continue  # cancelled: recorded so at the top of the loop
                    batches[nid][i] = {
                        "exit_code": -1,
                        "finished": time.time(),
                        "log": None,
                        "error": f"{type(exc).__name__}: {exc}",
                        "outputs": [],
                    }
                if all(r is not None for r in batches[nid]):
                    finish(nid)
    finally:
        run.close()
        record.finished = time.time()
        cancelled = stop is not None and stop.is_set()
        record.status = "cancelled" if cancelled else "failed" if record.failed else "done"
        record.environment = environment()
        record.write()
    if record.status == "cancelled":
        raise WorkflowCancelled(record)
    if record.failed:
        raise WorkflowFailed(record)
    return record
