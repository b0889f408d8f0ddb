"""The catalog's Python API: register collections, scan them, search, open datasets."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insitu._util import LRU, gc_paused
from insitu.catalog._indexfile import SavedIndexes
from insitu.catalog._sql import SQLCatalogStore
from insitu.catalog.index import IndexQuery, SearchIndex
from insitu.catalog.models import (
    Collection,
    DatasetRecord,
    FileRecord,
    LocatedFile,
    ScanReport,
)
from insitu.catalog.scan import scan_collection
from insitu.catalog.search import SearchResult, parse_bbox, parse_time_range
from insitu.catalog.store import CatalogStore, CollectionStats, SupportsVersion
from insitu.catalog.templates import Template, get_template
from insitu.errors import (
    CollectionNotFound,
    DatasetNotFound,
    InvalidQuery,
    InvalidRequest,
    StoreError,
)
from insitu.log import show_progress
from insitu.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import xarray as xr

__all__ = ["Catalog", "open_dataset"]

_FILES_KEPT = 64  # datasets whose file lists Catalog.files keeps
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


class Catalog:
    """A catalog of collections of scientific files.

    ``Catalog()`` opens the catalog named by the settings (``INSITU_*`` variables and the
    TOML file); ``Catalog("sqlite:///path.db")`` or ``Catalog(settings)`` open another.
    """

    def __init__(
        self, source: Settings | str | None = None, *, store: CatalogStore | None = None
    ) -> None:
        if isinstance(source, Settings):
            self.settings = source
        elif isinstance(source, str):
            self.settings = Settings.load(catalog={"uri": source})
        else:
            self.settings = Settings.load()
        self.store: CatalogStore = store or SQLCatalogStore.from_uri(self.settings.catalog_uri)
        self._index: SearchIndex | None = None
        self._lock = threading.Lock()
        # Files of recently asked datasets, by (dataset id, store generation): a computation
        # or a dataset page asks several times in a row, and decoding the rows of 400 files
        # takes about 45 ms each time.
        self._files: LRU[tuple[str, int], tuple[FileRecord, ...]] = LRU(_FILES_KEPT)
        # where the search index is saved for other processes and restarts (_indexfile)
        self._saved_index_dir = self.settings.data_dir / "cache" / "search-index"

    @classmethod
    def from_settings(cls, settings: Settings) -> Catalog:
        """The catalog the settings name."""
        return cls(settings)

    def close(self) -> None:
        """Release the store's connections."""
        self.store.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections -------------------------------------------------------------------

    def template(self, name: str) -> Template:
        """The built-in or configured template called ``name``."""
        return get_template(name, self.settings.catalog.templates)

    def add_collection(
        self,
        name: str,
        root: str | os.PathLike[str],
        *,
        template: str = "cmip6",
        public: bool = False,
    ) -> Collection:
        """Register an archive root under ``name`` with its path template (not yet scanned)."""
        if not name or not set(name) <= _NAME_OK:
            raise InvalidRequest(
                f"Collection name {name!r} may hold only letters, digits, '-', '_' and '.'."
            )
        path = Path(root).expanduser().resolve()
        if not path.is_dir():
            raise InvalidRequest(
                f"Archive root {str(root)!r} is not a directory. Give the directory that holds "
                "the top level of the path template (for CMIP6, the one containing 'CMIP6')."
            )
        self.template(template)  # fail now on an unknown template
        collection = Collection(name, str(path), template, public)
        self.store.add_collection(collection)
        return collection

    def remove_collection(self, name: str) -> None:
        """Forget a collection and its index entries; its files are not touched."""
        self.store.remove_collection(name)

    def set_public(self, name: str, public: bool = True) -> None:
        """Make a collection readable without a token (or not)."""
        self.store.set_public(name, public)

    def collections(self) -> list[Collection]:
        """Registered collections, by name."""
        return self.store.collections()

    def collection(self, name: str) -> Collection:
        """The collection called ``name``."""
        found = {c.name: c for c in self.store.collections()}
        if name not in found:
            raise CollectionNotFound(name, sorted(found))
        return found[name]

    def stats(self) -> dict[str, CollectionStats]:
        """File, problem and dataset counts per collection."""
        return self.store.stats()

    # -- scanning ----------------------------------------------------------------------

    def scan(
        self,
        names: Sequence[str] | str | None = None,
        *,
        workers: int | None = None,
        progress: bool | None = None,
    ) -> list[ScanReport]:
        """Scan the named collections (all if None); incremental after the first time."""
        if isinstance(names, str):
            names = [names]
        targets = [self.collection(n) for n in names] if names else self.collections()
        nworkers = workers or self.settings.catalog.scan_workers
        shown = show_progress(progress)
        reports = []
        for c in targets:
            try:
                with self.store.scan_lock(c.name):
                    reports.append(
                        scan_collection(
                            self.store,
                            c,
                            self.template(c.template),
                            workers=nworkers,
                            progress=shown,
                        )
                    )
            except StoreError as e:
                raise StoreError(
                    f"The scan of {c.name!r} stopped: {e} What it recorded before is kept; "
                    f"once the database is back, 'insitu catalog scan {c.name}' finishes it "
                    "(files already recorded are not read again)."
                ) from e
        return reports

    def problems(self, collection: str | None = None) -> list[FileRecord]:
        """Files that could not be indexed, or were indexed with a warning, with reasons."""
        if collection is not None:
            self.collection(collection)
        return self.store.files(collection, problems_only=True)

    # -- searching ---------------------------------------------------------------------

    def index(self) -> SearchIndex:
        """The search index, brought up to date if the store changed since it was built:
        loaded if a process saved the index of this store generation in the data
        directory, else from the rows written since this process's index was built (a
        scan's changes) or, the first time and after large changes, from every row; then
        saved there for the other processes and restarts (while one process builds, the
        others wait for it)."""
        gen = self.store.generation()
        with self._lock:
            old = self._index
            if old is None or old.generation != gen:
                store = self.store
                version = store.version() if isinstance(store, SupportsVersion) else None
                if version is not None:
                    gen = version.generation  # read with its stamp (a write may be newer)
                templates = {c.name: self.template(c.template) for c in self.collections()}
                if version is None:
                    self._index = self._built(old, gen, templates)
                else:
                    saved = SavedIndexes(self._saved_index_dir, version.store)
                    self._index = saved.get(
                        gen,
                        version.stamp,
                        templates,
                        store.text_matches,
                        store.generation,
                        lambda: self._built(old, gen, templates),
                    )
            assert self._index is not None
            return self._index

    def _built(
        self, old: SearchIndex | None, gen: int, templates: dict[str, Template]
    ) -> SearchIndex:
        """The index of store generation ``gen``: ``old`` updated with the rows written
        since if they are few, else built from every row."""
        # Building 100,000 records makes millions of objects that all survive:
        # the cyclic collector would spend half the time re-walking them.
        with gc_paused():
            changed = (
                self.store.index_rows(written_after=old.generation) if old is not None else None
            )
            if old is not None and changed is not None and len(changed) < old.n // 4:
                return old.updated(self.store.row_ids(), changed, templates, gen)
            return SearchIndex(self.store.index_rows(), templates, gen, self.store.text_matches)

    def index_is_current(self, generation: int) -> bool:
        """True when the search index is built for store ``generation``: a search then
        reads no more than the store's generation."""
        index = self._index
        return index is not None and index.generation == generation

    def search(
        self,
        text: str | None = None,
        *,
        time: tuple[Any, Any] | slice | None = None,
        bbox: str | Sequence[float] | None = None,
        latest: bool = True,
        collection: str | Sequence[str] | None = None,
        limit: int = 100,
        offset: int = 0,
        sort: str = "dataset_id",
        facets: Sequence[str] | None = None,
        **constraints: str | Sequence[str],
    ) -> SearchResult:
        """Datasets matching every constraint, with facet counts over all matches.

        Each keyword constraint is a facet (or an alias such as ``model``) with one value
        or a list of values (any of them matches); ``*`` and ``?`` are wildcards. ``text``
        must occur in the dataset's id, variable names or attributes. ``time`` keeps
        datasets that overlap ``(start, end)``; ``bbox`` those that overlap
        ``west,south,east,north``. ``latest=False`` includes older versions.
        """
        if limit < 0 or offset < 0:
            raise InvalidQuery(f"limit ({limit}) and offset ({offset}) cannot be negative.")
        trange = None
        if time is not None:
            start, end = (time.start, time.stop) if isinstance(time, slice) else time
            trange = parse_time_range(start, end)
        colls = [collection] if isinstance(collection, str) else collection
        index = self.index()
        if colls is not None:
            known = index.templates  # every collection as of the index: no query
            for c in colls:
                if c not in known:
                    raise CollectionNotFound(c, sorted(known))
        query = IndexQuery(
            facets={k: [v] if isinstance(v, str) else list(v) for k, v in constraints.items()},
            text=text,
            time=trange,
            bbox=parse_bbox(bbox) if bbox is not None else None,
            latest=latest,
            collections=colls,
            sort=sort,
            count_facets=facets,
        )
        idx, counts = index.select(query)
        return SearchResult(
            total=len(idx),
            results=self._records(index, idx[offset : offset + limit]),
            facet_counts=counts,
            matches=idx,
            index=index,
            catalog=self,
        )

    def _records(self, index: SearchIndex, page: npt.NDArray[np.intp]) -> list[DatasetRecord]:
        """The records of index positions ``page``, in order, read from the store at once."""
        if not len(page):
            return []
        ids = index.dataset_ids(page)
        found = {(r.collection, r.dataset_id): r for r in self.store.datasets(dataset_ids=ids)}
        wanted = [(index.collection_of(i), d) for i, d in zip(page.tolist(), ids, strict=True)]
        # A dataset removed since the index was built is left out: it is gone.
        return [found[key] for key in wanted if key in found]

    # -- datasets ----------------------------------------------------------------------

    def dataset(self, dataset_id: str) -> DatasetRecord:
        """The record of one dataset (any version, by its full id)."""
        found = self.store.datasets(dataset_ids=[dataset_id])
        if not found:
            raise DatasetNotFound(dataset_id)
        return found[0]

    def files(self, dataset_id: str) -> list[FileRecord]:
        """The indexed files of one dataset, by path."""
        key = (dataset_id, self.store.generation())
        found = self._files.get(key)
        if found is None:
            record = self.dataset(dataset_id)
            found = tuple(
                f for f in self.store.files(record.collection, dataset_ids=[dataset_id]) if f.ok
            )
            self._files.put(key, found)
        return list(found)

    def locate(self, dataset_id: str) -> list[LocatedFile]:
        """Where the indexed files of one dataset are: absolute paths with their records,
        by path. The one place a collection's root and a file's path are joined."""
        root = self.collection(self.dataset(dataset_id).collection).root
        return [LocatedFile(os.path.join(root, f.path), f) for f in self.files(dataset_id)]

    def datasets(self, dataset_ids: Sequence[str]) -> list[DatasetRecord]:
        """The records of several datasets, in the order given, asked in one query.

        Raises :class:`DatasetNotFound` for the first id that is not in the catalog.
        """
        found = {r.dataset_id: r for r in self.store.datasets(dataset_ids=dataset_ids)}
        for dataset_id in dataset_ids:
            if dataset_id not in found:
                raise DatasetNotFound(dataset_id)
        return [found[d] for d in dataset_ids]

    def locate_all(self, dataset_ids: Sequence[str]) -> dict[str, list[LocatedFile]]:
        """:meth:`locate` for several datasets, in one query per collection (an ensemble of
        a thousand datasets asks once instead of three thousand times)."""
        by_collection: dict[str, list[str]] = {}
        for record in self.datasets(dataset_ids):
            by_collection.setdefault(record.collection, []).append(record.dataset_id)
        out: dict[str, list[LocatedFile]] = {d: [] for d in dataset_ids}
        for name, ids in by_collection.items():
            root = self.collection(name).root
            for f in self.store.files(name, dataset_ids=ids):
                if f.ok and f.dataset_id in out:
                    out[f.dataset_id].append(LocatedFile(os.path.join(root, f.path), f))
        for files in out.values():
            files.sort(key=lambda f: f.record.path)
        return out

    def open_dataset(
        self, dataset_id: str, *, time: slice | None = None, variables: Sequence[str] | None = None
    ) -> xr.Dataset:
        """One dataset as a lazy, Dask-backed xarray Dataset, built from the index.

        Only files that overlap ``time`` (a slice of dates such as
        ``slice("1990", "1999-06")``) are touched; the time axis comes from the index.
        """
        from insitu.catalog.opening import open_files

        return open_files(self.locate(dataset_id), time=time, variables=variables)

    def export_intake_esm(
        self,
        collection: str,
        directory: str | os.PathLike[str],
        *,
        name: str | None = None,
        latest: bool = True,
    ) -> Path:
        """Write an intake-esm catalog (JSON + CSV) of a collection; return the JSON path."""
        from insitu.catalog.export import write_intake_esm

        coll = self.collection(collection)
        return write_intake_esm(
            self.store,
            coll,
            self.template(coll.template),
            Path(directory),
            name=name or collection,
            latest=latest,
        )


def open_dataset(
    dataset_id: str,
    *,
    time: slice | None = None,
    variables: Sequence[str] | None = None,
    catalog: Catalog | None = None,
) -> xr.Dataset:
    """Open one dataset of the default catalog (or ``catalog``) lazily; see
    :meth:`Catalog.open_dataset`."""
    if catalog is not None:
        return catalog.open_dataset(dataset_id, time=time, variables=variables)
    with Catalog() as cat:
        return cat.open_dataset(dataset_id, time=time, variables=variables)
