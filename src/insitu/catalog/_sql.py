"""SQLite and PostgreSQL catalog store, through SQLAlchemy Core.

Structured fields (facets, variables, attributes) are kept as JSON text, not JSONB, so
that NaN fill values survive and both databases store the same bytes.

Free text is searched by the database: each dataset row keeps its words in
``search_text`` (:meth:`DatasetRecord.search_text`), indexed by an FTS5 table kept in step
by triggers on SQLite and by a GIN index on ``to_tsvector('simple', search_text)`` on
PostgreSQL (both made by migration 0006, off :data:`metadata` as alembic cannot describe
them). A SQLite built without FTS5 gets neither, and the search falls back to ``LIKE``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from insitu import db
from insitu.catalog._scanlock import scan_lock
from insitu.catalog.models import (
    Collection,
    DatasetRecord,
    FileRecord,
    FileState,
    FileStatus,
    IndexRow,
    VariableInfo,
)
from insitu.catalog.store import CollectionStats, StoreVersion
from insitu.catalog.templates import version_key
from insitu.errors import CollectionExists, CollectionNotFound, InvalidQuery, StoreError

__all__ = ["TEXT_INDEX", "TEXT_TABLE", "SQLCatalogStore"]

log = logging.getLogger(__name__)

_CHUNK = 500

metadata = db.metadata  # the tables of every store: the schema's migrations create them

collections_t = sa.Table(
    "collections",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("root", sa.Text, nullable=False),
    sa.Column("template", sa.String(200), nullable=False),
    sa.Column("public", sa.Boolean, nullable=False, default=False),
)

files_t = sa.Table(
    "files",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("mtime_ns", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("dataset_id", sa.Text),
    sa.Column("master_id", sa.Text),
    sa.Column("version", sa.String(100)),
    sa.Column("facets", sa.Text),
    sa.Column("data_model", sa.String(40)),
    sa.Column("dims", sa.Text),
    sa.Column("variables", sa.Text),
    sa.Column("global_attrs", sa.Text),
    sa.Column("time_var", sa.String(200)),
    sa.Column("time_units", sa.String(200)),
    sa.Column("calendar", sa.String(40)),
    sa.Column("time_start", sa.String(40)),
    sa.Column("time_end", sa.String(40)),
    sa.Column("tkey_start", sa.BigInteger),
    sa.Column("tkey_end", sa.BigInteger),
    sa.Column("n_times", sa.Integer, nullable=False, default=0),
    sa.Column("time_values", sa.LargeBinary),
    sa.Column("bbox", sa.Text),
    sa.UniqueConstraint("collection", "path", name="uq_files_path"),
    sa.Index("ix_files_dataset", "collection", "dataset_id"),
)

datasets_t = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("dataset_id", sa.Text, nullable=False),
    sa.Column("master_id", sa.Text, nullable=False),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("version_key", sa.String(200), nullable=False),
    sa.Column("latest", sa.Boolean, nullable=False),
    sa.Column("facets", sa.Text, nullable=False),
    sa.Column("n_files", sa.Integer, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("variables", sa.Text, nullable=False),
    sa.Column("attrs", sa.Text, nullable=False),
    sa.Column("calendar", sa.String(40)),
    sa.Column("time_start", sa.String(40)),
    sa.Column("time_end", sa.String(40)),
    sa.Column("tkey_start", sa.BigInteger),
    sa.Column("tkey_end", sa.BigInteger),
    sa.Column("bbox", sa.Text),
    sa.Column("search_text", sa.Text, nullable=False, server_default=""),
    # the store generation that wrote the row: the search index re-reads only newer rows
    sa.Column("written", sa.BigInteger, nullable=False, server_default="0"),
    sa.UniqueConstraint("collection", "dataset_id", name="uq_datasets_id"),
    sa.Index("ix_datasets_master", "collection", "master_id"),
    sa.Index("ix_datasets_id", "dataset_id"),
    sa.Index("ix_datasets_written", "written", "id"),
)

meta_t = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)
_GENERATION_SQL = "SELECT value FROM meta WHERE key = 'generation'"
# the generation, the random id of the database and the stamp of its generation (0007)
_VERSION_SQL = "SELECT key, value FROM meta WHERE key IN ('generation', 'store_id', 'stamp')"

TEXT_TABLE = "datasets_fts"  # SQLite FTS5 table over datasets.search_text (migration 0006)
TEXT_INDEX = "ix_datasets_fts"  # PostgreSQL GIN index on its to_tsvector, likewise
_INDEX_COLUMNS = (
    "id",
    "dataset_id",
    "collection",
    "version",
    "latest",
    "facets",
    "n_files",
    "size",
    "tkey_start",
    "tkey_end",
    "bbox",
)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# A dataset's record: every column but the text the text index is made from.
_RECORDS = sa.select(*(col for col in datasets_t.c if col.name != "search_text"))
_RECORDS_BY = {
    (by, in_collection): (
        _RECORDS.where(datasets_t.c[by].in_(sa.bindparam("keys", expanding=True)))
        .where(
            datasets_t.c.collection == sa.bindparam("collection") if in_collection else sa.true()
        )
        .order_by(datasets_t.c.dataset_id)
    )
    for by in ("dataset_id", "master_id")
    for in_collection in (False, True)
}


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


_T = TypeVar("_T")
_P = ParamSpec("_P")


def _answering(method: Callable[_P, _T]) -> Callable[_P, _T]:
    """A store method whose database fails (gone, unreachable) raises :class:`StoreError`
    naming the database and what to do, not a driver's traceback."""

    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(*args, **kwargs)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            store = args[0]
            assert isinstance(store, SQLCatalogStore)
            raise store.unreachable(exc) from exc

    return wrapper


class SQLCatalogStore:
    """Catalog store on any SQLAlchemy database; SQLite and PostgreSQL are tested."""

    def __init__(self, engine: Engine) -> None:
        """A store on ``engine``'s database, upgraded to the newest schema if older."""
        self.engine = engine
        self._lock = threading.Lock()
        self._closed = False
        db.upgrade(engine)  # the schema's first revision also writes generation 0
        with engine.connect() as conn:
            name = conn.dialect.name
            #: how free text is searched: "tsvector", "fts5", else "like" (no FTS5)
            self.text_search = (
                "tsvector"
                if name == "postgresql"
                else "fts5"
                if name == "sqlite" and sa.inspect(conn).has_table(TEXT_TABLE)
                else "like"
            )

    def unreachable(self, exc: sa.exc.DBAPIError) -> StoreError:
        """The error to raise when the database failed under us."""
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        return StoreError(
            f"The catalog database at {self.engine.url.render_as_string()} failed: {reason}. "
            "Nothing half-written was kept (every write is one transaction). Check that it "
            "runs (and INSITU_CATALOG__URI), then try again."
        )

    def scan_lock(self, collection: str) -> contextlib.AbstractContextManager[None]:
        """Held while ``collection`` is scanned; :class:`ScanInProgress` if another holds it."""
        return scan_lock(self.engine, collection, self.unreachable)

    @classmethod
    def from_uri(cls, uri: str) -> SQLCatalogStore:
        """Open (and create or upgrade if needed) the store at a SQLAlchemy URL."""
        engine = db.engine(uri)
        try:
            return cls(engine)
        except BaseException:
            db.release(engine)
            raise

    # -- collections -------------------------------------------------------------------

    @_answering
    def add_collection(self, collection: Collection) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(collections_t.c.root).where(collections_t.c.name == collection.name)
            ).first()
            if row is not None:
                raise CollectionExists(collection.name, row.root)
            conn.execute(
                collections_t.insert().values(
                    name=collection.name,
                    root=collection.root,
                    template=collection.template,
                    public=collection.public,
                )
            )
            self._bump(conn)

    @_answering
    def remove_collection(self, name: str) -> None:
        with self.engine.begin() as conn:
            gone = conn.execute(collections_t.delete().where(collections_t.c.name == name))
            if gone.rowcount == 0:
                raise CollectionNotFound(name, [c.name for c in self.collections()])
            conn.execute(files_t.delete().where(files_t.c.collection == name))
            conn.execute(datasets_t.delete().where(datasets_t.c.collection == name))
            self._bump(conn)

    @_answering
    def set_public(self, name: str, public: bool) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                collections_t.update().where(collections_t.c.name == name).values(public=public)
            )
            if done.rowcount == 0:
                raise CollectionNotFound(name, [c.name for c in self.collections()])
            self._bump(conn)

    @_answering
    def collections(self) -> list[Collection]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(collections_t).order_by(collections_t.c.name))
            return [Collection(r.name, r.root, r.template, bool(r.public)) for r in rows]

    @_answering
    def stats(self) -> dict[str, CollectionStats]:
        f, d = files_t.c, datasets_t.c
        with self.engine.connect() as conn:
            frows = conn.execute(
                sa.select(
                    f.collection,
                    sa.func.count(),
                    sa.func.sum(sa.case((f.status != FileStatus.OK.value, 1), else_=0)),
                ).group_by(f.collection)
            ).all()
            drows = conn.execute(
                sa.select(
                    d.collection,
                    sa.func.count(),
                    sa.func.sum(sa.case((d.latest, 1), else_=0)),
                    sa.func.sum(d.size),
                ).group_by(d.collection)
            ).all()
        out = {c.name: CollectionStats(0, 0, 0, 0, 0) for c in self.collections()}
        files = {r[0]: (int(r[1]), int(r[2] or 0)) for r in frows}
        for r in drows:
            n, probs = files.get(r[0], (0, 0))
            out[r[0]] = CollectionStats(n, probs, int(r[1]), int(r[2] or 0), int(r[3] or 0))
        for name, (n, probs) in files.items():
            if out.get(name, CollectionStats(0, 0, 0, 0, 0)).datasets == 0:
                out[name] = CollectionStats(n, probs, 0, 0, 0)
        return out

    # -- files -------------------------------------------------------------------------

    @_answering
    def file_states(self, collection: str) -> dict[str, FileState]:
        c = files_t.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.path, c.size, c.mtime_ns, c.status, c.dataset_id).where(
                    c.collection == collection
                )
            )
            return {r[0]: FileState(r[1], r[2], FileStatus(r[3]), r[4]) for r in rows}

    @_answering
    def files(
        self,
        collection: str | None = None,
        *,
        dataset_ids: Iterable[str] | None = None,
        problems_only: bool = False,
    ) -> list[FileRecord]:
        c = files_t.c
        base = sa.select(files_t)
        if collection is not None:
            base = base.where(c.collection == collection)
        if problems_only:
            base = base.where(sa.or_(c.status != FileStatus.OK.value, c.reason != ""))
        out: list[FileRecord] = []
        with self.engine.connect() as conn:
            if dataset_ids is None:
                out.extend(_file(r) for r in conn.execute(base.order_by(c.collection, c.path)))
            else:
                for chunk in _chunks(sorted(set(dataset_ids))):
                    rows = conn.execute(base.where(c.dataset_id.in_(chunk)).order_by(c.path))
                    out.extend(_file(r) for r in rows)
        return out

    # -- datasets ----------------------------------------------------------------------

    @_answering
    def datasets(
        self,
        collection: str | None = None,
        *,
        dataset_ids: Iterable[str] | None = None,
        master_ids: Iterable[str] | None = None,
    ) -> list[DatasetRecord]:
        out: list[DatasetRecord] = []
        with self.engine.connect() as conn:
            if dataset_ids is None and master_ids is None:
                query = _RECORDS.order_by(datasets_t.c.dataset_id)
                if collection is not None:
                    query = query.where(datasets_t.c.collection == collection)
                out.extend(_dataset(r) for r in conn.execute(query))
                return out
            # Statements built once: the search pages' records are read with these, and
            # building and caching a statement costs twice its execution here.
            for by, keys in (("dataset_id", dataset_ids), ("master_id", master_ids)):
                if keys is None:
                    continue
                query = _RECORDS_BY[by, collection is not None]
                for chunk in _chunks(sorted(set(keys))):
                    rows = conn.execute(query, {"keys": chunk, "collection": collection})
                    out.extend(_dataset(r) for r in rows)
        return out

    @_answering
    def row_ids(self) -> list[int]:
        c = datasets_t.c
        with self.engine.connect() as conn:
            raw = conn.execute(sa.select(c.id).order_by(c.written, c.id)).cursor
            assert raw is not None
            return [r[0] for r in raw.fetchall()]

    @_answering
    def index_rows(self, written_after: int | None = None) -> list[IndexRow]:
        c = datasets_t.c
        query = sa.select(*(c[n] for n in _INDEX_COLUMNS)).order_by(c.dataset_id, c.id)
        if written_after is not None:
            query = query.where(c.written > written_after)
        with self.engine.connect() as conn:
            raw = conn.execute(query).cursor
            assert raw is not None
            rows = raw.fetchall()
        loads = json.loads
        return [
            IndexRow(
                r[0],
                r[1],
                r[2],
                r[3],
                bool(r[4]),
                loads(r[5]),
                r[6],
                r[7],
                r[8],
                r[9],
                _bbox(r[10]) if r[10] else None,
            )
            for r in rows
        ]

    @_answering
    def text_matches(self, phrases: Sequence[Sequence[str]]) -> npt.NDArray[np.int64]:
        if not phrases or not all(phrases):
            raise InvalidQuery(f"text_matches needs phrases of words, got {phrases!r}.")
        c = datasets_t.c
        postgres = self.text_search == "tsvector"
        # The row numbers as one comma-separated text, parsed by NumPy: a common word's
        # 25,000 matches as rows cost 8 ms of CPU in the driver and Python, as text 2 ms.
        ids = sa.cast(c.id, sa.Text)
        joined = sa.func.string_agg(ids, ",") if postgres else sa.func.group_concat(ids, ",")
        if self.text_search == "fts5":
            match = " AND ".join(f'"{" ".join(p)}"*' for p in phrases)
            query: Any = sa.text(
                f"SELECT group_concat(rowid, ',') FROM {TEXT_TABLE} WHERE {TEXT_TABLE} MATCH :m"
            ).bindparams(m=match)
        elif postgres:
            ts = " & ".join(" <-> ".join(f"'{w}'" for w in p) + ":*" for p in phrases)
            vector = sa.func.to_tsvector(sa.literal_column("'simple'"), c.search_text)
            found = sa.func.to_tsquery(sa.literal_column("'simple'"), ts)
            query = sa.select(joined).where(vector.op("@@")(found))
        else:  # no FTS5: the phrase at the start of a word of the text
            padded = sa.literal(" ") + c.search_text
            query = sa.select(joined).where(
                *(padded.contains(" " + " ".join(p), autoescape=True) for p in phrases)
            )
        with self.engine.connect() as conn:
            text = conn.execute(query).scalar()
        if not text:
            return np.zeros(0, dtype=np.int64)
        return np.fromstring(text, dtype=np.int64, sep=",")

    # -- writing -----------------------------------------------------------------------

    @_answering
    def write(
        self,
        collection: str,
        *,
        files: Sequence[FileRecord] = (),
        removed_paths: Sequence[str] = (),
        datasets: Sequence[DatasetRecord] = (),
        removed_datasets: Sequence[str] = (),
    ) -> None:
        fc, dc = files_t.c, datasets_t.c
        gone_paths = sorted({*removed_paths, *(f.path for f in files)})
        gone_ds = sorted({*removed_datasets, *(d.dataset_id for d in datasets)})
        with self._lock, self.engine.begin() as conn:
            for chunk in _chunks(gone_paths):
                conn.execute(
                    files_t.delete().where(fc.collection == collection, fc.path.in_(chunk))
                )
            for chunk in _chunks(gone_ds):
                conn.execute(
                    datasets_t.delete().where(dc.collection == collection, dc.dataset_id.in_(chunk))
                )
            variables_json: dict[int, str | None] = {}  # files of a dataset share variables
            rows = [_file_row(f, variables_json) for f in files]
            for i in range(0, len(rows), 5000):
                conn.execute(files_t.insert(), rows[i : i + 5000])
            written = self._bump(conn)
            drows = [{**_dataset_row(d), "written": written} for d in datasets]
            for i in range(0, len(drows), 5000):
                conn.execute(datasets_t.insert(), drows[i : i + 5000])

    @_answering
    def generation(self) -> int:
        # Plain SQL: the data service reads this on every request, and building and
        # caching the statement's key cost three times the query (110 against 32 us).
        with self.engine.connect() as conn:
            value = conn.exec_driver_sql(_GENERATION_SQL).scalar_one()
            return int(value)

    @_answering
    def version(self) -> StoreVersion | None:
        """The database's version: its random id (made with it) and where it is, hashed
        (a SQLite file's path and inode: a copy is another file; a PostgreSQL server's
        address and database: a dump restored elsewhere), its generation and the stamp
        the write of that generation drew. None for an in-memory database."""
        url = self.engine.url
        with self.engine.connect() as conn:
            meta: dict[str, int] = {k: v for k, v in conn.exec_driver_sql(_VERSION_SQL).all()}
        if meta.get("store_id") is None or meta.get("stamp") is None:
            return None
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                return None
            try:
                st = os.stat(url.database)
            except OSError:
                return None
            where = f"{os.path.realpath(url.database)}|{st.st_dev}|{st.st_ino}"
        else:
            where = f"{url.get_backend_name()}|{url.host}|{url.port}|{url.database}"
        store = hashlib.sha256(f"{meta['store_id']}|{where}".encode()).hexdigest()[:32]
        return StoreVersion(store, int(meta["generation"]), int(meta["stamp"]))

    def _bump(self, conn: sa.Connection) -> int:
        """Add one to the generation (in ``conn``'s transaction), draw its stamp, and
        return it."""
        conn.execute(
            meta_t.update().where(meta_t.c.key == "generation").values(value=meta_t.c.value + 1)
        )
        conn.execute(
            meta_t.update().where(meta_t.c.key == "stamp").values(value=secrets.randbits(63))
        )
        return int(conn.exec_driver_sql(_GENERATION_SQL).scalar_one())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            db.release(self.engine)


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    # '[w,s,e,n]' as _dumps wrote it: split, not json.loads (a third of a 100,000-dataset
    # index build went to decoding these)
    if not text or text == "[]" or text == "null":
        return None
    w, s, e, n = (float(v) for v in text.strip("[] ").split(","))
    return (w, s, e, n)


def _file_row(f: FileRecord, variables_json: dict[int, str | None]) -> dict[str, Any]:
    """The row of ``f``; ``variables_json`` caches the JSON of a ``variables`` tuple by its
    ``id()`` (valid while the records are alive: the scan gives the files of a dataset
    one tuple)."""
    variables = variables_json.get(id(f.variables))
    if variables is None:
        variables = variables_json[id(f.variables)] = _dumps([v.to_json() for v in f.variables])
    return {
        "collection": f.collection,
        "path": f.path,
        "size": f.size,
        "mtime_ns": f.mtime_ns,
        "status": f.status.value,
        "reason": f.reason,
        "dataset_id": f.dataset_id,
        "master_id": f.master_id,
        "version": f.version,
        "facets": _dumps(f.facets),
        "data_model": f.data_model,
        "dims": _dumps(f.dims),
        "variables": variables,
        "global_attrs": _dumps(f.global_attrs),
        "time_var": f.time_var,
        "time_units": f.time_units,
        "calendar": f.calendar,
        "time_start": f.time_start,
        "time_end": f.time_end,
        "tkey_start": f.tkey_start,
        "tkey_end": f.tkey_end,
        "n_times": f.n_times,
        "time_values": f.time_values,
        "bbox": _dumps(list(f.bbox)) if f.bbox else None,
    }


def _file(r: Any) -> FileRecord:
    return FileRecord(
        collection=r.collection,
        path=r.path,
        size=r.size,
        mtime_ns=r.mtime_ns,
        status=FileStatus(r.status),
        reason=r.reason,
        dataset_id=r.dataset_id,
        master_id=r.master_id,
        version=r.version,
        facets=_loads(r.facets) or {},
        data_model=r.data_model,
        dims=_loads(r.dims) or {},
        variables=tuple(VariableInfo.from_json(v) for v in _loads(r.variables) or ()),
        global_attrs=_loads(r.global_attrs) or {},
        time_var=r.time_var,
        time_units=r.time_units,
        calendar=r.calendar,
        time_start=r.time_start,
        time_end=r.time_end,
        tkey_start=r.tkey_start,
        tkey_end=r.tkey_end,
        n_times=r.n_times,
        time_values=r.time_values,
        bbox=_bbox(r.bbox),
    )


def _dataset_row(d: DatasetRecord) -> dict[str, Any]:
    return {
        "collection": d.collection,
        "dataset_id": d.dataset_id,
        "master_id": d.master_id,
        "version": d.version,
        "version_key": version_key(d.version),
        "latest": d.latest,
        "facets": _dumps(d.facets),
        "n_files": d.n_files,
        "size": d.size,
        "variables": _dumps([v.to_json() for v in d.variables]),
        "attrs": _dumps(d.attrs),
        "calendar": d.calendar,
        "time_start": d.time_start,
        "time_end": d.time_end,
        "tkey_start": d.tkey_start,
        "tkey_end": d.tkey_end,
        "bbox": _dumps(list(d.bbox)) if d.bbox else None,
        "search_text": d.search_text(),
    }


def _dataset(r: Any) -> DatasetRecord:
    return DatasetRecord(
        dataset_id=r.dataset_id,
        collection=r.collection,
        master_id=r.master_id,
        version=r.version,
        latest=bool(r.latest),
        facets=_loads(r.facets),
        n_files=r.n_files,
        size=r.size,
        variables=tuple(VariableInfo.from_json(v) for v in _loads(r.variables)),
        attrs=_loads(r.attrs),
        calendar=r.calendar,
        time_start=r.time_start,
        time_end=r.time_end,
        tkey_start=r.tkey_start,
        tkey_end=r.tkey_end,
        bbox=_bbox(r.bbox),
    )
