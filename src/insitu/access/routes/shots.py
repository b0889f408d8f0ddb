"""The shot search: ``GET /api/v1/shots``, answered from the catalog database's shot records
(no product is opened), with the access rules of collections: shots of a collection the
caller may not read are absent, as the collection is."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from insitu.access.deps import CurrentPrincipal, CurrentServices, run_here_or_in_thread
from insitu.errors import InvalidRequest
from insitu.ingest import MAX_SHOTS, find_shots, parse_where

__all__ = ["router"]

router = APIRouter(tags=["shots"])

API = "/api/v1"
DEFAULT_LIMIT = 50
_SINGLE = ("campaign", "from", "to", "where", "page[offset]", "page[limit]", "latest", "token")
_MANY = ("has_signal", "config.component")


def _int(name: str, value: str | None, default: int, top: int) -> int:
    if value is None:
        return default
    if not value.strip().isdigit() or int(value) > top:
        raise InvalidRequest(f"{name}={value!r} is not a whole number from 0 to {top}.")
    return int(value)


def _params(request: Request) -> dict[str, Any]:
    """Every query parameter checked (400 naming the bad one), before any answer."""
    single: dict[str, str] = {}
    many: dict[str, list[str]] = {k: [] for k in _MANY}
    for key, value in request.query_params.multi_items():
        if key in _MANY:
            names = [v.strip() for v in value.split(",") if v.strip()]
            if not names:
                raise InvalidRequest(f"{key} is empty; give {key}=NAME or drop it.")
            many[key] += names
        elif key in _SINGLE:
            if key in single:
                raise InvalidRequest(f"{key} is given twice; give it once.")
            single[key] = value
        else:
            known = ", ".join((*_SINGLE[:-1], *_MANY))
            raise InvalidRequest(f"Unknown query parameter {key!r}; the shot search takes {known}.")
    latest = single.get("latest", "true").lower()
    if latest not in ("true", "false"):
        raise InvalidRequest(f"latest={single['latest']!r} is not true or false.")
    if "campaign" in single and not single["campaign"].strip():
        raise InvalidRequest("campaign is empty; give campaign=NAME or drop it.")
    return {
        "campaign": single.get("campaign"),
        "start": single.get("from"),
        "end": single.get("to"),
        "signal": many["has_signal"],
        "component": many["config.component"],
        "where": parse_where(single["where"]) if single.get("where") else None,
        "latest": latest == "true",
        "offset": _int("page[offset]", single.get("page[offset]"), 0, 10**9),
        "limit": _int("page[limit]", single.get("page[limit]"), DEFAULT_LIMIT, MAX_SHOTS),
    }


@router.get(
    "/shots",
    summary="Search the shots of ingest pipelines",
    description="Shot records by campaign, acquisition time `[from, to)` (ISO 8601, UTC), "
    "signal (`has_signal`, repeated or comma-separated: all of), configuration component "
    "present (`config.component`), summary values (`where=coil_field_max>0.1`, "
    "SIGNAL_min|max|mean, conditions joined by ','), newest first, one page "
    "(`page[offset]`, `page[limit]` up to 1000). Only shots of collections the caller may "
    "read.",
)
async def search_shots(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> dict[str, Any]:
    """One page of the matching shots, with the total and links."""
    params = _params(request)
    readable = principal.readable(services.snapshot.names)
    find = functools.partial(find_shots, services.settings, collections=readable, **params)
    # Always in a thread: counting thousands of matches takes 10-30 ms even on SQLite
    # (bench/bench_shot_search.py), too long to hold the event loop.
    page = await run_here_or_in_thread(False, find)
    shots = []
    for record in page.shots:
        body = record.to_json()
        del body["path"]  # the server's file system is not the caller's business
        body["links"] = {
            "dataset": f"{API}/datasets/{record.dataset_id}",
            "page": f"/datasets/{record.dataset_id}",
            "zarr": f"{API}/zarr/{record.dataset_id}",
        }
        shots.append(body)
    out: dict[str, Any] = {
        "total": page.total,
        "offset": page.offset,
        "limit": page.limit,
        "shots": shots,
        "links": {},
    }
    if page.offset + page.limit < page.total:
        query = [
            (k, v) for k, v in request.query_params.multi_items() if k not in ("page[offset]",)
        ]
        query.append(("page[offset]", str(page.offset + page.limit)))
        out["links"]["next"] = f"{API}/shots?{urlencode(query)}"
    return out
