"""Generate the archive of the compute benchmarks: one CMIP6 dataset in two storage variants.

    python bench/compute_archive.py                  # 5 GB (uncompressed size) per variant
    python bench/compute_archive.py --gb 1           # smaller
    python bench/compute_archive.py --variable ta    # 3-D ta(time, plev, lat, lon) instead

Writes under ``bench/data/compute/<slug>/`` (git-ignored; the slug names variable, grid and
size, e.g. ``tas-360x720-5GB``, so archives of several sizes coexist), one root per variant::

    <data-dir>/<slug>/<variant>/CMIP6/CMIP/SIB/SIB-ESM1-HR/piControl/r1i1p1f1/Amon/tas/gr/v20200101/
        tas_Amon_SIB-ESM1-HR_piControl_r1i1p1f1_gr_185001-185012.nc   (one year, 12 records)
        ...

Variants (same values, bit for bit, in both):

* ``compressed``: zlib level 4 with shuffle, chunks of one time step (what CMOR writes);
* ``uncompressed``: no filters. By default chunked one time step per chunk with an unlimited
  time dimension, like CMOR output without deflate: HDF5 cannot store a variable along an
  unlimited dimension contiguously, and ``ncra`` needs a record (unlimited) dimension. With
  ``--uncompressed-layout contiguous`` time is a fixed dimension and the variable is stored
  contiguously instead (then ``ncra`` cannot run on that variant).

The field is float32 ``tas`` in K: a smooth climate (meridional gradient, seasonal cycle
opposite in the two hemispheres, zonal waves, a slow drift) plus white noise of 0.6 K,
rounded to 2**-10 K, so zlib+shuffle compresses it about 2.4x, like real model output. CF
metadata: units, standard_name, _FillValue/missing_value 1e20, time in 'days since
1850-01-01' with calendar 'noleap' and time_bnds, lat/lon with bounds, scalar height.

Idempotent: ``<data-dir>/<slug>/manifest.json`` records the parameters and the files; a second run
with the same parameters does nothing. Files are written under a temporary name and renamed,
so an interrupted run resumes where it stopped; other parameters regenerate the archive.
Generation runs in ``--workers`` processes (each file's values are made once and written to
both variants).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
DEFAULT_DIR = BENCH / "data" / "compute"
GENERATOR_VERSION = 1

VARIANTS = ("compressed", "uncompressed")
INSTITUTION, MODEL, EXPERIMENT, MEMBER, TABLE, GRID, VERSION = (
    "SIB",
    "SIB-ESM1-HR",
    "piControl",
    "r1i1p1f1",
    "Amon",
    "gr",
    "v20200101",
)
FIRST_YEAR = 1850
MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# CMIP6 Amon plev19, Pa.
PLEV19 = (
    100000, 92500, 85000, 70000, 60000, 50000, 40000, 30000, 25000, 20000,
    15000, 10000, 7000, 5000, 3000, 2000, 1000, 500, 100,
)  # fmt: skip
VARS = {
    "tas": ("air_temperature", "Near-Surface Air Temperature"),
    "ta": ("air_temperature", "Air Temperature"),
}
NOISE_K = 0.6
QUANTUM_K = 2.0**-10
FILL = 1.0e20


@dataclass(frozen=True)
class Params:
    gb: float
    variable: str
    nlat: int
    nlon: int
    nlev: int
    years_per_file: int
    uncompressed_layout: str
    seed: int
    generator_version: int = GENERATOR_VERSION

    @property
    def bytes_per_year(self) -> int:
        return 12 * self.nlev * self.nlat * self.nlon * 4

    @property
    def years(self) -> int:
        return max(1, math.ceil(self.gb * 1e9 / self.bytes_per_year))

    @property
    def n_files(self) -> int:
        return math.ceil(self.years / self.years_per_file)

    @property
    def slug(self) -> str:
        """Directory name of this archive under the data dir: sizes and layouts coexist."""
        name = f"{self.variable}{self.nlev if self.variable == 'ta' else ''}"
        name += f"-{self.nlat}x{self.nlon}-{self.gb:g}GB"
        if self.years_per_file != 1:
            name += f"-{self.years_per_file}y"
        if self.uncompressed_layout != "chunked":
            name += f"-{self.uncompressed_layout}"
        if self.seed != 1:
            name += f"-seed{self.seed}"
        return name

    def dataset_dir(self, root: Path, variant: str) -> Path:
        return (
            root
            / variant
            / "CMIP6"
            / "CMIP"
            / INSTITUTION
            / MODEL
            / EXPERIMENT
            / MEMBER
            / TABLE
            / self.variable
            / GRID
            / VERSION
        )

    def file_years(self) -> list[tuple[int, int]]:
        last = FIRST_YEAR + self.years - 1
        return [
            (y, min(y + self.years_per_file - 1, last))
            for y in range(FIRST_YEAR, last + 1, self.years_per_file)
        ]

    def filename(self, y0: int, y1: int) -> str:
        return (
            f"{self.variable}_{TABLE}_{MODEL}_{EXPERIMENT}_{MEMBER}_{GRID}_{y0:04d}01-{y1:04d}12.nc"
        )


# -- values ----------------------------------------------------------------------------------


def grid(nlat: int, nlon: int) -> tuple[Any, Any, Any, Any]:
    """Cell centres and bounds of a regular global lat-lon grid."""
    import numpy as np

    dlat, dlon = 180.0 / nlat, 360.0 / nlon
    lat = -90.0 + dlat * (np.arange(nlat) + 0.5)
    lon = dlon * (np.arange(nlon) + 0.5)
    lat_b = np.stack([lat - dlat / 2, lat + dlat / 2], axis=1)
    lon_b = np.stack([lon - dlon / 2, lon + dlon / 2], axis=1)
    return lat, lon, lat_b, lon_b


def values(p: Params, y0: int, y1: int) -> Any:
    """float32 (T, [plev,] lat, lon) for years y0..y1: smooth climate + quantised noise."""
    import numpy as np

    lat, lon, _, _ = grid(p.nlat, p.nlon)
    phi = np.deg2rad(lat)[:, None]
    lam = np.deg2rad(lon)[None, :]
    # Annual-mean surface climate with zonal waves (a land-sea contrast proxy).
    clim = (
        300.0
        - 45.0 * np.sin(phi) ** 2
        + 3.0 * np.cos(3 * lam) * np.cos(phi)
        + 1.5 * np.sin(2 * lam + 3 * phi)
    )
    season = 12.0 * np.sin(phi) * np.abs(np.sin(phi)) ** 0.5  # amplitude, sign by hemisphere
    nyear = y1 - y0 + 1
    months = np.arange(12 * nyear)
    phase = -np.cos(2 * np.pi * (months % 12) / 12.0)  # NH coldest in January
    years = y0 + months // 12
    drift = 0.002 * (years - FIRST_YEAR) + 0.3 * np.sin(2 * np.pi * (years - FIRST_YEAR) / 37.0)
    surf = (clim[None] + phase[:, None, None] * season[None] + drift[:, None, None]).astype("f4")
    if p.variable == "ta":
        z_km = 7.0 * np.log(100000.0 / np.asarray(PLEV19[: p.nlev], dtype="f8"))
        lapse = np.minimum(6.5 * z_km, 90.0).astype("f4")  # an isothermal-ish stratosphere
        field = surf[:, None] - lapse[None, :, None, None]
    else:
        field = surf
    rng = np.random.default_rng([p.seed, y0])
    field += NOISE_K * rng.standard_normal(field.shape, dtype="f4")
    np.multiply(field, 1.0 / QUANTUM_K, out=field)
    np.rint(field, out=field)
    np.multiply(field, QUANTUM_K, out=field)
    return field


def time_axis(y0: int, y1: int) -> tuple[Any, Any]:
    """Mid-month times and month bounds in 'days since 1850-01-01', noleap calendar."""
    import numpy as np

    starts = np.concatenate([[0], np.cumsum(MONTH_DAYS)[:-1]]).astype("f8")
    ends = starts + np.asarray(MONTH_DAYS, dtype="f8")
    b = []
    for y in range(y0, y1 + 1):
        off = 365.0 * (y - 1850)
        b.append(np.stack([starts + off, ends + off], axis=1))
    bnds = np.concatenate(b)
    return bnds.mean(axis=1), bnds


# -- writing ---------------------------------------------------------------------------------


def write_file(path: Path, p: Params, variant: str, y0: int, y1: int, data: Any) -> None:
    import netCDF4
    import numpy as np

    lat, lon, lat_b, lon_b = grid(p.nlat, p.nlon)
    t, t_b = time_axis(y0, y1)
    std, long_name = VARS[p.variable]
    contiguous = variant == "uncompressed" and p.uncompressed_layout == "contiguous"
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as nc:
        nc.setncatts(
            {
                "Conventions": "CF-1.7 CMIP-6.2",
                "activity_id": "CMIP",
                "creation_date": "2020-01-01T00:00:00Z",
                "data_specs_version": "01.00.31",
                "experiment": "pre-industrial control",
                "experiment_id": EXPERIMENT,
                "forcing_index": np.int32(1),
                "frequency": "mon",
                "grid": f"regular {p.nlat}x{p.nlon} lat-lon grid",
                "grid_label": GRID,
                "initialization_index": np.int32(1),
                "institution": "Synthetic Institute for Benchmarks",
                "institution_id": INSTITUTION,
                "mip_era": "CMIP6",
                "nominal_resolution": "50 km" if p.nlat >= 360 else "100 km",
                "parent_experiment_id": "piControl-spinup",
                "physics_index": np.int32(1),
                "product": "model-output",
                "realization_index": np.int32(1),
                "realm": "atmos",
                "source": f"{MODEL} (2020): synthetic data for the insitu compute benchmarks",
                "source_id": MODEL,
                "source_type": "AOGCM",
                "sub_experiment": "none",
                "sub_experiment_id": "none",
                "table_id": TABLE,
                "variable_id": p.variable,
                "variant_label": MEMBER,
                "license": "CMIP6 model data is licensed under CC BY 4.0",
                "tracking_id": f"hdl:21.14100/bench-{p.seed:04d}-{y0:04d}",
            }
        )
        nc.createDimension("time", None if not contiguous else len(t))
        nc.createDimension("bnds", 2)
        if p.variable == "ta":
            nc.createDimension("plev", p.nlev)
        nc.createDimension("lat", p.nlat)
        nc.createDimension("lon", p.nlon)

        tv = nc.createVariable("time", "f8", ("time",))
        tv.setncatts(
            {
                "bounds": "time_bnds",
                "units": "days since 1850-01-01",
                "calendar": "noleap",
                "axis": "T",
                "long_name": "time",
                "standard_name": "time",
            }
        )
        tv[:] = t
        nc.createVariable("time_bnds", "f8", ("time", "bnds"))[:] = t_b
        if p.variable == "ta":
            pv = nc.createVariable("plev", "f8", ("plev",))
            pv.setncatts(
                {
                    "units": "Pa",
                    "axis": "Z",
                    "positive": "down",
                    "long_name": "pressure",
                    "standard_name": "air_pressure",
                }
            )
            pv[:] = np.asarray(PLEV19[: p.nlev], dtype="f8")
        la = nc.createVariable("lat", "f8", ("lat",))
        la.setncatts(
            {
                "bounds": "lat_bnds",
                "units": "degrees_north",
                "axis": "Y",
                "long_name": "Latitude",
                "standard_name": "latitude",
            }
        )
        la[:] = lat
        nc.createVariable("lat_bnds", "f8", ("lat", "bnds"))[:] = lat_b
        lo = nc.createVariable("lon", "f8", ("lon",))
        lo.setncatts(
            {
                "bounds": "lon_bnds",
                "units": "degrees_east",
                "axis": "X",
                "long_name": "Longitude",
                "standard_name": "longitude",
            }
        )
        lo[:] = lon
        nc.createVariable("lon_bnds", "f8", ("lon", "bnds"))[:] = lon_b
        if p.variable == "tas":
            h = nc.createVariable("height", "f8", ())
            h.setncatts(
                {
                    "units": "m",
                    "axis": "Z",
                    "positive": "up",
                    "long_name": "height",
                    "standard_name": "height",
                }
            )
            h.assignValue(2.0)

        dims = ("time", "plev", "lat", "lon") if p.variable == "ta" else ("time", "lat", "lon")
        chunks = (1, *data.shape[1:])
        kw: dict[str, Any] = {"fill_value": np.float32(FILL)}
        if variant == "compressed":
            kw.update(zlib=True, complevel=4, shuffle=True, chunksizes=chunks)
        elif contiguous:
            kw.update(contiguous=True)
        else:
            kw.update(chunksizes=chunks)
        v = nc.createVariable(p.variable, "f4", dims, **kw)
        v.setncatts(
            {
                "standard_name": std,
                "long_name": long_name,
                "units": "K",
                "missing_value": np.float32(FILL),
                "cell_methods": "area: time: mean",
                "cell_measures": "area: areacella",
                "comment": "synthetic: smooth climate plus noise, for benchmarks",
                "original_name": p.variable.upper(),
            }
        )
        if p.variable == "tas":
            v.coordinates = "height"
        v.set_auto_maskandscale(False)
        v[:] = data


def make_file(args: tuple[Params, str, int, int]) -> dict[str, int]:
    """Write one file's years to every variant that lacks it; return the sizes written."""
    p, root_s, y0, y1 = args
    root = Path(root_s)
    name = p.filename(y0, y1)
    todo = [v for v in VARIANTS if not (p.dataset_dir(root, v) / name).exists()]
    if not todo:
        return {}
    data = values(p, y0, y1)
    out = {}
    for variant in todo:
        final = p.dataset_dir(root, variant) / name
        tmp = final.with_name(final.name + ".tmp")
        write_file(tmp, p, variant, y0, y1, data)
        os.replace(tmp, final)
        out[variant] = final.stat().st_size
    return out


def manifest_path(root: Path) -> Path:
    return root / "manifest.json"


def load_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads(manifest_path(root).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _locate(man: dict[str, Any], p: Params, root: Path) -> dict[str, Any]:
    """The manifest with its absolute paths pointing at `root` (the directory may move)."""
    man["root"] = str(root)
    for v in VARIANTS:
        man["variants"][v]["root"] = str(root / v)
        man["variants"][v]["dataset_dir"] = str(p.dataset_dir(root, v))
    return man


def ensure(p: Params, base: Path, workers: int = 2, *, log: Any = None) -> dict[str, Any]:
    """Generate the archive under ``base/<slug>`` if missing or incomplete; return the manifest."""
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    root = (base / p.slug).resolve()
    man = load_manifest(root)
    if man and man.get("params") == asdict(p):
        ok = all(
            Path(root / f["path"]).is_file() for v in VARIANTS for f in man["variants"][v]["files"]
        )
        if ok:
            say(f"[archive] up to date: {root} ({p.n_files} files x {len(VARIANTS)} variants)")
            return _locate(man, p, root)
    elif man is not None or any((root / v).exists() for v in VARIANTS):
        old = (man or {}).get("params")
        say(f"[archive] parameters changed ({old} -> {asdict(p)}): regenerating")
        for v in VARIANTS:
            shutil.rmtree(root / v, ignore_errors=True)
        manifest_path(root).unlink(missing_ok=True)
    # A manifest-less directory with the same layout (interrupted run) is resumed: a
    # final-named file is complete (written under .tmp, then renamed).
    for v in VARIANTS:
        d = p.dataset_dir(root, v)
        d.mkdir(parents=True, exist_ok=True)
        for tmp in d.glob("*.tmp"):
            tmp.unlink()
    years = p.file_years()
    say(
        f"[archive] writing {len(years)} files x {len(VARIANTS)} variants of "
        f"{p.variable} {p.nlev if p.variable == 'ta' else ''}{'x' if p.variable == 'ta' else ''}"
        f"{p.nlat}x{p.nlon}, {p.years} years ({p.years * p.bytes_per_year / 1e9:.2f} GB "
        f"uncompressed per variant) with {workers} processes under {root}"
    )
    t0 = time.perf_counter()
    tasks = [(p, str(root), y0, y1) for y0, y1 in years]
    done = 0
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for _ in ex.map(make_file, tasks, chunksize=1):
            done += 1
            if done % 50 == 0 or done == len(tasks):
                el = time.perf_counter() - t0
                say(f"[archive] {done}/{len(tasks)} files ({el:.0f} s)")
    gen_s = time.perf_counter() - t0
    variants: dict[str, Any] = {}
    for v in VARIANTS:
        d = p.dataset_dir(root, v)
        files = [
            {"path": str((d / p.filename(y0, y1)).relative_to(root)),
             "bytes": (d / p.filename(y0, y1)).stat().st_size}
            for y0, y1 in years
        ]  # fmt: skip
        disk = sum(f["bytes"] for f in files)
        variants[v] = {
            "root": str(root / v),
            "dataset_dir": str(d),
            "n_files": len(files),
            "disk_bytes": disk,
            "compression_ratio": p.years * p.bytes_per_year / disk,
            "files": files,
        }
    man = {
        "root": str(root),
        "params": asdict(p),
        "uncompressed_bytes": p.years * p.bytes_per_year,
        "years": p.years,
        "records": 12 * p.years,
        "shape_per_record": [p.nlev, p.nlat, p.nlon] if p.variable == "ta" else [p.nlat, p.nlon],
        "generate_s": gen_s,
        "variants": variants,
    }
    tmp = manifest_path(root).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(man, indent=1))
    os.replace(tmp, manifest_path(root))
    say(
        f"[archive] done in {gen_s:.0f} s; on disk: "
        + ", ".join(
            f"{v} {variants[v]['disk_bytes'] / 1e9:.2f} GB "
            f"(ratio {variants[v]['compression_ratio']:.2f})"
            for v in VARIANTS
        )
    )
    return man


def add_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--gb", type=float, default=5.0, help="uncompressed GB (1e9) per variant (5)")
    ap.add_argument("--variable", choices=sorted(VARS), default="tas", help="tas (2-D) or ta (3-D)")
    ap.add_argument("--grid", default="360x720", help="lat x lon points (360x720, 0.5 degree)")
    ap.add_argument("--plev", type=int, default=19, help="pressure levels of ta (19)")
    ap.add_argument("--years-per-file", type=int, default=1, help="years (x12 records) per file")
    ap.add_argument(
        "--uncompressed-layout",
        choices=["chunked", "contiguous"],
        default="chunked",
        help="uncompressed variant: one-record chunks and unlimited time (CMOR-like, default) "
        "or fixed time and contiguous storage (ncra cannot read the latter)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--gen-workers", type=int, default=2, help="generator processes (2)")


def params_from(args: argparse.Namespace) -> Params:
    nlat, nlon = (int(x) for x in args.grid.split("x"))
    nlev = min(args.plev, len(PLEV19)) if args.variable == "ta" else 1
    return Params(
        gb=args.gb,
        variable=args.variable,
        nlat=nlat,
        nlon=nlon,
        nlev=nlev,
        years_per_file=args.years_per_file,
        uncompressed_layout=args.uncompressed_layout,
        seed=args.seed,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_args(ap)
    args = ap.parse_args(argv)
    man = ensure(params_from(args), args.data_dir, args.gen_workers)
    summary = {k: v for k, v in man.items() if k != "variants"}
    summary["variants"] = {
        v: {k: x for k, x in d.items() if k != "files"} for v, d in man["variants"].items()
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
