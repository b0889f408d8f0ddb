"""Quicklook routes: PNG maps and time series (rendering in ``insitu.access.quicklook``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    Services,
    cache_headers,
    not_modified,
    readable_dataset,
    strong_etag,
)
from insitu.access.jobstore import Job
from insitu.access.quicklook import (
    STYLE,
    PngCache,
    SeriesQuery,
    field_mean_from_result,
    parse_map_query,
    parse_series_query,
    render_map,
    render_series,
    series_variable,
)
from insitu.access.routes.subset import ERRORS
from insitu.access.selection import check_parameters
from insitu.access.series import SeriesJobs, cached_series, keep_png, kept_png
from insitu.access.subset import file_identities, read_cost
from insitu.catalog import DatasetRecord, FileRecord
from insitu.errors import TooLarge

__all__ = ["field_mean_drawn", "router", "too_large_to_read"]

router = APIRouter(tags=["quicklook"])

_PNG: dict[int | str, dict[str, Any]] = {
    200: {"description": "A PNG image.", "content": {"image/png": {}}}
}
_CACHE_KEY = "quicklook.png_cache"
_JOBS_KEY = "quicklook.series_jobs"
_PENDING: dict[int | str, dict[str, Any]] = {
    202: {
        "description": "The series is being computed on the server (a field mean too large "
        "to read in one request): the job's state, as JSON. Ask again after Retry-After "
        "seconds; the answer is the PNG once it is ready."
    }
}

VariableParam = Annotated[
    str | None,
    Query(
        description="The variable to show (default: the dataset's main variable).", examples=["ta"]
    ),
]
LevelParam = Annotated[
    str | None,
    Query(
        description="A vertical coordinate value, in its units (Pa for plev); the nearest "
        "level is shown. Default: the first level.",
        examples=["92500"],
    ),
]


def _cache(services: Services) -> PngCache:
    cache = services.extras.get(_CACHE_KEY)
    if cache is None:
        cache = services.extras.setdefault(_CACHE_KEY, PngCache())
    assert isinstance(cache, PngCache)
    return cache


def _answer(
    request: Request, services: Services, etag: str, render: Callable[[], bytes | Response]
) -> Response:
    """304, or the cached PNG, or a fresh render (cached afterwards; a Response as it is)."""
    cached = not_modified(request, etag)
    if cached is not None:
        return cached
    cache = _cache(services)
    png = cache.get(etag)
    if png is None:
        got = render()
        if isinstance(got, Response):
            return got
        png = got
        cache.put(etag, png)
    return Response(png, media_type="image/png", headers=cache_headers(etag))


def _series_etag(dataset_id: str, files: list[FileRecord], query: SeriesQuery) -> str:
    return strong_etag("quicklook", STYLE, dataset_id, file_identities(files), query.key())


def too_large_to_read(services: Services, files: list[FileRecord], variable: str) -> bool:
    """Whether a series of ``variable`` over all ``files`` reads more than one request may
    (a field mean of it is then computed on the server)."""
    access = services.settings.access
    cost = read_cost(files, None, [variable], None)
    return cost.refusal("", access.max_slice_bytes, access.subset_read_factor) is not None


def field_mean_drawn(
    services: Services, dataset_id: str, files: list[FileRecord], variable: str
) -> bool:
    """Whether this process keeps the PNG of the dataset page's field-mean series: then
    the page shows it at once, without asking the results cache."""
    query = parse_series_query(variable, None, None, "field", None, None)
    return _cache(services).get(_series_etag(dataset_id, files, query)) is not None


def _series_jobs(services: Services) -> SeriesJobs | None:
    if services.jobs is None:
        return None
    jobs = services.extras.get(_JOBS_KEY)
    if jobs is None:
        jobs = services.extras.setdefault(_JOBS_KEY, SeriesJobs(services.jobs))
    assert isinstance(jobs, SeriesJobs)
    return jobs


def _server_side(
    request: Request, services: Services, key: str, record: DatasetRecord, query: SeriesQuery
) -> bytes | Response:
    """The field-mean PNG from the computed result, or 202 with the job computing it."""
    jobs = _series_jobs(services)
    assert jobs is not None
    variable = series_variable(services.catalog, record, query)
    got = jobs.result(key, record, variable, query.time)
    if got.path is not None:
        return _drawn(record, got.path, variable, query, key)
    assert got.job is not None
    return _computing(request, got.job)


def _drawn(
    record: DatasetRecord, path: Path, variable: str, query: SeriesQuery, etag: str
) -> bytes:
    """The PNG of the field mean computed into ``path``: drawn once, then kept beside it,
    so that a restarted service sends it without decoding the result again."""
    kept = kept_png(path, etag)
    with contextlib.suppress(FileNotFoundError):
        return kept.read_bytes()
    import xarray as xr

    with xr.open_dataset(path) as result:
        png = field_mean_from_result(record, result.load(), variable, query)
    keep_png(kept, png)
    return png


def _computed_before(
    services: Services,
    record: DatasetRecord,
    files: list[FileRecord],
    query: SeriesQuery,
    etag: str,
) -> bytes | None:
    """The page's field mean (a named variable, the whole record) from the results cache
    when it is too large to read per request: no file of the dataset is opened (a first
    request after a restart). If it was not computed yet, the jobs' cluster starts now, in
    the background, while this request goes on to submit the job."""
    if not query.field_mean or query.variable is None or query.time is not None:
        return None
    if not too_large_to_read(services, files, query.variable):
        return None
    path = cached_series(services.catalog, record, query.variable, None)
    if path is None:
        assert services.jobs is not None
        services.jobs.prepare()
        return None
    return _drawn(record, path, query.variable, query, etag)


def _computing(request: Request, job: Job) -> Response:
    """202: the series is being computed by ``job``; its state, and when to ask again."""
    status = request.url_for("job_status", job_id=job.id).path
    variable = f" of {job.variable!r}" if job.variable else ""
    body = {
        "status": job.status,
        "message": f"Computing the area-weighted field mean{variable} on the server "
        f"(job {job.id}, {job.status}); ask again in a few seconds.",
        "job": {**job.to_json(), "links": {"self": status}},
    }
    return JSONResponse(
        body, status_code=202, headers={"Retry-After": "1", "Cache-Control": "no-store"}
    )


@router.get(
    "/datasets/{dataset_id}/quicklook/map.png",
    summary="A map of one time step",
    description="One variable's cells on its latitude-longitude grid at one time step and "
    "level, with a colour bar labelled with the variable's long name and units. Reads only "
    "the stored chunk(s) of that one record.",
    response_class=Response,
    responses={**ERRORS, **_PNG},
)
def quicklook_map(
    request: Request,
    dataset_id: str,
    services: CurrentServices,
    principal: CurrentPrincipal,
    variable: VariableParam = None,
    time: Annotated[
        str | None,
        Query(
            description="A date (or START/END); the first time step within it is shown. "
            "Default: the first time step.",
            examples=["1990-07"],
        ),
    ] = None,
    level: LevelParam = None,
) -> Response:
    """The map as PNG, with an ETag; 400 for an unknown variable, time or level."""
    record = readable_dataset(services, principal, dataset_id)
    check_parameters(request.query_params, ("variable", "time", "level"))
    query = parse_map_query(variable, time, level)
    files = services.catalog.files(dataset_id)
    etag = strong_etag("quicklook", STYLE, dataset_id, file_identities(files), query.key())
    return _answer(
        request, services, etag, lambda: render_map(services.catalog, record, files, query)
    )


@router.get(
    "/datasets/{dataset_id}/quicklook/series.png",
    summary="A time series at a point or of the field mean",
    description="The variable over time at the grid point nearest lat/lon, or its "
    "area-weighted mean over the grid (mean=field), at one level. Reading is bounded: files "
    "are read whole, and a series at a point that would read more than 16 times the "
    "service's slice limit gets 413 (give a shorter time range). A field mean that large is "
    "computed on the server as a field_mean job and kept in the results cache: the answer "
    "is 202 with the job's state until it is done, then the PNG.",
    response_class=Response,
    responses={**ERRORS, **_PNG, **_PENDING},
)
def quicklook_series(
    request: Request,
    dataset_id: str,
    services: CurrentServices,
    principal: CurrentPrincipal,
    variable: VariableParam = None,
    lat: Annotated[
        str | None, Query(description="Latitude of the point, degrees north.", examples=["45"])
    ] = None,
    lon: Annotated[
        str | None, Query(description="Longitude of the point, degrees east.", examples=["10"])
    ] = None,
    mean: Annotated[
        str | None,
        Query(
            description="'field' for the area-weighted mean over the grid (instead of "
            "lat and lon).",
            json_schema_extra={"enum": ["field"]},
        ),
    ] = None,
    level: LevelParam = None,
    time: Annotated[
        str | None,
        Query(description="START/END dates (default: the whole record).", examples=["1990/1999"]),
    ] = None,
) -> Response:
    """The series as PNG, with an ETag; 400 for bad parameters, 413 if too long to read at
    a point, 202 while a field mean too long to read is computed on the server."""
    record = readable_dataset(services, principal, dataset_id)
    check_parameters(request.query_params, ("variable", "lat", "lon", "mean", "level", "time"))
    query = parse_series_query(variable, lat, lon, mean, level, time)
    files = services.catalog.files(dataset_id)
    etag = _series_etag(dataset_id, files, query)
    access = services.settings.access

    def render() -> bytes | Response:
        jobs = _series_jobs(services) if query.field_mean else None
        running = jobs.running(etag) if jobs is not None else None
        if running is not None:  # asked again while it is computed: no file is opened
            return _computing(request, running)
        if jobs is not None and (done := _computed_before(services, record, files, query, etag)):
            return done
        try:
            return render_series(
                services.catalog,
                record,
                files,
                query,
                max_bytes=access.max_slice_bytes,
                read_factor=access.subset_read_factor,
            )
        except TooLarge:
            if not query.field_mean or services.jobs is None:
                raise
            return _server_side(request, services, etag, record, query)

    return _answer(request, services, etag, render)
