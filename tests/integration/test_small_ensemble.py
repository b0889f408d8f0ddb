"""Many small datasets: the catalog asked once for all, the batch path
(insitu.compute.batch) on the demo archive, and a dataset it gives back to the per-dataset
path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr
from distributed import get_task_stream

from insitu.catalog import Catalog
from insitu.compute import NoParams, cluster, get_operation, run
from insitu.compute.batch import small_dataset, small_field_means
from insitu.errors import DatasetNotFound
from insitu.settings import Settings


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Catalog]:
    tmp = tmp_path_factory.mktemp("small")
    cat = Catalog(Settings.load(data_dir=tmp, catalog={"uri": f"sqlite:///{tmp / 'c.db'}"}))
    cat.add_collection("demo", demo_root)
    cat.scan(workers=2)
    yield cat
    cat.close()


def test_the_catalog_answers_for_many_datasets_at_once(demo: Catalog) -> None:
    ids = demo.search(table_id="Amon", limit=1000).all_ids[::-1]  # any order is kept
    assert [r.dataset_id for r in demo.datasets(ids)] == ids
    assert demo.locate_all(ids) == {i: demo.locate(i) for i in ids}
    with pytest.raises(DatasetNotFound, match=r"CMIP6\.nothing"):
        demo.datasets([ids[0], "CMIP6.nothing"])


def test_the_batch_path_gives_what_xarray_gives_for_every_demo_dataset(demo: Catalog) -> None:
    ids = demo.search(table_id="Amon", limit=1000).all_ids
    jobs = [small_dataset(i, "ta", demo.locate(i), direct=True) for i in ids]
    assert all(j is not None for j in jobs)
    results = small_field_means([j for j in jobs if j is not None], 64 << 20)
    op = get_operation("field_mean")
    for dataset_id, got in zip(ids, results, strict=True):
        assert got is not None, dataset_id
        want = op(demo.open_dataset(dataset_id), "ta", NoParams())["ta"].compute()
        # The same values (summed in another order: one float32 ulp), type, coordinates
        # (the time axis as decoded, with its index) and attributes.
        xr.testing.assert_allclose(got["ta"], want, rtol=2.5e-7, atol=0)
        assert got["ta"].dtype == want.dtype
        assert got["ta"].attrs == want.attrs, dataset_id
        xr.testing.assert_identical(got["ta"].coords.to_dataset(), want.coords.to_dataset())


def test_an_ensemble_of_small_datasets_runs_in_fewer_tasks_than_datasets(
    demo: Catalog, tmp_path: Path
) -> None:
    ids = demo.search(table_id="Amon", limit=1000).all_ids
    out = tmp_path / "e.nc"
    with (
        cluster(demo.settings, backend="local", workers=2) as client,
        get_task_stream(client) as stream,
    ):
        res = run(demo, "field_mean", ids, client=client, cache=False, out=out)
    # Before the batch path: about 22,000 tasks (a few hundred per dataset once aligned).
    assert 0 < len(stream.data) < len(ids), len(stream.data)
    ens = res.open()["ta"]
    assert ens["dataset"].values.tolist() == ids
    assert ens.notnull().any("time").all()  # every dataset has values


def _dataset(root: Path, model: str, dims: tuple[str, str, str]) -> None:
    """A one-file Amon tas dataset with its variable stored along ``dims``."""
    d = root / f"CMIP6/CMIP/X/{model}/historical/r1i1p1f1/Amon/tas/gn/v1"
    d.mkdir(parents=True)
    with netCDF4.Dataset(
        d / f"tas_Amon_{model}_historical_r1i1p1f1_gn_200001-200012.nc", "w"
    ) as nc:
        sizes = {"time": 12, "lat": 4, "lon": 8}
        for name, n in sizes.items():
            nc.createDimension(name, n)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar, t.axis = "days since 2000-01-01", "noleap", "T"
        t[:] = np.arange(12) * 30.0 + 15
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat.units, lat.standard_name = "degrees_north", "latitude"
        lat[:] = [-60.0, -20.0, 20.0, 60.0]
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.units, lon.standard_name = "degrees_east", "longitude"
        lon[:] = np.arange(8) * 45.0
        v = nc.createVariable("tas", "f4", dims, fill_value=np.float32(1e20))
        v.units, v.standard_name = "K", "air_temperature"
        values = 280 + np.arange(12 * 4 * 8, dtype="f4").reshape(12, 4, 8) / 100
        v[:] = np.moveaxis(values, [0, 1, 2], [dims.index(d) for d in ("time", "lat", "lon")])


def test_a_dataset_the_batch_path_cannot_take_goes_on_its_own_graph(tmp_path: Path) -> None:
    root = tmp_path / "arch"
    _dataset(root, "A", ("time", "lat", "lon"))
    _dataset(root, "B", ("time", "lon", "lat"))  # longitude before latitude
    cat = Catalog(Settings.load(data_dir=tmp_path, catalog={"uri": f"sqlite:///{tmp_path}/c.db"}))
    try:
        cat.add_collection("x", root)
        cat.scan(workers=1)
        ids = cat.search(limit=10).all_ids
        back = small_field_means(
            [small_dataset(i, "tas", cat.locate(i), True) for i in ids], 1 << 20
        )
        assert [r is None for r in back] == [False, True]
        ens = run(cat, "field_mean", ids, cache=False).open()["tas"]
        # Both models hold the same values: their field means agree.
        np.testing.assert_allclose(ens.sel(dataset=ids[1]), ens.sel(dataset=ids[0]), rtol=1e-6)
        assert not np.isnan(ens.values).any()
    finally:
        cat.close()
