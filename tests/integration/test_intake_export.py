"""The intake-esm export opens in the real intake-esm and answers searches as insitu does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dask
import intake
import pytest
import xarray as xr

from insitu.catalog import Catalog


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Catalog]:
    cat = Catalog(f"sqlite:///{tmp_path_factory.mktemp('intake') / 'c.db'}")
    cat.add_collection("demo", demo_root)
    cat.scan(workers=2)
    yield cat
    cat.close()


@pytest.fixture(scope="module")
def esm(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> object:
    path = catalog.export_intake_esm("demo", tmp_path_factory.mktemp("export"))
    assert path.name == "demo.json" and path.with_suffix(".csv").is_file()
    return intake.open_esm_datastore(str(path))


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"source_id": "MIROC6"},
        {"source_id": "MIROC6", "variable_id": "ta"},
        {"table_id": "day", "institution_id": ["NCAR", "CAS"]},
        {"grid_label": "gr1"},
    ],
)
def test_same_answers(catalog: Catalog, esm: object, query: dict[str, object]) -> None:
    mine = catalog.search(limit=10_000, **query)  # type: ignore[arg-type]
    theirs = esm.search(**query) if query else esm  # type: ignore[attr-defined]
    assert sorted(set(theirs.df["dataset_id"])) == mine.dataset_ids
    n_files = sum(r.n_files for r in mine)
    assert len(theirs.df) == n_files
    assert theirs.nunique()["source_id"] == len(mine.facet_counts["source_id"])


def test_intake_opens_the_same_data(catalog: Catalog, esm: object) -> None:
    sub = esm.search(source_id="MIROC6", table_id="Amon")  # type: ignore[attr-defined]
    # intake-esm opens files on Dask threads, and netCDF4/HDF5 is not thread-safe.
    with dask.config.set(scheduler="synchronous"):
        (opened,) = sub.to_dataset_dict(progressbar=False).values()
    mine = catalog.search(source_id="MIROC6", table_id="Amon").to_xarray()
    assert isinstance(mine, xr.Dataset)
    xr.testing.assert_equal(
        opened["ta"].squeeze(drop=True).reset_coords(drop=True), mine["ta"].reset_coords(drop=True)
    )
