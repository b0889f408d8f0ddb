"""A small CMIP6 DRS archive with every kind of bad file, for the scan-problem tests.

:func:`build` writes tiny but valid NetCDF files (NetCDF-4 and classic, several calendars)
into the CMIP6 layout, then adds one of each kind of bad input: corrupt, truncated, empty and
non-NetCDF files, unreadable files and directories, symbolic link loops, a broken link, an
undecodable name, paths that do not fit the template, bad time axes, and ESGF-style
aliases (``latest`` links, ``files/dYYYYMMDD`` trees) that must not count twice. It returns
what a correct scan must find, worked out from what it wrote, not from the scanner.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cftime
import netCDF4
import numpy as np

from insitu.catalog import FileStatus

__all__ = [
    "VERSION",
    "BadArchive",
    "GoodDataset",
    "Problem",
    "build",
    "dataset_id",
    "drs_dir",
    "drs_name",
    "undecodable_name",
]

VERSION = "v20190311"
FILES_DIR = "files/d20190311"
UNITS = "days since 1850-01-01"
_CALENDARS = frozenset(
    {
        "standard",
        "gregorian",
        "proleptic_gregorian",
        "noleap",
        "365_day",
        "all_leap",
        "366_day",
        "360_day",
        "julian",
    }
)


def drs_dir(
    inst: str, model: str, *, table: str = "Amon", var: str = "ta", version: str = VERSION
) -> str:
    """Directory of a CMIP6 dataset, relative to the archive root."""
    return f"CMIP6/CMIP/{inst}/{model}/historical/r1i1p1f1/{table}/{var}/gn/{version}"


def drs_name(
    model: str, time_range: str | None = "195001-195912", *, table: str = "Amon", var: str = "ta"
) -> str:
    """CMIP6 file name; ``time_range=None`` for a time-invariant file."""
    tail = f"_{time_range}" if time_range else ""
    return f"{var}_{table}_{model}_historical_r1i1p1f1_gn{tail}.nc"


def undecodable_name() -> bytes:
    """Name of the file in the MODEL-STD dataset whose name is not valid UTF-8."""
    return drs_name("MODEL-STD", "196501-196912").encode()[:-3] + b"\xff.nc"


def dataset_id(inst: str, model: str, *, table: str = "Amon", var: str = "ta") -> str:
    """The id the catalog gives the dataset in :func:`drs_dir`."""
    return drs_dir(inst, model, table=table, var=var).replace("/", ".")


def write_nc(
    path: Path,
    *,
    years: tuple[int, int] = (1950, 1959),
    calendar: str | None = "standard",
    units: str = UNITS,
    fmt: Literal["NETCDF4", "NETCDF3_CLASSIC"] = "NETCDF4",
    var: str = "ta",
) -> None:
    """A tiny CF file: monthly ``time`` (mid-month), ``plev``, ``lat``, ``lon`` and a float32
    variable with a _FillValue; ``calendar=None`` writes no time axis at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format=fmt) as ds:
        ds.Conventions = "CF-1.7 CMIP-6.2"
        ds.title = f"{path.stem} test file"
        dims: tuple[str, ...] = ("lat", "lon")
        if calendar is not None:
            ds.createDimension("time", None)
            time = ds.createVariable("time", "f8", ("time",))
            time.standard_name = "time"
            time.axis = "T"
            time.units = units
            time.calendar = calendar
            known = calendar if calendar in _CALENDARS else "standard"
            dates = [
                cftime.datetime(y, m, 16, calendar=known)
                for y in range(years[0], years[1] + 1)
                for m in range(1, 13)
            ]
            time[:] = cftime.date2num(dates, UNITS, calendar=known)
            ds.createDimension("plev", 2)
            plev = ds.createVariable("plev", "f8", ("plev",))
            plev.standard_name = "air_pressure"
            plev.units = "Pa"
            plev[:] = [100000.0, 50000.0]
            dims = ("time", "plev", "lat", "lon")
        ds.createDimension("lat", 3)
        ds.createDimension("lon", 4)
        lat = ds.createVariable("lat", "f8", ("lat",))
        lat.standard_name = "latitude"
        lat.units = "degrees_north"
        lat[:] = [-45.0, 0.0, 45.0]
        lon = ds.createVariable("lon", "f8", ("lon",))
        lon.standard_name = "longitude"
        lon.units = "degrees_east"
        lon[:] = [0.0, 90.0, 180.0, 270.0]
        data = ds.createVariable(var, "f4", dims, fill_value=np.float32(1e20))
        data.units = "K" if calendar is not None else "m"
        values = np.full(data.shape, 250.0, dtype="f4")
        values[..., 0, 0] = np.nan  # one missing point per field, stored as _FillValue
        data[:] = np.ma.masked_invalid(values)


@dataclass(frozen=True)
class GoodDataset:
    """A dataset the scan must index, with what its record must say."""

    dataset_id: str
    files: tuple[str, ...]
    calendar: str | None
    time_start: str | None
    time_end: str | None
    data_model: str = "NETCDF4"


@dataclass(frozen=True)
class Problem:
    """A path ``catalog.problems()`` must list, its status and words its reason must hold."""

    path: str
    status: FileStatus
    words: tuple[str, ...]
    not_words: tuple[str, ...] = ()
    walk: bool = False  # found while walking (never opened), not while reading headers


@dataclass
class BadArchive:
    """The archive on disk and what a correct scan of it finds."""

    root: Path
    good: dict[str, GoodDataset] = field(default_factory=dict)
    problems: dict[str, Problem] = field(default_factory=dict)
    aliases: int = 0
    locked: list[Path] = field(default_factory=list)  # chmod 000 entries

    @property
    def good_files(self) -> list[str]:
        """Every file the scan must index, by path."""
        return sorted(p for d in self.good.values() for p in d.files)

    def expect(
        self,
        path: str,
        status: FileStatus,
        *words: str,
        not_words: tuple[str, ...] = (),
        walk: bool = False,
    ) -> None:
        self.problems[path] = Problem(path, status, tuple(words), not_words, walk)

    def lock(self, path: Path) -> None:
        """Take every permission away from ``path`` (undone by :meth:`unlock`)."""
        path.chmod(0)
        self.locked.append(path)

    def unlock(self, *paths: Path) -> None:
        """Give locked entries (all if none named) their permissions back."""
        for path in paths or tuple(self.locked):
            path.chmod(0o755 if path.is_dir() else 0o644)
            self.locked.remove(path)


def build(root: Path) -> BadArchive:
    """Write the archive under ``root`` (created) and return what a scan must find."""
    root.mkdir(parents=True, exist_ok=True)
    arch = BadArchive(root)
    _good(arch)
    _unreadable(arch)
    _links_and_names(arch)
    _bad_paths(arch)
    _bad_time(arch)
    return arch


def _good(arch: BadArchive) -> None:
    root = arch.root
    start, end = "1950-01-16T00:00:00", "1959-12-16T00:00:00"

    # ESGF data-node layout: real files in files/dYYYYMMDD, the version directory holds
    # links to them, and 'latest' links to the version directory. Each file has 3 paths.
    gn = root / drs_dir("INST-A", "MODEL-STD").rsplit("/", 1)[0]
    names = [drs_name("MODEL-STD", "195001-195412"), drs_name("MODEL-STD", "195501-195912")]
    for name, years in zip(names, [(1950, 1954), (1955, 1959)], strict=True):
        write_nc(gn / FILES_DIR / name, years=years, calendar="standard")
        (gn / VERSION).mkdir(exist_ok=True)
        (gn / VERSION / name).symlink_to(f"../{FILES_DIR}/{name}")
    (gn / "latest").symlink_to(VERSION)
    arch.aliases += 2 * len(names)
    ds = dataset_id("INST-A", "MODEL-STD")
    arch.good[ds] = GoodDataset(
        ds, tuple(f"{drs_dir('INST-A', 'MODEL-STD')}/{n}" for n in names), "standard", start, end
    )

    # Real files in the version directory, hard links in files/, and a 'latest' link.
    vdir = root / drs_dir("INST-B", "MODEL-360")
    name = drs_name("MODEL-360")
    write_nc(vdir / name, calendar="360_day")
    (vdir.parent / FILES_DIR).mkdir(parents=True)
    os.link(vdir / name, vdir.parent / FILES_DIR / name)
    (vdir.parent / "latest").symlink_to(VERSION)
    arch.aliases += 2
    ds = dataset_id("INST-B", "MODEL-360")
    arch.good[ds] = GoodDataset(
        ds, (f"{drs_dir('INST-B', 'MODEL-360')}/{name}",), "360_day", start, end
    )

    vdir = root / drs_dir("INST-C", "MODEL-NOLEAP")
    write_nc(vdir / drs_name("MODEL-NOLEAP"), calendar="noleap")
    ds = dataset_id("INST-C", "MODEL-NOLEAP")
    arch.good[ds] = GoodDataset(
        ds,
        (f"{drs_dir('INST-C', 'MODEL-NOLEAP')}/{drs_name('MODEL-NOLEAP')}",),
        "noleap",
        start,
        end,
    )

    # A NetCDF-3 classic file is fine.
    vdir = root / drs_dir("INST-D", "MODEL-JULIAN")
    write_nc(vdir / drs_name("MODEL-JULIAN"), calendar="julian", fmt="NETCDF3_CLASSIC")
    ds = dataset_id("INST-D", "MODEL-JULIAN")
    arch.good[ds] = GoodDataset(
        ds,
        (f"{drs_dir('INST-D', 'MODEL-JULIAN')}/{drs_name('MODEL-JULIAN')}",),
        "julian",
        start,
        end,
        data_model="NETCDF3_CLASSIC",
    )

    # No time axis: indexed, with a note.
    rel = (
        f"{drs_dir('INST-E', 'MODEL-NOTIME', table='fx', var='orog')}/"
        f"{drs_name('MODEL-NOTIME', None, table='fx', var='orog')}"
    )
    write_nc(root / rel, calendar=None, var="orog")
    ds = dataset_id("INST-E", "MODEL-NOTIME", table="fx", var="orog")
    arch.good[ds] = GoodDataset(ds, (rel,), None, None, None)
    arch.expect(rel, FileStatus.OK, "no time axis")


def _bad_file(arch: BadArchive, kind: str) -> tuple[str, Path]:
    """Path (relative, absolute) for a bad file in its own dataset directory, named by kind."""
    rel = f"{drs_dir('BAD', kind)}/{drs_name(kind)}"
    path = arch.root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    return rel, path


def _unreadable(arch: BadArchive) -> None:
    rng = random.Random(20190311)
    scratch = arch.root.parent / "scratch"
    write_nc(scratch / "good4.nc")
    write_nc(scratch / "good3.nc", fmt="NETCDF3_CLASSIC")
    nc4 = (scratch / "good4.nc").read_bytes()
    nc3 = (scratch / "good3.nc").read_bytes()
    (scratch / "good4.nc").unlink()
    (scratch / "good3.nc").unlink()
    scratch.rmdir()

    rel, path = _bad_file(arch, "corrupt-signature")  # HDF5 signature, then garbage
    path.write_bytes(nc4[:8] + rng.randbytes(len(nc4) - 8))
    arch.expect(rel, FileStatus.UNREADABLE, "corrupt", not_words=("truncated",))

    rel, path = _bad_file(arch, "corrupt-superblock")  # random bytes in the superblock
    path.write_bytes(nc4[:8] + rng.randbytes(40) + nc4[48:])
    arch.expect(rel, FileStatus.UNREADABLE, "corrupt", not_words=("truncated",))

    rel, path = _bad_file(arch, "corrupt-metadata")  # intact superblock, garbage after it
    path.write_bytes(nc4[:48] + rng.randbytes(len(nc4) - 48))
    arch.expect(rel, FileStatus.UNREADABLE, "corrupt", not_words=("truncated",))

    rel, path = _bad_file(arch, "truncated")  # a NetCDF-4 copy cut in half
    path.write_bytes(nc4[: len(nc4) // 2])
    arch.expect(
        rel,
        FileStatus.UNREADABLE,
        "truncated",
        str(len(nc4)),
        str(len(nc4) // 2),
        not_words=("corrupt",),
    )

    rel, path = _bad_file(arch, "truncated-classic")  # a classic copy cut in half
    path.write_bytes(nc3[: len(nc3) // 2])
    arch.expect(
        rel, FileStatus.UNREADABLE, "truncated", "classic", str(len(nc3)), not_words=("corrupt",)
    )

    rel, path = _bad_file(arch, "empty")
    path.write_bytes(b"")
    arch.expect(rel, FileStatus.UNREADABLE, "empty", "0 bytes")

    rel, path = _bad_file(arch, "text")
    path.write_text("This is a README that someone saved as .nc\n")
    arch.expect(rel, FileStatus.UNREADABLE, "not a netcdf", "this")

    # A good file nobody may read, in a good dataset (with its 'latest' and files/ aliases).
    vdir = arch.root / drs_dir("INST-B", "MODEL-360")
    name = drs_name("MODEL-360", "196001-196912")
    write_nc(vdir / name, years=(1960, 1969), calendar="360_day")
    os.link(vdir / name, vdir.parent / FILES_DIR / name)
    arch.aliases += 2
    arch.lock(vdir / name)
    arch.expect(f"{drs_dir('INST-B', 'MODEL-360')}/{name}", FileStatus.DENIED, "permission denied")

    # A dataset directory nobody may list.
    rel, path = _bad_file(arch, "denied-dir")
    write_nc(path)
    arch.lock(path.parent)
    arch.expect(
        drs_dir("BAD", "denied-dir"),
        FileStatus.DENIED,
        "permission denied",
        "cannot list",
        walk=True,
    )


def _links_and_names(arch: BadArchive) -> None:
    # A directory link back to an ancestor.
    vdir = arch.root / drs_dir("BAD", "loop-dir")
    vdir.mkdir(parents=True)
    (vdir / "up").symlink_to("../..")
    arch.expect(f"{drs_dir('BAD', 'loop-dir')}/up", FileStatus.LOOP, "loop", "parent", walk=True)

    # A file link to itself.
    rel, path = _bad_file(arch, "loop-file")
    path.symlink_to(path.name)
    arch.expect(rel, FileStatus.LOOP, "loop", "itself", walk=True)

    # In the ESGF dataset, reached through 'latest' too but reported once: a link whose
    # target in files/ was deleted, and a name that is not UTF-8.
    vrel = drs_dir("INST-A", "MODEL-STD")
    name = drs_name("MODEL-STD", "196001-196412")
    (arch.root / vrel / name).symlink_to(f"../{FILES_DIR}/{name}")
    arch.expect(f"{vrel}/{name}", FileStatus.BROKEN_LINK, "broken", name, walk=True)

    raw = undecodable_name()
    fd = os.open(os.fsencode(arch.root / vrel) + b"/" + raw, os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"never opened")
    os.close(fd)
    arch.expect(
        f"{vrel}/{raw.decode('utf-8', 'backslashreplace')}",
        FileStatus.BAD_NAME,
        "utf-8",
        "rename",
        walk=True,
    )

    # A transfer leftover: hidden, so neither indexed nor listed.
    (arch.root / vrel / f".{name}.part").write_bytes(b"partial")


def _bad_paths(arch: BadArchive) -> None:
    # One directory level short (no version directory).
    rel = f"{drs_dir('BAD', 'wrong-depth').rsplit('/', 1)[0]}/{drs_name('wrong-depth')}"
    write_nc(arch.root / rel)
    arch.expect(rel, FileStatus.BAD_PATH, "directory levels", "expects 10")

    # The file name's variable disagrees with the directory's.
    rel = f"{drs_dir('BAD', 'mismatch')}/{drs_name('mismatch', var='tas')}"
    write_nc(arch.root / rel, var="tas")
    arch.expect(rel, FileStatus.BAD_PATH, "variable_id", "'tas'", "'ta'")


def _bad_time(arch: BadArchive) -> None:
    rel, path = _bad_file(arch, "bad-calendar")
    write_nc(path, calendar="foo_calendar")
    arch.expect(rel, FileStatus.BAD_TIME, "foo_calendar", "calendar")

    rel, path = _bad_file(arch, "bad-units")
    write_nc(path, units="days")
    arch.expect(rel, FileStatus.BAD_TIME, "units 'days'", "since")
