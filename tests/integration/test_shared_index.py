"""The search index saved in the data directory: a second catalog (another server process,
a restart) on the same store loads it instead of building, a changed store or another
database is never served it, and processes that need it at once build it once. On the
real CMIP6 sample archive, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from insitu.catalog import Catalog, Collection
from insitu.catalog._sql import SQLCatalogStore
from insitu.catalog.index import SearchIndex
from insitu.settings import Settings

QUERIES: list[dict[str, object]] = [
    {},
    {"latest": False, "sort": "-size"},
    {"source_id": ["CanESM5", "MIROC6"], "table_id": "Amon"},
    {"experiment_id": "hist*", "sort": "-version"},
    {"text": "air_temperature"},
    {"time": ("1900", "1950"), "bbox": (-180, -90, 180, 90)},
]
_LOG = "insitu.catalog._indexfile"


def _settings(data_dir: Path, uri: str) -> Settings:
    return Settings.load(data_dir=data_dir, catalog={"uri": uri})


def _answers(cat: Catalog) -> list[tuple[object, ...]]:
    return [
        (r.total, r.all_ids, r.facet_counts)
        for r in (cat.search(limit=1000, **q) for q in QUERIES)  # type: ignore[arg-type]
    ]


def _from_every_row(cat: Catalog) -> list[tuple[object, ...]]:
    """The answers of an index built from every row of the store (nothing saved)."""
    store = cat.store
    templates = {c.name: cat.template(c.template) for c in cat.collections()}
    built = SearchIndex(store.index_rows(), templates, store.generation(), store.text_matches)
    cat._index = built
    try:
        return _answers(cat)
    finally:
        cat._index = None


@pytest.fixture
def scanned(store_uri: str, demo_root: Path, tmp_path: Path) -> Settings:
    """Settings of a catalog with the demo archive scanned, and a data directory of its own."""
    settings = _settings(tmp_path / "data", store_uri)
    with Catalog(settings) as cat:
        cat.add_collection("demo", demo_root, template="cmip6")
        cat.scan(workers=2)
    return settings


def test_a_second_catalog_on_the_store_loads_the_saved_index(
    scanned: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, _LOG), Catalog(scanned) as first:
        got = _answers(first)
        assert "saved in" in caplog.text
        caplog.clear()
        with Catalog(scanned) as second:  # another process, or a restart
            assert _answers(second) == got == _from_every_row(second)
            index = second.index()
    assert "loaded from" in caplog.text and "saved in" not in caplog.text
    assert not index.rows.flags.writeable  # a map of the saved file, shared


def test_a_changed_store_is_not_served_the_index_of_before(
    scanned: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with Catalog(scanned) as first:
        _answers(first)
        store = first.store
        records = store.datasets()
        gone, bigger = records[3], replace(records[5], size=records[5].size + 1)
        store.write("demo", datasets=[bigger], removed_datasets=[gone.dataset_id])
        with caplog.at_level(logging.INFO, _LOG), Catalog(scanned) as second:
            got = _answers(second)  # built from the saved one and the rows written since
            assert "saved in" in caplog.text
            assert got == _from_every_row(second)
            ids = second.search(latest=False, limit=1000).all_ids
            assert gone.dataset_id not in ids and bigger.dataset_id in ids
            assert second.index().generation == store.generation()
        assert _answers(first) == got  # the first, too, is brought up to date


def _catalog_of(settings: Settings, demo_root: Path, keep: int, generation: int) -> Catalog:
    """A catalog of the demo archive's first ``keep`` datasets, at ``generation``."""
    scratch = settings.data_dir.parent / f"scratch-{keep}.db"
    with Catalog(_settings(settings.data_dir, f"sqlite:///{scratch}")) as source:
        source.add_collection("demo", demo_root, template="cmip6")
        source.scan(workers=1)
        records = source.store.datasets()[:keep]
    cat = Catalog(settings)
    cat.add_collection("demo", demo_root, template="cmip6")
    cat.store.write("demo", datasets=records)
    while cat.store.generation() < generation:
        cat.set_public("demo", True)
    assert cat.store.generation() == generation
    return cat


def test_another_database_is_not_served_this_ones_index(demo_root: Path, tmp_path: Path) -> None:
    """A new database made where one was, at the same generation, and a copy of one that
    was changed since, each get their own index, not the one saved for the other."""
    path = tmp_path / "catalog.db"
    settings = _settings(tmp_path / "data", f"sqlite:///{path}")
    with _catalog_of(settings, demo_root, keep=10, generation=8) as cat:
        assert cat.search(latest=False).total == 10
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    with _catalog_of(settings, demo_root, keep=4, generation=8) as cat:
        assert cat.search(latest=False).total == 4
        ids = cat.search(latest=False).all_ids
    copy = tmp_path / "copy.db"
    shutil.copy(path, copy)
    with Catalog(settings) as cat, Catalog(_settings(settings.data_dir, f"sqlite:///{copy}")) as c2:
        cat.store.write("demo", removed_datasets=[ids[0]])
        c2.store.write("demo", removed_datasets=[ids[1]])
        assert cat.store.generation() == c2.store.generation()
        assert cat.search(latest=False).all_ids == [ids[1], *ids[2:]]
        assert c2.search(latest=False).all_ids == [ids[0], *ids[2:]]
    saved = settings.data_dir / "cache" / "search-index"
    assert len(list(saved.iterdir())) == 3  # one directory per database


_SEARCH = """
import json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
from insitu.catalog import Catalog, Collection
with Catalog() as cat:
    result = cat.search(limit=1000, latest=False)
    print(json.dumps({"ids": result.all_ids, "counts": result.facet_counts}))
"""


def test_processes_that_need_the_index_at_once_build_it_once(
    scanned: Settings, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env |= {"INSITU_DATA_DIR": str(scanned.data_dir), "INSITU_CATALOG__URI": scanned.catalog_uri}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(_SEARCH)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outs]
    answers = [json.loads(out) for out, _ in outs]
    assert answers[0] == answers[1] == answers[2] and len(answers[0]["ids"]) > 50
    logs = "".join(err for _, err in outs)
    assert logs.count("saved in") == 1 and logs.count("loaded from") == 3, logs
    (store_dir,) = (scanned.data_dir / "cache" / "search-index").iterdir()
    with Catalog(scanned) as cat:
        generation = cat.store.generation()
    assert sorted(p.name for p in store_dir.iterdir()) == [f"gen-{generation}", "lock"]


def test_a_database_restored_in_place_and_written_again_is_not_served_its_old_index(
    demo_root: Path, tmp_path: Path
) -> None:
    """A backup copied over the database (the same file), then written again up to a
    generation an index was saved for before the restore, with no search in between: the
    stamp of that generation is another, and the index is built for what the store has."""
    path = tmp_path / "catalog.db"
    settings = _settings(tmp_path / "data", f"sqlite:///{path}")
    with _catalog_of(settings, demo_root, keep=10, generation=4) as cat:
        ids = cat.search(latest=False).all_ids
    backup = tmp_path / "backup.db"
    shutil.copyfile(path, backup)
    with Catalog(settings) as cat:  # two more writes, each searched: saved at 5 and 6
        for i in (0, 1):
            cat.store.write("demo", removed_datasets=[ids[i]])
            assert cat.search(latest=False).total == 9 - i
    inode = path.stat().st_ino
    shutil.copyfile(backup, path)  # restored in place
    assert path.stat().st_ino == inode
    with Catalog(settings) as cat:
        for i in (8, 9):  # written again, nothing searched, up to generation 6
            cat.store.write("demo", removed_datasets=[ids[i]])
        assert cat.store.generation() == 6
        assert cat.search(latest=False).all_ids == ids[:8]


def test_a_store_names_itself_by_its_own_id_and_place(store_uri: str, tmp_path: Path) -> None:
    first = SQLCatalogStore.from_uri(store_uri)
    try:
        again = SQLCatalogStore.from_uri(store_uri)
        version = first.version()
        assert version is not None and version.store.isalnum()
        assert again.version() == version
        first.add_collection(Collection("c", str(tmp_path), "cmip6"))
        after = again.version()
        assert after is not None and after.store == version.store
        assert after.generation == version.generation + 1 and after.stamp != version.stamp
        again.close()
    finally:
        first.close()
    other = SQLCatalogStore.from_uri(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        assert other.version() is not None
        assert other.version().store != version.store  # type: ignore[union-attr]
    finally:
        other.close()
    memory = SQLCatalogStore.from_uri("sqlite://")
    try:
        assert memory.version() is None  # one process's: nothing to share
    finally:
        memory.close()
