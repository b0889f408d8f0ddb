"""The web pages: collections, faceted search, dataset pages, and a token login.

Server-rendered Jinja2 templates over the same functions the API uses
(``search_catalog``, ``facet_constraints``, ``dataset_metadata``, ``list_collections``)
under the same access rules (``CurrentPrincipal``), so a page never shows what the API
would refuse. Pages work without JavaScript: every filter is a plain link, and the one
small script only adds "copy" buttons to code snippets and replaces the "computing"
placeholder of a field-mean series computed on the server by its plot once it is ready
(without it, the placeholder says to reload).

Errors on these routes become HTML pages with the error's status and message (the route
class below): a browser user should read "log in" or "not found, search instead", not
JSON. The API routes keep the JSON errors of ``app.py``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import jinja2
import markupsafe
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from insitu import __version__
from insitu.access.deps import (
    COOKIE,
    CurrentPrincipal,
    CurrentServices,
    Principal,
    Services,
    get_services,
    readable_dataset,
)
from insitu.access.hubauth import HUB_COOKIE
from insitu.access.routes import API_PREFIX
from insitu.access.routes.catalog import (
    MAX_LIMIT,
    dataset_metadata,
    facet_constraints,
    list_collections,
    search_catalog,
)
from insitu.access.routes.links import page_link
from insitu.access.routes.quicklook import field_mean_drawn, too_large_to_read
from insitu.access.series import cached_series
from insitu.catalog import DatasetRecord, VariableInfo
from insitu.errors import InsituError, InvalidQuery, InvalidRequest, NotFound

__all__ = ["PageRoute", "error_page", "page_error", "render", "router"]

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent.parent
_STATIC = _HERE / "static"
_STATIC_TYPES = {"insitu.css": "text/css", "insitu.js": "text/javascript"}
# Sizes of the quicklook images in pixels, so the page does not jump while they load.
_MAP_SIZE = (820, 410)
_SERIES_SIZE = (800, 380)
# Facets with more values than this show the rest behind a "more" disclosure.
_FACET_SHOWN = 12
# Everything a page loads comes from the app itself; no inline script or style.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "script-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # What a page shows depends on the token cookie: never from a shared cache.
    "Cache-Control": "private, no-cache",
    "Vary": "Cookie",
}


def _size(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns at TB


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["size"] = _size
_env.filters["quote"] = lambda s: quote(str(s), safe="")
# Long dotted ids wrap at their dots, not in the middle of a facet value.
_env.filters["breakable"] = lambda s: markupsafe.escape(s).replace(".", markupsafe.Markup(".<wbr>"))
_env.filters["day"] = lambda s: str(s)[:10] if s else "–"


def _root(request: Request) -> str:
    """The path prefix the app is served under (behind a proxy), without a trailing '/'."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(
    request: Request,
    template: str,
    *,
    principal: Principal | None = None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    """One page rendered from ``template`` with the layout's context (links, who is in)."""
    root = _root(request)
    html = _env.get_template(template).render(
        root=root,
        path=request.url.path,
        version=__version__,
        principal=principal,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=_SECURITY_HEADERS)


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An HTML page for an error on a web route: what went wrong and what to do next."""
    response = render(
        request,
        "error.html",
        status=status,
        code=status,
        message=message,
        request_id=getattr(request.state, "request_id", "-"),
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        logged_in=COOKIE in request.cookies,
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="insitu"'
    return response


def page_error(request: Request, exc: StarletteHTTPException) -> HTMLResponse | None:
    """The HTML page for an HTTP error outside any route (a mistyped page URL), or None
    for API paths, which keep their JSON errors."""
    path = request.url.path.removeprefix(_root(request))
    if path == API_PREFIX or path.startswith(f"{API_PREFIX}/"):
        return None
    if exc.status_code == 404:
        return error_page(request, 404, f"There is no page at {path}.")
    return error_page(request, exc.status_code, str(exc.detail))


class PageRoute(APIRoute):
    """A route whose errors, including those of its dependencies, render as HTML pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except InsituError as exc:
                return error_page(request, exc.http_status, str(exc))
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                return error_page(request, 400, f"Invalid parameters: {problems}.")
            except StarletteHTTPException as exc:
                return error_page(request, exc.status_code, str(exc.detail))
            except Exception:
                rid = getattr(request.state, "request_id", "-")
                log.exception("page %s failed (request id %s)", request.url.path, rid)
                return error_page(
                    request,
                    500,
                    f"The service failed on this page. Report request id {rid} to the operator.",
                )

        return route


router = APIRouter(route_class=PageRoute, include_in_schema=False)


# -- landing page and static files -------------------------------------------------------


def _service_url(request: Request, services: Services) -> str:
    """Where notebooks reach this service: the configured public URL, else this request's."""
    public = services.settings.access.public_url
    return str(public or request.base_url).rstrip("/")


@router.get("/", response_class=HTMLResponse)
def index(request: Request, services: CurrentServices, principal: CurrentPrincipal) -> Response:
    """Collections the visitor may read, with counts, a search box and a Python note."""
    collections = list_collections(services, principal)["collections"]
    return render(
        request,
        "index.html",
        principal=principal,
        collections=collections,
        service_url=_service_url(request, services),
    )


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The stylesheet and script of the pages (a fixed list: nothing else is served)."""
    if name not in _STATIC_TYPES:
        raise NotFound(f"No static file {name!r}; the pages use {', '.join(_STATIC_TYPES)}.")
    return FileResponse(
        _STATIC / name,
        media_type=_STATIC_TYPES[name],
        headers={"Cache-Control": "public, max-age=3600"},
    )


# -- search -----------------------------------------------------------------------------


def _int(name: str, value: str | None, default: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= high:
        raise InvalidQuery(f"{name}={value!r} is not a whole number from 0 to {high}.")
    return n


def _bool(name: str, value: str | None) -> bool:
    if value is None or value.lower() in ("", "1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise InvalidQuery(f"{name}={value!r} is not true or false.")


def _url(root: str, pairs: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(pairs))
    return f"{root}/search?{query}" if query else f"{root}/search"


def _search_view(
    request: Request, constraints: dict[str, list[str]], facet_counts: dict[str, dict[str, int]]
) -> dict[str, Any]:
    """Links of the search page: add a facet value, remove a filter, hidden form fields."""
    root = _root(request)
    # Never carry a token in a link (history, referrers); a new filter starts at page 1.
    kept = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k not in constraints and k not in ("offset", "token") and v != ""
    ]
    chosen = [(k, v) for k, values in constraints.items() for v in values]
    pairs = kept + chosen
    facets = []
    for name, counts in facet_counts.items():
        values = [
            {
                "value": value,
                "count": n,
                "selected": value in constraints.get(name, ()),
                "href": _url(root, [*pairs, (name, value)]),
            }
            for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        facets.append({"name": name, "shown": values[:_FACET_SHOWN], "more": values[_FACET_SHOWN:]})
    selected = [
        {"label": f"{k} = {v}", "href": _url(root, [p for p in pairs if p != (k, v)])}
        for k, v in pairs
        if k in constraints or k in ("q", "time", "collection")
    ]
    return {
        "facets": facets,
        "selected": selected,
        "hidden": [(k, v) for k, v in pairs if k not in ("q", "time")],
        "clear": _url(root, []),
        "page_url": lambda offset: _url(root, [*pairs, ("offset", str(offset))]),
    }


@router.get("/search", response_class=HTMLResponse)
def search_page(
    request: Request,
    services: CurrentServices,
    principal: CurrentPrincipal,
    q: str | None = None,
    time: str | None = None,
    bbox: str | None = None,
    latest: str | None = None,
    collection: str | None = None,
    limit: str | None = None,
    offset: str | None = None,
    sort: str = "dataset_id",
    facets: str | None = None,
) -> Response:
    """Faceted search with the API's parameters; bad input shows its message with a 400."""
    error, result, n_limit, n_offset = None, None, 20, 0
    constraints: dict[str, list[str]] = {}
    try:
        n_limit = _int("limit", limit, 20, MAX_LIMIT)
        n_offset = _int("offset", offset, 0, 10**9)
        constraints = facet_constraints(request)
        result = search_catalog(
            services,
            principal,
            constraints,
            q=q,
            time=time,
            bbox=bbox,
            latest=_bool("latest", latest),
            collection=collection or None,
            limit=n_limit,
            offset=n_offset,
            sort=sort or "dataset_id",
            facets=facets,
        )
    except InvalidRequest as exc:
        error = str(exc)
    view = _search_view(request, constraints, result.facet_counts if result else {})
    total = result.total if result else 0
    pages = {
        "prev": view["page_url"](max(n_offset - n_limit, 0)) if n_offset > 0 else None,
        "next": view["page_url"](n_offset + n_limit)
        if n_limit and n_offset + n_limit < total
        else None,
        "first": n_offset + 1 if result and result.results else 0,
        "last": n_offset + len(result.results) if result else 0,
    }
    return render(
        request,
        "search.html",
        principal=principal,
        status=400 if error else 200,
        error=error,
        q=q or "",
        time=time or "",
        result=result,
        total=total,
        pages=pages,
        **view,
    )


# -- dataset page -----------------------------------------------------------------------


def _data_variables(record: DatasetRecord) -> list[VariableInfo]:
    """Variables that hold data: not coordinates (named like a dimension) nor bounds."""
    dims = {d for v in record.variables for d in v.dims}
    bounds = {
        str(v.attrs[k]) for v in record.variables for k in ("bounds", "climatology") if k in v.attrs
    }
    out = [
        v
        for v in record.variables
        if v.name not in dims and v.name not in bounds and not v.name.endswith(("_bnds", "_bounds"))
    ]
    named = set(record.facets.get("variable_id", [])) | set(record.facets.get("variable", []))
    return sorted(out, key=lambda v: (v.name not in named, -len(v.dims), v.name))


def _snippets(dataset_id: str, service_url: str, *, public: bool) -> dict[str, str]:
    """Code that opens the dataset in a notebook: here (by id) and anywhere (Zarr view)."""
    # json.dumps gives a double-quoted literal that Python reads back unchanged.
    local = f"import insitu\n\nds = insitu.open_dataset({json.dumps(dataset_id)})"
    url = f'f"{{service_url}}{API_PREFIX}/zarr/{quote(dataset_id, safe="")}"'
    # A public collection needs no token, and a placeholder token would be refused.
    auth = (
        ""
        if public
        else ',\n        client_kwargs={"headers": {"Authorization": "Bearer <token>"}},'
    )
    remote = (
        "import fsspec\nimport xarray as xr\n\n"
        f"service_url = {json.dumps(service_url)}\n"
        "ds = xr.open_zarr(\n"
        f"    fsspec.get_mapper(\n        {url}{auth}\n    ),\n"
        "    consolidated=True,\n)"
    )
    return {"local": local, "remote": remote}


def _series_state(services: Services, record: DatasetRecord, chosen: VariableInfo | None) -> str:
    """How the page shows the field-mean series: ``image`` (read per request, or already
    computed), ``computed`` (too large to read per request: a job computes it, the page's
    script shows "computing" and then the plot) or ``unavailable`` (no jobs here)."""
    if chosen is None:
        return "image"
    files = services.catalog.files(record.dataset_id)
    if not too_large_to_read(services, files, chosen.name):
        return "image"
    if services.jobs is None:
        return "unavailable"
    if field_mean_drawn(services, record.dataset_id, files, chosen.name):
        return "image"  # a dictionary lookup; the results cache hashes every file's identity
    if cached_series(services.catalog, record, chosen.name, None) is not None:
        return "image"
    return "computed"


@router.get("/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(
    request: Request,
    dataset_id: str,
    services: CurrentServices,
    principal: CurrentPrincipal,
    variable: str | None = None,
) -> Response:
    """Metadata, files, quicklooks and notebook snippets of one dataset."""
    record = readable_dataset(services, principal, dataset_id)
    if "shot_id" in record.facets:  # an ingest product: its page shows signals, provenance
        return RedirectResponse(f"{_root(request)}/shots/{quote(dataset_id, safe='')}", 303)
    meta = dataset_metadata(services, record)
    data_vars = _data_variables(record)
    chosen = data_vars[0] if data_vars else None
    if variable:
        found = [v for v in data_vars if v.name == variable]
        if not found:
            names = ", ".join(v.name for v in data_vars) or "none"
            raise InvalidQuery(
                f"Dataset {dataset_id!r} has no data variable {variable!r}; it has: {names}."
            )
        chosen = found[0]
    public = services.catalog.collection(record.collection).public
    service_url = _service_url(request, services)
    # Signed links, so the images load wherever the page's login cookie does not go.
    base = f"{API_PREFIX}/datasets/{dataset_id}/quicklook"
    quicklooks = (
        {
            "map": page_link(services, principal, f"{base}/map.png", [("variable", chosen.name)]),
            "series": page_link(
                services,
                principal,
                f"{base}/series.png",
                [("variable", chosen.name), ("mean", "field")],
            ),
        }
        if chosen is not None
        else {}
    )
    series = _series_state(services, record, chosen)
    return render(
        request,
        "dataset.html",
        principal=principal,
        meta=meta,
        record=record,
        data_vars=data_vars,
        chosen=chosen,
        public=public,
        api=API_PREFIX,
        snippets=_snippets(dataset_id, service_url, public=public),
        map_size=_MAP_SIZE,
        series_size=_SERIES_SIZE,
        quicklooks=quicklooks,
        series=series,
    )


# -- login ------------------------------------------------------------------------------


def _next(request: Request, value: str | None) -> str:
    """A local path to return to after login: never another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return f"{_root(request)}/"


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    """A form to paste a token into, so the pages show restricted collections."""
    return render(request, "login.html", next=_next(request, next), error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the token with the token store and keep it in an HttpOnly cookie."""
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    secret, target = form.get("token", "").strip(), _next(request, form.get("next"))
    services = await get_services(request)
    token = await run_in_threadpool(services.tokens.verify, secret) if secret else None
    if token is None:
        return render(
            request,
            "login.html",
            status=401,
            next=target,
            error="That token is not valid or has been revoked. Check it was pasted whole, "
            "or ask an operator for a new one ('insitu token create').",
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        secret,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        # Under the hub every user's server shares this origin: never send it to them.
        path=f"{_root(request)}/",
    )
    return response


@router.api_route("/logout", methods=["GET", "POST"])
def logout(request: Request) -> Response:
    """Forget the token cookie and go back to the landing page."""
    response = RedirectResponse(f"{_root(request)}/", status_code=303)
    response.delete_cookie(COOKIE, path=f"{_root(request)}/", httponly=True, samesite="strict")
    response.delete_cookie(HUB_COOKIE, path=f"{_root(request)}/", httponly=True, samesite="lax")
    return response
