"""Contract tests every :class:`~insitu.catalog.store.CatalogStore` must pass.

Subclass :class:`CatalogStoreTests` and provide a ``store`` fixture that yields a fresh,
empty store::

    class TestMyStore(CatalogStoreTests):
        @pytest.fixture
        def store(self):
            s = MyStore(...)
            yield s
            s.close()
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from insitu.catalog import (
    CatalogStore,
    Collection,
    DatasetRecord,
    FileRecord,
    FileStatus,
    VariableInfo,
)
from insitu.errors import CollectionExists, CollectionNotFound, ScanInProgress

__all__ = ["CatalogStoreTests", "sample_dataset", "sample_file"]


def sample_file(path: str = "a/v1/x_1.nc", dataset: str = "a.v1", **kw: object) -> FileRecord:
    """A fully populated file record for store tests."""
    base = FileRecord(
        collection="c",
        path=path,
        size=1234,
        mtime_ns=1_700_000_000_123_456_789,
        status=FileStatus.OK,
        reason="",
        dataset_id=dataset,
        master_id=dataset.rsplit(".", 1)[0],
        version=dataset.rsplit(".", 1)[-1],
        facets={"model": "M", "version": "v1"},
        data_model="NETCDF4",
        dims={"time": 2, "lat": 3},
        variables=(
            VariableInfo(
                "tas",
                ("time", "lat"),
                (2, 3),
                "float32",
                {"units": "K", "_FillValue": float("nan"), "scale": [1, 2]},
            ),
        ),
        global_attrs={"title": "t", "n": 3, "f": 1.5},
        time_var="time",
        time_units="days since 1850-01-01",
        calendar="noleap",
        time_start="1850-01-16T12:00:00",
        time_end="1850-02-15T00:00:00",
        tkey_start=18500116120000,
        tkey_end=18500215000000,
        n_times=2,
        time_values=b"\x00" * 8 + b"\x01" * 8,
        bbox=(-180.0, -90.0, 180.0, 90.0),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def sample_dataset(dataset: str = "a.v1", latest: bool = True, **kw: object) -> DatasetRecord:
    """A fully populated dataset record for store tests."""
    base = DatasetRecord(
        dataset_id=dataset,
        collection="c",
        master_id=dataset.rsplit(".", 1)[0],
        version=dataset.rsplit(".", 1)[-1],
        latest=latest,
        facets={"model": ["M"], "variable": ["tas", "pr"]},
        n_files=1,
        size=1234,
        variables=(VariableInfo("tas", ("time",), (2,), "float32", {"units": "K"}),),
        attrs={"title": "t"},
        calendar="noleap",
        time_start="1850-01-16T12:00:00",
        time_end="1850-02-15T00:00:00",
        tkey_start=18500116120000,
        tkey_end=18500215000000,
        bbox=(0.0, -10.0, 10.0, 10.0),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


class CatalogStoreTests:
    """The behaviour the catalog relies on, for any store."""

    @pytest.fixture
    def store(self) -> CatalogStore:
        raise NotImplementedError("provide a 'store' fixture yielding a fresh store")

    @pytest.fixture
    def with_collection(self, store: CatalogStore) -> CatalogStore:
        store.add_collection(Collection("c", "/data/c", "cmip6"))
        return store

    def test_is_a_catalog_store(self, store: CatalogStore) -> None:
        assert isinstance(store, CatalogStore)

    def test_collections_roundtrip(self, store: CatalogStore) -> None:
        store.add_collection(Collection("b", "/data/b", "cmip5", public=True))
        store.add_collection(Collection("a", "/data/a", "cmip6"))
        assert store.collections() == [
            Collection("a", "/data/a", "cmip6", False),
            Collection("b", "/data/b", "cmip5", True),
        ]

    def test_duplicate_collection_is_refused(self, with_collection: CatalogStore) -> None:
        with pytest.raises(CollectionExists, match="'c' is already registered"):
            with_collection.add_collection(Collection("c", "/elsewhere", "cmip6"))

    def test_set_public(self, with_collection: CatalogStore) -> None:
        with_collection.set_public("c", True)
        assert with_collection.collections()[0].public
        with pytest.raises(CollectionNotFound):
            with_collection.set_public("nope", True)

    def test_remove_collection_removes_its_records(self, with_collection: CatalogStore) -> None:
        with_collection.write("c", files=[sample_file()], datasets=[sample_dataset()])
        with_collection.remove_collection("c")
        assert with_collection.collections() == []
        assert with_collection.files() == []
        assert with_collection.datasets() == []
        with pytest.raises(CollectionNotFound, match="'c' is not registered"):
            with_collection.remove_collection("c")

    def test_file_roundtrip_keeps_every_field(self, with_collection: CatalogStore) -> None:
        f = sample_file()
        with_collection.write("c", files=[f])
        (got,) = with_collection.files("c")
        nan_attr = got.variables[0].attrs.pop("_FillValue")
        assert math.isnan(nan_attr)
        expected_var = replace(f.variables[0], attrs={"units": "K", "scale": [1, 2]})
        assert got == replace(f, variables=(expected_var,))

    def test_file_states(self, with_collection: CatalogStore) -> None:
        bad = sample_file("b.nc", status=FileStatus.UNREADABLE, reason="corrupt", dataset_id=None)
        with_collection.write("c", files=[sample_file(), bad])
        states = with_collection.file_states("c")
        assert states["a/v1/x_1.nc"].size == 1234
        assert states["a/v1/x_1.nc"].mtime_ns == 1_700_000_000_123_456_789
        assert states["a/v1/x_1.nc"].dataset_id == "a.v1"
        assert states["b.nc"].status is FileStatus.UNREADABLE
        assert with_collection.file_states("other") == {}

    def test_write_replaces_and_removes(self, with_collection: CatalogStore) -> None:
        with_collection.write("c", files=[sample_file("x.nc"), sample_file("y.nc")])
        with_collection.write("c", files=[sample_file("x.nc", size=99)], removed_paths=["y.nc"])
        files = with_collection.files("c")
        assert [(f.path, f.size) for f in files] == [("x.nc", 99)]

    def test_problems_only(self, with_collection: CatalogStore) -> None:
        with_collection.write(
            "c",
            files=[
                sample_file("ok.nc"),
                sample_file("note.nc", reason="no time axis"),
                sample_file("bad.nc", status=FileStatus.BAD_PATH, reason="depth", dataset_id=None),
            ],
        )
        got = {f.path for f in with_collection.files("c", problems_only=True)}
        assert got == {"note.nc", "bad.nc"}

    def test_files_by_dataset(self, with_collection: CatalogStore) -> None:
        with_collection.write(
            "c",
            files=[
                sample_file("1.nc", "a.v1"),
                sample_file("2.nc", "b.v1"),
                sample_file("3.nc", "a.v1"),
            ],
        )
        got = with_collection.files("c", dataset_ids=["a.v1"])
        assert [f.path for f in got] == ["1.nc", "3.nc"]

    def test_datasets_filters(self, with_collection: CatalogStore) -> None:
        with_collection.write(
            "c",
            datasets=[
                sample_dataset("a.v1", latest=False),
                sample_dataset("a.v2"),
                sample_dataset("b.v1"),
            ],
        )
        assert [d.dataset_id for d in with_collection.datasets()] == ["a.v1", "a.v2", "b.v1"]
        assert [d.dataset_id for d in with_collection.datasets(dataset_ids=["b.v1"])] == ["b.v1"]
        got = with_collection.datasets("c", master_ids=["a"])
        assert [(d.dataset_id, d.latest) for d in got] == [("a.v1", False), ("a.v2", True)]
        assert with_collection.datasets("other") == []

    def test_dataset_roundtrip(self, with_collection: CatalogStore) -> None:
        d = sample_dataset()
        with_collection.write("c", datasets=[d])
        assert with_collection.datasets("c") == [d]

    def test_write_replaces_datasets(self, with_collection: CatalogStore) -> None:
        with_collection.write("c", datasets=[sample_dataset("a.v1"), sample_dataset("b.v1")])
        with_collection.write(
            "c", datasets=[sample_dataset("a.v1", n_files=7)], removed_datasets=["b.v1"]
        )
        assert [(d.dataset_id, d.n_files) for d in with_collection.datasets()] == [("a.v1", 7)]

    def test_index_rows_hold_what_the_search_index_needs(
        self, with_collection: CatalogStore
    ) -> None:
        d = sample_dataset("b.v1")
        with_collection.write("c", datasets=[d, sample_dataset("a.v1", latest=False)])
        rows = with_collection.index_rows()
        assert [(r.dataset_id, r.latest) for r in rows] == [("a.v1", False), ("b.v1", True)]
        assert len({r.row for r in rows}) == 2
        got = rows[1]
        assert (got.collection, got.version, got.facets, got.n_files, got.size) == (
            d.collection,
            d.version,
            d.facets,
            d.n_files,
            d.size,
        )
        assert (got.tkey_start, got.tkey_end, got.bbox) == (d.tkey_start, d.tkey_end, d.bbox)

    def test_text_matches_words_and_word_beginnings(self, with_collection: CatalogStore) -> None:
        air = VariableInfo("tas", ("time",), (2,), "f4", {"standard_name": "air_temperature"})
        sea = VariableInfo("tos", ("time",), (2,), "f4", {"long_name": "Sea Surface Temp."})
        with_collection.write(
            "c",
            datasets=[
                sample_dataset("CMIP6.MPI-ESM1-2-LR.a.v1", variables=(air,)),
                sample_dataset("CMIP6.CESM2.b.v1", variables=(sea,), attrs={"n": 42}),
            ],
        )

        def found(*phrases: list[str]) -> list[str]:
            rows = {r.row: r.dataset_id for r in with_collection.index_rows()}
            return sorted(rows[i] for i in with_collection.text_matches(list(phrases)))

        both = ["CMIP6.CESM2.b.v1", "CMIP6.MPI-ESM1-2-LR.a.v1"]
        assert found(["cmip6"]) == both
        assert found(["air", "temperature"]) == ["CMIP6.MPI-ESM1-2-LR.a.v1"]
        assert found(["air", "temp"]) == ["CMIP6.MPI-ESM1-2-LR.a.v1"]  # a word's beginning
        assert found(["air"], ["esm1", "2"]) == ["CMIP6.MPI-ESM1-2-LR.a.v1"]
        assert found(["temp"]) == both
        assert found(["sea", "surface"], ["42"]) == ["CMIP6.CESM2.b.v1"]
        assert found(["perature"]) == []  # not any substring
        assert found(["temperature", "air"]) == []  # words in their order
        # kept in step with every write: replaced, removed, collection forgotten
        with_collection.write(
            "c",
            datasets=[sample_dataset("CMIP6.CESM2.b.v1", variables=(air,))],
            removed_datasets=["CMIP6.MPI-ESM1-2-LR.a.v1"],
        )
        assert found(["air"]) == ["CMIP6.CESM2.b.v1"]
        assert found(["sea"]) == []
        with_collection.remove_collection("c")
        assert found(["cmip6"]) == []

    def test_generation_grows_with_every_write(self, with_collection: CatalogStore) -> None:
        g0 = with_collection.generation()
        with_collection.write("c", files=[sample_file()])
        g1 = with_collection.generation()
        with_collection.set_public("c", True)
        assert g0 < g1 < with_collection.generation()

    def test_stats(self, with_collection: CatalogStore) -> None:
        with_collection.write(
            "c",
            files=[
                sample_file("1.nc"),
                sample_file("2.nc", status=FileStatus.DENIED, dataset_id=None),
            ],
            datasets=[
                sample_dataset("a.v1", latest=False, size=10),
                sample_dataset("a.v2", size=5),
            ],
        )
        s = with_collection.stats()["c"]
        assert (s.files, s.problems, s.datasets, s.latest_datasets, s.size) == (2, 1, 2, 1, 15)

    def test_large_batches(self, with_collection: CatalogStore) -> None:
        files = [sample_file(f"f{i:05d}.nc", f"d{i % 700}.v1") for i in range(2100)]
        with_collection.write("c", files=files)
        got = with_collection.files("c", dataset_ids=[f"d{i}.v1" for i in range(700)])
        assert len(got) == 2100
        with_collection.write("c", removed_paths=[f.path for f in files[:1500]])
        assert len(with_collection.file_states("c")) == 600

    def test_one_scan_of_a_collection_at_a_time(self, with_collection: CatalogStore) -> None:
        with with_collection.scan_lock("c"):
            with (
                pytest.raises(ScanInProgress, match="'c' is being scanned"),
                with_collection.scan_lock("c"),
            ):
                pass
            with with_collection.scan_lock("other"):  # another collection is free
                pass
        with with_collection.scan_lock("c"):  # released with its holder
            pass
