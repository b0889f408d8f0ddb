"""The catalog: index archives laid out by a path template, search them, open datasets fast."""

from insitu.catalog.catalog import Catalog, open_dataset
from insitu.catalog.models import (
    Collection,
    DatasetRecord,
    FileRecord,
    FileStatus,
    LocatedFile,
    ScanReport,
    VariableInfo,
    time_key,
)
from insitu.catalog.opening import (
    decoded_bounds,
    group_by_variables,
    reencode_from,
    sorted_members,
    time_like_units,
    time_values,
)
from insitu.catalog.search import SearchResult, parse_bbox, parse_time_range
from insitu.catalog.store import CatalogStore, CollectionStats
from insitu.catalog.templates import BUILTIN_TEMPLATES, Template

__all__ = [
    "BUILTIN_TEMPLATES",
    "Catalog",
    "CatalogStore",
    "Collection",
    "CollectionStats",
    "DatasetRecord",
    "FileRecord",
    "FileStatus",
    "LocatedFile",
    "ScanReport",
    "SearchResult",
    "Template",
    "VariableInfo",
    "decoded_bounds",
    "group_by_variables",
    "open_dataset",
    "parse_bbox",
    "parse_time_range",
    "reencode_from",
    "sorted_members",
    "time_key",
    "time_like_units",
    "time_values",
]
