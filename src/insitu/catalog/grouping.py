"""Grouping files into datasets and resolving which version of each dataset is the latest."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace

from insitu.catalog.models import DatasetRecord, FileRecord, VariableInfo
from insitu.catalog.templates import version_key

__all__ = ["DATASET_ATTRS", "aggregate", "mark_latest"]

# Global attributes a dataset record keeps (for display and free-text search).
DATASET_ATTRS = (
    "title",
    "institution",
    "source",
    "experiment",
    "frequency",
    "realm",
    "grid",
    "nominal_resolution",
    "product",
    "Conventions",
    "license",
    "further_info_url",
    "source_type",
    "project_id",
    "model_id",
    "comment",
)

# File-level facets that say nothing about the dataset.
_FILE_ONLY_FACETS = frozenset({"time_range"})


def aggregate(files: Iterable[FileRecord]) -> DatasetRecord:
    """The dataset record of a non-empty set of files that share a dataset id."""
    members = sorted(files, key=lambda f: f.path)
    first = members[0]
    if first.dataset_id is None or first.master_id is None:
        raise ValueError(f"{first.path} belongs to no dataset; only indexed files group")
    values: dict[str, dict[str, None]] = defaultdict(dict)
    variables: dict[str, VariableInfo] = {}
    for f in members:
        for key, value in f.facets.items():
            if key not in _FILE_ONLY_FACETS:
                values[key][value] = None
        for var in f.variables:
            variables.setdefault(var.name, var)
    timed = [f for f in members if f.tkey_start is not None and f.tkey_end is not None]
    start = min(timed, key=lambda f: f.tkey_start or 0) if timed else None
    end = max(timed, key=lambda f: f.tkey_end or 0) if timed else None
    boxes = [f.bbox for f in members if f.bbox]
    bbox = (
        (
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        )
        if boxes
        else None
    )
    attrs = {k: first.global_attrs[k] for k in DATASET_ATTRS if k in first.global_attrs}
    return DatasetRecord(
        dataset_id=first.dataset_id,
        collection=first.collection,
        master_id=first.master_id,
        version=first.version or "",
        latest=False,
        facets={k: sorted(v) for k, v in values.items()},
        n_files=len(members),
        size=sum(f.size for f in members),
        variables=tuple(variables.values()),
        attrs=attrs,
        calendar=first.calendar,
        time_start=start.time_start if start else None,
        time_end=end.time_end if end else None,
        tkey_start=start.tkey_start if start else None,
        tkey_end=end.tkey_end if end else None,
        bbox=bbox,
    )


def mark_latest(datasets: Iterable[DatasetRecord]) -> list[DatasetRecord]:
    """The same records with ``latest`` set on the highest version of each master id.

    Versions compare as versions (``v10`` > ``v9``), see :func:`version_key`.
    """
    by_master: dict[str, list[DatasetRecord]] = defaultdict(list)
    for d in datasets:
        by_master[d.master_id].append(d)
    out: list[DatasetRecord] = []
    for group in by_master.values():
        best = max(group, key=lambda d: (version_key(d.version), d.version))
        out.extend(d if d.latest == (d is best) else replace(d, latest=d is best) for d in group)
    return out
