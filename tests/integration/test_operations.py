"""Every operation on the real demo archive, checked against independent references.

The references are CDO (``timmean``, ``fldmean``, ``ymonmean``, ``zonmean``, ``monmean`` and
friends, run on the same files by :mod:`tests.integration.cdo_reference`) and plain numpy on
the files read with netCDF4 and cftime alone. The datasets cover every calendar of the
archive (proleptic_gregorian, gregorian, 365_day, julian, 360_day), multi-file datasets
(MIROC6 and IITM-ESM: 7 files; BCC-CSM2-MR: 3 files that count time from 3 different dates)
and daily data. Then: the multi-model ensemble, provenance and CF attributes, the results
cache, and errors.

Tolerances, and why
-------------------
insitu sums in float64 and casts the result back to the input's float32; CDO also
accumulates in double and writes float32 (the input's type). Both answers are therefore
float32 roundings of nearly the same double, and differ by at most an ulp or two: about
1.5e-5 to 3e-5 K at 250 K (measured: at most 3.05e-5 K).

* CDO comparisons (time_mean, climatology, zonal_mean, resample): ``rtol=1e-6, atol=1e-4`` K
  (1e-6 relative is about 2.5e-4 K at 250 K, well above float32 rounding and far below
  any real error, such as a missing or doubled record: ~0.1 K).
* field_mean vs ``cdo fldmean``: ``atol=1e-4`` K and no rtol. CDO takes cell areas from the
  lat/lon bounds, exactly as insitu does (measured: within 3.05e-5 K). A tolerance as
  loose as 1e-3 K would not tell cos(lat) weights from bounds weights on these near-pole
  grids (they give means 5e-3 to 1e-2 K apart on 4 of the 5 datasets), so the test is kept
  tight; it also checks that the unweighted mean is more than 0.1 K off.
* numpy comparisons (anomaly, seasonal climatology, quantile): ``rtol=1e-6, atol=1e-5`` K,
  float32 rounding of a float64 answer computed the same way.
* trend vs ``np.polyfit``: ``rtol=1e-6, atol=1e-9`` K/year; both are float64 least squares
  (insitu by sums, numpy by a QR solve), so they differ by the float32 cast (rel. 6e-8;
  the measured agreement is within 1e-7). Time is in years of the calendar's mean length:
  360, 365, 365.25 (julian) or 365.2425 days; a wrong year length shows as a relative
  error of (difference / length), e.g. 2e-5 for 365.2425 instead of 365.25.

CDO 2.1.1 does not know the julian calendar ("calendar >julian< unsupported!") and decodes
it as the standard one: a day off after 1900. Its monthly groups (mid-month time stamps) are
still right, so IITM-ESM is compared with CDO, but dates are checked against the files read
with cftime, and daily julian data is not resampled with CDO.

No file of the archive sets ``_FillValue``: missing values (below ground at 1000 hPa) hold
the netCDF default fill 9.96921e36 in 30 of its 76 datasets, which CDO takes as data. The
Amon datasets compared with CDO have none; the daily KACE-1-0-G and MIROC6 have some, and
the (month, point) pairs that hold them are left out of the CDO comparison. How insitu
treats them is checked on its own
(``test_unflagged_default_fill_values_are_skipped_as_missing``). IPSL-CM6A-LR has no
lat/lon bounds (CDO makes bounds, insitu falls back to cos(lat)) and is not used with CDO.
The ensemble test includes every Amon dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import netCDF4
import numpy as np
import pytest
import xarray as xr

import insitu
from insitu.catalog import Catalog
from insitu.compute import OPERATIONS, run
from insitu.errors import ComputeError, DataError, IncompatibleInputs, InvalidRequest
from insitu.settings import Settings
from tests.integration.cdo_reference import DAYS_PER_YEAR, SEASON, Series, cdo, read, ymd


class Tol(NamedTuple):
    """Relative and absolute tolerance (K, or K/year for trends)."""

    rtol: float
    atol: float


# See the module docstring.
CDO_TOL = Tol(rtol=1e-6, atol=1e-4)
FLDMEAN_TOL = Tol(rtol=0.0, atol=1e-4)
NUMPY_TOL = Tol(rtol=1e-6, atol=1e-5)
TREND_TOL = Tol(rtol=1e-6, atol=1e-9)

# source_id -> calendar of its Amon dataset; multi-file ones are marked in the docstring.
AMON = {
    "MPI-ESM1-2-LR": "proleptic_gregorian",  # 4 files
    "MIROC6": "gregorian",  # 7 files
    "BCC-CSM2-MR": "365_day",  # 3 files, 3 time units
    "IITM-ESM": "julian",  # 7 files
    "KACE-1-0-G": "360_day",  # 1 file, 1850-2014
}
DAY = {
    "KACE-1-0-G": "360_day",  # 1 file, 15 years; holds unflagged default fills
    "BCC-CSM2-MR": "365_day",  # 2 files, 2 time units
    "MIROC6": "gregorian",  # 3 files; holds unflagged default fills
    "MPI-ESM1-2-HR": "proleptic_gregorian",  # 2x3 grid
}


class Demo:
    """The scanned demo archive, with its own results cache."""

    def __init__(self, cat: Catalog, root: Path) -> None:
        self.cat = cat
        self.root = root

    def id(self, source_id: str, table_id: str = "Amon") -> str:
        (dataset_id,) = self.cat.search(source_id=source_id, table_id=table_id).all_ids
        return dataset_id

    def files(self, dataset_id: str) -> list[Path]:
        return [self.root / f.path for f in self.cat.files(dataset_id)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, demo_root: Path) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("ops")
    cat = Catalog(Settings.load(data_dir=tmp, catalog={"uri": f"sqlite:///{tmp / 'c.db'}"}))
    cat.add_collection("demo", demo_root)
    (report,) = cat.scan(workers=2)
    assert report.problems == {}
    yield Demo(cat, demo_root)
    cat.close()


def _run(demo: Demo, op: str, dataset_id: str, out: Path, **params: Any) -> xr.DataArray:
    res = run(demo.cat, op, [dataset_id], params=params, out=out)
    assert res.path == out and out.is_file()
    return res.open()["ta"]


def _reference(demo: Demo, source_id: str, table_id: str = "Amon") -> tuple[str, Series]:
    dataset_id = demo.id(source_id, table_id)
    return dataset_id, read(demo.files(dataset_id))


def test_the_datasets_cover_calendars_files_and_time_units(demo: Demo) -> None:
    for table, chosen in (("Amon", AMON), ("day", DAY)):
        for source_id, calendar in chosen.items():
            record = demo.cat.dataset(demo.id(source_id, table))
            assert record.calendar == calendar, (source_id, table, record.calendar)
    assert set(AMON.values()) >= {"proleptic_gregorian", "365_day", "julian", "360_day"}
    assert demo.cat.dataset(demo.id("MIROC6")).n_files == 7
    assert demo.cat.dataset(demo.id("IITM-ESM")).n_files == 7
    units = {f.time_units for f in demo.cat.files(demo.id("BCC-CSM2-MR"))}
    assert len(units) == 3
    units = {f.time_units for f in demo.cat.files(demo.id("BCC-CSM2-MR", "day"))}
    assert len(units) == 2


# -- against CDO ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["stream", "xarray"])
@pytest.mark.parametrize("source_id", list(AMON))
def test_time_mean_equals_cdo_timmean(
    demo: Demo, source_id: str, engine: str, tmp_path: Path
) -> None:
    dataset_id = demo.id(source_id)
    got = run(demo.cat, "time_mean", [dataset_id], engine=engine).open()["ta"]
    ref = cdo("timmean", demo.files(dataset_id), tmp_path / "ref.nc")
    assert got.dims == ("plev", "lat", "lon")
    assert ref.values.shape[0] == 1
    for dim in got.dims:
        np.testing.assert_allclose(got[dim].values, ref.coords[dim])
    np.testing.assert_allclose(
        got.values,
        ref.values[0],
        rtol=CDO_TOL.rtol,
        atol=CDO_TOL.atol,
        err_msg=f"time_mean of {dataset_id} ({engine})",
    )


@pytest.mark.parametrize("source_id", list(AMON))
def test_field_mean_equals_cdo_fldmean(demo: Demo, source_id: str, tmp_path: Path) -> None:
    dataset_id, data = _reference(demo, source_id)
    got = _run(demo, "field_mean", dataset_id, tmp_path / "out.nc")
    ref = cdo("fldmean", demo.files(dataset_id), tmp_path / "ref.nc")
    assert got.dims == ("time", "plev")
    assert ymd(got.time.values) == ymd(data.dates) and len(ref.dates) == len(data.dates)
    np.testing.assert_allclose(got.plev.values, ref.coords["plev"])
    np.testing.assert_allclose(
        got.values,
        ref.values[:, :, 0, 0],
        rtol=FLDMEAN_TOL.rtol,
        atol=FLDMEAN_TOL.atol,
        err_msg=f"field_mean of {dataset_id}",
    )
    # The tolerance can tell area weights from none: the unweighted mean is far off.
    unweighted = data.values.mean(axis=(2, 3))
    assert np.abs(unweighted - ref.values[:, :, 0, 0]).max() > 1000 * FLDMEAN_TOL.atol


@pytest.mark.parametrize("source_id", list(AMON))
def test_climatology_by_month_equals_cdo_ymonmean(
    demo: Demo, source_id: str, tmp_path: Path
) -> None:
    dataset_id = demo.id(source_id)
    got = _run(demo, "climatology", dataset_id, tmp_path / "out.nc", period="month")
    ref = cdo("ymonmean", demo.files(dataset_id), tmp_path / "ref.nc")
    assert got.dims == ("month", "plev", "lat", "lon")
    assert sorted(got.month.values.tolist()) == list(range(1, 13))
    assert sorted(ref.months.tolist()) == list(range(1, 13))
    np.testing.assert_allclose(
        got.sel(month=ref.months).values,
        ref.values,
        rtol=CDO_TOL.rtol,
        atol=CDO_TOL.atol,
        err_msg=f"monthly climatology of {dataset_id}",
    )


@pytest.mark.parametrize("source_id", list(AMON))
def test_zonal_mean_equals_cdo_zonmean(demo: Demo, source_id: str, tmp_path: Path) -> None:
    dataset_id, data = _reference(demo, source_id)
    got = _run(demo, "zonal_mean", dataset_id, tmp_path / "out.nc")
    ref = cdo("zonmean", demo.files(dataset_id), tmp_path / "ref.nc")
    assert got.dims == ("time", "plev", "lat")
    assert ymd(got.time.values) == ymd(data.dates) and len(ref.dates) == len(data.dates)
    np.testing.assert_allclose(got.lat.values, ref.coords["lat"])
    np.testing.assert_allclose(
        got.values,
        ref.values[..., 0],
        rtol=CDO_TOL.rtol,
        atol=CDO_TOL.atol,
        err_msg=f"zonal_mean of {dataset_id}",
    )


@pytest.mark.parametrize(
    ("source_id", "how"),
    [(s, "mean") for s in DAY] + [("BCC-CSM2-MR", h) for h in ("sum", "min", "max")],
)
def test_resample_daily_to_monthly_equals_cdo(
    demo: Demo, source_id: str, how: str, tmp_path: Path
) -> None:
    dataset_id = demo.id(source_id, "day")
    got = _run(demo, "resample", dataset_id, tmp_path / "out.nc", freq="MS", how=how)
    ref = cdo(f"mon{how}", demo.files(dataset_id), tmp_path / "ref.nc")
    assert [t[:2] for t in ymd(got.time.values)] == [(d.year, d.month) for d in ref.dates]
    assert all(t[2] == 1 for t in ymd(got.time.values))  # labelled by the month's start
    # CDO takes unflagged default fill values as data: compare the points of each month
    # that have none (the fills are below ground at 1000 hPa).
    data = read(demo.files(dataset_id))
    month_of = np.array([(d.year, d.month) for d in data.dates])
    full = np.array(
        [
            ~np.isnan(data.values[(month_of == (d.year, d.month)).all(axis=1)]).any(axis=0)
            for d in ref.dates
        ]
    )
    assert full.mean() > 0.5  # MIROC6: 76% of month-points are complete
    np.testing.assert_allclose(
        got.values[full],
        ref.values[full],
        rtol=CDO_TOL.rtol,
        atol=CDO_TOL.atol,
        err_msg=f"monthly {how} of {dataset_id}",
    )


# -- against numpy --------------------------------------------------------------------------


@pytest.mark.parametrize("source_id", list(AMON))
def test_climatology_by_season_equals_numpy(demo: Demo, source_id: str, tmp_path: Path) -> None:
    dataset_id, data = _reference(demo, source_id)
    got = _run(demo, "climatology", dataset_id, tmp_path / "out.nc", period="season")
    assert sorted(got.season.values.tolist()) == ["DJF", "JJA", "MAM", "SON"]
    seasons = np.array([SEASON[m] for m in data.months])
    for season in ("DJF", "MAM", "JJA", "SON"):
        want = np.nanmean(data.values[seasons == season], axis=0)
        np.testing.assert_allclose(
            got.sel(season=season).values,
            want,
            rtol=NUMPY_TOL.rtol,
            atol=NUMPY_TOL.atol,
            err_msg=f"{season} {dataset_id}",
        )


def _anomaly(data: Series, by: np.ndarray[Any, Any], ref: np.ndarray[Any, Any]) -> Any:
    out = np.empty_like(data.values)
    for key in np.unique(by):
        here = by == key
        out[here] = data.values[here] - np.nanmean(data.values[here & ref], axis=0)
    return out


@pytest.mark.parametrize("source_id", list(AMON))
def test_anomaly_from_a_reference_period_equals_numpy(
    demo: Demo, source_id: str, tmp_path: Path
) -> None:
    dataset_id, data = _reference(demo, source_id)
    got = _run(demo, "anomaly", dataset_id, tmp_path / "out.nc", reference=("1961", "1990"))
    assert ymd(got.time.values) == ymd(data.dates)
    in_ref = (data.years >= 1961) & (data.years <= 1990)
    assert in_ref.sum() == 360
    want = _anomaly(data, data.months, in_ref)
    np.testing.assert_allclose(
        got.values,
        want,
        rtol=NUMPY_TOL.rtol,
        atol=NUMPY_TOL.atol,
        err_msg=f"anomaly of {dataset_id}",
    )


@pytest.mark.parametrize("source_id", ["BCC-CSM2-MR", "KACE-1-0-G"])
def test_seasonal_anomaly_over_the_whole_record_equals_numpy(
    demo: Demo, source_id: str, tmp_path: Path
) -> None:
    dataset_id, data = _reference(demo, source_id)
    got = _run(demo, "anomaly", dataset_id, tmp_path / "out.nc", period="season")
    seasons = np.array([SEASON[m] for m in data.months])
    want = _anomaly(data, seasons, np.ones(len(seasons), dtype=bool))
    np.testing.assert_allclose(
        got.values,
        want,
        rtol=NUMPY_TOL.rtol,
        atol=NUMPY_TOL.atol,
        err_msg=f"anomaly of {dataset_id}",
    )


@pytest.mark.parametrize(
    ("source_id", "table"), [(s, "Amon") for s in AMON] + [("BCC-CSM2-MR", "day")]
)
def test_trend_equals_numpy_polyfit(demo: Demo, source_id: str, table: str, tmp_path: Path) -> None:
    dataset_id, data = _reference(demo, source_id, table)
    got = _run(demo, "trend", dataset_id, tmp_path / "out.nc")
    days = np.asarray(
        [(d - data.dates[0]).total_seconds() / 86400.0 for d in data.dates], dtype="float64"
    )
    years = days / DAYS_PER_YEAR[data.calendar]
    flat = data.values.reshape(len(years), -1)
    want = np.polyfit(years, flat, 1)[0].reshape(data.values.shape[1:])
    assert got.attrs["units"] == "K year-1"
    np.testing.assert_allclose(
        got.values,
        want,
        rtol=TREND_TOL.rtol,
        atol=TREND_TOL.atol,
        err_msg=f"trend of {dataset_id} ({data.calendar}: a year is "
        f"{DAYS_PER_YEAR[data.calendar]} days)",
    )


@pytest.mark.parametrize("q", [0.05, 0.5, 0.9])
@pytest.mark.parametrize("source_id", list(AMON))
def test_quantile_equals_numpy(demo: Demo, source_id: str, q: float, tmp_path: Path) -> None:
    dataset_id, data = _reference(demo, source_id)
    got = _run(demo, "quantile", dataset_id, tmp_path / "out.nc", q=q)
    want = np.nanquantile(data.values, q, axis=0)  # linear interpolation, as documented
    assert got.attrs["quantile"] == q
    np.testing.assert_allclose(
        got.values, want, rtol=NUMPY_TOL.rtol, atol=NUMPY_TOL.atol, err_msg=f"q={q} of {dataset_id}"
    )


@pytest.mark.parametrize("engine", ["stream", "xarray"])
@pytest.mark.parametrize(("source_id", "table"), [("KACE-1-0-G", "day"), ("ACCESS-ESM1-5", "Amon")])
def test_unflagged_default_fill_values_are_skipped_as_missing(
    demo: Demo, source_id: str, table: str, engine: str
) -> None:
    """The demo files have no ``_FillValue`` attribute; their missing values (below ground
    at 1000 hPa) hold the netCDF default fill, 9.96921e36. The NetCDF User Guide says
    readers must treat the default fill as missing when no ``_FillValue`` is set, and
    netCDF4-python and iris (which ESMValTool, the source of this archive, uses) do.
    Neither xarray's decoding nor CDO does, so this is checked against numpy only."""
    dataset_id, data = _reference(demo, source_id, table)
    assert np.isnan(data.values).any()  # the reference masks them
    got = run(demo.cat, "time_mean", [dataset_id], engine=engine).open()["ta"]
    want = np.nanmean(data.values, axis=0)
    np.testing.assert_allclose(
        got.values,
        want,
        rtol=CDO_TOL.rtol,
        atol=CDO_TOL.atol,
        err_msg=f"time_mean of {dataset_id} ({engine}) averages the netCDF default fill "
        "value 9.96921e36 as if it were data",
    )


# -- the multi-model ensemble ---------------------------------------------------------------


def test_ensemble_field_mean_stacks_every_model(demo: Demo, tmp_path: Path) -> None:
    ids = demo.cat.search(table_id="Amon", limit=1000).all_ids
    assert len(ids) > 40
    res = run(demo.cat, "field_mean", ids, out=tmp_path / "ens.nc")
    ens = res.open()["ta"]
    assert ens.dims == ("dataset", "time", "plev")
    assert ens["dataset"].values.tolist() == ids
    models = [demo.cat.dataset(i).facets["source_id"][0] for i in ids]
    assert ens["source_id"].values.tolist() == models
    assert len(set(models)) == len(ids)  # one entry per model
    months = ymd(ens.time.values)
    assert len(set(months)) == len(months) and all(d == 1 for _, _, d in months)
    position = {(y, m): i for i, (y, m, _) in enumerate(months)}
    for dataset_id in ids:
        single = run(demo.cat, "field_mean", [dataset_id]).open()["ta"]
        rows = [position[(y, m)] for y, m, _ in ymd(single.time.values)]
        entry = ens.sel(dataset=dataset_id).sel(plev=single.plev.values, method="nearest")
        np.testing.assert_allclose(entry.plev.values, single.plev.values, rtol=1e-6)
        np.testing.assert_array_equal(
            entry.isel(time=rows).transpose(*single.dims).values,
            single.values,
            err_msg=f"ensemble entry of {dataset_id}",
        )
        others = np.setdiff1d(np.arange(len(months)), rows)
        assert np.isnan(entry.isel(time=others).values).all(), dataset_id
    assert [i["dataset_id"] for i in res.provenance["inputs"]] == ids


# -- provenance, CF attributes, the cache ---------------------------------------------------

_PARAMS: dict[str, dict[str, Any]] = {
    "time_mean": {},
    "climatology": {"period": "month"},
    "anomaly": {"reference": ["1961", "1990"]},
    "field_mean": {},
    "zonal_mean": {},
    "resample": {"freq": "YS", "how": "mean"},
    "trend": {},
    "quantile": {"q": 0.25},
}


@pytest.mark.parametrize("op", list(OPERATIONS))
def test_provenance_and_cf_attributes(demo: Demo, op: str, tmp_path: Path) -> None:
    dataset_id = demo.id("MIROC6")
    record = demo.cat.dataset(dataset_id)
    out = tmp_path / f"{op}.nc"
    res = run(demo.cat, op, [dataset_id], params=_PARAMS[op], out=out)
    prov = res.provenance
    assert prov["operation"] == op
    assert prov["parameters"] == {**OPERATIONS[op].params().model_dump(mode="json"), **_PARAMS[op]}
    assert prov["variable"] == "ta"
    assert prov["insitu_version"] == insitu.__version__
    assert isinstance(prov["seconds"], int | float) and prov["seconds"] >= 0
    (inp,) = prov["inputs"]
    assert inp["dataset_id"] == dataset_id
    assert inp["version"] == record.version == "v20190311"
    assert inp["files"] == 7
    with netCDF4.Dataset(out) as nc:
        attrs = {k: nc.getncattr(k) for k in nc.ncattrs()}
        source_cm = "time: mean"  # of MIROC6's ta
        cm = nc.variables["ta"].getncattr("cell_methods")
        units = nc.variables["ta"].getncattr("units")
    assert attrs["Conventions"].startswith("CF-")
    assert json.loads(attrs["insitu_provenance"]) == prov
    assert op in attrs["history"] and dataset_id in attrs["history"]
    assert cm.startswith(source_cm + " ") and len(cm) > len(source_cm) + 5, cm
    assert units == ("K year-1" if op == "trend" else "K")


def test_cache_returns_the_same_result_and_a_touched_file_invalidates_it(
    demo: Demo, tmp_path: Path
) -> None:
    dataset_id = demo.id("BCC-CSM2-MR")
    rel = Path(*dataset_id.split("."))
    shutil.copytree(demo.root / rel, tmp_path / "arch" / rel)
    state = tmp_path / "state"
    settings = Settings.load(data_dir=state, catalog={"uri": f"sqlite:///{tmp_path / 'c.db'}"})
    with Catalog(settings) as cat:
        cat.add_collection("copy", tmp_path / "arch")
        cat.scan(workers=1)
        first = run(cat, "time_mean", [dataset_id])
        again = run(cat, "time_mean", [dataset_id], out=tmp_path / "again.nc")
        assert not first.cached and again.cached
        assert again.key == first.key
        assert again.provenance == first.provenance
        xr.testing.assert_identical(again.open(), first.open())

        touched = sorted((tmp_path / "arch" / rel).glob("*.nc"))[1]
        st = touched.stat()
        os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
        (report,) = cat.scan(workers=1)
        assert report.changed == 1
        fresh = run(cat, "time_mean", [dataset_id])
        assert not fresh.cached and fresh.key != first.key
        np.testing.assert_array_equal(fresh.open()["ta"].values, first.open()["ta"].values)
        assert run(cat, "time_mean", [dataset_id]).cached
        assert len(list((state / "results").glob("*.nc"))) == 2


# -- errors ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    """An archive of a time-only variable (tas) and a time-less one (orog)."""
    tmp = tmp_path_factory.mktemp("tiny")
    arch = tmp / "arch"
    drs = "CMIP6/CMIP/X/M/historical/r1i1p1f1"
    d = arch / drs / "Amon/tas/gn/v1"
    d.mkdir(parents=True)
    t = xr.date_range("2000-01-16", periods=24, freq="MS", calendar="noleap", use_cftime=True)
    xr.Dataset(
        {"tas": ("time", np.arange(24, dtype="f4"), {"units": "K"})}, coords={"time": t}
    ).to_netcdf(d / "tas_Amon_M_historical_r1i1p1f1_gn_200001-200112.nc")
    d = arch / drs / "fx/orog/gn/v1"
    d.mkdir(parents=True)
    lat = xr.DataArray([-45.0, 45.0], dims="lat", attrs={"standard_name": "latitude"})
    lon = xr.DataArray([0.0, 180.0], dims="lon", attrs={"standard_name": "longitude"})
    xr.Dataset(
        {"orog": (("lat", "lon"), np.ones((2, 2), "f4"), {"units": "m"})},
        coords={"lat": lat, "lon": lon},
    ).to_netcdf(d / "orog_fx_M_historical_r1i1p1f1_gn.nc")
    cat = Catalog(Settings.load(data_dir=tmp, catalog={"uri": f"sqlite:///{tmp / 'c.db'}"}))
    cat.add_collection("tiny", arch)
    (report,) = cat.scan(workers=1)
    assert report.problems == {} and report.datasets == 2
    yield cat
    cat.close()


@pytest.mark.parametrize(
    ("op", "variable", "missing"),
    [
        ("field_mean", "tas", "latitude"),
        ("zonal_mean", "tas", "longitude"),
        ("time_mean", "orog", "time"),
        ("trend", "orog", "time"),
        ("climatology", "orog", "time"),
    ],
)
def test_an_operation_on_a_variable_without_its_dimension_names_the_dataset(
    tiny: Catalog, op: str, variable: str, missing: str, tmp_path: Path
) -> None:
    (dataset_id,) = tiny.search(variable_id=variable).all_ids
    out = tmp_path / "out.nc"
    with pytest.raises(IncompatibleInputs) as err:
        run(tiny, op, [dataset_id], out=out)
    message = str(err.value)
    assert missing in message and variable in message
    assert dataset_id in message, f"the error does not name the dataset: {message}"
    assert not out.exists()


@pytest.mark.parametrize(
    ("op", "params", "named"),
    [
        ("no_such_op", {}, "'no_such_op'"),
        ("quantile", {"q": 1.5}, "q:"),
        ("quantile", {"q": "high"}, "q:"),
        ("climatology", {"period": "year"}, "period:"),
        ("climatology", {"bogus": 1}, "bogus:"),
        ("resample", {"how": "median"}, "how:"),
        ("resample", {"freq": "fortnightly"}, "'fortnightly'"),
        ("anomaly", {"reference": ["1800", "1810"]}, "('1800', '1810')"),
        ("anomaly", {"reference": "1961"}, "reference:"),
        ("time_mean", {"q": 0.5}, "q:"),
    ],
)
def test_unknown_operation_or_bad_parameter_is_named(
    demo: Demo, op: str, params: dict[str, Any], named: str, tmp_path: Path
) -> None:
    out = tmp_path / "out.nc"
    with pytest.raises(InvalidRequest) as err:
        run(demo.cat, op, [demo.id("BCC-CSM2-MR")], params=params, out=out)
    assert named in str(err.value), str(err.value)
    assert not out.exists()


def test_unknown_variable_is_named(demo: Demo) -> None:
    with pytest.raises(InvalidRequest, match="'pr'"):
        run(demo.cat, "time_mean", [demo.id("BCC-CSM2-MR")], variable="pr")


@pytest.mark.parametrize(
    ("op", "a", "b"),
    [
        ("time_mean", ("BCC-CSM2-MR", "Amon"), ("TaiESM1", "Amon")),  # 2x2 vs 3x2 grid
        ("time_mean", ("BCC-CSM2-MR", "Amon"), ("MIROC6", "Amon")),  # same shape, other lats
        ("field_mean", ("BCC-CSM2-MR", "Amon"), ("BCC-CSM2-MR", "day")),  # month vs day
    ],
)
def test_an_ensemble_that_does_not_fit_names_both_datasets(
    demo: Demo, op: str, a: tuple[str, str], b: tuple[str, str], tmp_path: Path
) -> None:
    ids = [demo.id(*a), demo.id(*b)]
    out = tmp_path / "out.nc"
    with pytest.raises(IncompatibleInputs) as err:
        run(demo.cat, op, ids, out=out)
    assert all(i in str(err.value) for i in ids), str(err.value)
    assert not out.exists()


@pytest.fixture(scope="module")
def one_file_gone(
    tmp_path_factory: pytest.TempPathFactory, demo_root: Path
) -> Iterator[tuple[Catalog, str, Path]]:
    """A copy of MIROC6 Amon (7 files), scanned, then one file deleted."""
    tmp = tmp_path_factory.mktemp("gone")
    dataset_id = "CMIP6.CMIP.MIROC.MIROC6.historical.r1i1p1f1.Amon.ta.gn.v20190311"
    rel = Path(*dataset_id.split("."))
    shutil.copytree(demo_root / rel, tmp / "arch" / rel)
    cat = Catalog(Settings.load(data_dir=tmp, catalog={"uri": f"sqlite:///{tmp / 'c.db'}"}))
    cat.add_collection("copy", tmp / "arch")
    cat.scan(workers=1)
    gone = sorted((tmp / "arch" / rel).glob("*.nc"))[3]
    gone.unlink()
    yield cat, dataset_id, gone
    cat.close()


@pytest.mark.parametrize(
    ("op", "engine"),
    [
        ("time_mean", "stream"),
        ("time_mean", "xarray"),
        ("field_mean", "stream"),
        ("climatology", "stream"),
        ("trend", "stream"),
    ],
)
def test_a_file_deleted_after_the_scan_is_named_and_nothing_is_written(
    one_file_gone: tuple[Catalog, str, Path], op: str, engine: str, tmp_path: Path
) -> None:
    cat, dataset_id, gone = one_file_gone
    out = tmp_path / "out.nc"
    with pytest.raises((DataError, ComputeError)) as err:
        run(cat, op, [dataset_id], out=out, engine=engine)
    assert gone.name in str(err.value), str(err.value)
    assert list(tmp_path.iterdir()) == []  # no result, no temporary file
    results = cat.settings.data_dir / "results"
    assert not results.exists() or list(results.iterdir()) == []
