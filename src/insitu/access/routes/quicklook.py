"""Quicklook routes: PNG maps and time series (rendering in ``insitu.access.quicklook``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    Services,
    cache_headers,
    not_modified,
    readable_dataset,
    strong_etag,
)
from insitu.access.quicklook import (
    STYLE,
    PngCache,
    parse_map_query,
    parse_series_query,
    render_map,
    render_series,
)
from insitu.access.routes.subset import ERRORS
from insitu.access.selection import check_parameters
from insitu.access.subset import file_identities

__all__ = ["router"]

router = APIRouter(tags=["quicklook"])

_PNG: dict[int | str, dict[str, Any]] = {
    200: {"description": "A PNG image.", "content": {"image/png": {}}}
}
_CACHE_KEY = "quicklook.png_cache"

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
    request: Request, services: Services, etag: str, render: Callable[[], bytes]
) -> Response:
    """304, or the cached PNG, or a fresh render (cached afterwards)."""
    cached = not_modified(request, etag)
    if cached is not None:
        return cached
    cache = _cache(services)
    png = cache.get(etag)
    if png is None:
        png = render()
        cache.put(etag, png)
    return Response(png, media_type="image/png", headers=cache_headers(etag))


@router.get(
    "/datasets/{dataset_id}/quicklook/map.png",
    summary="A map of one time step",
    description="pcolormesh of one variable on its latitude-longitude grid at one time step "
    "and level, with a colour bar labelled with the variable's long name and units. Reads "
    "only that one record.",
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
    "are read whole, and a series that would read more than 16 times the service's slice "
    "limit gets 413 (give a shorter time range, or submit a field_mean job).",
    response_class=Response,
    responses={**ERRORS, **_PNG},
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
    """The series as PNG, with an ETag; 400 for bad parameters, 413 if too long to read."""
    record = readable_dataset(services, principal, dataset_id)
    check_parameters(request.query_params, ("variable", "lat", "lon", "mean", "level", "time"))
    query = parse_series_query(variable, lat, lon, mean, level, time)
    files = services.catalog.files(dataset_id)
    etag = strong_etag("quicklook", STYLE, dataset_id, file_identities(files), query.key())
    access = services.settings.access

    def render() -> bytes:
        return render_series(
            services.catalog,
            record,
            files,
            query,
            max_bytes=access.max_slice_bytes,
            read_factor=access.subset_read_factor,
        )

    return _answer(request, services, etag, render)
