"""Export to an intake-esm catalog (ESM collection spec 0.1.0: a JSON file and a CSV table).

Each file is listed with a kerchunk reference (its HDF5 or netCDF-3 layout as Zarr metadata
plus byte ranges), and the catalog's assets are Zarr. intake-esm opens every file of a search
on Dask's threads; with netCDF assets that runs netCDF-C (not thread-safe) from several threads
at once and kills the process (bus error or segfault, every run on the demo archive). Through
the references xarray's Zarr engine reads plain byte ranges, safe on threads, with intake-esm's
defaults. kerchunk and Zarr come with intake-esm; kerchunk reads HDF5 layouts with h5py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Any, cast

from insitu.catalog.models import Collection
from insitu.catalog.store import CatalogStore
from insitu.catalog.templates import Template
from insitu.errors import DataError

__all__ = ["write_intake_esm"]

_EXTRA = ("dataset_id", "version", "time_start", "time_end", "path", "reference")
_METADATA = (".zarray", ".zattrs", ".zgroup")


def _references(path: str) -> dict[str, Any]:
    """FILE's kerchunk references (version 1); raises for a file neither HDF5 nor netCDF-3."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
        if magic == b"\x89HDF":
            from kerchunk.hdf import SingleHdf5ToZarr  # type: ignore[import-untyped]

            refs = SingleHdf5ToZarr(fh, path, inline_threshold=300, error="raise").translate()
            return cast(dict[str, Any], refs)
    if magic[:3] == b"CDF":
        from kerchunk.netCDF3 import NetCDF3ToZarr  # type: ignore[import-untyped]

        return cast(dict[str, Any], NetCDF3ToZarr(path, inline_threshold=300).translate())
    raise ValueError(f"neither HDF5 nor netCDF-3 (starts with {magic!r})")


def _write_reference(path: str, out: Path) -> str:
    """Write FILE's kerchunk references, with consolidated metadata, to ``out``; its URL."""
    try:
        refs = _references(path)
    except Exception as exc:
        raise DataError(
            f"Cannot describe {path} for intake-esm: {exc}. "
            "Run 'insitu catalog problems' to see whether the scan flagged it."
        ) from exc
    keys = refs["refs"]
    # Consolidated metadata: the Zarr engine reads one key instead of one per array.
    meta = {k: json.loads(v) for k, v in keys.items() if k.rsplit("/", 1)[-1] in _METADATA}
    keys[".zmetadata"] = json.dumps({"zarr_consolidated_format": 1, "metadata": meta})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(refs, separators=(",", ":")))
    return f"reference::{out}"


def write_intake_esm(
    store: CatalogStore,
    collection: Collection,
    template: Template,
    directory: Path,
    *,
    name: str,
    latest: bool = True,
) -> Path:
    """Write ``NAME.json``, ``NAME.csv`` and ``NAME.references/`` into ``directory``.

    One row per indexed file, with the template's facets as columns, the file's ``path`` and
    its kerchunk ``reference`` (the catalog's Zarr asset); with ``latest`` only files of the
    latest version of each dataset are listed. Returns the JSON path. Reads every listed
    file's header (about 50 ms a file). Raises `DataError` for a file it cannot describe.
    """
    directory = directory.absolute()
    directory.mkdir(parents=True, exist_ok=True)
    references = directory / f"{name}.references"
    new_refs = directory / f"{name}.references.tmp"
    shutil.rmtree(new_refs, ignore_errors=True)
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
            path = os.path.join(collection.root, f.path)
            ref = _write_reference(path, new_refs / f.dataset_id / f"{Path(f.path).name}.json")
            row += [
                f.dataset_id,
                f.version or "",
                f.time_start or "",
                f.time_end or "",
                path,
                ref.replace(str(new_refs), str(references), 1),
            ]
            writer.writerow(row)
    shutil.rmtree(references, ignore_errors=True)
    new_refs.mkdir(exist_ok=True)
    new_refs.rename(references)
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
        "assets": {"column_name": "reference", "format": "zarr"},
        "aggregation_control": {
            "variable_column_name": variable or "dataset_id",
            "groupby_attrs": [*groupby, "version"] if latest is False else groupby,
            "aggregations": aggregations,
        },
    }
    json_path = directory / f"{name}.json"
    json_path.write_text(json.dumps(spec, indent=2) + "\n")
    return json_path
