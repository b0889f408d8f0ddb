"""The catalog on the real CMIP6 sample archive, checked against answers computed
independently from the file list (path splitting and xarray), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cftime
import numpy as np
import pytest
import xarray as xr

from insitu.catalog import Catalog, FileStatus

_CFTIME = xr.coders.CFDatetimeCoder(use_cftime=True)

CMIP6_DIR_FACETS = [
    "mip_era",
    "activity_id",
    "institution_id",
    "source_id",
    "experiment_id",
    "member_id",
    "table_id",
    "variable_id",
    "grid_label",
    "version",
]


def _expected(root: Path) -> dict[str, dict[str, object]]:
    """Dataset id -> facets, files, time range, computed from the file list with xarray."""
    out: dict[str, dict[str, object]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if not name.endswith(".nc"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            parts = rel.split(os.sep)[:-1]
            ds_id = ".".join(parts)
            entry = out.setdefault(
                ds_id,
                {
                    "facets": dict(zip(CMIP6_DIR_FACETS, parts, strict=True)),
                    "files": [],
                    "starts": [],
                    "ends": [],
                },
            )
            entry["files"].append(rel)  # type: ignore[attr-defined]
            with xr.open_dataset(os.path.join(dirpath, name), decode_times=_CFTIME) as ds:
                t = ds["time"].values
                entry["starts"].append(min(t))  # type: ignore[attr-defined]
                entry["ends"].append(max(t))  # type: ignore[attr-defined]
    return out


def _iso(t: cftime.datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"


@pytest.fixture(scope="module")
def expected(demo_root: Path) -> dict[str, dict[str, object]]:
    return _expected(demo_root)


@pytest.fixture(scope="module")
def catalog(module_store_uri: str, demo_root: Path) -> Iterator[Catalog]:
    cat = Catalog(module_store_uri)
    cat.add_collection("demo", demo_root, template="cmip6")
    (report,) = cat.scan(workers=2)
    assert report.problems == {}
    yield cat
    cat.close()


def test_every_dataset_and_file_is_found(
    catalog: Catalog, expected: dict[str, dict[str, object]]
) -> None:
    assert len(expected) > 70
    result = catalog.search(limit=1000)
    assert result.total == len(expected)
    assert sorted(result.dataset_ids) == sorted(expected)
    for record in result:
        exp = expected[record.dataset_id]
        assert {k: v[0] for k, v in record.facets.items()} == exp["facets"]
        assert record.version == exp["facets"]["version"]  # type: ignore[index]
        assert record.latest
        files = catalog.files(record.dataset_id)
        assert sorted(f.path for f in files) == sorted(exp["files"])  # type: ignore[call-overload]
        assert record.n_files == len(files)
        assert record.time_start == _iso(min(exp["starts"]))  # type: ignore[call-overload]
        assert record.time_end == _iso(max(exp["ends"]))  # type: ignore[call-overload]
        assert all(f.status is FileStatus.OK for f in files)
        assert [v.name for v in record.variables][:1] == ["ta"]
        assert record.variables[0].attrs["units"] == "K"


def test_file_time_ranges(catalog: Catalog, demo_root: Path) -> None:
    record = catalog.search(source_id="MIROC6", table_id="Amon").results[0]
    located = catalog.locate(record.dataset_id)
    assert [x.record for x in located] == catalog.files(record.dataset_id)
    for path, f in ((x.path, x.record) for x in located):
        assert path == str(demo_root.resolve() / f.path)
        with xr.open_dataset(path, decode_times=_CFTIME) as ds:
            assert f.time_start == _iso(ds.time.values[0])
            assert f.time_end == _iso(ds.time.values[-1])
            assert f.n_times == ds.sizes["time"]
            assert f.calendar == ds.time.encoding["calendar"]
        assert f.bbox is not None


@pytest.mark.parametrize(
    "constraints",
    [
        {"source_id": "MIROC6"},
        {"model": "MIROC6", "variable": "ta"},
        {"table_id": "day"},
        {"table_id": ["day", "Amon"], "institution_id": "NCAR"},
        {"source_id": "CESM2*"},
        {"source_id": "EC-Earth3-?eg*", "table_id": "day"},
        {"grid_label": "gr1"},
        {"experiment": "historical", "grid": "gr"},
        {"source_id": "no-such-model"},
    ],
)
def test_search_and_facet_counts(
    catalog: Catalog,
    expected: dict[str, dict[str, object]],
    constraints: dict[str, str | list[str]],
) -> None:
    from fnmatch import fnmatchcase

    aliases = {
        "model": "source_id",
        "variable": "variable_id",
        "experiment": "experiment_id",
        "grid": "grid_label",
    }

    def matches(facets: dict[str, str]) -> bool:
        for key, want in constraints.items():
            values = [want] if isinstance(want, str) else want
            if not any(fnmatchcase(facets[aliases.get(key, key)], v) for v in values):
                return False
        return True

    hits = sorted(d for d, e in expected.items() if matches(e["facets"]))  # type: ignore[arg-type]
    result = catalog.search(limit=1000, **constraints)
    assert result.total == len(hits)
    assert result.dataset_ids == hits
    for facet in CMIP6_DIR_FACETS:
        want = Counter(expected[d]["facets"][facet] for d in hits)  # type: ignore[index]
        assert result.facet_counts[facet] == dict(want)


def test_pagination_and_sorting(catalog: Catalog) -> None:
    everything = catalog.search(limit=1000).dataset_ids
    assert everything == sorted(everything)
    pages = [catalog.search(limit=10, offset=o).dataset_ids for o in range(0, 80, 10)]
    assert [d for p in pages for d in p] == everything
    assert catalog.search(limit=10, offset=1000).results == []
    by_size = catalog.search(limit=1000, sort="-size").results
    assert [r.size for r in by_size] == sorted((r.size for r in by_size), reverse=True)


def test_time_overlap(catalog: Catalog, expected: dict[str, dict[str, object]]) -> None:
    lo, hi = "1900-06", "1900-07"
    result = catalog.search(time=(lo, hi), limit=1000)
    want = sorted(
        d
        for d, e in expected.items()
        if _iso(min(e["starts"])) <= "1900-07-31T23:59:59"  # type: ignore[call-overload]
        and _iso(max(e["ends"])) >= "1900-06-01T00:00:00"  # type: ignore[call-overload]
    )
    assert result.dataset_ids == want
    assert 0 < result.total < len(expected)


def test_free_text(catalog: Catalog) -> None:
    result = catalog.search("miroc6 air_temperature", limit=1000)
    assert result.total == 2
    assert all("MIROC6" in d for d in result.dataset_ids)
    assert catalog.search("no such words anywhere").total == 0


def test_bbox(catalog: Catalog) -> None:
    everything = catalog.search(limit=1000)
    south_pole = catalog.search(bbox=(-180, -90, 180, -80), limit=1000)
    north = catalog.search(bbox="0,60,360,90", limit=1000)
    for r in south_pole:
        assert r.bbox is not None and r.bbox[1] <= -80
    for r in north:
        assert r.bbox is not None and r.bbox[3] >= 60
    assert south_pole.total + north.total <= everything.total + north.total


def test_to_xarray_equals_open_mfdataset(
    catalog: Catalog, demo_root: Path, module_store_uri: str
) -> None:
    """Every dataset opens lazily and equals xarray.open_mfdataset on the same files.

    Opening does not depend on the store, so PostgreSQL checks a sample only.
    """
    records = catalog.search(limit=1000).results
    if module_store_uri.startswith("postgresql"):
        records = records[::8]
    for record in records:
        ds = catalog.open_dataset(record.dataset_id)
        assert ds["ta"].chunks is not None  # lazy, Dask-backed
        paths = [demo_root / f.path for f in catalog.files(record.dataset_id)]
        with xr.open_mfdataset(
            paths, combine="by_coords", data_vars="minimal", coords="minimal", compat="override"
        ) as ref:
            xr.testing.assert_identical(ds["ta"], ref["ta"])
            xr.testing.assert_equal(ds.drop_attrs(), ref.drop_attrs())


def test_opening_reads_no_values_and_decodes_bounds_as_xarray(
    catalog: Catalog, demo_root: Path
) -> None:
    """Opening runs no Dask computation (xarray alone would read the first and last time
    bound, i.e. two files, and through the cluster when there is one) and still gives the
    time bounds xarray gives: values, type, attributes and encoding."""
    from dask.callbacks import Callback

    computations: list[object] = []

    class Count(Callback):  # type: ignore[misc]
        def _start(self, dsk: object) -> None:
            computations.append(dsk)

    records = catalog.search(table_id="Amon", limit=1000).results
    by_calendar: dict[str, str] = {}
    for r in records:
        f = catalog.files(r.dataset_id)[0]
        by_calendar.setdefault(f.calendar or "standard", r.dataset_id)
    assert len(by_calendar) >= 2, by_calendar  # cftime dates and numpy datetimes both
    for dataset_id in by_calendar.values():
        with Count():
            ds = catalog.open_dataset(dataset_id)
        assert computations == [], dataset_id
        paths = [demo_root / f.path for f in catalog.files(dataset_id)]
        with xr.open_mfdataset(
            paths, combine="by_coords", data_vars="minimal", coords="minimal", compat="override"
        ) as ref:
            bounds = ref["time"].attrs["bounds"]
            assert set(ds.variables) == set(ref.variables)
            xr.testing.assert_identical(ds[bounds].load(), ref[bounds].load())
            assert ds[bounds].encoding["units"] == ref[bounds].encoding["units"]
            assert ds[bounds].encoding.get("calendar") == ref[bounds].encoding.get("calendar")
            assert ds[bounds].encoding["dtype"] == ref[bounds].encoding["dtype"]
            assert ds["time"].attrs == ref["time"].attrs


def test_open_time_slice_touches_only_overlapping_files(catalog: Catalog, demo_root: Path) -> None:
    (record,) = catalog.search(source_id="AWI-CM-1-1-MR", table_id="Amon").results
    assert record.n_files == 65
    ds = catalog.open_dataset(record.dataset_id, time=slice("2000-01", "2000-12"))
    assert ds["ta"].data.npartitions <= 2  # the files covering 2000, not all 65
    assert str(ds.time.values[0])[:7] == "2000-01"
    assert str(ds.time.values[-1])[:7] == "2000-12"
    full = catalog.open_dataset(record.dataset_id)
    np.testing.assert_array_equal(
        ds["ta"].values, full["ta"].sel(time=slice("2000-01", "2000-12")).values
    )


def test_search_result_opens_a_dict_for_several(catalog: Catalog) -> None:
    result = catalog.search(source_id="MIROC6")
    opened = result.to_xarray()
    assert isinstance(opened, dict)
    assert sorted(opened) == sorted(result.dataset_ids)
    one = catalog.search(source_id="MIROC6", table_id="Amon").to_xarray()
    assert isinstance(one, xr.Dataset)
    assert one.attrs["source_id"] == "MIROC6"


def test_a_repeated_search_is_answered_from_the_index_memo(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index remembers answers: the same search (facets in any order) is not worked out
    again, what a caller does to an answer cannot change the next one, and the memory is
    bounded."""
    from insitu.catalog import index as index_module

    first = catalog.search(limit=5, source_id="MIROC6", variable_id="ta")
    index = catalog.index()
    computed: list[object] = []
    real = index._select
    monkeypatch.setattr(index, "_select", lambda q: computed.append(q) or real(q))
    first.facet_counts["source_id"]["MIROC6"] = -1  # a caller's own change
    again = catalog.search(limit=5, variable_id="ta", source_id="MIROC6")
    assert computed == []  # from the memo
    assert again.dataset_ids == first.dataset_ids and again.total == first.total
    assert again.facet_counts["source_id"]["MIROC6"] == again.total  # not the -1
    catalog.search(limit=5, source_id="MIROC6", variable_id="tas")
    assert len(computed) == 1  # another search is worked out

    budget = 16 * 1024  # room for a few answers
    monkeypatch.setattr(index_module, "MEMO_BYTES", budget)
    for model in ("MIROC6", "CanESM5", "MPI-ESM1-2-LR", "EC-Earth3", "ACCESS-ESM1-5", "*"):
        catalog.search(source_id=model, sort="-n_files")
    assert 0 < index._memo_bytes <= budget  # the oldest answers were let go
    assert sum(size for _, size in index._memo.values()) == index._memo_bytes
