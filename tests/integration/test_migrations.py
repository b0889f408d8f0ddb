"""The database schema: an older database is upgraded in place by any command, and the
newest migration makes exactly the tables the stores define (ingest's included)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from insitu import db
from insitu.access import JobStore, TokenStore
from insitu.catalog import Catalog
from insitu.catalog._sql import TEXT_INDEX, TEXT_TABLE
from insitu.ingest import Item, Registry, find_shots  # its tables are on db.metadata too
from insitu.workflows import ComponentCatalog  # the component catalog's tables likewise
from insitu.workflows.registry import FTS_INDEX, FTS_TABLE

# The tables as 'metadata.create_all' made them before migrations (release 23841c3):
# every store created its own, and the token table had no 'expires' or 'last_used'.
_OLD_SCHEMA = """
CREATE TABLE collections (
    name VARCHAR(200) NOT NULL, root TEXT NOT NULL, template VARCHAR(200) NOT NULL,
    public BOOLEAN NOT NULL, PRIMARY KEY (name));
CREATE TABLE datasets (
    id {serial} NOT NULL, collection VARCHAR(200) NOT NULL, dataset_id TEXT NOT NULL,
    master_id TEXT NOT NULL, version VARCHAR(100) NOT NULL, version_key VARCHAR(200) NOT NULL,
    latest BOOLEAN NOT NULL, facets TEXT NOT NULL, n_files INTEGER NOT NULL,
    size BIGINT NOT NULL, variables TEXT NOT NULL, attrs TEXT NOT NULL, calendar VARCHAR(40),
    time_start VARCHAR(40), time_end VARCHAR(40), tkey_start BIGINT, tkey_end BIGINT,
    bbox TEXT, PRIMARY KEY (id), CONSTRAINT uq_datasets_id UNIQUE (collection, dataset_id));
CREATE INDEX ix_datasets_id ON datasets (dataset_id);
CREATE INDEX ix_datasets_master ON datasets (collection, master_id);
CREATE TABLE files (
    id {serial} NOT NULL, collection VARCHAR(200) NOT NULL, path TEXT NOT NULL,
    size BIGINT NOT NULL, mtime_ns BIGINT NOT NULL, status VARCHAR(20) NOT NULL,
    reason TEXT NOT NULL, dataset_id TEXT, master_id TEXT, version VARCHAR(100), facets TEXT,
    data_model VARCHAR(40), dims TEXT, variables TEXT, global_attrs TEXT,
    time_var VARCHAR(200), time_units VARCHAR(200), calendar VARCHAR(40),
    time_start VARCHAR(40), time_end VARCHAR(40), tkey_start BIGINT, tkey_end BIGINT,
    n_times INTEGER NOT NULL, time_values {blob}, bbox TEXT, PRIMARY KEY (id),
    CONSTRAINT uq_files_path UNIQUE (collection, path));
CREATE INDEX ix_files_dataset ON files (collection, dataset_id);
CREATE TABLE meta ("key" VARCHAR(100) NOT NULL, value BIGINT NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE access_tokens (
    id VARCHAR(16) NOT NULL, name VARCHAR(200) NOT NULL, digest VARCHAR(64) NOT NULL,
    scopes TEXT NOT NULL, collections TEXT NOT NULL, created {time} NOT NULL, revoked {time},
    PRIMARY KEY (id), UNIQUE (digest));
CREATE TABLE access_user_grants (
    "user" VARCHAR(200) NOT NULL, collection VARCHAR(200) NOT NULL, created {time} NOT NULL,
    PRIMARY KEY ("user", collection));
CREATE TABLE access_jobs (
    id VARCHAR(32) NOT NULL, status VARCHAR(16) NOT NULL, token_id VARCHAR(16),
    operation VARCHAR(64) NOT NULL, datasets TEXT NOT NULL, collections TEXT NOT NULL,
    variable VARCHAR(200), params TEXT NOT NULL, time VARCHAR(100), created {time} NOT NULL,
    started {time}, finished {time}, server VARCHAR(300) NOT NULL, heartbeat {time},
    cached BOOLEAN NOT NULL, result_key VARCHAR(64), result_path TEXT, provenance TEXT,
    error_type VARCHAR(100), error TEXT, PRIMARY KEY (id));
CREATE INDEX ix_access_jobs_status ON access_jobs (status);
CREATE INDEX ix_access_jobs_token_id ON access_jobs (token_id)
"""
_TYPES = {
    "sqlite": {"serial": "INTEGER", "blob": "BLOB", "time": "DATETIME"},
    "postgresql": {"serial": "SERIAL", "blob": "BYTEA", "time": "TIMESTAMP WITH TIME ZONE"},
}
_SECRET = "ins_0123456789ab_oldsecret"
_DATASET = "CMIP6.CMIP.X.M.historical.r1i1p1f1.Amon.tas.gn.v20200101"


def _old_database(uri: str, root: Path) -> None:
    """A database of the release before migrations, with a collection, a dataset and its
    file, a token and a job in it."""
    engine = sa.create_engine(uri)
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            for ddl in _OLD_SCHEMA.format(**_TYPES[engine.dialect.name]).split(";"):
                conn.exec_driver_sql(ddl)
            conn.execute(
                sa.text(
                    "INSERT INTO collections VALUES ('old', :root, 'cmip6', false);"
                    if engine.dialect.name == "postgresql"
                    else "INSERT INTO collections VALUES ('old', :root, 'cmip6', 0)"
                ),
                {"root": str(root)},
            )
            conn.execute(sa.text("INSERT INTO meta VALUES ('generation', 7)"))
            facets = json.dumps({"source_id": "M", "variable_id": "tas"})
            conn.execute(
                sa.text(
                    "INSERT INTO files (collection, path, size, mtime_ns, status, reason, "
                    "dataset_id, master_id, version, facets, variables, n_times) VALUES "
                    "('old', 'a/tas_200001-200012.nc', 100, 1, 'ok', '', :ds, :m, "
                    "'v20200101', :facets, '[]', 12)"
                ),
                {"ds": _DATASET, "m": _DATASET[:-10], "facets": facets},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO datasets (collection, dataset_id, master_id, version, "
                    "version_key, latest, facets, n_files, size, variables, attrs) VALUES "
                    "('old', :ds, :m, 'v20200101', '20200101', :t, :facets, 1, 100, '[]', '{}')"
                ),
                {"ds": _DATASET, "m": _DATASET[:-10], "facets": facets, "t": True},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO access_tokens (id, name, digest, scopes, collections, created) "
                    "VALUES ('0123456789ab', 'old', :digest, 'read', 'old', :now)"
                ),
                {"digest": hashlib.sha256(_SECRET.encode()).hexdigest(), "now": now},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO access_jobs (id, status, operation, datasets, collections, "
                    "params, created, server, cached) VALUES ('job1', 'done', 'time_mean', "
                    "'[]', '[]', '{}', :now, 'old-host', :f)"
                ),
                {"now": now, "f": False},
            )
    finally:
        engine.dispose()


def _revision(uri: str) -> str | None:
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            return db.revision(conn)
    finally:
        engine.dispose()


def test_a_database_of_the_release_before_migrations_is_upgraded_by_any_command(
    store_uri: str, tmp_path: Path
) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    _old_database(store_uri, root)
    assert _revision(store_uri) is None
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {"INSITU_DATA_DIR": str(tmp_path / "data"), "INSITU_CATALOG__URI": store_uri}
    out = subprocess.run(
        [sys.executable, "-m", "insitu.cli", "catalog", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    (listed,) = json.loads(out.stdout)
    assert (listed["name"], listed["datasets"], listed["files"]) == ("old", 1, 1)
    assert _revision(store_uri) == db.HEAD
    # Every store reads what the older version wrote, and writes the newer columns.
    with Catalog(store_uri) as cat:
        assert cat.store.generation() == 7
        assert [f.path for f in cat.files(_DATASET)] == ["a/tas_200001-200012.nc"]
    tokens = TokenStore.from_uri(store_uri)
    jobs = JobStore.from_uri(store_uri)
    try:
        old = tokens.verify(_SECRET)
        assert old is not None and old.grants("old") and old.expires is None
        tokens.record_use(old.id)
        assert tokens.get(old.id).last_used is not None  # type: ignore[union-attr]
        job = jobs.get("job1")
        assert job is not None and job.status == "done"
    finally:
        tokens.close()
        jobs.close()


def _not_text_index(name: str | None, type_: str, parents: dict[str, str | None]) -> bool:
    """The component catalog's and the datasets' full-text indexes are made by their
    migrations only: SQLite's FTS5 tables (and their shadow tables), PostgreSQL's GIN
    indexes on an expression."""
    return not (name or "").startswith((FTS_TABLE, FTS_INDEX, TEXT_TABLE, TEXT_INDEX))


def test_the_newest_revision_makes_the_tables_the_stores_define(store_uri: str) -> None:
    """A change to a store's tables without a migration fails here (as 'alembic check')."""
    engine = db.engine(store_uri)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            assert db.revision(conn) == db.HEAD
            context = MigrationContext.configure(conn, opts={"include_name": _not_text_index})
            differences = compare_metadata(context, db.metadata)
    finally:
        db.release(engine)
    assert differences == []
    assert {"collections", "access_tokens", "access_jobs"} <= set(db.metadata.tables)


def test_head_names_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", "insitu.db:migrations")
    assert ScriptDirectory.from_config(config).get_heads() == [db.HEAD]


def test_commands_opening_a_new_database_at_once_migrate_it_once(
    store_uri: str, tmp_path: Path
) -> None:
    """Three processes race to upgrade a new database: the lock (PostgreSQL's advisory
    lock, SQLite's write lock) makes the others wait, then find it at the newest revision."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {"INSITU_DATA_DIR": str(tmp_path / "data"), "INSITU_CATALOG__URI": store_uri}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "insitu.cli", "catalog", "list"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "No collections yet" in out
    assert _revision(store_uri) == db.HEAD


def _upgraded_by_a_command(store_uri: str, tmp_path: Path, revision: str) -> None:
    """A catalog made at ``revision`` with one collection, then ``insitu catalog list`` run
    on it: the collection is listed and the schema is at the head revision."""
    engine = sa.create_engine(store_uri)
    try:
        with engine.connect() as conn:
            config = Config()
            config.set_main_option("script_location", "insitu.db:migrations")
            config.attributes["connection"] = conn
            command.upgrade(config, revision)
            conn.execute(
                sa.text("INSERT INTO collections VALUES ('old', :root, 'cmip6', :f)"),
                {"root": str(tmp_path), "f": False},
            )
            conn.commit()
    finally:
        engine.dispose()
    assert _revision(store_uri) == revision
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {"INSITU_DATA_DIR": str(tmp_path / "data"), "INSITU_CATALOG__URI": store_uri}
    out = subprocess.run(
        [sys.executable, "-m", "insitu.cli", "catalog", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert [c["name"] for c in json.loads(out.stdout)] == ["old"]
    assert _revision(store_uri) == db.HEAD


def test_a_catalog_of_the_first_revision_gets_the_ingest_tables_in_place(
    store_uri: str, tmp_path: Path
) -> None:
    """A catalog made by revision 0001 (before ingest's tables) keeps its collections and
    gets empty ingest tables from any command."""
    _upgraded_by_a_command(store_uri, tmp_path, "0001")
    registry = Registry(store_uri, "lab")
    try:
        assert registry.items() == [] and find_shots(store_uri).total == 0
        registry.record(Item("ab" * 32, "s.tdms", "quarantined", None, "E_FORMAT", None, None, "t"))
        assert [i.code for i in registry.items("quarantined")] == ["E_FORMAT"]
    finally:
        registry.close()


def test_a_catalog_of_revision_0003_gets_the_component_catalog_in_place(
    store_uri: str, tmp_path: Path
) -> None:
    """A catalog of revision 0003 (before the component catalog) keeps its collections,
    gets the component tables and their text index from any command, and then registers
    and finds a component by a word of its code."""
    _upgraded_by_a_command(store_uri, tmp_path, "0003")
    engine = sa.create_engine(store_uri)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if conn.dialect.name == "postgresql":
                indexes = {i["name"] for i in sa.inspect(conn).get_indexes("workflow_components")}
                assert FTS_INDEX in indexes
            else:
                assert FTS_TABLE in tables  # this SQLite has FTS5
    finally:
        engine.dispose()
    assert {"workflow_components", "workflow_component_ports", "workflow_component_deps"} <= tables
    folder = tmp_path / "comp" / "norm-0123abcd"
    folder.mkdir(parents=True)
    meta = {
        "schema": "insitu.component/1",
        "name": "norm",
        "hash": "0123abcd" * 8,
        "inputs": [{"name": "field", "type": "any", "kind": "value", "required": True}],
        "outputs": [{"name": "normed", "type": "any", "kind": "value"}],
    }
    (folder / "component.json").write_text(json.dumps(meta))
    (folder / "task.py").write_text("normed = (field - field.mean()) / field.std()\n")
    with ComponentCatalog(store_uri) as catalog:
        (entry,) = catalog.register(folder)
        assert entry.new
        assert [e.name for e in catalog.search("mean")] == ["norm"]


def _meta(uri: str, key: str) -> int | None:
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT value FROM meta WHERE key = :k"), {"k": key})
            value = found.scalar()
            return None if value is None else int(value)
    finally:
        engine.dispose()


def test_a_catalog_of_revision_0006_gets_a_store_id_of_its_own(
    store_uri: str, tmp_path: Path
) -> None:
    """The random id the saved search index is filed under, and the stamp of the
    generation: given to an older database by any command, others to a new database."""
    _upgraded_by_a_command(store_uri, tmp_path, "0006")
    made = (_meta(store_uri, "store_id"), _meta(store_uri, "stamp"))
    assert None not in made
    new = f"sqlite:///{tmp_path / 'new.db'}"
    db.release(db.opened(new))
    assert _meta(new, "store_id") not in (None, made[0])
    assert _meta(new, "stamp") not in (None, made[1])
