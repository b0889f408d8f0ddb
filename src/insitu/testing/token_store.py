"""Contract tests of the data service's :class:`~insitu.access.tokens.TokenStore`.

One suite for every database the store runs on: subclass :class:`TokenStoreTests` and
provide a ``database_uri`` fixture that yields the SQLAlchemy URL of a fresh, empty
database (a SQLite file, a new PostgreSQL database)::

    class TestTokenStore(TokenStoreTests):
        @pytest.fixture
        def database_uri(self, tmp_path):
            return f"sqlite:///{tmp_path / 'catalog.db'}"
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from insitu.access import TOKEN_PREFIX, USE_RESOLUTION, TokenStore
from insitu.errors import InvalidRequest, NotFound

__all__ = ["TokenStoreTests"]

# The table as the first release made it: no expiry, no last use.
_OLD_TABLE = """
CREATE TABLE access_tokens (
    id VARCHAR(16) NOT NULL PRIMARY KEY,
    name VARCHAR(200) NOT NULL,
    digest VARCHAR(64) NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    collections TEXT NOT NULL,
    created TIMESTAMP NOT NULL,
    revoked TIMESTAMP
)
"""


class TokenStoreTests:
    """What the token store promises, on whichever database ``database_uri`` names."""

    @pytest.fixture
    def database_uri(self) -> str:
        raise NotImplementedError("subclasses provide a fresh, empty database's URL")

    @pytest.fixture
    def store(self, database_uri: str) -> Iterator[TokenStore]:
        s = TokenStore.from_uri(database_uri)
        yield s
        s.close()

    def test_a_created_token_verifies_and_its_secret_is_not_kept(
        self, store: TokenStore, database_uri: str
    ) -> None:
        token, secret = store.create("alice", scopes=["read", "compute"], collections=["a", "b"])
        assert secret.startswith(TOKEN_PREFIX) and token.id in secret
        found = store.verify(secret)
        assert found is not None and found.id == token.id and found.name == "alice"
        assert found.scopes == {"read", "compute"} and found.collections == {"a", "b"}
        assert found.grants("a", "compute") and not found.grants("c")
        assert found.created.tzinfo is not None and found.expires is None
        engine = sa.create_engine(database_uri)
        try:
            with engine.connect() as conn:
                dump = " ".join(
                    str(r) for r in conn.execute(sa.text("SELECT * FROM access_tokens"))
                )
        finally:
            engine.dispose()
        assert secret not in dump and hashlib.sha256(secret.encode()).hexdigest() in dump

    @pytest.mark.parametrize("secret", ["", "nope", f"{TOKEN_PREFIX}0000_forged", "ins_" * 60])
    def test_unknown_secrets_verify_to_none(self, store: TokenStore, secret: str) -> None:
        store.create("someone")
        assert store.verify(secret) is None and store.lookup(secret) is None

    @pytest.mark.parametrize(
        ("kwargs", "words"),
        [
            ({"scopes": ["write"]}, "Unknown token scope"),
            ({"scopes": []}, "at least one scope"),
            ({"collections": []}, "at least one scope"),
            ({"expires_in": timedelta(0)}, "must be positive"),
            ({"expires_in": timedelta(days=-1)}, "must be positive"),
        ],
    )
    def test_bad_tokens_are_refused(
        self, store: TokenStore, kwargs: dict[str, object], words: str
    ) -> None:
        with pytest.raises(InvalidRequest, match=words):
            store.create("x", **kwargs)  # type: ignore[arg-type]
        with pytest.raises(InvalidRequest, match="name"):
            store.create("  ")
        assert store.tokens() == []

    def test_revoke_by_id_or_name(self, store: TokenStore) -> None:
        one, s1 = store.create("ci")
        two, s2 = store.create("ci")
        keep, s3 = store.create("other")
        assert [t.id for t in store.revoke(one.id)] == [one.id]
        assert store.verify(s1) is None and store.verify(s2) is not None
        assert {t.id for t in store.revoke("ci")} == {two.id}
        assert store.verify(s2) is None and store.verify(s3) is not None
        revoked = store.lookup(s1)
        assert revoked is not None and revoked.revoked is not None and not revoked.live
        with pytest.raises(NotFound, match="insitu token list"):
            store.revoke("ci")
        assert [t.id for t in store.tokens()] == [keep.id]
        assert {t.id for t in store.tokens(include_revoked=True)} == {one.id, two.id, keep.id}

    def test_a_token_stops_working_when_it_expires(self, store: TokenStore) -> None:
        brief, secret = store.create("brief", expires_in=timedelta(seconds=1))
        lasting, other = store.create("lasting", expires_in=timedelta(days=30))
        assert brief.expires is not None
        assert timedelta(0) < brief.expires - brief.created <= timedelta(seconds=1)
        assert store.verify(secret) is not None
        time.sleep(1.2)
        assert store.verify(secret) is None
        expired = store.lookup(secret)
        assert expired is not None and expired.expired() and not expired.grants("any")
        assert store.verify(other) is not None
        listed = {t.id: t for t in store.tokens()}
        assert listed[brief.id].expired() and not listed[lasting.id].expired()
        assert listed[lasting.id].expires == store.get(lasting.id).expires  # type: ignore[union-attr]

    def test_last_use_is_recorded_and_never_goes_back(self, store: TokenStore) -> None:
        token, secret = store.create("user")
        assert token.last_used is None and token.use_due()
        when = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
        store.record_use(token.id, when)
        found = store.verify(secret)
        assert found is not None and found.last_used == when
        store.record_use(token.id, when - timedelta(hours=1))  # an older use changes nothing
        assert store.get(token.id).last_used == when  # type: ignore[union-attr]
        assert not found.use_due(when + timedelta(seconds=USE_RESOLUTION / 2))
        assert found.use_due(when + timedelta(seconds=USE_RESOLUTION))
        store.record_use(token.id)  # now: before 2030, so nothing changes either
        assert store.get(token.id).last_used == when  # type: ignore[union-attr]
        assert store.get("nonexistent") is None

    def test_hub_user_grants(self, store: TokenStore) -> None:
        assert store.granted("ann") == frozenset() and store.grants() == {}
        store.grant("ann", ["a", "b"])
        store.grant("ann", ["b", "c"])
        store.grant("bob", ["*"])
        assert store.granted("ann") == {"a", "b", "c"}
        store.ungrant("ann", ["a", "zz"])
        assert store.grants() == {"ann": frozenset({"b", "c"}), "bob": frozenset({"*"})}

    def test_threads_share_one_store(self, store: TokenStore) -> None:
        made = [store.create(f"t{i}") for i in range(4)]
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for _ in range(20):
                    token, secret = made[i % len(made)]
                    found = store.verify(secret)
                    assert found is not None and found.id == token.id
                    store.record_use(token.id)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert all(t.last_used is not None for t in store.tokens())

    def test_a_table_of_the_first_release_is_upgraded_in_place(self, database_uri: str) -> None:
        secret = f"{TOKEN_PREFIX}0123456789ab_oldsecret"
        engine = sa.create_engine(database_uri)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(_OLD_TABLE))
                conn.execute(
                    sa.text(
                        "INSERT INTO access_tokens (id, name, digest, scopes, collections, "
                        "created) VALUES ('0123456789ab', 'old', :digest, 'read', 'demo', :now)"
                    ),
                    {"digest": hashlib.sha256(secret.encode()).hexdigest(), "now": datetime.now()},
                )
        finally:
            engine.dispose()
        # Two processes opening it at once: both work, the columns are added once.
        stores = [TokenStore.from_uri(database_uri) for _ in range(2)]
        try:
            results: list[object] = []
            threads = [
                threading.Thread(target=lambda s=s: results.append(s.verify(secret)))
                for s in stores
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(results) == 2 and all(r is not None for r in results)
            old = stores[0].verify(secret)
            assert old is not None and old.grants("demo") and old.expires is None
            stores[0].record_use(old.id)
            assert stores[1].get(old.id).last_used is not None  # type: ignore[union-attr]
            new, new_secret = stores[1].create("new", expires_in=timedelta(days=1))
            assert stores[0].verify(new_secret) is not None and new.expires is not None
        finally:
            for s in stores:
                s.close()
