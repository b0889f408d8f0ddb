"""The format reader contract suite on the NetCDF readers: netCDF-4 files (compressed,
uncompressed, contiguous, chunked across the grid) and classic files (CDF-1, 64-bit offset
CDF-2, CDF-5), all written here with netCDF4-python; and on the Zarr reader, with stores
written by insitu's ZarrWriter (chunks of several records with a padded edge chunk, one
record, the whole variable) and by xarray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from insitu import formats
from insitu.errors import DataError
from insitu.formats import FormatReader, NetCDF3Reader, NetCDF4Reader, ZarrReader, ZarrWriter
from insitu.testing import FormatReaderTests
from insitu.testing.format_reader import SAMPLE, write_netcdf_sample

NETCDF4_LAYOUTS: dict[str, dict[str, Any]] = {
    "shuffle+deflate, whole records": {"zlib": True, "shuffle": True, "chunksizes": (2, 4, 5)},
    "deflate, chunks across the grid": {"zlib": True, "shuffle": False, "chunksizes": (3, 3, 2)},
    "chunked, no filter": {"chunksizes": (1, 4, 5)},
    "uncompressed defaults": {},
}


class TestNetCDF4Reader(FormatReaderTests):
    @pytest.fixture
    def reader(self) -> FormatReader:
        return NetCDF4Reader()

    @pytest.fixture(params=list(NETCDF4_LAYOUTS))
    def sample(self, tmp_path: Path, request: pytest.FixtureRequest) -> str:
        options = NETCDF4_LAYOUTS[request.param]
        return write_netcdf_sample(str(tmp_path / "sample.nc"), "NETCDF4", **options)


class TestNetCDF4ReaderOnClassicModelFiles(FormatReaderTests):
    @pytest.fixture
    def reader(self) -> FormatReader:
        return NetCDF4Reader()

    @pytest.fixture
    def sample(self, tmp_path: Path) -> str:
        return write_netcdf_sample(str(tmp_path / "sample.nc"), "NETCDF4_CLASSIC", zlib=True)


class TestNetCDF3Reader(FormatReaderTests):
    @pytest.fixture
    def reader(self) -> FormatReader:
        return NetCDF3Reader()

    @pytest.fixture(params=["NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"])
    def sample(self, tmp_path: Path, request: pytest.FixtureRequest) -> str:
        return write_netcdf_sample(str(tmp_path / "sample.nc"), request.param)


def write_zarr_sample(path: str, chunk: int | None = None) -> str:
    """SAMPLE as a Zarr store written by ZarrWriter, ``chunk`` records a chunk (all: None);
    the packing attributes are float32, as in the netCDF sample."""
    with ZarrWriter(path, dict(SAMPLE.attrs), threads=2, queued=1) as writer:
        for name, var in SAMPLE.variables.items():
            attrs = {
                k: np.float32(v) if k in ("scale_factor", "add_offset") else v
                for k, v in var.attrs.items()
            }
            values = var.values
            n = len(values) if values.ndim else 0
            arr = writer.create(name, var.dims, values.shape, values.dtype, attrs, chunk or n)
            if values.ndim:
                step = arr.chunk
                for lo in range(0, n, step):
                    arr.submit(lo, lambda v=values[lo : lo + step]: v)
            else:
                arr.set(values)
        writer.close()
    return path


class TestZarrReader(FormatReaderTests):
    @pytest.fixture
    def reader(self) -> FormatReader:
        return ZarrReader()

    @pytest.fixture(params=[2, 1, None], ids=["2-record chunks", "1-record chunks", "whole"])
    def sample(self, tmp_path: Path, request: pytest.FixtureRequest) -> str:
        return write_zarr_sample(str(tmp_path / "sample.zarr"), request.param)


def test_a_zarr_store_written_by_xarray_reads_the_same(tmp_path: Path) -> None:
    import xarray as xr

    path = str(tmp_path / "x.zarr")
    ds = xr.Dataset(
        {"tas": (("time", "lat"), np.arange(12, dtype="f4").reshape(6, 2), {"units": "K"})},
        coords={"time": ("time", np.arange(6.0), {"units": "days since 2000-01-01"})},
        attrs={"title": "t"},
    )
    ds.to_zarr(path, zarr_format=3, consolidated=True, encoding={"tas": {"chunks": (4, 2)}})
    reader = formats.reader_for(path)
    assert isinstance(reader, ZarrReader)
    with reader.header(path) as header:
        assert header.dims == {"time": 6, "lat": 2}
        assert header.global_attrs == {"title": "t"}
        got = {v.name: v for v in header.variables}
        assert got["tas"].dims == ("time", "lat") and got["tas"].attrs["units"] == "K"
    assert np.array_equal(formats.read(path, "tas", (slice(3, 6),)), ds["tas"].values[3:6])
    reopened = xr.open_zarr(path)
    assert np.array_equal(reopened["tas"].values, ds["tas"].values)


def test_a_directory_that_is_no_store_is_refused_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(DataError) as err:
        formats.reader_for(str(tmp_path / "empty.zarr"))
    assert "not a Zarr store" in str(err.value)
