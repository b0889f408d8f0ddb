"""Free-text search asks the catalog database's text index (FTS5 on SQLite, a tsvector GIN
index on PostgreSQL, LIKE on a SQLite without FTS5), and the search index keeps no records:
a page of results is read from the store. On the real CMIP6 sample archive."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from insitu import db
from insitu.catalog import Catalog, DatasetRecord
from insitu.catalog._sql import TEXT_TABLE, SQLCatalogStore
from insitu.errors import InvalidQuery
from insitu.settings import Settings

# Word queries whose answer is the same as the substring search before the text index.
WORD_QUERIES = [
    "air_temperature",
    "air",
    "miroc6 air_temperature",
    "historical",
    "r1i1p1f1",
    "Amon",
    "canesm5",
    "AOGCM",
    "day plev",
    "MPI-ESM1-2-LR",
]


def _old_text(r: DatasetRecord) -> str:
    """What the search index scanned for substrings before the text index."""
    parts = [r.dataset_id]
    for v in r.variables:
        parts.append(v.name)
        parts.extend(
            v.attrs[k] for k in ("long_name", "standard_name") if isinstance(v.attrs.get(k), str)
        )
    parts.extend(str(v) for v in r.attrs.values() if isinstance(v, str | int | float))
    return " ".join(parts).lower()


def _words_expected(records: list[DatasetRecord], text: str) -> list[str]:
    """Ids of the records with every term as words and a word's beginning, by regex."""
    out = []
    for r in records:
        body = " ".join(re.findall(r"[^\W_]+", _old_text(r)))
        terms = [" ".join(re.findall(r"[^\W_]+", t.lower())) for t in text.split()]
        if all(re.search(rf"(^| ){re.escape(t)}", body) for t in terms):
            out.append(r.dataset_id)
    return sorted(out)


@pytest.fixture(scope="module")
def catalog(module_store_uri: str, demo_root: Path) -> Iterator[Catalog]:
    cat = Catalog(module_store_uri)
    cat.add_collection("demo", demo_root, template="cmip6")
    cat.scan(workers=2)
    yield cat
    cat.close()


@pytest.mark.parametrize("text", WORD_QUERIES)
def test_word_queries_find_what_they_found_before(catalog: Catalog, text: str) -> None:
    records = catalog.store.datasets()
    substring = sorted(
        r.dataset_id for r in records if all(t in _old_text(r) for t in text.lower().split())
    )
    got = catalog.search(text, limit=1000)
    assert sorted(got.dataset_ids) == substring == _words_expected(records, text)
    assert got.total == len(substring) > 0
    assert isinstance(catalog.store, SQLCatalogStore)
    assert catalog.store.text_search in ("fts5", "tsvector")  # this SQLite has FTS5


def test_a_variable_name_finds_its_datasets(catalog: Catalog) -> None:
    """'ta' finds every dataset of variable ta (and no longer those with 'data' only)."""
    ta = catalog.search(variable_id="ta", limit=1000).dataset_ids
    assert ta and set(ta) <= set(catalog.search("ta", limit=1000).dataset_ids)
    assert (
        catalog.search("ta", limit=1000).dataset_ids
        == catalog.search("ta", variable_id="ta", limit=1000).dataset_ids
    )


def test_terms_are_words_and_word_beginnings(catalog: Catalog) -> None:
    records = catalog.store.datasets()
    for text in ("air_temp", "temp", "perature", "esm1 2", "r1i1"):
        got = sorted(catalog.search(text, limit=1000).dataset_ids)
        assert got == _words_expected(records, text)
    assert catalog.search("perature").total == 0  # inside a word: not found any more
    assert catalog.search("air_temp").total == catalog.search("air_temperature").total


def test_a_term_without_a_word_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidQuery, match=r"Search term '--' .*letters or digits"):
        catalog.search("tas --")


def test_the_answer_comes_from_the_database_text_index(tmp_path: Path, demo_root: Path) -> None:
    """Emptying SQLite's FTS5 table empties the text search's answers (facets unchanged)."""
    uri = f"sqlite:///{tmp_path / 'c.db'}"
    with Catalog(uri) as cat:
        cat.add_collection("demo", demo_root, template="cmip6")
        cat.scan(workers=2)
        assert cat.search("ta").total > 0
        total = cat.search().total
    engine = sa.create_engine(uri)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"INSERT INTO {TEXT_TABLE}({TEXT_TABLE}) VALUES ('delete-all')")
        conn.exec_driver_sql("UPDATE meta SET value = value + 1 WHERE key = 'generation'")
    engine.dispose()
    with Catalog(uri) as cat:
        assert cat.search("ta").total == 0
        assert cat.search().total == total


def test_a_page_is_read_from_the_store(catalog: Catalog) -> None:
    """The index holds arrays only (well under 2 KB a dataset); the records of a page,
    variables and attributes included, come from the store, in the page's order."""
    page = catalog.search("ta", limit=3, offset=1, sort="-size")
    everything = catalog.search("ta", limit=1000, sort="-size")
    index = catalog.index()
    assert not [v for v in vars(index).values() if isinstance(v, list) and len(v) == index.n]
    assert index.nbytes() / index.n < 2048
    assert page.dataset_ids == everything.dataset_ids[1:4]
    assert page.all_ids == everything.dataset_ids
    for record in page.results:
        assert record == catalog.dataset(record.dataset_id)
        assert record.variables and record.attrs


def test_a_sqlite_without_fts5_falls_back_to_like(tmp_path: Path, demo_root: Path) -> None:
    """Where SQLite has no FTS5 the migration makes no FTS table: the same words are found
    with LIKE on the stored text."""
    uri = f"sqlite:///{tmp_path / 'c.db'}"
    with Catalog(uri) as cat:
        cat.add_collection("demo", demo_root, template="cmip6")
        cat.scan(workers=2)
        assert isinstance(cat.store, SQLCatalogStore) and cat.store.text_search == "fts5"
        with_fts = {t: sorted(cat.search(t, limit=1000).dataset_ids) for t in WORD_QUERIES}
    engine = sa.create_engine(uri)
    with engine.begin() as conn:  # what the migration leaves on a SQLite without FTS5
        for suffix in ("_ai", "_ad", "_au"):
            conn.exec_driver_sql(f"DROP TRIGGER {TEXT_TABLE}{suffix}")
        conn.exec_driver_sql(f"DROP TABLE {TEXT_TABLE}")
    engine.dispose()
    with Catalog(uri) as cat:
        assert isinstance(cat.store, SQLCatalogStore) and cat.store.text_search == "like"
        for text, want in with_fts.items():
            assert sorted(cat.search(text, limit=1000).dataset_ids) == want, text
        assert cat.search("perature").total == 0


def test_the_migration_fills_the_text_index_of_a_revision_0005_catalog(store_uri: str) -> None:
    """A catalog made at revision 0005 (no text column) gets its datasets' words indexed
    in place by the first command that opens it."""
    engine = sa.create_engine(store_uri)
    variables = [
        {"name": "tas", "dims": ["time"], "shape": [2], "dtype": "float32",
         "attrs": {"standard_name": "air_temperature", "_FillValue": float("nan")}},
    ]  # fmt: skip
    try:
        with engine.connect() as conn:
            config = Config()
            config.set_main_option("script_location", "insitu.db:migrations")
            config.attributes["connection"] = conn
            command.upgrade(config, "0005")
            conn.execute(
                sa.text("INSERT INTO collections VALUES ('old', '/data', 'cmip6', :f)"),
                {"f": False},
            )
            for i, model in enumerate(("MIROC6", "CanESM5")):
                conn.execute(
                    sa.text(
                        "INSERT INTO datasets (collection, dataset_id, master_id, version, "
                        "version_key, latest, facets, n_files, size, variables, attrs) VALUES "
                        "('old', :id, :master, 'v1', 'v1', :t, :facets, 1, 10, :vars, :attrs)"
                    ),
                    {
                        "id": f"CMIP6.CMIP.X.{model}.historical.r1i1p1f1.Amon.tas.gn.v{i}",
                        "master": f"CMIP6.CMIP.X.{model}",
                        "t": True,
                        "facets": json.dumps({"source_id": [model]}),
                        "vars": json.dumps(variables if i == 0 else []),
                        "attrs": json.dumps({"title": f"{model} run", "n": 7}),
                    },
                )
            conn.commit()
    finally:
        engine.dispose()
    with Catalog(store_uri) as cat:
        with cat.store.engine.connect() as conn:  # type: ignore[attr-defined]
            assert db.revision(conn) == db.HEAD
        assert cat.search("air_temperature").dataset_ids == [
            "CMIP6.CMIP.X.MIROC6.historical.r1i1p1f1.Amon.tas.gn.v0"
        ]
        assert cat.search("canesm5 run").total == 1
        assert cat.search("historical tas").total == 2


QUERIES: list[dict[str, object]] = [
    {},
    {"latest": False},
    {"source_id": "MIROC6"},
    {"source_id": ["CanESM5", "MIROC6"], "table_id": "Amon", "sort": "-size"},
    {"experiment_id": "hist*", "sort": "-version"},
    {"text": "air_temp", "collection": "more"},
    {"text": "historical", "sort": "n_files"},
    {"time": ("1900", "1950"), "bbox": (-180, -90, 180, 90)},
]


def _answers(cat: Catalog) -> list[tuple[object, ...]]:
    return [
        (r.total, r.all_ids, r.facet_counts, [x.size for x in r.results])
        for r in (cat.search(limit=1000, **q) for q in QUERIES)  # type: ignore[arg-type]
    ]


def _built_afresh(cat: Catalog) -> None:
    """What a new process builds with nothing saved: from every row."""
    shutil.rmtree(cat.settings.data_dir / "cache", ignore_errors=True)
    cat._index = None


def test_the_index_follows_writes_from_the_rows_written_since(
    store_uri: str, demo_root: Path, tmp_path: Path
) -> None:
    """After a change the index re-reads only the rows written since it was built: it
    answers as an index built afresh from every row (datasets replaced, removed, added in
    a new collection, a collection forgotten)."""
    from dataclasses import replace

    with Catalog(Settings.load(data_dir=tmp_path, catalog={"uri": store_uri})) as cat:
        cat.add_collection("demo", demo_root, template="cmip6")
        cat.scan(workers=2)
        store = cat.store
        assert isinstance(store, SQLCatalogStore)
        before = cat.index()
        records = store.datasets()
        generation = store.generation()
        changed = [replace(r, size=r.size + 1, latest=not r.latest) for r in records[:5]]
        store.write("demo", datasets=changed, removed_datasets=[records[7].dataset_id])
        assert [r.dataset_id for r in store.index_rows(written_after=generation)] == sorted(
            r.dataset_id for r in changed
        )
        cat.add_collection("more", demo_root, template="cmip6")
        store.write("more", datasets=[replace(r, collection="more") for r in records[10:14]])
        updated = cat.index()
        assert updated is not before and updated.n == before.n - 1 + 4
        assert set(store.row_ids()) == set(updated.rows.tolist())
        got = _answers(cat)
        _built_afresh(cat)
        assert _answers(cat) == got
        cat.index()
        cat.remove_collection("more")
        got = _answers_without_more(cat)
        _built_afresh(cat)
        assert _answers_without_more(cat) == got


def _answers_without_more(cat: Catalog) -> list[tuple[object, ...]]:
    return [
        (r.total, r.all_ids, r.facet_counts)
        for r in (
            cat.search(limit=1000, **q)  # type: ignore[arg-type]
            for q in QUERIES
            if "collection" not in q
        )
    ]


def test_a_term_is_asked_of_the_text_index_once_per_index(catalog: Catalog) -> None:
    """The datasets of a text term are kept by the index (which never changes): the same
    word with other facets, another page or another order asks the store no more."""
    from insitu.catalog.index import IndexQuery, SearchIndex

    asked: list[object] = []

    def counting(phrases: Sequence[Sequence[str]]) -> npt.NDArray[np.int64]:
        asked.append(phrases)
        return catalog.store.text_matches(phrases)

    templates = {c.name: catalog.template(c.template) for c in catalog.collections()}
    index = SearchIndex(catalog.store.index_rows(), templates, -1, counting)
    for facets, sort in (({}, "dataset_id"), ({"table_id": ["Amon"]}, "-size"), ({}, "size")):
        idx, counts = index.select(IndexQuery(facets=facets, text="ta", sort=sort))
        want = catalog.search("ta", limit=1000, sort=sort, **facets)
        assert index.dataset_ids(idx) == want.dataset_ids
        assert counts == want.facet_counts
    assert asked == [[["ta"]]]
    index.select(IndexQuery(facets={}, text="air"))
    assert len(asked) == 2
