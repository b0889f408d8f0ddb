"""Benchmark 5: opening a 1,000-file dataset from the catalog vs xarray.open_mfdataset.

Writes N small NetCDF4 files of ONE CMIP6 dataset (consecutive time ranges of R monthly
records each), scans them, then times (after a warm-up that imports xarray and dask):

* ``catalog.open_dataset(dataset_id)`` (median of --repeat runs);
* ``xarray.open_mfdataset(files, combine='by_coords', data_vars='minimal',
  coords='minimal', compat='override')``, the recommended fast settings;
* ``xarray.open_mfdataset(files)`` with default settings (--default-repeat runs; 0 skips).

It then checks that both give equal values (``xarray.testing.assert_equal`` on the data
variable and the time bounds), so that the comparison is honest, and times loading all
values through each.

    python bench/bench_open.py [--files 1000] [--records 3] [--repeat 5] [--mf-repeat 3]
                               [--default-repeat 1] [--parallel]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_DIR,
    Master,
    emit,
    fresh_dir,
    median,
    month_times,
    one_dataset_catalog,
    say,
    timed,
    write_cmip6_file,
)

TARGET_SPEEDUP = 20.0
MASTER = Master(
    "CMIP", "MPI-M", "MPI-ESM1-2-LR", "historical", "r1i1p1f1", "Amon", "tas", "gn", 1850, 2014
)
VERSION = "v20190710"


def write_dataset(root: Path, n_files: int, records: int, nlat: int, nlon: int) -> list[Path]:
    """``n_files`` consecutive files of one dataset; file k holds months k*R .. k*R+R-1."""
    d = root / MASTER.directory(VERSION)
    d.mkdir(parents=True)
    paths = []
    for k in range(n_files):
        i0, i1 = k * records, (k + 1) * records - 1
        tr = f"{1850 + i0 // 12:04d}{i0 % 12 + 1:02d}-{1850 + i1 // 12:04d}{i1 % 12 + 1:02d}"
        path = d / MASTER.filename(tr)
        write_cmip6_file(
            path,
            variable=MASTER.variable,
            table=MASTER.table,
            model=MASTER.model,
            experiment=MASTER.experiment,
            member=MASTER.member,
            times=month_times(1850, records, i0),
            calendar="standard",
            nlat=nlat,
            nlon=nlon,
            seed=k,
        )
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000, help="files in the dataset (1000)")
    ap.add_argument("--records", type=int, default=3, help="time records per file (3)")
    ap.add_argument("--grid", default="2x3", help="lat x lon points (2x3)")
    ap.add_argument("--repeat", type=int, default=5, help="timed catalog opens (5)")
    ap.add_argument(
        "--mf-repeat",
        type=int,
        default=3,
        help="timed open_mfdataset runs with the fast settings (3)",
    )
    ap.add_argument(
        "--default-repeat",
        type=int,
        default=1,
        help="timed open_mfdataset runs with default settings; 0 skips (1)",
    )
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="also time open_mfdataset(..., parallel=True) with the fast settings",
    )
    ap.add_argument("--workers", type=int, default=2, help="scan worker processes (2)")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR / "open")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args(argv)
    nlat, nlon = (int(x) for x in args.grid.split("x"))

    base = fresh_dir(args.data_dir)
    root = base / "archive"
    gen_s, paths = timed(lambda: write_dataset(root, args.files, args.records, nlat, nlon))
    files = [str(p) for p in paths]
    say(f"[open] wrote {len(files)} files of one dataset in {gen_s:.1f} s")

    cat, ds_id, scan_s = one_dataset_catalog(base, root, args.files, args.workers)
    say(f"[open] scanned in {scan_s:.1f} s; dataset {ds_id}")

    # Warm-up: the first call imports xarray, dask, cftime and pandas.
    import_s, _ = timed(lambda: cat.open_dataset(ds_id))
    import xarray as xr

    fast: dict[str, Any] = {
        "combine": "by_coords",
        "data_vars": "minimal",
        "coords": "minimal",
        "compat": "override",
    }
    xr.open_mfdataset(files[:20], **fast).close()
    say(f"[open] warm-up (first open_dataset, imports): {import_s:.2f} s")

    ours_s = []
    for _ in range(args.repeat):
        t, ds = timed(lambda: cat.open_dataset(ds_id))
        ours_s.append(t)
        ds.close()
    say(
        f"[open] catalog.open_dataset: median {median(ours_s) * 1e3:.0f} ms "
        f"(runs: {', '.join(f'{t * 1e3:.0f}' for t in ours_s)} ms)"
    )

    def mf(**kw: Any) -> Any:
        with warnings.catch_warnings():
            # The defaults run wants today's defaults; do not warn that they will change.
            warnings.simplefilter("ignore", FutureWarning)
            return xr.open_mfdataset(files, **kw)

    mf_s = []
    theirs = None
    for _ in range(max(1, args.mf_repeat)):
        if theirs is not None:
            theirs.close()
        t, theirs = timed(lambda: mf(**fast))
        mf_s.append(t)
    say(
        f"[open] open_mfdataset (fast settings): median {median(mf_s):.2f} s "
        f"(runs: {', '.join(f'{t:.2f}' for t in mf_s)} s)"
    )

    res: dict[str, Any] = {
        "files": args.files,
        "records_per_file": args.records,
        "grid": args.grid,
        "generate_s": gen_s,
        "scan_s": scan_s,
        "warmup_first_open_s": import_s,
        "insitu_open_s_median": median(ours_s),
        "insitu_open_s_all": ours_s,
        "mf_fast_s_median": median(mf_s),
        "mf_fast_s_all": mf_s,
    }
    res["speedup_vs_mf_fast"] = median(mf_s) / median(ours_s)

    if args.parallel:
        par_s = []
        for _ in range(args.mf_repeat):
            t, ds = timed(lambda: mf(parallel=True, **fast))
            par_s.append(t)
            ds.close()
        res["mf_fast_parallel_s_median"] = median(par_s)
        say(f"[open] open_mfdataset (fast settings, parallel=True): median {median(par_s):.2f} s")

    default_s = []
    plain = None
    for _ in range(args.default_repeat):
        if plain is not None:
            plain.close()
        t, plain = timed(lambda: mf())
        default_s.append(t)
    if default_s:
        res["mf_default_s_median"] = median(default_s)
        res["speedup_vs_mf_default"] = median(default_s) / median(ours_s)
        say(f"[open] open_mfdataset (defaults): median {median(default_s):.2f} s")

    # Honesty check: the same values, coordinates and time bounds.
    var = MASTER.variable
    # The last timed open_mfdataset results are still open; compare against them.
    ours = cat.open_dataset(ds_id)
    load_ours_s, _ = timed(lambda: ours[var].load())
    load_theirs_s, _ = timed(lambda: theirs[var].load())
    xr.testing.assert_equal(ours[var], theirs[var])
    xr.testing.assert_equal(ours["time_bnds"].load(), theirs["time_bnds"].load())
    assert ours.sizes["time"] == args.files * args.records
    theirs.close()
    if plain is not None:
        xr.testing.assert_equal(ours[var], plain[var])
        plain.close()
    res.update(
        values_equal=True, load_values_insitu_s=load_ours_s, load_values_mf_fast_s=load_theirs_s
    )
    say(
        f"[open] values equal (assert_equal on {var!r} and time_bnds); loading all values: "
        f"insitu {load_ours_s:.2f} s, open_mfdataset {load_theirs_s:.2f} s"
    )

    res["target_speedup"] = TARGET_SPEEDUP
    res["target_met"] = res["speedup_vs_mf_fast"] >= TARGET_SPEEDUP
    say(
        f"[open] speed-up vs open_mfdataset (fast settings): {res['speedup_vs_mf_fast']:.1f}x; "
        f"target {TARGET_SPEEDUP:.0f}x -> {'met' if res['target_met'] else 'MISSED'}"
    )
    cat.close()
    if not args.keep:
        shutil.rmtree(base)
    emit("open", res)
    return res


if __name__ == "__main__":
    main()
