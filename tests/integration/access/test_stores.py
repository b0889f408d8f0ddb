"""The token store and the job store: one contract suite each, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from insitu.testing import JobStoreTests, TokenStoreTests


class TestTokenStore(TokenStoreTests):
    @pytest.fixture
    def database_uri(self, store_uri: str) -> str:
        return store_uri


class TestJobStore(JobStoreTests):
    @pytest.fixture
    def database_uri(self, store_uri: str) -> str:
        return store_uri
