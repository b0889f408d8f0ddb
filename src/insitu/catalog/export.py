"""Export to an intake-esm catalog (ESM collection spec 0.1.0: a JSON file and a CSV table)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from insitu.catalog.models import Collection
from insitu.catalog.store import CatalogStore
from insitu.catalog.templates import Template

__all__ = ["write_intake_esm"]

_EXTRA = ("dataset_id", "version", "time_start", "time_end", "path")


def write_intake_esm(
    store: CatalogStore,
    collection: Collection,
    template: Template,
    directory: Path,
    *,
    name: str,
    latest: bool = True,
) -> Path:
    """Write ``NAME.json`` and ``NAME.csv`` into ``directory``; return the JSON path.

    One row per indexed file, with the template's facets as columns; with ``latest`` only
    files of the latest version of each dataset are listed.
    """
    directory.mkdir(parents=True, exist_ok=True)
    keep = {d.dataset_id for d in store.datasets(collection.name) if d.latest or not latest}
    facets = [f for f in template.facets if f != template.version_facet]
    columns = [*facets, *_EXTRA]
    csv_path = directory / f"{name}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for f in store.files(collection.name):
            if not f.ok or f.dataset_id not in keep:
                continue
            row = [f.facets.get(k, "") for k in facets]
            row += [
                f.dataset_id,
                f.version or "",
                f.time_start or "",
                f.time_end or "",
                os.path.join(collection.root, f.path),
            ]
            writer.writerow(row)
    os.replace(tmp, csv_path)
    variable = next((f for f in ("variable_id", "variable") if f in template.facets), None)
    groupby = [f for f in template.id_facets if f != template.version_facet]
    aggregations: list[dict[str, object]] = []
    if variable and variable not in groupby:
        aggregations.append({"type": "union", "attribute_name": variable})
    if "time_range" in template.facets:
        aggregations.append(
            {
                "type": "join_existing",
                "attribute_name": "time_range",
                "options": {"dim": "time", "coords": "minimal", "compat": "override"},
            }
        )
    spec = {
        "esmcat_version": "0.1.0",
        "id": name,
        "description": f"insitu collection {collection.name} ({collection.template}) "
        f"at {collection.root}",
        "catalog_file": csv_path.name,
        "attributes": [{"column_name": c, "vocabulary": ""} for c in facets],
        "assets": {"column_name": "path", "format": "netcdf"},
        "aggregation_control": {
            "variable_column_name": variable or "dataset_id",
            "groupby_attrs": [*groupby, "version"] if latest is False else groupby,
            "aggregations": aggregations,
        },
    }
    json_path = directory / f"{name}.json"
    json_path.write_text(json.dumps(spec, indent=2) + "\n")
    return json_path
