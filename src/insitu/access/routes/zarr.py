"""The read-only Zarr view of every dataset: ``/zarr/{dataset_id}/{key}``.

``xarray.open_zarr(fsspec.get_mapper(f"{url}/api/v1/zarr/{dataset_id}"), consolidated=True)``
opens a dataset lazily and reads only the chunks a computation needs. The logic is in
:mod:`insitu.access.zarrview`; this module checks access and speaks HTTP.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    Services,
    cache_headers,
    check_readable,
    not_modified,
)
from insitu.access.zarrview import ChunkRef, WouldBlock, ZarrView, ZarrViews

__all__ = ["router", "zarr_views"]

router = APIRouter(tags=["zarr"])

# A dataset id names one version, whose files a well-kept archive never rewrites: chunks
# may be cached for an hour. Metadata is revalidated sooner, so that a rescan that changes
# the chunk layout reaches clients quickly; ETags catch every change either way.
CHUNK_MAX_AGE = 3600
METADATA_MAX_AGE = 60

_EXTRA = "zarr_views"

# Chunks up to this size (before compression) are read on the event loop when the HDF5
# lock is free and their files are open: a few hundred microseconds, less than the hop to
# the thread pool and back. Bigger ones, and any read that would wait, go to the pool.
INLINE_CHUNK_BYTES = 256 * 1024


def zarr_views(services: Services) -> ZarrViews:
    """The views of this app's datasets, cached per (dataset id, catalog generation)."""
    views = services.extras.get(_EXTRA)
    if views is None:
        access = services.settings.access
        views = services.extras.setdefault(
            _EXTRA, ZarrViews(access.zarr_chunk_bytes, cache_bytes=access.chunk_cache_bytes)
        )
    assert isinstance(views, ZarrViews)
    return views


# The whole body is read before the answer starts, so a file that fails to read is a clean
# DataError (500 with its message), never a 200 cut short. Nothing here waits on the event
# loop: what may take long (a query for a dataset not seen yet, building its view, opening
# a file, a big chunk, a lock another thread holds) runs in the thread pool.
@router.get(
    "/zarr/{dataset_id}/{key:path}",
    summary="One key of the read-only Zarr view of a dataset",
    description="Zarr format 2 with consolidated metadata: `.zmetadata`, `.zgroup`, "
    "`.zattrs`, `{variable}/.zarray`, `{variable}/.zattrs` and chunks `{variable}/{i}.{j}...`"
    " (C order, values as encoded in the files with their CF attributes). "
    "Open it with `xarray.open_zarr(fsspec.get_mapper(URL_OF_THIS_DATASET), "
    "consolidated=True)`. Keys that do not exist are 404.",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}, "application/json": {}}},
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
    },
)
async def zarr_key(
    dataset_id: str,
    key: str,
    request: Request,
    services: CurrentServices,
    principal: CurrentPrincipal,
) -> Response:
    """A metadata document or a chunk of the Zarr view of one dataset."""
    snapshot = services.snapshot
    record = snapshot.cached(dataset_id)
    if record is None:
        record = await run_in_threadpool(snapshot.dataset, dataset_id)
    check_readable(principal, record)
    views = zarr_views(services)
    view = views.cached(dataset_id, snapshot.generation)
    if view is None:
        view = await run_in_threadpool(views.get, services.catalog, record, snapshot.generation)
    item = view.lookup(key)
    etag = view.etag(item, key)
    max_age = METADATA_MAX_AGE if isinstance(item, bytes) else CHUNK_MAX_AGE
    cached = not_modified(request, etag, max_age=max_age)
    if cached is not None:
        return cached
    body: bytes | memoryview
    if isinstance(item, bytes):
        body, media_type = item, "application/json"
    else:
        body, media_type = await _read_chunk(view, item), "application/octet-stream"
    return Response(body, media_type=media_type, headers=cache_headers(etag, max_age=max_age))


async def _read_chunk(view: ZarrView, ref: ChunkRef) -> bytes | memoryview:
    if ref.nbytes <= INLINE_CHUNK_BYTES:
        try:
            return view.read(ref, wait=False)
        except WouldBlock:
            pass
    return await run_in_threadpool(view.read, ref)
