"""The format reader contract suite on the NetCDF readers: netCDF-4 files (compressed,
uncompressed, contiguous, chunked across the grid) and classic files (CDF-1, 64-bit offset
CDF-2, CDF-5), all written here with netCDF4-python."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from insitu.formats import FormatReader, NetCDF3Reader, NetCDF4Reader
from insitu.testing import FormatReaderTests
from insitu.testing.format_reader import write_netcdf_sample

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
