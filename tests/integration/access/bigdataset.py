"""A dataset "larger than a request may read": six CMOR-like files (one time step per
zlib+shuffle chunk) of monthly ``tas`` on a 18x36 grid, served with a per-request limit of
1 KiB, so that its 186 kB are more than the 16 KiB one request may read, as a 5 GB dataset
is for the default limit; and the same dataset with one file damaged after the scan."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import netCDF4
import numpy as np
from fastapi import FastAPI

from insitu.access import build_app
from insitu.catalog import Catalog
from insitu.settings import Settings

BIG_ID = "CMIP6.CMIP.X.M.historical.r1i1p1f1.Amon.tas.gn.v1"
# The same, with one file damaged after the scan (same size and time): its field mean fails.
BROKEN_ID = "CMIP6.CMIP.X.M.piControl.r1i1p1f1.Amon.tas.gn.v1"
YEARS = range(1900, 1906)
LIMIT = 1024  # access.max_slice_bytes: 16 x 1 KiB per request


def write_archive(root: Path, dataset_id: str = BIG_ID) -> list[Path]:
    """The six files of ``dataset_id`` under ``root`` in the CMIP6 layout."""
    d = root / dataset_id.replace(".", "/")
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    experiment = dataset_id.split(".")[4]
    paths = []
    for i, year in enumerate(YEARS):
        path = d / f"tas_Amon_M_{experiment}_r1i1p1f1_gn_{year}01-{year}12.nc"
        paths.append(path)
        with netCDF4.Dataset(path, "w") as nc:
            nc.createDimension("time", None)
            nc.createDimension("lat", 18)
            nc.createDimension("lon", 36)
            t = nc.createVariable("time", "f8", ("time",))
            t.units, t.calendar, t.axis = "days since 1900-01-01", "noleap", "T"
            t.standard_name = "time"
            t[:] = np.arange(12) * 30.0 + i * 365 + 15
            lat = nc.createVariable("lat", "f8", ("lat",))
            lat.units, lat.standard_name, lat.axis = "degrees_north", "latitude", "Y"
            lat[:] = np.linspace(-85, 85, 18)
            lon = nc.createVariable("lon", "f8", ("lon",))
            lon.units, lon.standard_name, lon.axis = "degrees_east", "longitude", "X"
            lon[:] = np.arange(36) * 10.0 + 5
            v = nc.createVariable(
                "tas",
                "f4",
                ("time", "lat", "lon"),
                zlib=True,
                shuffle=True,
                chunksizes=(1, 18, 36),
                fill_value=np.float32(1e20),
            )
            v.units, v.standard_name, v.long_name = "K", "air_temperature", "Air Temperature"
            v[:] = (280 + 10 * np.cos(np.deg2rad(lat[:]))[None, :, None]
                    + rng.normal(size=(12, 18, 36))).astype("f4")  # fmt: skip
            nc.variable_id = "tas"
    return paths


def _damage(path: Path) -> None:
    """Zeros over the middle of the file's data, its size and modification time kept, so
    the catalog still takes it for the file it scanned."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(st.st_size // 2)
        f.write(bytes(st.st_size // 4))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@contextmanager
def big_service(tmp: Path) -> Iterator[tuple[Settings, Catalog, FastAPI]]:
    """Settings with the small limit, the catalog of the archive (public) and the app."""
    write_archive(tmp / "archive")
    damaged = write_archive(tmp / "archive", BROKEN_ID)[2]
    settings = Settings.load(
        data_dir=tmp / "state",
        catalog={"uri": f"sqlite:///{tmp / 'catalog.db'}"},
        access={"max_slice_bytes": LIMIT},
    )
    with Catalog(settings) as cat:
        cat.add_collection("big", tmp / "archive", public=True)
        cat.scan(workers=1)
        assert sorted(cat.search().all_ids) == sorted([BIG_ID, BROKEN_ID])
        _damage(damaged)
        yield settings, cat, build_app(settings, catalog=cat)
