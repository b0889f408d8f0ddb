"""The routers of the data service, one module per part of the API.

Each module has a ``router`` (an ``APIRouter``); API routers are mounted under the API
prefix, the web pages at the root.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

__all__ = ["API_MODULES", "API_PREFIX", "WEB_MODULES", "include_routes"]

API_PREFIX = "/api/v1"

API_MODULES = (
    "catalog",
    "zarr",
    "subset",
    "jobs",
    "workflow_runs",
    "quicklook",
    "gallery",
    "links",
    "shots",
)
WEB_MODULES = ("web", "share", "usage", "gallery_pages", "ingest_pages", "workflow_pages")


def include_routes(app: FastAPI, prefix: str) -> None:
    """Mount every router on ``app``."""
    for name in API_MODULES:
        module = importlib.import_module(f"insitu.access.routes.{name}")
        app.include_router(module.router, prefix=prefix)
    for name in WEB_MODULES:
        module = importlib.import_module(f"insitu.access.routes.{name}")
        app.include_router(module.router)
