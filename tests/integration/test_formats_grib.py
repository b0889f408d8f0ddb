"""GRIB through the same interface (issue 13): the GRIB reader passes the format reader
contract on files ecCodes writes here, and a GRIB archive is registered with the ``grib``
template, scanned with its time range, opened with decoded time (the values cfgrib gives)
and served by the Zarr view."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# The grib extra ('make install' brings it): without it this module fails, never skips.
import eccodes as ec
import numpy as np
import pytest
import xarray as xr

from insitu import formats
from insitu.access.zarrview import ZarrView
from insitu.catalog import Catalog
from insitu.errors import DataError
from insitu.formats import (
    FormatReader,
    GribReader,
    SupportsDirectChunks,
    SupportsFusedSums,
    SupportsKeepOpen,
)
from insitu.testing import FormatReaderTests
from insitu.testing.format_reader import SampleFile, SampleVariable

LATS = (60.0, -60.0)  # north to south, as GRIB grids usually run
LONS = (0.0, 288.0)
_EPOCH = dt.datetime(1970, 1, 1)
MISSING = float(np.float32(1e20))  # what the GRIB reader gives where a bitmap says missing


def write_grib(
    path: Path,
    times: list[dt.datetime],
    values: np.ndarray[Any, Any],
    *,
    short_name: str = "2t",
    level_type: str = "heightAboveGround",
    levels: list[int] | None = None,
    edition: int = 2,
    exact: bool = True,
    lons: tuple[float, float] = LONS,
) -> None:
    """Append one message per time (and level) of ``values`` (time[, level], lat, lon) to
    ``path``, on a regular latitude/longitude grid; values >= 1e19 are missing (bitmap).
    ``exact``: IEEE float32 packing, so the values read back are the very ones written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nj, ni = values.shape[-2:]
    grid = {
        "Ni": ni,
        "Nj": nj,
        "latitudeOfFirstGridPointInDegrees": LATS[0],
        "latitudeOfLastGridPointInDegrees": LATS[1],
        "longitudeOfFirstGridPointInDegrees": lons[0],
        "longitudeOfLastGridPointInDegrees": lons[1],
        "iDirectionIncrementInDegrees": (lons[1] - lons[0]) / (ni - 1),
        "jDirectionIncrementInDegrees": (LATS[0] - LATS[1]) / (nj - 1),
    }
    with path.open("ab") as fh:
        for t, field in zip(times, values, strict=True):
            for k, level in enumerate(levels or [2]):
                v = field[k] if levels else field
                h = ec.codes_grib_new_from_samples(f"regular_ll_sfc_grib{edition}")
                try:
                    ec.codes_set_key_vals(h, grid)
                    ec.codes_set(h, "typeOfLevel", level_type)
                    ec.codes_set(h, "level", level)
                    ec.codes_set(h, "shortName", short_name)  # after the level: it picks it
                    ec.codes_set(h, "dataDate", int(t.strftime("%Y%m%d")))
                    ec.codes_set(h, "dataTime", int(t.strftime("%H%M")))
                    if exact:
                        ec.codes_set(h, "packingType", "grid_ieee")
                    v = v.astype("f8")
                    if np.any(v >= 1e19):
                        ec.codes_set(h, "bitmapPresent", 1)
                        ec.codes_set(h, "missingValue", MISSING)
                        v[v >= 1e19] = MISSING
                    ec.codes_set_values(h, v.ravel())
                    assert ec.codes_get(h, "numberOfMissing") == np.sum(v == MISSING)
                    ec.codes_write(h, fh)
                finally:
                    ec.codes_release(h)


def _seconds(times: list[dt.datetime]) -> np.ndarray[Any, Any]:
    return np.array([int((t - _EPOCH).total_seconds()) for t in times], dtype="i8")


TIMES = [dt.datetime(2000, 1, 1, h) for h in (0, 6, 12, 18)]
_T2M = np.random.default_rng(13).normal(280, 10, (4, 4, 5)).astype("f4")
_T2M[1, 2, 3] = _T2M[3, 0, 0] = np.float32(1e20)  # missing

GRIB_SAMPLE = SampleFile(
    dims={"time": 4, "latitude": 4, "longitude": 5},
    variables={
        "time": SampleVariable(
            ("time",),
            _seconds(TIMES),
            {
                "standard_name": "time",
                "long_name": "valid time",
                "units": "seconds since 1970-01-01T00:00:00",
                "calendar": "proleptic_gregorian",
                "axis": "T",
            },
        ),
        "latitude": SampleVariable(
            ("latitude",),
            np.array([60.0, 20.0, -20.0, -60.0]),
            {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"},
        ),
        "longitude": SampleVariable(
            ("longitude",),
            np.arange(5, dtype="f8") * 72,
            {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
        ),
        "t2m": SampleVariable(
            ("time", "latitude", "longitude"),
            _T2M,
            {
                "long_name": "2 metre temperature",
                "units": "K",
                "standard_name": "air_temperature",
                "GRIB_paramId": 167,
                "GRIB_shortName": "2t",
                "GRIB_typeOfLevel": "heightAboveGround",
                "GRIB_gridType": "regular_ll",
                "GRIB_level": 2,
                "_FillValue": float(np.float32(1e20)),
            },
        ),
    },
    attrs={
        "GRIB_centre": "ecmf",
        "institution": "European Centre for Medium-Range Weather Forecasts",
        "Conventions": "CF-1.7",
        "GRIB_edition": 2,
    },
    data_var="t2m",
    slabs=(
        ("t2m", (slice(0, 4),)),
        ("t2m", (slice(1, 3), slice(1, 3), slice(0, 5))),
        ("t2m", (slice(3, 4), slice(0, 4), slice(4, 5))),
        ("latitude", (slice(1, 3),)),
        ("time", (slice(2, 4),)),
    ),
)


class TestGribReader(FormatReaderTests):
    @pytest.fixture
    def reader(self) -> FormatReader:
        return GribReader()

    @pytest.fixture
    def sample(self, tmp_path: Path) -> str:
        path = tmp_path / "sample.grib2"
        write_grib(path, TIMES, _T2M)
        return str(path)

    @pytest.fixture
    def contents(self) -> SampleFile:
        return GRIB_SAMPLE

    # The GRIB reader claims no optional ability: say so instead of skipping (skips fail
    # under 'make test').
    def test_direct_reads_give_the_library_s_values(self, reader: FormatReader) -> None:
        assert not isinstance(reader, SupportsDirectChunks)

    def test_fused_sums_equal_a_loop_over_records(self, reader: FormatReader) -> None:
        assert not isinstance(reader, SupportsFusedSums)

    def test_files_kept_open_give_the_same_values(self, reader: FormatReader) -> None:
        assert not isinstance(reader, SupportsKeepOpen)


def test_levels_become_a_dimension_and_edition_1_reads(tmp_path: Path) -> None:
    path = tmp_path / "t.grib1"
    temp = np.arange(2 * 3 * 4 * 5, dtype="f4").reshape(2, 3, 4, 5) + 200
    write_grib(
        path,
        TIMES[:2],
        temp,
        short_name="t",
        level_type="isobaricInhPa",
        levels=[850, 500, 250],
        edition=1,
        lons=(0.0, 40.0),  # edition 1 increments stop at 65.535 degrees
    )
    reader = GribReader()
    with reader.header(str(path)) as header:
        assert header.data_model == "GRIB1"
        by_name = {v.name: v for v in header.variables}
        assert by_name["t"].dims == ("time", "isobaricInhPa", "latitude", "longitude")
        assert list(by_name["isobaricInhPa"].read()) == [250.0, 500.0, 850.0]
    got = reader.read(str(path), "t")
    # Levels in increasing order; edition 1 packs with 16 bits: close, not exact.
    np.testing.assert_allclose(got[:, ::-1], temp, atol=0.01)
    np.testing.assert_allclose(
        reader.read(str(path), "t", (slice(1, 2), slice(0, 1)))[0, 0], temp[1, 2], atol=0.01
    )


def test_a_missing_message_is_filled_and_duplicates_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "gaps.grib2"
    write_grib(path, TIMES[:2], _T2M[:2])
    write_grib(path, TIMES[3:], _T2M[3:], short_name="msl", level_type="meanSea")
    reader = GribReader()
    t2m = reader.read(str(path), "t2m")
    assert t2m.shape == (3, 4, 5) and np.all(t2m[2] == np.float32(1e20))  # no t2m at 18h
    assert np.all(reader.read(str(path), "msl")[:2] == np.float32(1e20))

    twice = tmp_path / "twice.grib2"
    write_grib(twice, TIMES[:1], _T2M[:1])
    write_grib(twice, TIMES[:1], _T2M[1:2])
    with pytest.raises(DataError, match="two messages of 't2m'"):
        reader.read(str(twice), "t2m")


# -- the catalog ----------------------------------------------------------------------------


def _archive(root: Path) -> list[Path]:
    """era5/t2m/{2000,2001}: two monthly files in 2000, one in 2001, 6-hourly fields."""
    paths = []
    rng = np.random.default_rng(7)
    for year, month in ((2000, 1), (2000, 2), (2001, 1)):
        times = [dt.datetime(year, month, d, h) for d in (1, 2) for h in (0, 12)]
        values = rng.normal(270, 15, (4, 4, 5)).astype("f4")
        values[1, 1, 1] = 1e20
        path = root / "era5" / "t2m" / str(year) / f"era5_t2m_{year}{month:02d}.grib2"
        write_grib(path, times, values, exact=False)  # packed as downloads are
        paths.append(path)
    return paths


def test_a_grib_archive_is_scanned_opened_and_served(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    paths = _archive(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSITU_")}
    env["INSITU_DATA_DIR"] = str(tmp_path / "data")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    for args in (["add", "era5", str(root), "--template", "grib"], ["scan", "era5"]):
        out = subprocess.run(
            [sys.executable, "-m", "insitu.cli", "catalog", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
    assert "3 files seen, 3 new" in out.stdout and "1 datasets; 0 problems" in out.stdout

    cat = Catalog(f"sqlite:///{tmp_path / 'data' / 'catalog.db'}")
    assert [f.path for f in cat.store.files("era5", problems_only=True)] == []
    record = cat.dataset("era5.t2m")
    assert record.n_files == 3
    assert (record.time_start, record.time_end) == ("2000-01-01T00:00:00", "2001-01-02T12:00:00")
    assert record.facets["variable"] == ["t2m"] and record.facets["product"] == ["era5"]
    (hit,) = cat.search(time=("2000-02", "2000-02")).results
    assert hit.dataset_id == "era5.t2m"

    ds = cat.open_dataset("era5.t2m")
    assert ds.sizes == {"time": 12, "latitude": 4, "longitude": 5}
    assert np.issubdtype(ds["time"].dtype, np.datetime64)
    assert str(ds["time"].values[4])[:13] == "2000-02-01T00"
    assert ds["t2m"].attrs["units"] == "K"
    with xr.open_mfdataset(
        [str(p) for p in paths],
        engine="cfgrib",
        combine="nested",
        concat_dim="time",
        backend_kwargs={"indexpath": ""},  # no index files left in the archive
    ) as want:
        np.testing.assert_array_equal(ds["time"].values, want["valid_time"].values)
        np.testing.assert_array_equal(ds["latitude"].values, want["latitude"].values)
        np.testing.assert_array_equal(ds["t2m"].values, want["t2m"].values)
    assert np.isnan(float(ds["t2m"][1, 1, 1]))
    assert ds.sel(time="2000-02")["t2m"].shape == (4, 4, 5)
    assert cat.open_dataset("era5.t2m", time=slice("2001", "2001")).sizes["time"] == 4
    assert sorted(os.listdir(paths[0].parent)) == ["era5_t2m_200001.grib2", "era5_t2m_200002.grib2"]

    view = ZarrView.build(record, cat.locate("era5.t2m"), 4096)
    try:
        ref = view.lookup("t2m/0.0.0")
        assert not isinstance(ref, bytes)
        chunk = np.frombuffer(bytes(view.read(ref)), dtype=ref.plan.dtype).reshape(ref.plan.chunks)
        raw = formats.read(str(paths[0]), "t2m")
        np.testing.assert_array_equal(chunk[: len(raw)], raw[: ref.plan.chunks[0]])
    finally:
        view.handles.close()


def test_a_truncated_grib_file_is_a_problem_with_its_reason(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    paths = _archive(root)
    paths[1].write_bytes(paths[1].read_bytes()[:-200])
    cat = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    cat.add_collection("era5", root, template="grib")
    cat.scan(workers=1)
    (bad,) = cat.store.files("era5", problems_only=True)
    assert bad.path.endswith("era5_t2m_200002.grib2") and bad.status.value == "unreadable"
    assert "GRIB" in bad.reason and "re-copy" in bad.reason
    assert cat.dataset("era5.t2m").n_files == 2
