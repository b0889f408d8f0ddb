"""The store contract suite against SQLite and a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from insitu.catalog._sql import SQLCatalogStore
from insitu.testing.catalog_store import CatalogStoreTests


class TestSQLCatalogStore(CatalogStoreTests):
    @pytest.fixture
    def store(self, store_uri: str) -> Iterator[SQLCatalogStore]:  # type: ignore[override]
        s = SQLCatalogStore.from_uri(store_uri)
        yield s
        s.close()
