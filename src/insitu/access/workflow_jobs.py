"""Published workflows run as server-side jobs of the data service.

A workflow job is a job like the others (:mod:`insitu.access.jobs`: one row of
``access_jobs``, the same queue, limits, heartbeat, cancel and restart rules), whose
operation is ``workflow`` and whose parameters name a published workflow
(:class:`~insitu.workflows.PublishedWorkflows`) and the values of its parameters. It is
checked whole before it is queued (published, unchanged since, every parameter known and of
its type) and runs on the jobs' Dask cluster, one task per node
(:class:`~insitu.workflows.DaskBackend`), in the published folder: its run record lands in
``runs/<run_id>/run.json`` there, which the workflow's page lists, with the job's id and
the token that asked for it as the run's ``origin``. Cancelling the job cancels the run:
no further node starts, the cluster drops the running ones.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from insitu.errors import InvalidRequest
from insitu.settings import Settings

if TYPE_CHECKING:
    from insitu.access.jobstore import Job
    from insitu.workflows import PublishedWorkflow, RunRecord, Workflow

__all__ = ["WORKFLOW", "check_workflow_job", "run_summary", "run_workflow_job"]

WORKFLOW = "workflow"  # the operation of a workflow job in access_jobs


def check_workflow_job(
    settings: Settings, name: str, params: dict[str, Any] | None
) -> tuple[PublishedWorkflow, Workflow, dict[str, Any]]:
    """The published entry, its workflow (checked unchanged) and the run's parameter
    values; NotFound, Conflict or InvalidRequest before anything is queued."""
    from insitu.workflows import PublishedWorkflows, check_run_params

    if params is not None and not isinstance(params, dict):
        raise InvalidRequest(f"params must be an object of parameter values, not {params!r}")
    with PublishedWorkflows.from_settings(settings) as published:
        entry, wf = published.load(name)
    try:
        values = check_run_params(wf, params)
    except InvalidRequest as exc:
        raise InvalidRequest(f"workflow {name!r}: {exc}") from None
    return entry, wf, values


def run_summary(record: RunRecord) -> dict[str, Any]:
    """What the job's record keeps of a run (run.json has the rest)."""
    counts: dict[str, int] = {}
    for node in record.nodes.values():
        counts[node.status] = counts.get(node.status, 0) + 1
    return {
        "run_id": record.run_id,
        "status": record.status,
        "workflow_hash": record.workflow_hash,
        "params": record.params,
        "nodes": counts,
        "cache_hits": record.cache_hits,
        "seconds": (record.finished or record.started) - record.started,
        "run_record": f"{record.directory}/run.json",
    }


def run_workflow_job(settings: Settings, job: Job, client: Any, stop: threading.Event) -> RunRecord:
    """Run a queued workflow job on ``client``'s cluster; its RunRecord. Raises
    WorkflowFailed (a node failed), WorkflowCancelled, or Conflict (the published folder
    changed since the job was queued)."""
    from insitu.errors import Conflict
    from insitu.workflows import DaskBackend, run_workflow

    name = str(job.params["workflow"])
    _, wf, _ = check_workflow_job(settings, name, job.params.get("params"))
    if wf.hash != job.params.get("workflow_hash"):
        raise Conflict(
            f"workflow {name!r} was published again after this job was queued; submit the "
            "job again to run the new version"
        )
    origin = {"job": job.id, "token": job.token_id, "service": job.server}
    # the nodes open datasets from the service's catalog, whatever their worker's settings
    env = {"INSITU_DATA_DIR": str(settings.data_dir), "INSITU_CATALOG__URI": settings.catalog_uri}
    return run_workflow(
        wf,
        DaskBackend(client),
        params=job.params.get("params") or {},
        env=env,
        stop=stop,
        origin=origin,
    )
