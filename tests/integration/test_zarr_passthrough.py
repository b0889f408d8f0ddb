"""The Zarr view serves a file's stored chunks as they are where its codecs allow.

Files written here with netCDF4-python (deflate with and without shuffle, chunked over
time, several files along time; time-invariant; a chunking that does not line up with the
files; a chunk HDF5 stored with its shuffle skipped): xarray reading the view (its keys
written to a directory from ``view.lookup`` and ``view.read``) gives exactly what
``xr.open_dataset`` gives on the files, and a chunk served as stored is byte for byte what
h5py's ``read_direct_chunk`` reads.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import netCDF4
import numcodecs
import numpy as np
import pytest
import xarray as xr

from insitu.access.zarrview import ChunkRef, StoredCodecs, ZarrView
from insitu.catalog import Catalog
from insitu.settings import Settings

DATASET = "CMIP6.CMIP.TEST.PASS-ESM.historical.r1i1p1f1.Amon.tas.gn.v20200101"
FOLDER = "CMIP6/CMIP/TEST/PASS-ESM/historical/r1i1p1f1/Amon/tas/gn/v20200101"
LENGTHS = (4, 4, 5)  # files along time; the last one's length is not a multiple of 2
NLAT, NLON = 6, 10
CHUNK_BYTES = 960  # stored chunks of 120 to 960 bytes pass through


def _write(root: Path) -> list[Path]:
    folder = root / FOLDER
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    paths, start = [], 0
    for i, n in enumerate(LENGTHS):
        year = 1850 + i
        path = folder / f"tas_Amon_PASS-ESM_historical_r1i1p1f1_gn_{year}01-{year}12.nc"
        with netCDF4.Dataset(path, "w") as nc:
            nc.Conventions = "CF-1.7"
            for dim, size in (("time", None), ("lat", NLAT), ("lon", NLON)):
                nc.createDimension(dim, size)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.axis = "days since 1850-01-01", "noleap", "T"
            t[:] = (start + np.arange(n)) * 30.0 + 15
            for name, size in (("lat", NLAT), ("lon", NLON)):
                v = nc.createVariable(name, "f8", (name,))
                v[:] = np.linspace(0, 90, size)
            # shuffle + deflate, two records per chunk (as CMOR, with more records)
            tas = nc.createVariable(
                "tas", "f4", ("time", "lat", "lon"), zlib=True, complevel=1, shuffle=True,
                chunksizes=(2, NLAT, NLON), fill_value=np.float32(1e20),
            )  # fmt: skip
            values = (280 + rng.standard_normal((n, NLAT, NLON))).astype("f4")
            values[0, 0, 0] = 1e20  # a missing point
            tas[:] = values
            # deflate alone, two records per chunk, split along lon; packed integers
            pr = nc.createVariable(
                "pr", "i2", ("time", "lat", "lon"), zlib=True, shuffle=False,
                chunksizes=(2, NLAT, 5),
            )  # fmt: skip
            pr.set_auto_maskandscale(False)
            pr.scale_factor, pr.add_offset = 0.5, 10.0
            pr[:] = rng.integers(-1000, 1000, (n, NLAT, NLON), dtype=np.int16)
            # three records per chunk: files start at 4 and 8, so chunks span files
            ua = nc.createVariable(
                "ua", "f4", ("time", "lat", "lon"), zlib=True, chunksizes=(3, NLAT, NLON)
            )
            ua[:] = rng.standard_normal((n, NLAT, NLON)).astype("f4")
            # stored chunks too small to serve one by one (40 bytes): the view gathers them
            tiny = nc.createVariable(
                "tiny", "f4", ("time", "lat", "lon"), zlib=True, chunksizes=(1, 2, 5)
            )
            tiny[:] = rng.standard_normal((n, NLAT, NLON)).astype("f4")
            # time-invariant, shuffle + deflate, edge chunks on both axes
            orog = nc.createVariable(
                "orog", "i4", ("lat", "lon"), zlib=True, shuffle=True, chunksizes=(4, 8)
            )
            orog[:] = np.arange(NLAT * NLON, dtype=np.int32).reshape(NLAT, NLON) * 7 - 100
            # not compressed: served as before
            plain = nc.createVariable("plain", "f4", ("time", "lat", "lon"))
            plain[:] = rng.standard_normal((n, NLAT, NLON)).astype("f4")
        paths.append(path)
        start += n
    # A chunk HDF5 stored with its shuffle skipped (filter mask bit 0): its bytes are then
    # deflated values, not shuffled ones, and must be encoded again by the view.
    with h5py.File(paths[1], "r+") as f:
        dset = f["tas"]
        values = np.asarray(dset[2:4])
        dset.id.write_direct_chunk((2, 0, 0), zlib.compress(values.tobytes()), filter_mask=1)
    return paths


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Catalog, list[Path]]]:
    tmp = tmp_path_factory.mktemp("passthrough")
    paths = _write(tmp / "archive")
    settings = Settings.load(data_dir=tmp / "data", catalog={"uri": f"sqlite:///{tmp / 'c.db'}"})
    catalog = Catalog(settings)
    catalog.add_collection("pass", tmp / "archive", public=True)
    catalog.scan(workers=1)
    try:
        yield catalog, paths
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def view(archive: tuple[Catalog, list[Path]]) -> ZarrView:
    catalog, _ = archive
    return ZarrView.build(catalog.dataset(DATASET), catalog.locate(DATASET), CHUNK_BYTES)


def _zarray(view: ZarrView, name: str) -> dict[str, Any]:
    doc = view.lookup(f"{name}/.zarray")
    assert isinstance(doc, bytes)
    return dict(json.loads(doc))


def _get(view: ZarrView, key: str) -> bytes:
    ref = view.lookup(key)
    assert isinstance(ref, ChunkRef)
    return bytes(view.read(ref))


def test_numcodecs_shuffle_is_hdf5_shuffle(tmp_path: Path) -> None:
    values = np.random.default_rng(0).standard_normal((3, 7)).astype("f8")
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("v", data=values, chunks=(3, 7), shuffle=True)
        _, stored = f["v"].id.read_direct_chunk((0, 0))
    assert stored == np.asarray(numcodecs.Shuffle(elementsize=8).encode(values)).tobytes()
    assert stored != values.tobytes()
    assert zlib.decompress(StoredCodecs(shuffle=True).encode(values)) == stored


def test_declared_codecs(view: ZarrView) -> None:
    tas, pr, orog = (_zarray(view, n) for n in ("tas", "pr", "orog"))
    assert tas["chunks"] == [2, NLAT, NLON]
    assert tas["compressor"]["id"] == "zlib"
    assert tas["filters"] == [{"id": "shuffle", "elementsize": 4}]
    assert pr["chunks"] == [2, NLAT, 5]
    assert pr["compressor"]["id"] == "zlib"
    assert pr["filters"] is None
    assert orog["chunks"] == [4, 8]
    assert orog["filters"] == [{"id": "shuffle", "elementsize": 4}]
    # Not passed through: chunks across files, too small, no compression, coordinates.
    for name in ("ua", "tiny", "plain", "lat", "time"):
        zarray = _zarray(view, name)
        assert zarray["compressor"] is None and zarray["filters"] is None, name
    assert view.arrays["ua"].stored is None and view.arrays["tiny"].stored is None
    assert view.arrays["tiny"].chunks != (1, 2, 5)


def test_a_chunk_is_the_stored_chunk(view: ZarrView, archive: tuple[Catalog, list[Path]]) -> None:
    _, paths = archive
    with h5py.File(paths[2], "r") as f:  # records 8:13 of the dataset
        mask, expected = f["tas"].id.read_direct_chunk((2, 0, 0))
        assert mask == 0
        assert _get(view, "tas/5.0.0") == expected
        mask, edge = f["tas"].id.read_direct_chunk((4, 0, 0))  # records 12 (and padding)
        assert _get(view, "tas/6.0.0") == edge
        _, expected = f["pr"].id.read_direct_chunk((0, 0, 5))  # records 8:10, lon 5:10
        assert _get(view, "pr/4.0.1") == expected
    with h5py.File(paths[0], "r") as f:
        _, expected = f["orog"].id.read_direct_chunk((4, 8))  # an edge chunk on both axes
        assert _get(view, "orog/1.1") == expected


def test_a_chunk_with_a_skipped_filter_is_encoded_again(
    view: ZarrView, archive: tuple[Catalog, list[Path]]
) -> None:
    _, paths = archive
    with h5py.File(paths[1], "r") as f:
        mask, stored = f["tas"].id.read_direct_chunk((2, 0, 0))
        values = np.asarray(f["tas"][2:4])
    assert mask == 1
    served = _get(view, "tas/3.0.0")  # records 6:8: the second file's second chunk
    assert served != stored
    assert served == StoredCodecs(shuffle=True).encode(values)


def test_xarray_reads_the_view_as_the_files(
    view: ZarrView, archive: tuple[Catalog, list[Path]], tmp_path: Path
) -> None:
    store = tmp_path / "view.zarr"
    for key, doc in view.documents.items():
        (store / key).parent.mkdir(parents=True, exist_ok=True)
        (store / key).write_bytes(doc)
    for name, plan in view.arrays.items():
        for index in np.ndindex(*(plan.grid or (1,))):
            key = f"{name}/{'.'.join(map(str, index))}"
            (store / key).write_bytes(_get(view, key))
    remote = xr.open_zarr(store, consolidated=True, zarr_format=2)
    _, paths = archive
    files = [xr.open_dataset(p) for p in paths]
    try:
        for name in ("tas", "pr", "ua", "tiny", "plain"):
            expected = xr.concat([f[name] for f in files], "time")
            np.testing.assert_array_equal(remote[name].values, expected.values, err_msg=name)
            assert remote[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(remote["orog"].values, files[0]["orog"].values)
        assert np.isnan(remote["tas"].values[0, 0, 0])
    finally:
        for f in files:
            f.close()
