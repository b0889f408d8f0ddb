"""Shared helpers of the catalog benchmarks: synthetic CMIP6 facets, DRS paths, tiny
NetCDF4 files, timing and the one-line JSON result every benchmark prints.

Generated data goes under ``bench/data/`` (git-ignored) unless ``--data-dir`` says
otherwise; nothing here writes into the source tree.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"

# -- synthetic CMIP6 vocabulary ------------------------------------------------------------

# (institution_id, source_id): 40 models, some institutions with several.
MODELS: list[tuple[str, str]] = [
    ("AS-RCEC", "TaiESM1"),
    ("AWI", "AWI-CM-1-1-MR"),
    ("AWI", "AWI-ESM-1-1-LR"),
    ("BCC", "BCC-CSM2-MR"),
    ("BCC", "BCC-ESM1"),
    ("CAMS", "CAMS-CSM1-0"),
    ("CAS", "FGOALS-f3-L"),
    ("CAS", "FGOALS-g3"),
    ("CCCma", "CanESM5"),
    ("CCCma", "CanESM5-CanOE"),
    ("CMCC", "CMCC-CM2-SR5"),
    ("CMCC", "CMCC-ESM2"),
    ("CNRM-CERFACS", "CNRM-CM6-1"),
    ("CNRM-CERFACS", "CNRM-CM6-1-HR"),
    ("CNRM-CERFACS", "CNRM-ESM2-1"),
    ("CSIRO", "ACCESS-ESM1-5"),
    ("CSIRO-ARCCSS", "ACCESS-CM2"),
    ("E3SM-Project", "E3SM-1-0"),
    ("E3SM-Project", "E3SM-1-1"),
    ("EC-Earth-Consortium", "EC-Earth3"),
    ("EC-Earth-Consortium", "EC-Earth3-Veg"),
    ("FIO-QLNM", "FIO-ESM-2-0"),
    ("HAMMOZ-Consortium", "MPI-ESM-1-2-HAM"),
    ("INM", "INM-CM4-8"),
    ("INM", "INM-CM5-0"),
    ("IPSL", "IPSL-CM6A-LR"),
    ("KIOST", "KIOST-ESM"),
    ("MIROC", "MIROC6"),
    ("MIROC", "MIROC-ES2L"),
    ("MOHC", "HadGEM3-GC31-LL"),
    ("MOHC", "HadGEM3-GC31-MM"),
    ("MOHC", "UKESM1-0-LL"),
    ("MPI-M", "MPI-ESM1-2-HR"),
    ("MPI-M", "MPI-ESM1-2-LR"),
    ("MRI", "MRI-ESM2-0"),
    ("NCAR", "CESM2"),
    ("NCAR", "CESM2-WACCM"),
    ("NCC", "NorESM2-LM"),
    ("NCC", "NorESM2-MM"),
    ("NOAA-GFDL", "GFDL-ESM4"),
]

# (activity_id, experiment_id, first year, last year): 20 experiments.
EXPERIMENTS: list[tuple[str, str, int, int]] = [
    ("CMIP", "historical", 1850, 2014),
    ("CMIP", "piControl", 1850, 2349),
    ("CMIP", "1pctCO2", 1850, 1999),
    ("CMIP", "abrupt-4xCO2", 1850, 1999),
    ("CMIP", "amip", 1979, 2014),
    ("CMIP", "esm-hist", 1850, 2014),
    ("CMIP", "esm-piControl", 1850, 2349),
    ("ScenarioMIP", "ssp119", 2015, 2100),
    ("ScenarioMIP", "ssp126", 2015, 2100),
    ("ScenarioMIP", "ssp245", 2015, 2100),
    ("ScenarioMIP", "ssp370", 2015, 2100),
    ("ScenarioMIP", "ssp434", 2015, 2100),
    ("ScenarioMIP", "ssp460", 2015, 2100),
    ("ScenarioMIP", "ssp534-over", 2040, 2100),
    ("ScenarioMIP", "ssp585", 2015, 2100),
    ("DAMIP", "hist-GHG", 1850, 2020),
    ("DAMIP", "hist-aer", 1850, 2020),
    ("DAMIP", "hist-nat", 1850, 2020),
    ("AerChemMIP", "hist-piNTCF", 1850, 2014),
    ("RFMIP", "piClim-control", 1850, 1879),
]

MEMBERS = [
    f"r{r}i1p1f{f}"
    for r, f in [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (1, 2), (2, 2), (3, 2), (10, 1), (11, 1)]
]

# table_id -> (frequency, realm, grid_label)
TABLES: dict[str, tuple[str, str, str]] = {
    "Amon": ("mon", "atmos", "gn"),
    "Omon": ("mon", "ocean", "gr"),
    "Lmon": ("mon", "land", "gn"),
    "day": ("day", "atmos", "gn"),
    "SImon": ("mon", "seaIce", "gn"),
}

# variable_id -> (table_id, standard_name, long_name, units): 30 variables.
VARIABLES: dict[str, tuple[str, str, str, str]] = {
    "tas": ("Amon", "air_temperature", "Near-Surface Air Temperature", "K"),
    "pr": ("Amon", "precipitation_flux", "Precipitation", "kg m-2 s-1"),
    "psl": ("Amon", "air_pressure_at_mean_sea_level", "Sea Level Pressure", "Pa"),
    "ts": ("Amon", "surface_temperature", "Surface Temperature", "K"),
    "uas": ("Amon", "eastward_wind", "Eastward Near-Surface Wind", "m s-1"),
    "vas": ("Amon", "northward_wind", "Northward Near-Surface Wind", "m s-1"),
    "huss": ("Amon", "specific_humidity", "Near-Surface Specific Humidity", "1"),
    "clt": ("Amon", "cloud_area_fraction", "Total Cloud Cover Percentage", "%"),
    "rsds": (
        "Amon",
        "surface_downwelling_shortwave_flux_in_air",
        "Surface Downwelling Shortwave Radiation",
        "W m-2",
    ),
    "rlut": ("Amon", "toa_outgoing_longwave_flux", "TOA Outgoing Longwave Radiation", "W m-2"),
    "tasmax": ("day", "air_temperature", "Daily Maximum Near-Surface Air Temperature", "K"),
    "tasmin": ("day", "air_temperature", "Daily Minimum Near-Surface Air Temperature", "K"),
    "prday": ("day", "precipitation_flux", "Daily Precipitation", "kg m-2 s-1"),
    "sfcWind": ("day", "wind_speed", "Daily-Mean Near-Surface Wind Speed", "m s-1"),
    "hurs": ("day", "relative_humidity", "Near-Surface Relative Humidity", "%"),
    "tos": ("Omon", "sea_surface_temperature", "Sea Surface Temperature", "degC"),
    "sos": ("Omon", "sea_surface_salinity", "Sea Surface Salinity", "0.001"),
    "zos": ("Omon", "sea_surface_height_above_geoid", "Sea Surface Height Above Geoid", "m"),
    "mlotst": (
        "Omon",
        "ocean_mixed_layer_thickness_defined_by_sigma_t",
        "Ocean Mixed Layer Thickness Defined by Sigma T",
        "m",
    ),
    "thetao": (
        "Omon",
        "sea_water_potential_temperature",
        "Sea Water Potential Temperature",
        "degC",
    ),
    "so": ("Omon", "sea_water_salinity", "Sea Water Salinity", "0.001"),
    "mrso": ("Lmon", "mass_content_of_water_in_soil", "Total Soil Moisture Content", "kg m-2"),
    "mrro": ("Lmon", "runoff_flux", "Total Runoff", "kg m-2 s-1"),
    "gpp": (
        "Lmon",
        "gross_primary_productivity_of_biomass_expressed_as_carbon",
        "Carbon Mass Flux out of Atmosphere Due to Gross Primary Production on Land",
        "kg m-2 s-1",
    ),
    "lai": ("Lmon", "leaf_area_index", "Leaf Area Index", "1"),
    "evspsbl": (
        "Lmon",
        "water_evapotranspiration_flux",
        "Evaporation Including Sublimation and Transpiration",
        "kg m-2 s-1",
    ),
    "siconc": ("SImon", "sea_ice_area_fraction", "Sea-Ice Area Percentage", "%"),
    "sithick": ("SImon", "sea_ice_thickness", "Sea Ice Thickness", "m"),
    "sivol": ("SImon", "sea_ice_volume", "Sea-Ice Volume per Area", "m"),
    "snd": ("SImon", "surface_snow_thickness", "Snow Thickness", "m"),
}


def zipf_weights(n: int, s: float = 0.8) -> list[float]:
    """Popularity weights: a few models, experiments and variables hold most datasets."""
    return [1.0 / (k + 1) ** s for k in range(n)]


@dataclass(frozen=True, slots=True)
class Master:
    """A dataset without its version: one DRS directory above ``v{YYYYMMDD}``."""

    activity: str
    institution: str
    model: str
    experiment: str
    member: str
    table: str
    variable: str
    grid: str
    first_year: int
    last_year: int

    @property
    def master_id(self) -> str:
        return ".".join(
            (
                "CMIP6",
                self.activity,
                self.institution,
                self.model,
                self.experiment,
                self.member,
                self.table,
                self.variable,
                self.grid,
            )
        )

    def directory(self, version: str) -> str:
        return "/".join(
            (
                "CMIP6",
                self.activity,
                self.institution,
                self.model,
                self.experiment,
                self.member,
                self.table,
                self.variable,
                self.grid,
                version,
            )
        )

    def filename(self, time_range: str) -> str:
        return (
            f"{self.variable}_{self.table}_{self.model}_{self.experiment}_{self.member}_"
            f"{self.grid}_{time_range}.nc"
        )


def random_masters(n: int, rng: random.Random) -> list[Master]:
    """``n`` distinct dataset masters with skewed (Zipf-like) facet popularity."""
    mw, ew = zipf_weights(len(MODELS)), zipf_weights(len(EXPERIMENTS))
    rw, vw = zipf_weights(len(MEMBERS), 1.2), zipf_weights(len(VARIABLES))
    var_names = list(VARIABLES)
    seen: set[tuple[int, int, int, int]] = set()
    out: list[Master] = []
    limit = len(MODELS) * len(EXPERIMENTS) * len(MEMBERS) * len(VARIABLES)
    if n > limit:
        raise ValueError(f"at most {limit} distinct masters")
    while len(out) < n:
        k = min(4096, n - len(out))
        picks = zip(
            rng.choices(range(len(MODELS)), mw, k=k),
            rng.choices(range(len(EXPERIMENTS)), ew, k=k),
            rng.choices(range(len(MEMBERS)), rw, k=k),
            rng.choices(range(len(var_names)), vw, k=k),
            strict=True,
        )
        for key in picks:
            if key in seen:
                continue
            seen.add(key)
            m, e, r, v = key
            inst, model = MODELS[m]
            activity, exp, y0, y1 = EXPERIMENTS[e]
            var = var_names[v]
            table = VARIABLES[var][0]
            grid = TABLES[table][2] if m % 3 else "gr1" if table == "Omon" else "gr"
            out.append(Master(activity, inst, model, exp, MEMBERS[r], table, var, grid, y0, y1))
    return out


def random_versions(rng: random.Random, max_versions: int = 3) -> list[str]:
    """1 to ``max_versions`` distinct ``vYYYYMMDD`` versions, oldest first."""
    k = rng.choices(range(1, max_versions + 1), [0.6, 0.3, 0.1][:max_versions] or [1], k=1)[0]
    days = set()
    while len(days) < k:
        days.add((rng.randint(2018, 2023), rng.randint(1, 12), rng.randint(1, 28)))
    return [f"v{y:04d}{m:02d}{d:02d}" for y, m, d in sorted(days)]


def year_chunks(first: int, last: int, years_per_file: int) -> list[tuple[int, int]]:
    """Consecutive ``(first_year, last_year)`` ranges covering ``first..last``."""
    return [(y, min(y + years_per_file - 1, last)) for y in range(first, last + 1, years_per_file)]


# -- tiny NetCDF4 files --------------------------------------------------------------------


def write_cmip6_file(
    path: Path | str,
    *,
    variable: str = "tas",
    table: str = "Amon",
    model: str = "MPI-ESM1-2-LR",
    experiment: str = "historical",
    member: str = "r1i1p1f1",
    times: Sequence[float] = (15.5,),
    calendar: str = "standard",
    units: str = "days since 1850-01-01",
    nlat: int = 2,
    nlon: int = 3,
    seed: int = 0,
    compressed: bool = False,
) -> None:
    """A small CF/CMIP6-like NetCDF4 file: time(R) x lat x lon, with bounds and attributes;
    ``compressed``: the data variable as CMOR writes it (shuffle, deflate level 1, one
    record per chunk)."""
    import netCDF4
    import numpy as np

    std, long_name, vunits = VARIABLES.get(variable, VARIABLES["tas"])[1:]
    freq, realm, grid = TABLES.get(table, TABLES["Amon"])
    t = np.asarray(times, dtype="float64")
    step = float(t[1] - t[0]) if t.size > 1 else 30.0
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.setncatts(
            {
                "Conventions": "CF-1.7 CMIP-6.2",
                "activity_id": "CMIP",
                "creation_date": "2019-06-04T13:26:16Z",
                "data_specs_version": "01.00.29",
                "experiment": experiment,
                "experiment_id": experiment,
                "forcing_index": np.int32(1),
                "frequency": freq,
                "grid": "synthetic grid",
                "grid_label": grid,
                "initialization_index": np.int32(1),
                "institution": "Synthetic Institute for Benchmarks",
                "institution_id": "SIB",
                "mip_era": "CMIP6",
                "nominal_resolution": "250 km",
                "physics_index": np.int32(1),
                "realization_index": np.int32(1),
                "realm": realm,
                "source": f"{model} (2017)",
                "source_id": model,
                "source_type": "AOGCM",
                "sub_experiment": "none",
                "sub_experiment_id": "none",
                "table_id": table,
                "variable_id": variable,
                "variant_label": member,
                "license": "CMIP6 model data is licensed under CC BY 4.0",
                "tracking_id": f"hdl:21.14100/{seed:08d}-bench",
            }
        )
        nc.createDimension("time", t.size)
        nc.createDimension("lat", nlat)
        nc.createDimension("lon", nlon)
        nc.createDimension("bnds", 2)
        tv = nc.createVariable("time", "f8", ("time",))
        tv.setncatts(
            {
                "bounds": "time_bnds",
                "units": units,
                "calendar": calendar,
                "axis": "T",
                "long_name": "time",
                "standard_name": "time",
            }
        )
        tv[:] = t
        tb = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
        tb[:] = np.stack([t - step / 2, t + step / 2], axis=1)
        lat = nc.createVariable("lat", "f8", ("lat",))
        lat.setncatts(
            {
                "bounds": "lat_bnds",
                "units": "degrees_north",
                "axis": "Y",
                "long_name": "Latitude",
                "standard_name": "latitude",
            }
        )
        lat[:] = np.linspace(-45.0, 45.0, nlat)
        lb = nc.createVariable("lat_bnds", "f8", ("lat", "bnds"))
        dlat = 90.0 / max(nlat - 1, 1)
        lb[:] = np.stack([lat[:] - dlat / 2, lat[:] + dlat / 2], axis=1)
        lon = nc.createVariable("lon", "f8", ("lon",))
        lon.setncatts(
            {
                "bounds": "lon_bnds",
                "units": "degrees_east",
                "axis": "X",
                "long_name": "Longitude",
                "standard_name": "longitude",
            }
        )
        lon[:] = np.linspace(0.0, 360.0, nlon, endpoint=False)
        ob = nc.createVariable("lon_bnds", "f8", ("lon", "bnds"))
        dlon = 360.0 / nlon
        ob[:] = np.stack([lon[:] - dlon / 2, lon[:] + dlon / 2], axis=1)
        packing: dict[str, Any] = (
            {"zlib": True, "complevel": 1, "shuffle": True, "chunksizes": (1, nlat, nlon)}
            if compressed
            else {}
        )
        v = nc.createVariable(
            variable, "f4", ("time", "lat", "lon"), fill_value=np.float32(1e20), **packing
        )
        v.setncatts(
            {
                "standard_name": std,
                "long_name": long_name,
                "units": vunits,
                "cell_methods": "area: time: mean",
                "cell_measures": "area: areacella",
                "comment": "synthetic values for benchmarks",
            }
        )
        rng = np.random.default_rng(seed)
        v[:] = (280.0 + rng.standard_normal((t.size, nlat, nlon))).astype("f4")


def month_times(first_year: int, n_records: int, start_index: int = 0) -> list[float]:
    """Mid-month times in 'days since 1850-01-01' (noleap-like 365/12-day months)."""
    base = (first_year - 1850) * 365.0
    step = 365.0 / 12
    return [base + (start_index + i + 0.5) * step for i in range(n_records)]


def copy_tree_files(pairs: Iterator[tuple[Path, Path]]) -> int:
    """Copy ``(template, destination)`` pairs, creating directories; return the count."""
    made: set[Path] = set()
    n = 0
    for src, dst in pairs:
        parent = dst.parent
        if parent not in made:
            parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        shutil.copyfile(src, dst)
        n += 1
    return n


# -- timing and reporting ------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds one call of ``fn`` took, and its result."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall-clock and CPU seconds (of this process) one call of ``fn`` took, and its result.

    On a shared machine the CPU time shows the work done, whatever else was running.
    """
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def tree_cpu(pid: int | None = None) -> float:
    """CPU seconds so far of a process (this one by default) and all its descendants."""
    import contextlib

    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            c = p.cpu_times()
            total += c.user + c.system
    return total


def current_rss_mb() -> float:
    """Resident memory of this process now, in MiB (Linux)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_avg() -> float:
    """The 1-minute load average."""
    return os.getloadavg()[0]


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    """Nearest-rank percentiles of ``values``, keyed 'p50', 'p95', ..."""
    ordered = sorted(values)
    out = {}
    for q in qs:
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        out[f"p{q:g}"] = ordered[rank - 1]
    return out


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    return {
        "nproc": nproc,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg": list(os.getloadavg()),
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("insitu", "numpy", "xarray", "dask", "netCDF4", "SQLAlchemy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "-"
    return out


def emit(name: str, results: dict[str, Any]) -> None:
    """Print the machine-readable result: one JSON object on one line of stdout."""
    payload = {
        "benchmark": name,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "results": results,
    }
    print(json.dumps(payload), flush=True)


def say(*args: Any) -> None:
    """Human-readable progress on stderr, so stdout stays parseable."""
    print(*args, file=sys.stderr, flush=True)


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def one_dataset_catalog(base: Path, root: Path, files: int, workers: int) -> tuple[Any, str, float]:
    """A catalog in ``base/catalog.db`` of the archive at ``root``, which must scan to
    ``files`` new files of one dataset: (the Catalog, the dataset's id, scan seconds)."""
    from insitu.catalog import Catalog

    cat = Catalog(sqlite_uri(base / "catalog.db"))
    cat.add_collection("bench", root)
    scan_s, (rep,) = timed(lambda: cat.scan("bench", workers=workers))
    assert rep.new == files and rep.datasets == 1 and not rep.problems, rep.line()
    return cat, cat.search(limit=1).results[0].dataset_id, scan_s


def sqlite_uri(path: Path) -> str:
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            p.unlink()
    return f"sqlite:///{path}"


def code_info() -> dict[str, Any]:
    """The commit of the code measured, and the files of src/ and bench/ that differ from it."""

    def git(*a: str) -> str:
        try:
            r = subprocess.run(
                ["git", *a],
                cwd=Path(__file__).resolve().parent.parent,
                capture_output=True,
                text=True,
                timeout=30,
            )
            return r.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": git("status", "--porcelain", "--", "src", "bench").splitlines(),
    }


def evict_page_cache(paths: Sequence[str | Path]) -> None:
    """Drop these files' pages from the page cache (``posix_fadvise(DONTNEED)``; written
    pages are flushed first): the next read comes from the disk. Touches no other file and
    needs no privilege, unlike ``/proc/sys/vm/drop_caches``."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
