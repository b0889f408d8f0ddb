"""Web pages of ingest: the pipelines, each one's recent shots and quarantine, and a page
per shot product with its metadata, provenance and a quicklook of each signal.

A pipeline's products belong to its catalog collection, and so do its items and quarantine
reports: a page shows a pipeline only to a caller who may read that collection, under the
rules of every other page (``Principal.can``; to an anonymous caller a restricted pipeline
is as missing as an unknown one, and so is how many there are). The state comes from the
public ``insitu.ingest`` API (:meth:`~insitu.ingest.Pipeline.status`, the raw store's items
and quarantine reports, :func:`~insitu.ingest.find_shots`); a shot's metadata from its
product opened through the catalog, whatever its format. The signal plots are the
quicklook route's series of a one-dimensional variable (``series.png?variable=NAME``), with
its cache, ETag and signed links.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from insitu.access.deps import (
    CurrentPrincipal,
    CurrentServices,
    Principal,
    Services,
    readable_dataset,
)
from insitu.access.routes import API_PREFIX
from insitu.access.routes.catalog import dataset_metadata
from insitu.access.routes.links import page_link
from insitu.access.routes.web import PageRoute, render
from insitu.errors import InsituError, InvalidRequest, NotFound

__all__ = ["SHOT_FACET", "router"]

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

SHOT_FACET = "shot_id"  # a dataset with this facet is a shot: its page is /shots/ID
RECENT = 50  # shots a pipeline page lists (their latest versions)
_SERIES_SIZE = (800, 380)  # the signal quicklook's size in pixels (quicklook.py)
# Global attributes the shot page shows in its own sections rather than in the list.
_SHOWN_APART = frozenset(
    {"provenance", "history", "configuration", "raw_properties", "ingest_warnings"}
)


def _collection(services: Services, name: str) -> str:
    """The catalog collection of pipeline ``name`` (as :class:`insitu.ingest.Pipeline`
    names it: its ``collection`` setting, else its own name)."""
    return services.settings.ingest.pipelines[name].collection or name


def _readable_pipeline(services: Services, principal: Principal, name: str) -> str:
    """The collection of pipeline ``name`` if the caller may read it; 404 for an unknown
    pipeline or, to an anonymous caller, a restricted one; 401/403 otherwise."""
    if name in services.settings.ingest.pipelines:
        collection = _collection(services, name)
        if principal.token is not None or principal.can(collection):
            principal.require(collection)
            return collection
    raise NotFound(
        f"No ingest pipeline {name!r} that you may see. The Ingest page lists the ones "
        "you may see; log in with a token to see a restricted collection's."
    )


@dataclass
class PipelineView:
    """What the pages show of one pipeline."""

    name: str
    collection: str
    states: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    last: str | None = None
    error: str | None = None
    items: list[Any] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)


def _pipeline_view(services: Services, name: str, *, details: bool) -> PipelineView:
    """The state of pipeline ``name`` (with its items and quarantine reports if
    ``details``); a pipeline that cannot be opened shows why."""
    from insitu.ingest import Pipeline

    view = PipelineView(name, _collection(services, name))
    try:
        with Pipeline(name, services.settings) as pipeline:
            status = pipeline.status()
            items = pipeline.store.items()
            view.states = dict(status["states"])
            view.waiting = int(status["waiting"])
            view.last = max((i.updated for i in items), default=None)
            if details:
                view.items = items
                for q in status["quarantined"]:
                    try:
                        report = pipeline.store.report(q["sha256"])
                    except NotFound:  # retried meanwhile
                        continue
                    view.quarantine.append(report)
                view.quarantine.sort(key=lambda r: str(r.get("at", "")), reverse=True)
    except InsituError as exc:
        log.warning("ingest page: pipeline %s: %s", name, exc)
        view.error = str(exc)
    return view


@router.get("/ingest", response_class=HTMLResponse)
def ingest_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """The configured pipelines the caller may see, with counts per state."""
    names = sorted(services.settings.ingest.pipelines)
    visible = [n for n in names if principal.can(_collection(services, n))]
    return render(
        request,
        "ingest.html",
        principal=principal,
        pipelines=[_pipeline_view(services, n, details=False) for n in visible],
    )


def _recent_shots(services: Services, name: str, view: PipelineView) -> tuple[list[Any], int]:
    """The pipeline's latest products, newest acquisition first (the shot search of
    :func:`insitu.ingest.find_shots`), each with its raw file's name and its dataset id
    once the catalog has it; and how many there are in all."""
    from insitu.ingest import find_shots

    page = find_shots(services.settings, pipeline=name, limit=RECENT)
    files = {i.sha256: i.name for i in view.items}
    ids = [s.dataset_id for s in page.shots]
    registered = {r.dataset_id for r in services.catalog.store.datasets(dataset_ids=ids)}
    shots = [
        {
            "shot": s.shot,
            "version": s.version,
            "latest": s.latest,
            "operator": s.operator,
            "acquired_at": s.acquired_at,
            "ingested_at": s.ingested_at,
            "file": files.get(s.raw_sha256, ""),
            "dataset_id": s.dataset_id if s.dataset_id in registered else None,
        }
        for s in page.shots
    ]
    return shots, page.total


@router.get("/ingest/{name}", response_class=HTMLResponse)
def pipeline_page(
    request: Request, name: str, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """One pipeline: its counts, recent shots (newest first) and quarantine."""
    _readable_pipeline(services, principal, name)
    view = _pipeline_view(services, name, details=True)
    shots, total = _recent_shots(services, name, view) if view.error is None else ([], 0)
    return render(
        request,
        "ingest_pipeline.html",
        principal=principal,
        view=view,
        shots=shots,
        more=max(0, total - len(shots)),
        spec=services.settings.ingest.pipelines[name],
    )


# -- shot search -------------------------------------------------------------------------

# The form's fields, named as the API's parameters (GET /api/v1/shots), and their labels.
SHOT_FIELDS = {
    "campaign": "Campaign",
    "from": "Acquired from",
    "to": "Acquired before",
    "has_signal": "Has signals",
    "config.component": "Configuration components",
    "where": "Summary values",
    "pipeline": "Pipeline",
}
SHOTS_PER_PAGE = 50


def _shots_url(root: str, pairs: list[tuple[str, str]]) -> str:
    return f"{root}/shots?{urlencode(pairs)}" if pairs else f"{root}/shots"


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _shot_offset(given: list[tuple[str, str]]) -> int:
    """The page's offset, once every field is known (400 naming an unknown one)."""
    unknown = sorted({k for k, _ in given} - {*SHOT_FIELDS, "offset"})
    if unknown:
        raise InvalidRequest(
            f"Unknown field {unknown[0]!r}; the shot search takes "
            f"{', '.join(SHOT_FIELDS)} and offset."
        )
    text = dict(given).get("offset", "0")
    if not text.isdigit():
        raise InvalidRequest(f"offset={text!r} is not a whole number of 0 or more.")
    return int(text)


@router.get("/shots", response_class=HTMLResponse)
def shots_page(
    request: Request, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """The shot search (:func:`insitu.ingest.find_shots`) as a form and a table of results:
    by campaign, acquisition time, signals, configuration components and summary values;
    only shots of collections the caller may read. Bad input shows its message (400)."""
    from insitu.ingest import find_shots

    given = [(k, v.strip()) for k, v in request.query_params.multi_items() if v.strip()]
    values = dict(given)
    error, page, offset = None, None, 0
    try:
        offset = _shot_offset(given)
        page = find_shots(
            services.settings,
            campaign=values.get("campaign"),
            start=values.get("from"),
            end=values.get("to"),
            signal=_names(values.get("has_signal")),
            component=_names(values.get("config.component")),
            where=values.get("where"),
            pipeline=values.get("pipeline"),
            collections=principal.readable(services.snapshot.names),
            limit=SHOTS_PER_PAGE,
            offset=offset,
        )
    except InvalidRequest as exc:
        error = str(exc)
    root = str(request.scope.get("root_path", "")).rstrip("/")
    kept = [(k, v) for k, v in given if k != "offset"]
    pages = {
        "prev": _shots_url(root, [*kept, ("offset", str(max(0, offset - SHOTS_PER_PAGE)))])
        if page is not None and offset > 0
        else None,
        "next": _shots_url(root, [*kept, ("offset", str(offset + SHOTS_PER_PAGE))])
        if page is not None and offset + SHOTS_PER_PAGE < page.total
        else None,
    }
    pipelines = {
        n for n in services.settings.ingest.pipelines if principal.can(_collection(services, n))
    }
    return render(
        request,
        "ingest_shots.html",
        principal=principal,
        status=400 if error else 200,
        error=error,
        fields=SHOT_FIELDS,
        values=values,
        page=page,
        first=offset + 1,
        pages=pages,
        pipelines=pipelines,
    )


# -- shot page ---------------------------------------------------------------------------


def _json(text: Any) -> Any:
    """``text`` parsed as JSON, or None if it is not."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _scalar(value: Any) -> Any:
    """A NumPy scalar or array attribute as plain Python, for the page."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def provenance_view(doc: Any) -> dict[str, Any] | None:
    """Entities, activities, agents and the relations between them, from a PROV-JSON
    document (None if ``doc`` is not one)."""
    if not isinstance(doc, dict):
        return None

    def records(kind: str) -> list[dict[str, Any]]:
        section = doc.get(kind)
        if not isinstance(section, dict):
            return []
        out = []
        for key, attrs in sorted(section.items()):
            attrs = attrs if isinstance(attrs, dict) else {}
            out.append(
                {
                    "id": key,
                    "type": attrs.get("prov:type", ""),
                    "attrs": {k: v for k, v in sorted(attrs.items()) if k != "prov:type"},
                }
            )
        return out

    relations = []
    for kind, subject, obj in (
        ("used", "prov:activity", "prov:entity"),
        ("wasGeneratedBy", "prov:entity", "prov:activity"),
        ("wasAssociatedWith", "prov:activity", "prov:agent"),
        ("wasAttributedTo", "prov:entity", "prov:agent"),
        ("wasDerivedFrom", "prov:generatedEntity", "prov:usedEntity"),
    ):
        section = doc.get(kind)
        for rel in section.values() if isinstance(section, dict) else []:
            if isinstance(rel, dict):
                relations.append(
                    {"subject": rel.get(subject), "kind": kind, "object": rel.get(obj)}
                )
    return {
        "entities": records("entity"),
        "activities": records("activity"),
        "agents": records("agent"),
        "relations": relations,
    }


def _summary(services: Services, record: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """Each signal's summary values (min, max, mean, n, nan) as the shot search knows them
    (the shot record of this product in the catalog database; empty if there is none)."""
    from insitu.ingest import find_shots

    shot, pipeline = attrs.get("shot_id"), attrs.get("pipeline")
    if not isinstance(shot, str) or not isinstance(pipeline, str):
        return {}
    found = find_shots(
        services.settings,
        shot=shot,
        pipeline=pipeline,
        collections=[record.collection],
        latest=False,
        limit=1000,
    )
    for s in found.shots:
        if s.dataset_id == record.dataset_id:
            return dict(s.summary)
    return {}


def _signals(
    services: Services, principal: Principal, dataset_id: str, ds: Any, summary: dict[str, Any]
) -> list[dict[str, Any]]:
    """The shot's signals (one-dimensional data variables) with their calibration, time
    base, summary values and a link to their quicklook."""
    out = []
    base = f"{API_PREFIX}/datasets/{dataset_id}/quicklook/series.png"
    for name in ds.data_vars:
        da = ds[name]
        if da.ndim != 1 or name == "time":
            continue
        attrs = {k: _scalar(v) for k, v in da.attrs.items()}
        out.append(
            {
                "name": str(name),
                "long_name": attrs.get("long_name", ""),
                "units": attrs.get("units", ""),
                "samples": int(da.size),
                "summary": summary.get(str(name)) or {},
                "attrs": attrs,
                "quicklook": page_link(services, principal, base, [("variable", str(name))]),
            }
        )
    return out


@router.get("/shots/{dataset_id}", response_class=HTMLResponse)
def shot_page(
    request: Request, dataset_id: str, services: CurrentServices, principal: CurrentPrincipal
) -> Response:
    """One shot product: who, when, which configuration and calibrations, its versions,
    provenance and a quicklook per signal."""
    record = readable_dataset(services, principal, dataset_id)
    if SHOT_FACET not in record.facets:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return RedirectResponse(f"{root}/datasets/{quote(dataset_id, safe='')}", 303)
    meta = dataset_metadata(services, record)
    ds = services.catalog.open_dataset(dataset_id)  # lazy: only the metadata is read
    attrs = {k: _scalar(v) for k, v in ds.attrs.items()}
    prov_doc = _json(attrs.get("provenance"))
    pipeline = attrs.get("pipeline")
    pipeline_link = (
        isinstance(pipeline, str)
        and pipeline in services.settings.ingest.pipelines
        and principal.can(_collection(services, pipeline))
    )
    warnings = _json(attrs.get("ingest_warnings"))
    configuration = _json(attrs.get("configuration"))
    raw_properties = _json(attrs.get("raw_properties"))
    return render(
        request,
        "shot.html",
        principal=principal,
        meta=meta,
        record=record,
        attrs=attrs,
        other_attrs={k: v for k, v in sorted(attrs.items()) if k not in _SHOWN_APART},
        public=services.catalog.collection(record.collection).public,
        pipeline=pipeline if pipeline_link else None,
        signals=_signals(services, principal, dataset_id, ds, _summary(services, record, attrs)),
        provenance=provenance_view(prov_doc),
        provenance_json=json.dumps(prov_doc, indent=2, sort_keys=True)
        if prov_doc is not None
        else attrs.get("provenance"),
        history=str(attrs.get("history", "")).splitlines(),
        warnings=warnings if isinstance(warnings, list) else [],
        configuration=json.dumps(configuration, indent=2, sort_keys=True)
        if configuration
        else None,
        raw_properties=raw_properties if isinstance(raw_properties, dict) else {},
        series_size=_SERIES_SIZE,
        api=API_PREFIX,
    )
