"""Published workflows as server-side jobs: list them, start a run.

Who may: a token with the ``workflows`` scope (the hub's users have it), whatever
collections it grants: a published workflow is code an operator chose to run as the
service, and the caller only picks its parameter values. The run is a job
(:mod:`insitu.access.workflow_jobs`): followed, cancelled and fetched (its run record)
with the job routes, ``/jobs/{id}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from insitu.access.deps import CurrentPrincipal, CurrentServices, Principal, Services
from insitu.access.routes.jobs import job_body, job_links, job_manager
from insitu.errors import Forbidden, Unauthorized

__all__ = ["WorkflowRun", "require_workflows", "router"]

router = APIRouter(tags=["workflows"])

SCOPE = "workflows"
_NAME = Annotated[
    str,
    Path(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The published workflow's name.",
    ),
]


class WorkflowRun(BaseModel):
    """The values of the workflow's parameters for this run (the rest keep theirs)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"params": {"param_n": 12}}]}
    )

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter values by name; GET /workflows lists each workflow's "
        "parameters with their defaults.",
    )


def require_workflows(principal: Principal) -> None:
    """Unauthorized without a token, Forbidden without the ``workflows`` scope."""
    if principal.token is None:
        raise Unauthorized(
            "Running a published workflow needs a token with the 'workflows' scope, sent as "
            "'Authorization: Bearer <token>' (or a login through the hub). An operator "
            "creates one with 'insitu token create --scope workflows'."
        )
    if SCOPE not in principal.token.scopes:
        raise Forbidden(
            f"Token {principal.token.name!r} ({principal.token.id}) lacks the 'workflows' "
            "scope; ask an operator for a token that has it ('insitu token create --scope "
            "workflows')."
        )


def _published(services: Services) -> list[dict[str, Any]]:
    from insitu.workflows import PublishedWorkflows, load_workflow

    out = []
    with PublishedWorkflows.from_settings(services.settings) as published:
        entries = published.list()
    for entry in entries:
        doc = entry.to_json()
        try:
            wf = load_workflow(entry.directory)
        except Exception as exc:  # a broken folder is shown, not hidden
            doc["error"] = str(exc)
        else:
            doc["nodes"] = len(wf.nodes)
            doc["params"] = {
                name: {"default": value, "type": _param_type(wf, name)}
                for name, value in sorted(wf.params.items())
            }
            doc["changed"] = wf.hash != entry.workflow_hash
        out.append(doc)
    return out


def _param_type(wf: Any, name: str) -> str:
    for node in wf.nodes.values():
        port = node.ports("params").get(name)
        if port and port.get("type") not in (None, "", "any"):
            return str(port["type"])
    return "any"


@router.get(
    "/workflows",
    summary="Published workflows a run can be started of",
    responses={401: {"description": "No token."}, 403: {"description": "No workflows scope."}},
)
def list_published(services: CurrentServices, principal: CurrentPrincipal) -> dict[str, Any]:
    """Each published workflow: name, hash, who published it when, its parameters with
    their defaults and types."""
    require_workflows(principal)
    return {"workflows": _published(services)}


@router.post(
    "/workflows/{name}/runs",
    status_code=202,
    summary="Run a published workflow on the server",
    description="Checks everything before it queues the run: the workflow is published and "
    "unchanged since (409 otherwise: an operator publishes it again), every parameter is "
    "one of the workflow's and of its type (400). Answers 202 with the job; poll "
    "links.self until status is done or failed; links.result is the run record "
    "(run.json). 429/503 as for other jobs.",
    responses={
        400: {"description": "An unknown parameter or a value of the wrong type."},
        401: {"description": "No token."},
        403: {"description": "The token lacks the workflows scope."},
        404: {"description": "No workflow of that name is published."},
        409: {"description": "The published folder changed since it was published."},
        429: {"description": "This caller has as many jobs pending as one caller may."},
        503: {"description": "The job queue is full, or the service runs no jobs."},
    },
)
def run_published(
    name: _NAME,
    body: WorkflowRun,
    request: Request,
    response: Response,
    services: CurrentServices,
    principal: CurrentPrincipal,
) -> dict[str, Any]:
    """Queue a run of workflow ``name`` with ``params``."""
    require_workflows(principal)
    assert principal.token is not None
    job = job_manager(services).submit_workflow(name, body.params, token_id=principal.token.id)
    response.headers["Location"] = job_links(request, job)["self"]
    return job_body(request, job)
