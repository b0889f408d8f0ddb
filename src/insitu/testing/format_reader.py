"""Contract tests every :class:`~insitu.formats.FormatReader` must pass.

Subclass :class:`FormatReaderTests` and provide two fixtures: ``reader`` (the reader) and
``sample`` (the path of a file in the reader's format holding :data:`SAMPLE`: the
dimensions, variables, values and attributes below). NetCDF readers write it with
:func:`write_netcdf_sample`; a reader of another format converts :data:`SAMPLE` its own
way::

    class TestMyReader(FormatReaderTests):
        @pytest.fixture
        def reader(self):
            return MyReader()

        @pytest.fixture
        def sample(self, tmp_path):
            path = tmp_path / "sample.my"
            write_my_sample(path, SAMPLE)
            return str(path)

The suite checks what every subsystem relies on: the header (as the catalog records it),
raw values by index (no mask, no scale: fill values and packed integers as stored), slabs
of bounded size with the values that mean missing, typed attributes for CF decoding, the
reads through :func:`insitu.formats.read` and :func:`insitu.formats.read_slabs`, clear
errors for a missing file or variable, and each optional ability the reader claims
(:class:`~insitu.formats.SupportsDirectChunks`, :class:`~insitu.formats.SupportsFusedSums`,
:class:`~insitu.formats.SupportsKeepOpen`) giving the very same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest

from insitu import formats
from insitu.formats import (
    FormatReader,
    NotDirect,
    SupportsDirectChunks,
    SupportsFusedSums,
    SupportsKeepOpen,
)

__all__ = ["SAMPLE", "FormatReaderTests", "SampleFile", "SampleVariable", "write_netcdf_sample"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class SampleVariable:
    """One variable of the sample: dimensions, raw values (their dtype is the stored
    type) and attributes (JSON-ready)."""

    dims: tuple[str, ...]
    values: Array
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SampleFile:
    """What the sample file holds."""

    dims: dict[str, int]
    variables: dict[str, SampleVariable]
    attrs: dict[str, Any]
    record_dim: str = "time"


_F4_1E20 = float(np.float32(1e20))  # a float32 fill, as JSON gives it back


def _sample() -> SampleFile:
    rng = np.random.default_rng(13)
    times, nlat, nlon = 7, 4, 5
    tas = rng.normal(280, 10, (times, nlat, nlon)).astype("f4")
    tas[1, 2, 3] = tas[5, 0, 0] = np.float32(1e20)  # missing
    packed = rng.integers(-3000, 3000, (times, nlat, nlon)).astype("i2")
    packed[2, 1, 1] = -32767
    return SampleFile(
        dims={"time": times, "lat": nlat, "lon": nlon, "bnds": 2},
        variables={
            "time": SampleVariable(
                ("time",),
                np.arange(times, dtype="f8") * 30 + 15,
                {"units": "days since 2000-01-01", "calendar": "noleap", "axis": "T"},
            ),
            "lat": SampleVariable(
                ("lat",),
                np.linspace(-67.5, 67.5, nlat).astype("f8"),
                {"units": "degrees_north", "standard_name": "latitude"},
            ),
            "lon": SampleVariable(
                ("lon",),
                np.arange(nlon, dtype="f4") * 72,
                {"units": "degrees_east", "standard_name": "longitude"},
            ),
            "lat_bnds": SampleVariable(
                ("lat", "bnds"),
                np.stack([np.linspace(-90, 45, nlat), np.linspace(-45, 90, nlat)], 1),
            ),
            "tas": SampleVariable(
                ("time", "lat", "lon"),
                tas,
                {"units": "K", "_FillValue": _F4_1E20, "standard_name": "air_temperature"},
            ),
            "pr": SampleVariable(
                ("time", "lat", "lon"),
                packed,
                {"_FillValue": -32767, "scale_factor": 0.5, "add_offset": 10.0},
            ),
            "height": SampleVariable((), np.array(2.0), {"units": "m"}),
        },
        attrs={"title": "insitu format reader contract sample", "realization": 1},
    )


SAMPLE = _sample()


def write_netcdf_sample(path: str, fmt: str = "NETCDF4", **options: Any) -> str:
    """Write :data:`SAMPLE` as a NetCDF file of format ``fmt`` (``NETCDF4``,
    ``NETCDF4_CLASSIC``, ``NETCDF3_CLASSIC``, ``NETCDF3_64BIT_OFFSET``,
    ``NETCDF3_64BIT_DATA``); ``options`` go to each ``createVariable`` of a data variable
    (``zlib``, ``shuffle``, ``chunksizes``...). Returns ``path``."""
    import netCDF4

    with netCDF4.Dataset(path, "w", format=cast(Any, fmt)) as nc:
        for name, size in SAMPLE.dims.items():
            nc.createDimension(name, None if name == SAMPLE.record_dim else size)
        nc.setncatts(SAMPLE.attrs)
        for name, var in SAMPLE.variables.items():
            attrs = dict(var.attrs)
            fill = attrs.pop("_FillValue", None)
            kw = options if len(var.dims) > 1 and SAMPLE.record_dim in var.dims else {}
            if fill is not None:
                kw = {**kw, "fill_value": np.asarray(fill, var.values.dtype)}
            v = nc.createVariable(name, var.values.dtype, var.dims, **kw)
            v.set_auto_maskandscale(False)
            for key, value in attrs.items():
                packing = key in ("scale_factor", "add_offset")
                v.setncattr(key, np.float32(value) if packing else value)
            v[...] = var.values
    return path


def _same(a: Array, b: Array) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


_SLABS = [
    ("tas", (slice(0, 7),)),
    ("tas", (slice(2, 5), slice(1, 3), slice(0, 5))),
    ("tas", (slice(6, 7), slice(0, 4), slice(4, 5))),
    ("pr", (slice(1, 2),)),
    ("lat_bnds", (slice(1, 3), slice(0, 2))),
    ("lon", (slice(2, 4),)),
]


class FormatReaderTests:
    """The contract; subclasses provide ``reader`` and ``sample`` fixtures."""

    @pytest.fixture
    def reader(self) -> FormatReader:
        raise NotImplementedError("provide a 'reader' fixture")

    @pytest.fixture
    def sample(self, tmp_path: Any) -> str:
        raise NotImplementedError("provide a 'sample' fixture: a file holding SAMPLE")

    # -- the header ------------------------------------------------------------------------

    def test_it_has_a_name(self, reader: FormatReader) -> None:
        assert isinstance(reader.name, str) and reader.name

    def test_the_header_lists_dimensions_variables_and_attributes(
        self, reader: FormatReader, sample: str
    ) -> None:
        with reader.header(sample) as header:
            assert header.dims == SAMPLE.dims
            assert header.global_attrs == SAMPLE.attrs
            got = {v.name: v for v in header.variables}
            assert list(got) == list(SAMPLE.variables)
            for name, want in SAMPLE.variables.items():
                var = got[name]
                assert var.dims == want.dims, name
                assert var.shape == want.values.shape, name
                assert np.dtype(var.dtype) == want.values.dtype, name
                assert var.attrs == want.attrs, name
            for name in ("time", "lat", "lon"):
                assert _same(np.asarray(got[name].read()), SAMPLE.variables[name].values)

    def test_header_attributes_are_json_ready(self, reader: FormatReader, sample: str) -> None:
        import json

        with reader.header(sample) as header:
            json.dumps(header.global_attrs)
            for var in header.variables:
                json.dumps(var.attrs)

    # -- values ----------------------------------------------------------------------------

    def test_variables_read_whole_give_the_raw_values(
        self, reader: FormatReader, sample: str
    ) -> None:
        for name, want in SAMPLE.variables.items():
            assert _same(reader.read(sample, name), want.values), name

    @pytest.mark.parametrize(("name", "index"), _SLABS)
    def test_slabs_by_index_give_the_raw_values(
        self, reader: FormatReader, sample: str, name: str, index: tuple[slice, ...]
    ) -> None:
        want = SAMPLE.variables[name].values[index]
        assert _same(reader.read(sample, name, index), want)
        assert _same(formats.read(sample, name, index), want)

    @pytest.mark.parametrize("chunk_bytes", [1, 2 * 4 * 5 * 4, 2**20])
    def test_record_slabs_are_bounded_ordered_and_carry_the_fills(
        self, reader: FormatReader, sample: str, chunk_bytes: int
    ) -> None:
        want = SAMPLE.variables["tas"].values
        for slabs in (
            list(reader.slabs(sample, "tas", 1, 7, chunk_bytes)),
            list(formats.read_slabs(sample, "tas", 1, 7, chunk_bytes)),
            list(formats.read_slabs(sample, "tas", 1, 7, chunk_bytes, sums=True)),
        ):
            assert _same(np.concatenate([s.raw for s in slabs]), want[1:7])
            assert all(len(s.raw) >= 1 for s in slabs)
            for s in slabs:
                assert [float(f) for f in s.fills] == [float(np.float32(1e20))]

    def test_fused_sums_when_given_are_the_float64_sums_over_records(self, sample: str) -> None:
        for slab in formats.read_slabs(sample, "tas", 0, 7, 3 * 4 * 5 * 4, sums=True):
            if slab.total is not None:
                expected = slab.raw[0].astype("f8")
                for record in slab.raw[1:]:
                    expected += record
                assert np.array_equal(slab.total, expected)

    def test_encoded_attributes_are_typed_for_cf_decoding(
        self, reader: FormatReader, sample: str
    ) -> None:
        found = reader.encoded(sample, ["lat", "height"])
        assert set(found.variables) == set(SAMPLE.variables)
        tas, pr = found.variables["tas"], found.variables["pr"]
        assert tas.dtype == np.dtype("f4") and pr.dtype == np.dtype("i2")
        assert np.asarray(tas.attrs["_FillValue"]).dtype == np.dtype("f4")
        assert np.asarray(pr.attrs["_FillValue"]).dtype == np.dtype("i2")
        assert np.asarray(pr.attrs["scale_factor"]).dtype == np.dtype("f4")
        lat, height = found.variables["lat"], found.variables["height"]
        assert lat.values is not None and _same(lat.values, SAMPLE.variables["lat"].values)
        assert height.values is not None and _same(height.values, SAMPLE.variables["height"].values)
        assert tas.values is None
        assert found.attrs["title"] == SAMPLE.attrs["title"]

    def test_the_registry_picks_this_reader_for_the_file(
        self, reader: FormatReader, sample: str
    ) -> None:
        assert type(formats.reader_for(sample)) is type(reader)

    # -- errors ----------------------------------------------------------------------------

    def test_a_missing_file_is_an_os_error(self, reader: FormatReader, tmp_path: Any) -> None:
        gone = str(tmp_path / "gone")
        with pytest.raises(FileNotFoundError):
            reader.read(gone, "tas")
        with pytest.raises(FileNotFoundError), reader.header(gone):
            pass

    def test_a_missing_variable_is_a_key_error(self, reader: FormatReader, sample: str) -> None:
        with pytest.raises(KeyError):
            reader.read(sample, "no_such_variable")

    # -- optional abilities ----------------------------------------------------------------

    @pytest.mark.parametrize(("name", "index"), _SLABS)
    def test_direct_reads_give_the_library_s_values(
        self, reader: FormatReader, sample: str, name: str, index: tuple[slice, ...]
    ) -> None:
        if not isinstance(reader, SupportsDirectChunks):
            pytest.skip(f"{reader.name} has no direct chunk reads")
        try:
            var = reader.open_direct(sample, name)
        except NotDirect:
            return  # refusing is allowed; reading other values is not
        assert var.name == name and var.shape == SAMPLE.variables[name].values.shape
        try:
            got = var.read(index)
        except NotDirect:
            return
        assert _same(got, SAMPLE.variables[name].values[index])

    def test_fused_sums_equal_a_loop_over_records(self, reader: FormatReader, sample: str) -> None:
        if not isinstance(reader, SupportsFusedSums) or not isinstance(
            reader, SupportsDirectChunks
        ):
            pytest.skip(f"{reader.name} makes no sums while reading")
        try:
            var = reader.open_direct(sample, "tas")
        except NotDirect:
            pytest.skip("the sample's layout is not read directly")
        total = np.empty((4, 5))
        got = reader.read_summed(var, 2, 6, total)
        want = SAMPLE.variables["tas"].values[2:6]
        assert _same(got, want)
        expected = want[0].astype("f8")
        for record in want[1:]:
            expected += record
        assert np.array_equal(total, expected)

    def test_files_kept_open_give_the_same_values(self, reader: FormatReader, sample: str) -> None:
        if not isinstance(reader, SupportsKeepOpen):
            pytest.skip(f"{reader.name} keeps no files open")
        with formats.HDF5_LOCK:
            handle = reader.open(sample)
            try:
                for name, index in _SLABS:
                    got = reader.read_open(handle, name, index)
                    assert _same(got, SAMPLE.variables[name].values[index]), name
            finally:
                reader.close(handle)
        cache = formats.OpenFiles(2)
        try:
            for name, index in _SLABS:
                got = cache.read(sample, ("sample",), name, index)
                assert _same(got, SAMPLE.variables[name].values[index]), name
        finally:
            cache.close()
