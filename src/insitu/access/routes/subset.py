"""Subset route: part of a dataset as NetCDF, CSV or JSON (logic in ``insitu.access.subset``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    cache_headers,
    not_modified,
    readable_dataset,
    strong_etag,
)
from insitu.access.selection import check_parameters
from insitu.access.subset import (
    FORMATS,
    file_identities,
    parse_subset_query,
    plan_subset,
    write_subset,
)

__all__ = ["ERRORS", "router"]

router = APIRouter(tags=["subset"])
_PARAMETERS = ("variables", "time", "lat", "lon", "level", "isel", "format")

ERRORS: dict[int | str, dict[str, Any]] = {
    304: {"description": "The client's copy (If-None-Match) is current."},
    400: {"description": "A parameter is malformed or selects nothing; the message says which."},
    401: {"description": "The collection is not public and no valid token was sent."},
    403: {"description": "The token is not granted this dataset's collection."},
    404: {"description": "No dataset with this id."},
    413: {
        "description": "The selection is larger than the service's limit; narrow it or "
        "submit a job."
    },
}


@router.get(
    "/datasets/{dataset_id}/subset",
    summary="A subset of a dataset as NetCDF, CSV or JSON",
    description="Select variables, coordinate ranges and index ranges of one dataset. Every "
    "parameter is checked and the answer's size computed before anything is read: a "
    "selection larger than the service's limit is refused with 413 and advice on how to "
    "narrow it. Coordinate ranges are LO/HI in the coordinate's units, inclusive, either "
    "side may be empty; one value selects the nearest grid point and keeps the dimension. "
    "The answer carries an ETag; If-None-Match gives 304.",
    response_class=Response,
    responses={
        **ERRORS,
        200: {
            "description": "The whole subset.",
            "content": {media: {} for _, media in FORMATS.values()},
        },
    },
)
def subset(
    request: Request,
    dataset_id: str,
    services: CurrentServices,
    principal: CurrentPrincipal,
    variables: Annotated[
        str | None,
        Query(
            description="Comma-separated variable names (default: every data variable "
            "except cell bounds; NetCDF answers add the bounds of the coordinates).",
            examples=["ta"],
        ),
    ] = None,
    time: Annotated[
        str | None,
        Query(
            description="START/END dates, or one date; partial dates cover their whole "
            "period (1990-01/1990-12 is all of 1990). Either side may be empty.",
            examples=["1990-01/1990-12"],
        ),
    ] = None,
    lat: Annotated[
        str | None,
        Query(description="Latitude range LO/HI or one value, degrees north.", examples=["-10/10"]),
    ] = None,
    lon: Annotated[
        str | None,
        Query(
            description="Longitude range LO/HI or one value, degrees east. LO greater than "
            "HI crosses the date line (350/10); the answer's longitudes then run "
            "continuously (-10 to 10).",
            examples=["350/10"],
        ),
    ] = None,
    level: Annotated[
        str | None,
        Query(
            description="Vertical range LO/HI or one value in the vertical coordinate's "
            "units (Pa for plev).",
            examples=["85000"],
        ),
    ] = None,
    isel: Annotated[
        str | None,
        Query(
            description="Index ranges by dimension name: DIM:START:STOP[:STEP] or DIM:INDEX, "
            "comma-separated; zero-based, STOP excluded, negative counts from the end. A "
            "dimension is selected by coordinate or by index, not both.",
            examples=["time:0:12,plev:0"],
        ),
    ] = None,
    format: Annotated[
        str,
        Query(
            description="netcdf (CF NetCDF4), csv (one row per point: coordinates, then "
            "variables; times as ISO text; missing values empty) or json "
            "({dims, coords, data_vars: {name: {dims, attrs, data}}}; missing values null).",
            json_schema_extra={"enum": list(FORMATS)},
        ),
    ] = "netcdf",
) -> Response:
    """The selection, complete, with its ETag; 400, 413 or 304 before any data is read."""
    record = readable_dataset(services, principal, dataset_id)
    check_parameters(request.query_params, _PARAMETERS)
    query = parse_subset_query(
        variables=variables, time=time, lat=lat, lon=lon, level=level, isel=isel, format=format
    )
    files = services.catalog.files(dataset_id)
    etag = strong_etag("subset", dataset_id, file_identities(files), query.key())
    cached = not_modified(request, etag)
    if cached is not None:
        return cached
    plan = plan_subset(
        services.catalog,
        record,
        files,
        query,
        max_bytes=services.settings.access.max_slice_bytes,
        read_factor=services.settings.access.subset_read_factor,
    )
    answer = write_subset(plan)
    headers = {
        **cache_headers(etag),
        "Content-Disposition": f'attachment; filename="{answer.filename}"',
    }
    if answer.file is not None:
        headers["Content-Length"] = str(answer.size)
        return StreamingResponse(answer.chunks(), media_type=answer.media_type, headers=headers)
    return Response(answer.content, media_type=answer.media_type, headers=headers)
