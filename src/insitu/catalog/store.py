"""The catalog store interface: where collections, files and datasets are kept.

A store is dumb on purpose: it keeps records and hands them back. Parsing, grouping,
version resolution and search happen above it, so every store behaves the same. The
shipped implementation, :class:`~insitu.catalog._sql.SQLCatalogStore`, speaks SQLite and
PostgreSQL through SQLAlchemy; :mod:`insitu.testing.catalog_store` is the contract suite
any other implementation must pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from insitu.catalog.models import Collection, DatasetRecord, FileRecord, FileState, IndexRow

__all__ = ["CatalogStore", "CollectionStats", "StoreVersion", "SupportsVersion"]


@dataclass(frozen=True, slots=True)
class CollectionStats:
    """Counts for one collection."""

    files: int
    problems: int
    datasets: int
    latest_datasets: int
    size: int


@runtime_checkable
class CatalogStore(Protocol):
    """Keeps the catalog's records. One instance per process; safe to share between threads.

    Every write is one transaction and bumps :meth:`generation`, which readers (the search
    index) poll to know when to reload.
    """

    def add_collection(self, collection: Collection) -> None:
        """Register a collection; raise ``CollectionExists`` if the name is taken."""

    def remove_collection(self, name: str) -> None:
        """Forget a collection with all its files and datasets (the files stay on disk)."""

    def set_public(self, name: str, public: bool) -> None:
        """Make a collection readable without a token, or not."""

    def collections(self) -> list[Collection]:
        """All registered collections, sorted by name."""

    def stats(self) -> dict[str, CollectionStats]:
        """Counts per collection name."""

    def file_states(self, collection: str) -> dict[str, FileState]:
        """Size, mtime, status and dataset of every recorded path of a collection."""

    def files(
        self,
        collection: str | None = None,
        *,
        dataset_ids: Iterable[str] | None = None,
        problems_only: bool = False,
    ) -> list[FileRecord]:
        """File records, optionally only a datasets' or only those with a problem."""

    def datasets(
        self,
        collection: str | None = None,
        *,
        dataset_ids: Iterable[str] | None = None,
        master_ids: Iterable[str] | None = None,
    ) -> list[DatasetRecord]:
        """Dataset records, optionally restricted by dataset id or by id without version."""

    def row_ids(self) -> list[int]:
        """The row number (:attr:`IndexRow.row`) of every dataset. A row number is never
        given to another dataset while the row is in the store."""

    def index_rows(self, written_after: int | None = None) -> list[IndexRow]:
        """What the search index needs of every dataset (no variables or attributes),
        sorted by dataset id; only the datasets written at a :meth:`generation` after
        ``written_after`` if given (what changed since an index of that generation)."""

    def text_matches(self, phrases: Sequence[Sequence[str]]) -> npt.NDArray[np.int64]:
        """Row numbers (:attr:`IndexRow.row`) of the datasets whose text
        (:meth:`DatasetRecord.search_text`) has every phrase: its words in a row, the last
        one a word's beginning. ``[["air", "temp"], ["tas"]]`` finds ``air_temperature``
        with ``tasmax``. Phrases are lowercase words (:func:`~insitu.catalog.models.words`);
        raise ``InvalidQuery`` if none is given."""

    def write(
        self,
        collection: str,
        *,
        files: Sequence[FileRecord] = (),
        removed_paths: Sequence[str] = (),
        datasets: Sequence[DatasetRecord] = (),
        removed_datasets: Sequence[str] = (),
    ) -> None:
        """In one transaction: replace or add files and datasets, remove the named ones."""

    def scan_lock(self, collection: str) -> AbstractContextManager[None]:
        """Held while ``collection`` is scanned, by one process at a time (across hosts);
        raise ``ScanInProgress`` if another holds it. A holder that dies releases it."""

    def generation(self) -> int:
        """A number that grows with every write."""

    def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True, slots=True)
class StoreVersion:
    """Which store, in which state: what a cache kept outside the store (the search index
    saved in the data directory) is filed under, so that no other store or state is
    served it."""

    #: names the database, letters and digits only: no other has it (not a new database
    #: made where this one was, not a copy of it elsewhere)
    store: str
    #: :meth:`CatalogStore.generation`
    generation: int
    #: drawn at random by the write that made this generation: a store that went back (a
    #: backup restored in place) and was written again reaches the same generation with
    #: another stamp
    stamp: int


@runtime_checkable
class SupportsVersion(Protocol):
    """A store that can say which it is and in which state (:class:`StoreVersion`)."""

    def version(self) -> StoreVersion | None:
        """The store's version, its parts read at once; None if it has none (an in-memory
        database: nothing outside it can be kept for it)."""
