"""Catalog routes: collections with counts, faceted search, dataset metadata."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    Principal,
    Services,
    check_collection,
    readable_dataset,
    run_here_or_in_thread,
)
from insitu.catalog import DatasetRecord, SearchResult
from insitu.errors import InvalidQuery

__all__ = ["dataset_metadata", "router", "search_catalog"]

router = APIRouter(tags=["catalog"])

# Query parameters that are not facet constraints.
_RESERVED = frozenset(
    {"q", "time", "bbox", "latest", "collection", "limit", "offset", "sort", "facets", "token"}
)
MAX_LIMIT = 1000
API = "/api/v1"  # where the app mounts this router (links in answers are relative to the host)


@router.get("/collections", summary="Collections this request may read, with counts")
def list_collections(services: CurrentServices, principal: CurrentPrincipal) -> dict[str, Any]:
    """Registered collections the caller may read, with file, dataset and size counts."""
    stats = services.catalog.stats()
    out = []
    for c in services.catalog.collections():
        if not principal.can(c.name):
            continue
        s = stats.get(c.name)
        out.append(
            {
                "name": c.name,
                "template": c.template,
                "public": c.public,
                "datasets": s.datasets if s else 0,
                "latest_datasets": s.latest_datasets if s else 0,
                "files": s.files if s else 0,
                "problems": s.problems if s else 0,
                "size": s.size if s else 0,
            }
        )
    return {"collections": out}


def _split_time(value: str) -> tuple[str | None, str | None]:
    start, sep, end = value.partition("/")
    if not sep:
        return value, value
    return start or None, end or None


def search_catalog(
    services: Services,
    principal: Principal,
    constraints: dict[str, list[str]],
    *,
    q: str | None = None,
    time: str | None = None,
    bbox: str | None = None,
    latest: bool = True,
    collection: str | None = None,
    limit: int = 20,
    offset: int = 0,
    sort: str = "dataset_id",
    facets: str | None = None,
) -> SearchResult:
    """A search restricted to what ``principal`` may read (shared by API and web pages)."""
    readable = principal.readable(services.snapshot.names)
    if collection is not None:
        check_collection(services, principal, collection)
        readable = [collection]
    return services.catalog.search(
        q or None,
        time=_split_time(time) if time else None,
        bbox=bbox or None,
        latest=latest,
        collection=readable,
        limit=limit,
        offset=offset,
        sort=sort,
        facets=[f for f in facets.split(",") if f] if facets else None,
        **constraints,
    )


def facet_constraints(request: Request) -> dict[str, list[str]]:
    """``FACET=VALUE`` query parameters; repeated or comma-separated values are any-of."""
    out: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        if key in _RESERVED:
            continue
        values = [v.strip() for v in value.split(",") if v.strip()]
        if not values:
            raise InvalidQuery(f"Facet {key!r} has an empty value; give {key}=VALUE or drop it.")
        out.setdefault(key, []).extend(values)
    return out


@router.get(
    "/search",
    summary="Faceted search with counts",
    description="Any query parameter not listed here is a facet constraint, e.g. "
    "`source_id=MIROC6&variable_id=ta,tas` (commas or repeats: any of; `*` and `?` are "
    "wildcards). Aliases such as `model`, `experiment` and `variable` are accepted.",
)
async def search(
    request: Request,
    services: CurrentServices,
    principal: CurrentPrincipal,
    q: Annotated[
        str | None,
        Query(
            description="Free text: words or word beginnings, all of which must occur in the "
            "dataset id, variable names or attributes."
        ),
    ] = None,
    time: Annotated[
        str | None, Query(description="Overlap with START/END, e.g. 1990/2000-06.")
    ] = None,
    bbox: Annotated[str | None, Query(description="Overlap with W,S,E,N in degrees.")] = None,
    latest: Annotated[bool, Query(description="Only the latest version of each.")] = True,
    collection: Annotated[str | None, Query(description="Only this collection.")] = None,
    limit: Annotated[int, Query(ge=0, le=MAX_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    sort: Annotated[
        str,
        Query(
            description="dataset_id, version, size, n_files, time_start or time_end; "
            "'-' in front for descending."
        ),
    ] = "dataset_id",
    facets: Annotated[
        str | None, Query(description="Comma-separated facets to count (default: all).")
    ] = None,
) -> dict[str, Any]:
    """Datasets matching every constraint, one page of them, and facet value counts."""
    find = functools.partial(
        search_catalog,
        services,
        principal,
        facet_constraints(request),
        q=q,
        time=time,
        bbox=bbox,
        latest=latest,
        collection=collection,
        limit=limit,
        offset=offset,
        sort=sort,
        facets=facets,
    )
    # On the event loop unless the index must be (re)built first, which takes long, or the
    # search's reads of the store (its generation, the page's records, the text index:
    # a few ms on a local SQLite) are round trips to a database server.
    quick = services.db_local and services.catalog.index_is_current(services.snapshot.generation)
    result = await run_here_or_in_thread(quick, find)
    body = result.to_json()
    body["limit"], body["offset"] = limit, offset
    return body


def dataset_metadata(services: Services, record: DatasetRecord) -> dict[str, Any]:
    """Everything the API tells about one dataset: facets, variables, time, files, versions."""
    files = services.catalog.files(record.dataset_id)
    versions = services.catalog.store.datasets(record.collection, master_ids=[record.master_id])
    return {
        **record.summary(),
        "master_id": record.master_id,
        "variables": [v.to_json() for v in record.variables],
        "attrs": record.attrs,
        "time": {
            "start": record.time_start,
            "end": record.time_end,
            "calendar": record.calendar,
            "steps": sum(f.n_times for f in files),
        },
        "files": [
            {
                "path": f.path,
                "size": f.size,
                "time_start": f.time_start,
                "time_end": f.time_end,
                "n_times": f.n_times,
            }
            for f in files
        ],
        "versions": [
            {"dataset_id": v.dataset_id, "version": v.version, "latest": v.latest}
            for v in sorted(versions, key=lambda v: v.version)
        ],
        "links": {
            "page": f"/datasets/{record.dataset_id}",
            "zarr": f"{API}/zarr/{record.dataset_id}",
            "subset": f"{API}/datasets/{record.dataset_id}/subset",
            "quicklook_map": f"{API}/datasets/{record.dataset_id}/quicklook/map.png",
            "quicklook_series": f"{API}/datasets/{record.dataset_id}/quicklook/series.png",
        },
        "provenance": {
            k: record.attrs[k]
            for k in ("history", "source", "institution", "references", "tracking_id")
            if k in record.attrs
        },
    }


@router.get("/datasets/{dataset_id}", summary="Metadata of one dataset")
def get_dataset(
    dataset_id: str, services: CurrentServices, principal: CurrentPrincipal
) -> dict[str, Any]:
    """Facets, variables with attributes, time coverage, files and versions of a dataset."""
    record = readable_dataset(services, principal, dataset_id)
    return dataset_metadata(services, record)
