"""Reading chunks directly (pread + ISA-L inflate) gives exactly what netCDF-C gives.

Every data variable of the real CMIP6 sample archive, and files written here with each
layout netCDF-4 has (contiguous, chunked with and without filters, chunks cut at the edges,
several records per chunk, integer types), are read both ways and compared bit for bit.
Layouts the direct reader does not handle must be refused with a reason, and the engine
must then read them through netCDF-C, also when a chunk turns out bad halfway through a file.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

from insitu.catalog.opening import read_raw
from insitu.compute.reader import FilePart, slabs
from insitu.errors import DataError
from insitu.formats.netcdf import direct as chunks
from insitu.formats.netcdf.direct import read_records
from insitu.formats.netcdf.layout import DEFLATE, SHUFFLE, NotDirect, layout


def _netcdf(path: Path | str, name: str, lo: int, hi: int) -> np.ndarray[Any, Any]:
    with netCDF4.Dataset(path) as nc:
        var = nc.variables[name]
        var.set_auto_maskandscale(False)
        return np.asarray(var[lo:hi])


def _direct(path: Path | str, name: str, lo: int, hi: int) -> np.ndarray[Any, Any]:
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_records(layout(str(path), name, lo, hi), fd, lo, hi)
    finally:
        os.close(fd)


def _same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_isal_inflates() -> None:
    """The fast inflate is ISA-L's, not the standard library's fallback."""
    assert chunks._zlib.__name__.startswith("isal")
    assert chunks._shuffle.COMPILED
    assert chunks._shuffle.unshuffle.__module__ == "insitu.formats.netcdf._shuffle"


def test_every_variable_of_the_sample_archive_reads_the_same(demo_root: Path) -> None:
    files = sorted(demo_root.rglob("*.nc"))
    assert len(files) > 300
    compared = 0
    for path in files:
        with netCDF4.Dataset(path) as nc:
            names = [n for n, v in nc.variables.items() if v.ndim >= 2]
            lengths = {n: nc.variables[n].shape[0] for n in names}
        for name in names:
            n = lengths[name]
            lay = layout(str(path), name, 0, n)  # CMOR output: never refused
            assert lay.filters in ((), (DEFLATE,), (SHUFFLE, DEFLATE)), (path, name)
            for lo, hi in ((0, n), (n // 3, max(n // 3 + 1, 2 * n // 3))):
                assert _same(_direct(path, name, lo, hi), _netcdf(path, name, lo, hi)), (
                    path,
                    name,
                    lo,
                    hi,
                )
            compared += 1
    assert compared > 1000


@pytest.fixture(scope="module")
def demo_root() -> Path:
    spec = importlib.util.find_spec("esmvaltool_sample_data")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


def _write(
    path: Path,
    *,
    dtype: str = "f4",
    shape: tuple[int, int, int] = (12, 20, 30),
    chunksizes: tuple[int, int, int] | None = (5, 7, 9),
    contiguous: bool = False,
    unlimited: bool = True,
    fill: bool = True,
    written: int | None = None,
    fmt: str = "NETCDF4",
    **filters: Any,
) -> np.ndarray[Any, Any]:
    """A file with one variable ``v``; returns the values written."""
    rng = np.random.default_rng(7)
    kind = np.dtype(dtype).kind
    values = (rng.normal(250, 20, shape) * (100 if kind in "iu" else 1)).astype(dtype)
    with netCDF4.Dataset(path, "w", format=fmt) as nc:
        nc.createDimension("time", None if unlimited else shape[0])
        nc.createDimension("y", shape[1])
        nc.createDimension("x", shape[2])
        kw: dict[str, Any] = dict(filters)
        if contiguous:
            kw["contiguous"] = True
        elif chunksizes is not None and fmt == "NETCDF4":
            kw["chunksizes"] = chunksizes
        if fill and kind == "f":
            kw["fill_value"] = np.array(1e20, dtype)
        var = nc.createVariable("v", dtype, ("time", "y", "x"), **kw)
        var.set_auto_maskandscale(False)
        var[: written or shape[0]] = values[: written or shape[0]]
        if written:  # a second variable longer than v: v is shorter than its dimension
            other = nc.createVariable("w", "f4", ("time",))
            other[:] = np.arange(shape[0], dtype="f4")
    return values


_LAYOUTS = {
    "shuffle+deflate, edge chunks": dict(zlib=True, complevel=4, shuffle=True),
    "deflate only": dict(zlib=True, complevel=1, shuffle=False),
    "chunked, no filter": dict(),
    "whole records per chunk": dict(zlib=True, shuffle=True, chunksizes=(1, 20, 30)),
    "three records per chunk": dict(zlib=True, shuffle=True, chunksizes=(3, 20, 30)),
    "contiguous": dict(contiguous=True, unlimited=False),
    "int16": dict(dtype="i2", zlib=True, shuffle=True),
    "float64": dict(dtype="f8", zlib=True, shuffle=True, chunksizes=(2, 10, 30)),
    "float64, whole records": dict(dtype="f8", zlib=True, shuffle=True, chunksizes=(2, 20, 30)),
    "uint8": dict(dtype="u1", zlib=True, shuffle=True),
}


@pytest.mark.parametrize("kind", list(_LAYOUTS))
def test_each_layout_reads_the_same_as_netcdf(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "f.nc"
    values = _write(path, **_LAYOUTS[kind])
    for lo, hi in ((0, 12), (0, 1), (4, 11), (11, 12), (2, 6)):
        got = _direct(path, "v", lo, hi)
        assert _same(got, _netcdf(path, "v", lo, hi)), (kind, lo, hi)
        assert _same(got, values[lo:hi]), (kind, lo, hi)


def _record_sum(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The records added one after another in float64, from the first (the engine's order)."""
    total = values[0].astype(np.float64)
    for record in values[1:]:
        total += record
    return total


_FLOAT_LAYOUTS = [k for k in _LAYOUTS if np.dtype(_LAYOUTS[k].get("dtype", "f4")).kind == "f"]


@pytest.mark.parametrize("kind", _FLOAT_LAYOUTS)
def test_records_are_summed_while_read(tmp_path: Path, kind: str) -> None:
    """With ``total`` it becomes the sum over the records read, in record order, whether the
    sum is made while unshuffling (whole records per chunk) or afterwards (the rest)."""
    path = tmp_path / "f.nc"
    values = _write(path, **_LAYOUTS[kind])
    for lo, hi in ((0, 12), (0, 1), (4, 11), (11, 12), (2, 6), (6, 12)):
        total = np.full(values.shape[1:], 0.5)  # overwritten
        fd = os.open(path, os.O_RDONLY)
        try:
            got = read_records(layout(str(path), "v", lo, hi), fd, lo, hi, total)
        finally:
            os.close(fd)
        assert _same(got, values[lo:hi]), (kind, lo, hi)
        assert np.array_equal(total, _record_sum(values[lo:hi])), (kind, lo, hi)


@pytest.mark.parametrize("kind", _FLOAT_LAYOUTS)
def test_rows_are_summed_while_read(tmp_path: Path, kind: str) -> None:
    """With ``rows`` they become NumPy's float64 sums of every row of the records read, to
    the bit, whether made while unshuffling (whole records per chunk) or afterwards."""
    path = tmp_path / "f.nc"
    values = _write(path, **_LAYOUTS[kind])
    for lo, hi in ((0, 12), (0, 1), (4, 11), (11, 12), (2, 6), (6, 12)):
        rows = np.full((hi - lo, 20), 0.5)  # overwritten
        fd = os.open(path, os.O_RDONLY)
        try:
            got = read_records(layout(str(path), "v", lo, hi), fd, lo, hi, rows=rows)
        finally:
            os.close(fd)
        assert _same(got, values[lo:hi]), (kind, lo, hi)
        want = np.add.reduce(values[lo:hi].astype("f8"), axis=-1)
        assert rows.tobytes() == want.tobytes(), (kind, lo, hi)


def test_the_sum_is_made_while_unshuffling_exactly_where_chunks_hold_whole_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.nc"
    ranges = [(0, 12), (0, 1), (4, 11), (11, 12), (3, 9), (6, 12), (2, 6), (1, 4)]
    expected = {
        "whole records per chunk": ranges,
        "three records per chunk": [(0, 12), (3, 9), (6, 12)],
        "float64, whole records": [(0, 12), (6, 12), (2, 6)],
        "float64": [],  # chunks cut the grid
        "shuffle+deflate, edge chunks": [],
        "deflate only": [],  # nothing to unshuffle
    }
    for kind, fused in expected.items():
        _write(path, **_LAYOUTS[kind])
        for lo, hi in ranges:
            lay = layout(str(path), "v", lo, hi)
            wanted = [c for c in lay.chunks if lo - lay.chunk_shape[0] < c.origin[0] < hi]
            assert chunks._fusable(lay, wanted, lo, hi) == ((lo, hi) in fused), (kind, lo, hi)


def test_a_sum_needs_a_floating_variable_and_one_record_s_shape(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    _write(path, dtype="i2", zlib=True, shuffle=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="the sum of int16 records"):
            read_records(layout(str(path), "v", 0, 12), fd, 0, 12, np.zeros((20, 30)))
        _write(path, zlib=True, shuffle=True)
        lay = layout(str(path), "v", 0, 12)
        for wrong in (np.zeros((30, 20)), np.zeros((20, 30), "f4"), np.zeros((20, 30), order="F")):
            with pytest.raises(ValueError, match="give a C-ordered float64 array"):
                read_records(lay, fd, 0, 12, wrong)
    finally:
        os.close(fd)


def test_slabs_carry_their_sums_when_read_directly(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    values = _write(path, zlib=True, shuffle=True, chunksizes=(1, 20, 30))
    per_record = 20 * 30 * 4
    got = []
    for raw, _, total, _ in slabs(FilePart(str(path), "v", 0, 12), 5 * per_record, sums=True):
        assert total is not None and np.array_equal(total, _record_sum(raw))
        got.append(raw)
    assert _same(np.concatenate(got), values)
    assert all(  # no sums where netCDF-C reads, nor unless asked for
        slab.total is None
        for part, sums in (
            (FilePart(str(path), "v", 0, 12, direct=False), True),
            (FilePart(str(path), "v", 0, 12), False),
        )
        for slab in slabs(part, 5 * per_record, sums)
    )
    _write(path, dtype="i2", zlib=True, shuffle=True)
    assert next(slabs(FilePart(str(path), "v", 0, 12), 2**20, sums=True)).total is None


def test_slabs_carry_the_sums_of_their_rows_when_read_directly(tmp_path: Path) -> None:
    """NumPy's own float64 sums of every row, to the bit, fills and NaN included; made only
    where the chunks are unshuffled (else the caller sums), and only when asked for."""
    path = tmp_path / "f.nc"
    values = _write(path, zlib=True, shuffle=True, chunksizes=(1, 20, 30))
    with netCDF4.Dataset(path, "a") as nc:
        nc["v"][3, 4, 5] = np.nan
        nc["v"][7, 2, :] = 1e20
    values[3, 4, 5], values[7, 2, :] = np.nan, 1e20
    per_record = 20 * 30 * 4
    part = FilePart(str(path), "v", 0, 12)
    got = []
    for slab in slabs(part, 5 * per_record, rows=True):
        assert slab.rows is not None and slab.total is None
        want = np.add.reduce(slab.raw.astype("f8"), axis=-1)
        assert slab.rows.tobytes() == want.tobytes()
        got.append(slab.raw)
    assert _same(np.concatenate(got), values)
    assert all(slab.rows is None for slab in slabs(part, 5 * per_record))
    netcdf = FilePart(str(path), "v", 0, 12, direct=False)
    assert all(slab.rows is None for slab in slabs(netcdf, 5 * per_record, rows=True))
    with pytest.raises(ValueError, match="not both"):
        next(slabs(part, 5 * per_record, sums=True, rows=True))
    for options in (dict(zlib=True), dict(dtype="i2", zlib=True, shuffle=True)):
        _write(path, **options)  # nothing to unshuffle; integers
        assert next(slabs(part, 2**20, rows=True)).rows is None


def test_row_sums_need_a_floating_variable_and_the_records_shape_without_their_last_axis(
    tmp_path: Path,
) -> None:
    path = tmp_path / "f.nc"
    _write(path, zlib=True, shuffle=True)
    lay = layout(str(path), "v", 0, 12)
    fd = os.open(path, os.O_RDONLY)
    try:
        for wrong in (np.zeros((12, 30)), np.zeros((12, 20), "f4")):
            with pytest.raises(
                ValueError, match=r"give a C-ordered float64 array of shape \(12, 20\)"
            ):
                read_records(lay, fd, 0, 12, rows=wrong)
        rows = np.empty((6, 20))
        got = read_records(lay, fd, 6, 12, rows=rows)  # chunks cut the records: summed after
        assert rows.tobytes() == np.add.reduce(got.astype("f8"), axis=-1).tobytes()
    finally:
        os.close(fd)


_REFUSED = {
    "big-endian": (dict(dtype=">f4", endian="big", zlib=True), "little-endian"),
    "fletcher32": (dict(zlib=True, fletcher32=True), "filters"),
    "netCDF-3": (dict(fmt="NETCDF3_CLASSIC"), "cannot open"),
    "shorter than its dimension": (dict(written=8, zlib=True), "not all stored"),
}


@pytest.mark.parametrize("kind", list(_REFUSED))
def test_layouts_it_does_not_handle_are_refused_and_read_by_netcdf(
    tmp_path: Path, kind: str
) -> None:
    options, reason = _REFUSED[kind]
    path = tmp_path / "f.nc"
    _write(path, **options)
    with pytest.raises(NotDirect, match=reason):
        layout(str(path), "v", 0, 12)
    part = FilePart(str(path), "v", 0, 12)
    (got, *_), *more = slabs(part, 2**20)
    assert not more and _same(got, _netcdf(path, "v", 0, 12))


def test_unallocated_chunks_are_read_by_netcdf_as_fill_values(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 6)
        nc.createDimension("x", 4)
        var = nc.createVariable("v", "f4", ("time", "x"), chunksizes=(1, 4), zlib=True)
        var[2] = np.arange(4, dtype="f4")  # chunks 0, 1, 3, 4, 5 never written
    with pytest.raises(NotDirect, match="not allocated"):
        layout(str(path), "v", 0, 6)
    raw, fills, *_ = next(slabs(FilePart(str(path), "v", 0, 6), 2**20))
    assert np.array_equal(raw[2], np.arange(4)) and (raw[[0, 1, 3, 4, 5]] == fills[0]).all()


def test_fill_values_are_those_netcdf_reports(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    _write(path, zlib=True)
    with netCDF4.Dataset(path, "a") as nc:
        nc["v"].missing_value = np.float32(-999)
    direct = next(slabs(FilePart(str(path), "v", 0, 12), 2**20))[1]
    netcdf = next(slabs(FilePart(str(path), "v", 0, 12, direct=False), 2**20))[1]
    assert direct == netcdf == [np.float32(1e20), np.float32(-999)]
    _write(path, zlib=True, fill=False)  # no declared fill: netCDF's default for floats
    assert next(slabs(FilePart(str(path), "v", 0, 12), 2**20))[1] == [
        netCDF4.default_fillvals["f4"]
    ]


def _corrupt_chunk(path: Path, record: int) -> None:
    """Overwrite the middle of the chunk holding ``record`` (one record per chunk)."""
    lay = layout(str(path), "v", record, record + 1)
    (chunk,) = lay.chunks
    with open(path, "r+b") as f:
        f.seek(chunk.address + chunk.size // 2)
        f.write(b"\xff" * 64)


def test_a_bad_chunk_halfway_hands_the_rest_of_the_file_to_netcdf(tmp_path: Path) -> None:
    """Slabs before the bad chunk come from the direct reader; from it on netCDF-C reads,
    and its error names the file. No record is read twice or skipped."""
    path = tmp_path / "f.nc"
    _write(path, zlib=True, shuffle=True, chunksizes=(1, 20, 30))
    _corrupt_chunk(path, 9)
    per_record = 20 * 30 * 4
    got = []
    reading = slabs(FilePart(str(path), "v", 0, 12), 3 * per_record, sums=True)
    got = [next(reading).raw for _ in range(3)]
    with pytest.raises(DataError, match=r"f\.nc"):
        next(reading)
    assert [len(raw) for raw in got] == [3, 3, 3]  # records 0-8; 9-11 hold the bad chunk
    assert _same(np.concatenate(got), _netcdf(path, "v", 0, 9))
    with pytest.raises(NotDirect, match="chunk at"):
        _direct(path, "v", 9, 10)


def test_a_file_gone_since_the_scan_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="rescan"):
        next(slabs(FilePart(str(tmp_path / "gone.nc"), "v", 0, 1), 2**20))


@pytest.mark.parametrize("kind", ["shuffle+deflate, edge chunks", "contiguous"])
def test_lazy_dataset_reads_take_the_direct_path_with_the_same_values(
    tmp_path: Path, kind: str
) -> None:
    """What a lazily opened dataset reads per file (``read_raw`` with the record count)."""
    path = tmp_path / "f.nc"
    _write(path, **_LAYOUTS[kind])
    direct = read_raw(str(path), "v", (slice(0, 12),))
    assert _same(direct, read_raw(str(path), "v"))
    assert _same(direct, _netcdf(path, "v", 0, 12))


def test_lazy_reads_of_other_layouts_go_through_netcdf(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    _write(path, dtype=">f4", endian="big", zlib=True)
    assert _same(read_raw(str(path), "v", (slice(0, 12),)), _netcdf(path, "v", 0, 12))
    with pytest.raises(DataError, match="rescan"):
        read_raw(str(tmp_path / "gone.nc"), "v", (slice(0, 12),))


def test_contiguous_variables_are_read_in_slabs_of_chunk_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    values = _write(path, contiguous=True, unlimited=False)
    record = 20 * 30 * 4
    got = [slab.raw for slab in slabs(FilePart(str(path), "v", 0, 12), 5 * record)]
    assert [len(raw) for raw in got] == [5, 5, 2]
    assert _same(np.concatenate(got), values)


def test_fill_values_keep_their_own_types(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    _write(path, dtype="i4", zlib=True)
    with netCDF4.Dataset(path, "a") as nc:
        nc["v"].missing_value = np.int16(-999)
    direct = next(slabs(FilePart(str(path), "v", 0, 12), 2**20))[1]
    netcdf = next(slabs(FilePart(str(path), "v", 0, 12, direct=False), 2**20))[1]
    assert [(type(v), v) for v in direct] == [(type(v), v) for v in netcdf]
    assert (
        type(direct[0]) is np.int32
    )  # the attribute's type (netCDF4 stores the variable's), not int64


def test_a_later_unlimited_dimension_is_left_to_netcdf(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 4)
        nc.createDimension("n", None)
        nc.createVariable("v", "f4", ("time", "n"), zlib=True)[:, :3] = np.ones((4, 3))
        nc.createVariable("w", "f4", ("n",))[:] = np.arange(5)  # n grows to 5 after v
    with pytest.raises(NotDirect, match="unlimited"):
        layout(str(path), "v", 0, 4)
    assert _same(read_raw(str(path), "v", (slice(0, 4),)), _netcdf(path, "v", 0, 4))


def test_a_variable_named_like_a_dimension_is_read_from_its_own_dataset(tmp_path: Path) -> None:
    """netCDF-C stores it as _nc4_non_coord_<name>; the plain name is the dimension."""
    path = tmp_path / "f.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("time", 3)
        nc.createDimension("x", 4)
        x = nc.createVariable("x", "f4", ("time", "x"), zlib=True)
        x[:] = np.arange(12, dtype="f4").reshape(3, 4)
    assert layout(str(path), "x", 0, 3).shape == (3, 4)
    assert _same(_direct(path, "x", 0, 3), _netcdf(path, "x", 0, 3))


def test_records_outside_the_layout_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    _write(path, zlib=True)
    where = layout(str(path), "v", 2, 6)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match="outside"):
            read_records(where, fd, 0, 6)
    finally:
        os.close(fd)


def test_a_file_replaced_while_its_layout_is_read_is_not_read_at_the_old_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-published copy renamed over the file between the descriptor's open and the
    layout: the layout describes the new file, the descriptor holds the old one."""
    path, other = tmp_path / "f.nc", tmp_path / "g.nc"
    _write(path, zlib=True)
    _write(other, zlib=True, chunksizes=(1, 20, 30))
    real = chunks.layout

    def replaced_meanwhile(*args: Any) -> Any:
        os.replace(other, path)
        return real(*args)

    monkeypatch.setattr(chunks, "layout", replaced_meanwhile)
    with pytest.raises(NotDirect, match="replaced"):
        chunks.read_direct(str(path), "v", 0, 12)


def test_without_the_c_module_direct_reads_unshuffle_in_numpy_with_the_same_values(
    tmp_path: Path,
) -> None:
    """INSITU_NO_C_UNSHUFFLE=1 forces the NumPy fallback (as an install without a C
    compiler has): one log line says so, and reads and fused sums are unchanged."""
    import subprocess
    import sys

    path = tmp_path / "f.nc"
    values = _write(path, zlib=True, shuffle=True, chunksizes=(3, 20, 30))
    script = (
        "import logging, sys, numpy as np\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
        "from insitu.formats import read_slabs\n"
        "from insitu.formats.netcdf import unshuffle\n"
        "assert not unshuffle.COMPILED\n"
        f"slabs = list(read_slabs({str(path)!r}, 'v', 0, 12, 6 * 20 * 30 * 4, sums=True))\n"
        "assert all(s.total is not None for s in slabs)\n"
        "sys.stdout.buffer.write(np.concatenate([s.raw for s in slabs]).tobytes())\n"
    )
    env = {**os.environ, "INSITU_NO_C_UNSHUFFLE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == values.tobytes()
    said = [ln for ln in done.stderr.decode().splitlines() if "unshuffle in NumPy" in ln]
    assert len(said) == 1, done.stderr.decode()


def test_without_h5py_every_layout_is_refused_and_netcdf_reads_the_same_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """h5py gives the chunk index and is optional: without it netCDF-C reads every value."""
    path = tmp_path / "f.nc"
    _write(path, zlib=True, shuffle=True)
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py raises ImportError
    with pytest.raises(NotDirect, match="h5py is not installed"):
        layout(str(path), "v", 0, 12)
    (got, *_), *more = slabs(FilePart(str(path), "v", 0, 12), 2**20)
    assert not more and _same(got, _netcdf(path, "v", 0, 12))
