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

A format that cannot hold :data:`SAMPLE` (GRIB: float fields on a grid) describes what its
sample holds instead, as a :class:`SampleFile` from a ``contents`` fixture.

The suite checks what every subsystem relies on: the header (as the catalog records it),
raw values by index (no mask, no scale: fill values and packed integers as stored), slabs
of bounded size with the values that mean missing, typed attributes for CF decoding, the
reads through :func:`insitu.formats.read` and :func:`insitu.formats.read_slabs`, clear
errors for a missing file or variable, and each optional ability the reader claims
(:class:`~insitu.formats.SupportsDirectChunks`, :class:`~insitu.formats.SupportsFusedSums`,
:class:`~insitu.formats.SupportsFusedRowSums`,
:class:`~insitu.formats.SupportsKeepOpen`) giving the very same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pytest

from insitu import formats
from insitu.formats import (
    DirectVariable,
    FormatReader,
    Index,
    NotDirect,
    SupportsDirectChunks,
    SupportsFusedRowSums,
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
    data_var: str = "tas"  # a floating-point variable along record_dim with a _FillValue
    slabs: tuple[tuple[str, Index], ...] = ()  # (variable, index) pairs read by index

    @property
    def coordinates(self) -> list[str]:
        """Names of the variables along their own dimension."""
        return [n for n, v in self.variables.items() if v.dims == (n,)]


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
        slabs=(
            ("tas", (slice(0, 7),)),
            ("tas", (slice(2, 5), slice(1, 3), slice(0, 5))),
            ("tas", (slice(6, 7), slice(0, 4), slice(4, 5))),
            ("pr", (slice(1, 2),)),
            ("lat_bnds", (slice(1, 3), slice(0, 2))),
            ("lon", (slice(2, 4),)),
        ),
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


def _fused_variable(
    reader: FormatReader, sample: str, contents: SampleFile, ability: type, method: str
) -> DirectVariable | None:
    """The sample's data variable for the fused sums of ``ability``; None where there are
    none to check: a reader without the ability (it must not have ``method`` then), or a
    sample it does not read directly (callers then sum what :func:`insitu.formats.read`
    gives, which must be the same records)."""
    if not isinstance(reader, ability) or not isinstance(reader, SupportsDirectChunks):
        assert not hasattr(reader, method)  # claims none
        return None
    try:
        return reader.open_direct(sample, contents.data_var)
    except NotDirect:
        data = contents.variables[contents.data_var].values
        got = formats.read(sample, contents.data_var, (slice(2, min(6, len(data))),))
        assert _same(got, data[2 : min(6, len(data))])
        return None


def _same(a: Array, b: Array) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


class FormatReaderTests:
    """The contract; subclasses provide ``reader`` and ``sample`` fixtures."""

    @pytest.fixture
    def reader(self) -> FormatReader:
        raise NotImplementedError("provide a 'reader' fixture")

    @pytest.fixture
    def sample(self, tmp_path: Any) -> str:
        raise NotImplementedError("provide a 'sample' fixture: a file holding SAMPLE")

    @pytest.fixture
    def contents(self) -> SampleFile:
        """What ``sample`` holds: :data:`SAMPLE` unless a subclass says otherwise."""
        return SAMPLE

    # -- the header ------------------------------------------------------------------------

    def test_it_has_a_name(self, reader: FormatReader) -> None:
        assert isinstance(reader.name, str) and reader.name

    def test_the_header_lists_dimensions_variables_and_attributes(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        with reader.header(sample) as header:
            assert header.dims == contents.dims
            assert header.global_attrs == contents.attrs
            got = {v.name: v for v in header.variables}
            assert list(got) == list(contents.variables)
            for name, want in contents.variables.items():
                var = got[name]
                assert var.dims == want.dims, name
                assert var.shape == want.values.shape, name
                assert np.dtype(var.dtype) == want.values.dtype, name
                assert var.attrs == want.attrs, name
            for name in contents.coordinates:
                assert _same(np.asarray(got[name].read()), contents.variables[name].values)

    def test_header_attributes_are_json_ready(self, reader: FormatReader, sample: str) -> None:
        import json

        with reader.header(sample) as header:
            json.dumps(header.global_attrs)
            for var in header.variables:
                json.dumps(var.attrs)

    # -- values ----------------------------------------------------------------------------

    def test_variables_read_whole_give_the_raw_values(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        for name, want in contents.variables.items():
            assert _same(reader.read(sample, name), want.values), name

    def test_slabs_by_index_give_the_raw_values(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        assert contents.slabs, "the sample names no slabs to read"
        for name, index in contents.slabs:
            want = contents.variables[name].values[index]
            assert _same(reader.read(sample, name, index), want), (name, index)
            assert _same(formats.read(sample, name, index), want), (name, index)

    @pytest.mark.parametrize("chunk_bytes", [1, 2 * 4 * 5 * 4, 2**20])
    def test_record_slabs_are_bounded_ordered_and_carry_the_fills(
        self, reader: FormatReader, sample: str, contents: SampleFile, chunk_bytes: int
    ) -> None:
        data = contents.variables[contents.data_var]
        want, n = data.values, len(data.values)
        fill = [float(f) for f in formats.fill_values(want.dtype, data.attrs)]
        name = contents.data_var
        for slabs in (
            list(reader.slabs(sample, name, 1, n, chunk_bytes)),
            list(formats.read_slabs(sample, name, 1, n, chunk_bytes)),
            list(formats.read_slabs(sample, name, 1, n, chunk_bytes, sums=True)),
            list(formats.read_slabs(sample, name, 1, n, chunk_bytes, rows=True)),
        ):
            assert _same(np.concatenate([s.raw for s in slabs]), want[1:n])
            assert all(len(s.raw) >= 1 for s in slabs)
            for s in slabs:
                assert [float(f) for f in s.fills] == fill

    @pytest.mark.parametrize("over", ["records", "rows"])
    def test_fused_sums_when_given_are_numpy_s_float64_sums(
        self, sample: str, contents: SampleFile, over: str
    ) -> None:
        """Over the records: added in record order from the first; of the rows: NumPy's
        sums of a float64 copy, to the bit."""
        data = contents.variables[contents.data_var].values
        for slab in formats.read_slabs(
            sample,
            contents.data_var,
            0,
            len(data),
            3 * data[0].nbytes,
            sums=over == "records",
            rows=over == "rows",
        ):
            got = slab.total if over == "records" else slab.rows
            if got is None:
                continue
            if over == "rows":
                want = np.add.reduce(slab.raw.astype("f8"), axis=-1)
            else:
                want = slab.raw[0].astype("f8")
                for record in slab.raw[1:]:
                    want += record
            assert got.tobytes() == want.tobytes()

    def test_encoded_attributes_are_typed_for_cf_decoding(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        small = [n for n in contents.variables if n != contents.data_var][:3]
        small += [n for n, v in contents.variables.items() if v.values.ndim == 0]
        found = reader.encoded(sample, small)
        assert set(found.variables) == set(contents.variables)
        for name, want in contents.variables.items():
            var = found.variables[name]
            assert var.dtype == want.values.dtype, name
            for key in ("_FillValue", "missing_value"):
                if key in want.attrs:
                    assert np.asarray(var.attrs[key]).dtype == want.values.dtype, (name, key)
            for key in ("scale_factor", "add_offset"):
                if key in want.attrs:
                    assert np.asarray(var.attrs[key]).dtype == np.dtype("f4"), (name, key)
            if name in small:
                assert var.values is not None and _same(var.values, want.values), name
        assert found.variables[contents.data_var].values is None
        for key, value in contents.attrs.items():
            assert formats.jsonable(found.attrs[key]) == value, key

    def test_the_registry_picks_this_reader_for_the_file(
        self, reader: FormatReader, sample: str
    ) -> None:
        assert type(formats.reader_for(sample)) is type(reader)

    # -- errors ----------------------------------------------------------------------------

    def test_a_missing_file_is_an_os_error(
        self, reader: FormatReader, tmp_path: Any, contents: SampleFile
    ) -> None:
        gone = str(tmp_path / "gone")
        with pytest.raises(FileNotFoundError):
            reader.read(gone, contents.data_var)
        with pytest.raises(FileNotFoundError), reader.header(gone):
            pass

    def test_a_missing_variable_is_a_key_error(self, reader: FormatReader, sample: str) -> None:
        with pytest.raises(KeyError):
            reader.read(sample, "no_such_variable")

    # -- optional abilities ----------------------------------------------------------------

    def test_direct_reads_give_the_library_s_values(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        if not isinstance(reader, SupportsDirectChunks):
            # Claims none (nothing to compare); skipping would fail under 'make test'.
            assert not hasattr(reader, "open_direct")
            return
        for name, index in contents.slabs:
            try:
                var = reader.open_direct(sample, name)
            except NotDirect:
                continue  # refusing is allowed; reading other values is not
            assert var.name == name and var.shape == contents.variables[name].values.shape
            try:
                got = var.read(index)
            except NotDirect:
                continue
            assert _same(got, contents.variables[name].values[index]), (name, index)

    def test_fused_sums_equal_a_loop_over_records(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        data = contents.variables[contents.data_var].values
        hi = min(6, len(data))
        var = _fused_variable(reader, sample, contents, SupportsFusedSums, "read_summed")
        if var is None:
            return
        assert isinstance(reader, SupportsFusedSums)
        total = np.empty(data.shape[1:])
        got = reader.read_summed(var, 2, hi, total)
        want = data[2:hi]
        assert _same(got, want)
        expected = want[0].astype("f8")
        for record in want[1:]:
            expected += record
        assert np.array_equal(total, expected)

    def test_fused_row_sums_equal_numpy_s_sums(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        data = contents.variables[contents.data_var].values
        hi = min(6, len(data))
        var = _fused_variable(reader, sample, contents, SupportsFusedRowSums, "read_row_summed")
        if var is None or data.ndim < 2:
            return  # no rows to sum
        assert isinstance(reader, SupportsFusedRowSums)
        rows = np.empty(data[2:hi].shape[:-1])
        got = reader.read_row_summed(var, 2, hi, rows)
        assert _same(got, data[2:hi])
        assert rows.tobytes() == np.add.reduce(data[2:hi].astype("f8"), axis=-1).tobytes()

    def test_files_kept_open_give_the_same_values(
        self, reader: FormatReader, sample: str, contents: SampleFile
    ) -> None:
        if not isinstance(reader, SupportsKeepOpen):
            assert not hasattr(reader, "read_open")  # claims none
            return
        with formats.HDF5_LOCK:
            handle = reader.open(sample)
            try:
                for name, index in contents.slabs:
                    got = reader.read_open(handle, name, index)
                    assert _same(got, contents.variables[name].values[index]), name
            finally:
                reader.close(handle)
        cache = formats.OpenFiles(2)
        try:
            for name, index in contents.slabs:
                got = cache.read(sample, ("sample",), name, index)
                assert _same(got, contents.variables[name].values[index]), name
        finally:
            cache.close()
