"""The data service: one ASGI app for the HTTP API and the web pages.

``build_app(settings)`` wires the routers to one :class:`~insitu.access.deps.Services`.
This is the only module that turns errors into HTTP answers: our errors become their
``http_status`` with their message; anything else becomes a 500 that carries a request id
(and is logged with it), never a traceback.
"""

from __future__ import annotations

import gc
import itertools
import logging
import secrets
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from insitu import __version__
from insitu.access.deps import Services
from insitu.access.jobs import JobManager
from insitu.access.quicklook import warm_up
from insitu.access.routes import API_PREFIX, include_routes
from insitu.access.routes.web import page_error
from insitu.access.signing import SignedLinks, UrlSigner
from insitu.access.tokens import TokenStore
from insitu.catalog import Catalog
from insitu.errors import ConfigError, InsituError
from insitu.settings import Settings

__all__ = ["API_PREFIX", "build_app", "error_response"]

log = logging.getLogger(__name__)


def _error(status: int, kind: str, message: str, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"type": kind, "message": message, "request_id": request_id}},
        status_code=status,
        headers={"X-Request-ID": request_id},
    )


def error_response(exc: InsituError, request_id: str) -> JSONResponse:
    """The answer for one of our errors: its ``http_status`` and message."""
    response = _error(exc.http_status, type(exc).__name__, str(exc), request_id)
    if exc.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="insitu"'
    return response


def _request_id(request: Request) -> str:
    rid: str = getattr(request.state, "request_id", "-")
    return rid


class RequestIdMiddleware:
    """Gives every request an id (``request.state.request_id``, header ``X-Request-ID``).

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` (``@app.middleware``)
    cost more than a small Zarr chunk's whole read under 50 concurrent clients.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A per-process random prefix and a counter: unique, and no system call per request.
        rid = f"{self._prefix}{next(self._count):08x}"
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _mount_docs(app: FastAPI) -> None:
    """Swagger UI at /api/v1/docs from the assets of ``swagger-ui-bundle``, not a CDN."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = f"{API_PREFIX}/docs-assets"
    app.mount(assets, StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs")

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{API_PREFIX}/openapi.json",
            title="insitu data service",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
        )


def _warm_up_and_freeze() -> None:
    """Import what the first plot needs, then move every object made so far (modules,
    classes, the app: they live as long as the process) out of the collector's sight.

    A full collection walks every tracked object: with those of the imports included it
    took about 55 ms in a test process (more in a server with xarray and matplotlib
    loaded), every request of the process waiting; without them, about 5 ms.
    """
    warm_up()
    gc.freeze()


def build_app(
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    tokens: TokenStore | None = None,
    server_process: bool = False,
) -> FastAPI:
    """The data service over the catalog the settings name (or ``catalog``).

    ``server_process``: the app is the process's whole life (``insitu serve``): once its
    start-up imports are done, their objects are frozen out of the cyclic collector
    (``gc.freeze``), which cuts the pauses of full collections under load. Not for an app
    built inside another program (tests, a notebook): frozen objects are never collected.
    """
    catalog = catalog or Catalog(settings)
    services = Services(
        settings=settings,
        catalog=catalog,
        tokens=tokens or TokenStore.from_uri(settings.catalog_uri),
        signer=UrlSigner.from_data_dir(settings.data_dir, settings.access.signed_url_seconds),
    )
    services.jobs = JobManager(settings, catalog)
    if settings.access.hub_login:
        from insitu.access.hubauth import HubLogin

        if not HubLogin.available():
            raise ConfigError(
                "access.hub_login is set but this process was not started by JupyterHub as "
                "a service (no JUPYTERHUB_API_TOKEN/JUPYTERHUB_CLIENT_ID): run 'insitu up'."
            )
        services.hub = HubLogin(settings.hub.auth_cache_seconds)
    # Under the hub the proxy forwards /services/insitu/... whole: the prefix is the root
    # path, and the routes match what follows it.
    root_path = services.hub.prefix if services.hub is not None else ""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # In the background: the service answers at once, and its first plot sooner.
        start_up = _warm_up_and_freeze if server_process else warm_up
        threading.Thread(target=start_up, name="insitu-warm-up", daemon=True).start()
        yield
        if services.jobs is not None:
            services.jobs.close()

    app = FastAPI(
        title="insitu data service",
        version=__version__,
        description="Search the catalog, read slices and server-side results of datasets "
        "next to the archive. Send a token as 'Authorization: Bearer <token>'; public "
        "collections need none.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # served below from local assets: no CDN on a closed network
        redoc_url=None,
        lifespan=lifespan,
        root_path=root_path,
    )
    app.state.services = services

    assert services.signer is not None
    # Inside the request id; a bad signature is answered as every error is, from here.
    app.add_middleware(SignedLinks, signer=services.signer, answer=error_response)
    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(InsituError)
    async def insitu_error(request: Request, exc: InsituError) -> JSONResponse:
        return error_response(exc, _request_id(request))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _error(
            422,
            "InvalidRequest",
            f"Invalid parameters: {problems}. See {API_PREFIX}/docs for the expected form.",
            _request_id(request),
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        page = page_error(request, exc)  # a page URL gets an HTML page, the API JSON
        if page is not None:
            return page
        return _error(exc.status_code, "HTTPError", str(exc.detail), _request_id(request))

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:
        rid = _request_id(request)
        log.error(
            "request %s %s failed (request id %s)",
            request.method,
            request.url.path,
            rid,
            exc_info=exc,
        )
        return _error(
            500,
            "InternalError",
            f"The service failed on this request. Report request id {rid} to the operator.",
            rid,
        )

    _mount_docs(app)

    @app.get(f"{API_PREFIX}/health", tags=["service"], summary="Liveness and version")
    async def health() -> dict[str, str]:
        """``{"status": "ok", "version": ...}`` while the service runs."""
        return {"status": "ok", "version": __version__}

    include_routes(app, API_PREFIX)
    if services.hub is not None:
        from insitu.access.routes.hub import install_hub_login

        install_hub_login(app, services.hub)
    return app
