"""The catalog: index archives laid out by a path template, search them, open datasets fast."""

from insitu.catalog.catalog import Catalog, open_dataset
from insitu.catalog.models import (
    Collection,
    DatasetRecord,
    FileRecord,
    FileStatus,
    ScanReport,
    VariableInfo,
)
from insitu.catalog.search import SearchResult
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
    "ScanReport",
    "SearchResult",
    "Template",
    "VariableInfo",
    "open_dataset",
]
