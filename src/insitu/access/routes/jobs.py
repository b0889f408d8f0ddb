"""Job routes: submit server-side operations, follow them, download results, cancel.

Who may do what: submitting needs the ``compute`` scope on every input's collection
(anonymous requests only when ``access.anonymous_compute`` is on and every input is
public). A job is seen by the token that submitted it (an anonymous job by anyone with
its id), and only while the caller may still read every input collection.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    Principal,
    Services,
    cache_headers,
    not_modified,
    readable_dataset,
)
from insitu.access.jobs import INPUTS_CEILING, JobManager, job_not_found, result_values
from insitu.access.jobstore import Job
from insitu.access.routes.catalog import search_catalog
from insitu.access.workflow_jobs import WORKFLOW
from insitu.catalog import DatasetRecord
from insitu.compute import OPERATIONS
from insitu.errors import (
    BackendUnavailable,
    Conflict,
    InvalidQuery,
    NotFound,
    Unauthorized,
)

__all__ = ["JobSubmission", "job_body", "job_links", "job_manager", "router"]

router = APIRouter(tags=["jobs"])

_EXAMPLE_ID = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
_IMMUTABLE = 365 * 86400  # a result key names one content for good
_FACET = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# Keys of a search that are not facets; ``q`` and ``collection`` have their own meaning.
_NOT_FACETS = frozenset({"time", "bbox", "latest", "limit", "offset", "sort", "facets", "token"})

# No control characters: ids and names never hold them, and some stores reject NUL.
_Text = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f]+$")]


class JobSubmission(BaseModel):
    """A job: an operation on datasets named by id or found by a search."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"operation": "time_mean", "datasets": [_EXAMPLE_ID]},
                {"operation": "field_mean", "search": {"source_id": "MIROC6", "table_id": "Amon"}},
            ]
        },
    )

    operation: str = Field(
        min_length=1, max_length=64, description=f"The operation: {', '.join(OPERATIONS)}."
    )
    datasets: list[_Text] | None = Field(
        default=None,
        min_length=1,
        max_length=INPUTS_CEILING,  # past access.job_max_inputs: 413 with advice
        description="Dataset ids to compute on, at most the service's access.job_max_inputs "
        "(100 by default; give this or search).",
    )
    search: dict[str, _Text | list[_Text]] | None = Field(
        default=None,
        description='Facet constraints, as in GET /search (e.g. {"source_id": "MIROC6", '
        '"table_id": "Amon"}; a list means any of). "q" is free text and "collection" one '
        "collection. Only datasets the caller may read are used.",
    )
    variable: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00-\x1f]+$",
        description="Variable to compute on (default: each dataset's own).",
    )
    params: dict[str, Any] | None = Field(
        default=None, description='Parameters of the operation, e.g. {"period": "season"}.'
    )
    time: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Only this time range, START/END, e.g. 1980/2010 or 1990-01/.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> JobSubmission:
        if (self.datasets is None) == (self.search is None):
            raise ValueError("give either 'datasets' (a list of ids) or 'search' (facets)")
        return self


def job_manager(services: Services) -> JobManager:
    if services.jobs is None:
        raise BackendUnavailable(
            "This data service runs no jobs. Compute locally with 'insitu compute', or ask "
            "the operator to enable them."
        )
    return services.jobs


def job_links(request: Request, job: Job) -> dict[str, str]:
    status = request.url_for("job_status", job_id=job.id).path
    return {"self": status, "result": f"{status}/result", "cancel": status}


def job_body(request: Request, job: Job) -> dict[str, Any]:
    return {**job.to_json(), "links": job_links(request, job)}


def _searched(
    services: Services, principal: Principal, search: dict[str, str | list[str]], time: str | None
) -> list[DatasetRecord]:
    constraints: dict[str, list[str]] = {}
    q = collection = None
    for key, value in search.items():
        if key in ("q", "collection"):
            if not isinstance(value, str):
                raise InvalidQuery(f"Search key {key!r} takes one text value, not a list.")
            q, collection = (value, collection) if key == "q" else (q, value)
        elif key in _NOT_FACETS or not _FACET.match(key):
            raise InvalidQuery(
                f"Search key {key!r} is not a facet. Use facet names such as source_id, "
                "table_id or variable_id (and 'q' for free text); give the time range as the "
                "job's 'time'."
            )
        else:
            constraints[key] = [value] if isinstance(value, str) else value
    if not constraints and q is None and collection is None:
        raise InvalidQuery(
            "The search has no constraint, so it would take every dataset you may read. "
            'Give at least one facet, e.g. {"source_id": "MIROC6", "table_id": "Amon"}.'
        )
    found = search_catalog(
        services, principal, constraints, q=q, time=time, collection=collection, limit=0
    )
    if found.total == 0:
        raise NotFound(
            f"No dataset you may read matches the search {search}. Try it with GET /search "
            "to see what matches."
        )
    job_manager(services).check_inputs(found.total, f"The search matches {found.total} datasets")
    return [services.catalog.dataset(i) for i in found.all_ids]


def _require_compute(services: Services, principal: Principal, collections: set[str]) -> None:
    if principal.token is not None:
        for name in sorted(collections):
            principal.require(name, "compute")
        return
    if not services.settings.access.anonymous_compute:
        raise Unauthorized(
            "Submitting a job needs a token with the 'compute' scope, sent as "
            "'Authorization: Bearer <token>'; this service runs no jobs for requests "
            "without one. An operator creates tokens with 'insitu token create'."
        )
    private = sorted(collections - principal.public)
    if private:
        raise Unauthorized(
            f"Collection(s) {', '.join(private)} are not public: jobs on them need a token "
            "with the 'compute' scope, sent as 'Authorization: Bearer <token>'."
        )


def _visible(services: Services, principal: Principal, job_id: str) -> Job:
    job = job_manager(services).get(job_id)
    if principal.token is None and not all(principal.can(c) for c in job.collections):
        raise job_not_found(job_id)  # anonymous: as if there were no such job
    for name in job.collections:
        principal.require(name)  # 401/403 as soon as an input is no longer readable
    mine = principal.token is not None and principal.token.id == job.token_id
    if job.token_id is not None and not mine:
        raise NotFound(
            f"There is no job {job_id!r} for this token: a job is seen with the token that "
            "submitted it."
        )
    return job


_JOB_ID = Annotated[str, Path(min_length=1, max_length=64, description="The job's id.")]


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit a server-side operation",
    description="Checks everything before it queues the job: the operation and its "
    "parameters (GET the operation list from an error message or 'insitu compute list'), "
    "the datasets (404 unknown, 401/403 not readable), the 'compute' scope on each "
    "input's collection, and the number of inputs (413). Answers 202 with the job and its "
    "status URL in Location; 429 when the caller has its share of the queue, 503 when the "
    "queue is full.",
    responses={
        400: {"description": "Unknown operation, bad parameters, time or variable."},
        401: {"description": "No token, and the job needs one."},
        403: {"description": "The token lacks read or compute on an input's collection."},
        404: {"description": "Unknown dataset, or a search that matches nothing."},
        413: {"description": "More input datasets than access.job_max_inputs."},
        429: {"description": "This caller has as many jobs pending as one caller may."},
        503: {"description": "The job queue is full; try again later."},
    },
)
def submit_job(
    body: JobSubmission,
    request: Request,
    response: Response,
    services: CurrentServices,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Queue a job; poll its ``links.self`` until ``status`` is done, then get the result."""
    jobs = job_manager(services)
    _, time = jobs.check(body.operation, body.params, body.time)
    if body.datasets is not None:
        ids = list(dict.fromkeys(body.datasets))
        jobs.check_inputs(len(ids))
        records = [readable_dataset(services, principal, d) for d in ids]
    else:
        assert body.search is not None
        records = _searched(services, principal, body.search, time)
    _require_compute(services, principal, {r.collection for r in records})
    job = jobs.submit(
        body.operation,
        records,
        variable=body.variable,
        params=body.params,
        time=time,
        token_id=principal.token.id if principal.token else None,
    )
    response.headers["Location"] = job_links(request, job)["self"]
    return job_body(request, job)


@router.get("/jobs", summary="The caller's jobs, newest first")
def list_jobs(
    request: Request,
    services: CurrentServices,
    principal: CurrentPrincipal,
    status: Annotated[
        Literal["queued", "running", "done", "failed", "cancelled"] | None,
        Query(description="Only jobs in this state."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Jobs submitted with this token whose inputs it may still read. Anonymous jobs are
    not listed: keep their ids."""
    if principal.token is None:
        return {"jobs": []}
    jobs = job_manager(services).jobs(principal.token.id, status=status, limit=limit)
    return {
        "jobs": [job_body(request, j) for j in jobs if all(principal.can(c) for c in j.collections)]
    }


@router.get(
    "/jobs/{job_id}",
    name="job_status",
    summary="Status of a job",
    description="status is queued, running, done, failed or cancelled; a failed job has "
    "error.message, a done one its provenance and links.result.",
)
def job_status(
    job_id: _JOB_ID, request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> dict[str, Any]:
    """The job's status, timings, error or provenance."""
    return job_body(request, _visible(services, principal, job_id))


@router.get(
    "/jobs/{job_id}/result",
    summary="Result of a done job",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/x-netcdf": {}, "application/json": {}}},
        304: {"description": "The client holds this result (If-None-Match)."},
        409: {"description": "The job is not done."},
    },
)
def job_result(
    job_id: _JOB_ID,
    request: Request,
    services: CurrentServices,
    principal: CurrentPrincipal,
    format: Annotated[
        Literal["netcdf", "json"],
        Query(description="netcdf (the file) or json (the values, for small results)."),
    ] = "netcdf",
) -> Response:
    """The result as CF NetCDF; its ETag is the result key, which never changes content.
    A workflow job's result is its run record (run.json) as JSON."""
    job = _visible(services, principal, job_id)
    if job.status != "done":
        raise Conflict(
            f"Job {job_id!r} is {job.status}; there is no result"
            + (
                f" yet. Poll GET {job_links(request, job)['self']} until its status is 'done'."
                if job.status in ("queued", "running")
                else ". See its status for why, and submit it again."
            )
        )
    path = job_manager(services).result_path(job)
    etag = f'"{job.result_key}"'
    cached = not_modified(request, etag, max_age=_IMMUTABLE)
    headers = cache_headers(etag, max_age=_IMMUTABLE)
    headers["Cache-Control"] += ", immutable"
    if cached is not None:
        cached.headers["Cache-Control"] = headers["Cache-Control"]
        return cached
    if job.operation == WORKFLOW:  # the run's record: run.json
        return JSONResponse(json.loads(path.read_text(encoding="utf-8")), headers=headers)
    if format == "json":
        return JSONResponse(result_values(path), headers=headers)
    return FileResponse(
        path,
        media_type="application/x-netcdf",
        filename=f"{job.operation}-{job.id}.nc",
        headers=headers,
    )


@router.delete(
    "/jobs/{job_id}",
    summary="Cancel a job",
    description="A queued job never starts; a running one is marked cancelled and its "
    "result is not kept for it. 409 if the job has already ended.",
)
def cancel_job(
    job_id: _JOB_ID, request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Cancel the job and return it."""
    job = _visible(services, principal, job_id)
    _require_compute(services, principal, set(job.collections))
    return job_body(request, job_manager(services).cancel(job.id))
