"""Benchmark 5b: opening a 1,000-year daily dataset from the catalog vs xarray.open_mfdataset.

Writes N NetCDF4 files of ONE CMIP6 piControl dataset (table ``day``), one model year of
daily data each: 365 records in the ``noleap`` calendar, ``days since 1850-01-01``, years
1850 (``--first-year``) to 1850+N-1, so that the dates reach past numpy's datetime64[ns]
range (2262) as a piControl run's do. With the default N = 1,000: 365,000 time steps. It
scans them, then runs the peers round-robin, each round in a new process per peer:

* ``insitu``: ``insitu.open_dataset(dataset_id, catalog=cat)``, one ``Catalog`` kept;
* ``insitu-default``: ``insitu.open_dataset(dataset_id)``, the settings' catalog (a new
  ``Catalog`` per call, which reads the 1,000 file records again);
* ``mf``: ``xarray.open_mfdataset(files, combine='nested', concat_dim='time',
  data_vars='minimal', coords='minimal', compat='override',
  decode_times=CFDatetimeCoder(use_cftime=True))``, its fast settings (no warning, no
  attempt at numpy dates);
* ``mf-join``: the same with ``join='override'`` (the files' lat and lon taken from the
  first file instead of aligned);
* ``mf-par`` (with ``--parallel``): the same as ``mf-join`` with ``parallel=True``, which
  crashes now and then with netCDF4 (SIGSEGV in a reading thread; xarray issues 7079 and
  11088): a crashed process is run again, at most three times; crashes are counted, and
  a peer whose every process crashed has no figure.

Cold is the first open in a new process, timed from the process' start (so every peer's
imports count); warm is the median of ``--warm`` further opens in that process. Each child
also counts the warnings its opens emit. Then, in this process, the time axis and a few
years of values of ``insitu`` and ``mf`` are compared (``xarray.testing.assert_equal``).

    python bench/bench_open_long.py [--files 1000] [--rounds 3] [--warm 2] [--parallel]
                                    [--first-year 1850]
    python bench/bench_open_long.py --profile   # where insitu's time goes, cold and warm
"""

from __future__ import annotations

import time

_START = time.perf_counter()  # a child's cold time counts from here: imports included

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    DATA_DIR,
    Master,
    emit,
    fresh_dir,
    median,
    one_dataset_catalog,
    say,
    timed,
    write_cmip6_file,
)

TARGET_SPEEDUP = 20.0  # warm, vs the fastest open_mfdataset configuration
TARGET_WARM_S = 0.3
MASTER = Master(
    "CMIP", "MPI-M", "MPI-ESM1-2-LR", "piControl", "r1i1p1f1", "day", "tas", "gn", 1850, 2849
)
VERSION = "v20190710"
PEERS = ("insitu", "insitu-default", "mf", "mf-join", "mf-par")
ATTEMPTS = 3  # processes of a peer run per round, while they crash


def write_dataset(root: Path, n_files: int, first_year: int, nlat: int, nlon: int) -> list[Path]:
    """``n_files`` files of one dataset; file k holds the 365 days of year ``first_year + k``,
    counted in days since 1850-01-01."""
    d = root / MASTER.directory(VERSION)
    d.mkdir(parents=True)
    paths = []
    for k in range(n_files):
        year = first_year + k
        path = d / MASTER.filename(f"{year:04d}0101-{year:04d}1231")
        write_cmip6_file(
            path,
            variable=MASTER.variable,
            table=MASTER.table,
            model=MASTER.model,
            experiment=MASTER.experiment,
            member=MASTER.member,
            times=[(year - 1850) * 365 + i + 0.5 for i in range(365)],
            calendar="noleap",
            nlat=nlat,
            nlon=nlon,
            seed=k,
        )
        paths.append(path)
    return paths


def mf_settings(peer: str) -> dict[str, Any]:
    """``open_mfdataset`` keyword arguments of an ``mf*`` peer."""
    import xarray as xr

    kw: dict[str, Any] = {
        "combine": "nested",
        "concat_dim": "time",
        "data_vars": "minimal",
        "coords": "minimal",
        "compat": "override",
        "decode_times": xr.coders.CFDatetimeCoder(use_cftime=True),
    }
    if peer in ("mf-join", "mf-par"):
        kw["join"] = "override"
    if peer == "mf-par":
        kw["parallel"] = True
    return kw


def profile_insitu(base: Path) -> None:
    """cProfile of insitu's first open in this new process (imports done before) and of a
    warm one, to stderr: where the time goes."""
    import cProfile
    import io
    import pstats

    import dask.array  # noqa: F401
    import xarray  # noqa: F401

    import insitu
    from insitu.catalog import Catalog

    cat = Catalog(sqlite_uri_keep(base / "catalog.db"))
    ds_id = (base / "dataset_id").read_text()
    for label in ("first open (cold, imports done)", "second open (warm)"):
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(insitu.open_dataset, ds_id, catalog=cat)
        t = time.perf_counter() - t0
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
        say(f"[open-long] profile, {label}: {t:.3f} s\n{out.getvalue()}")


def child(peer: str, base: Path, n_warm: int) -> None:
    """One peer in this new process: a cold open, ``n_warm`` warm opens; one JSON line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if peer == "insitu":
            import insitu
            from insitu.catalog import Catalog

            cat = Catalog(sqlite_uri_keep(base / "catalog.db"))
            ds_id = (base / "dataset_id").read_text()

            def open_once() -> Any:
                return insitu.open_dataset(ds_id, catalog=cat)
        elif peer == "insitu-default":
            # The default catalog of the settings, a new Catalog per call: the file records
            # are read from the database again every time.
            os.environ["INSITU_CATALOG__URI"] = sqlite_uri_keep(base / "catalog.db")
            os.environ["INSITU_DATA_DIR"] = str(base / "state")
            import insitu

            ds_id = (base / "dataset_id").read_text()

            def open_once() -> Any:
                return insitu.open_dataset(ds_id)
        else:
            import xarray as xr

            files = (base / "files.txt").read_text().split("\n")

            def open_once() -> Any:
                return xr.open_mfdataset(files, **mf_settings(peer))

        ds = open_once()
        cold = time.perf_counter() - _START
        n_cold_warnings = len(caught)
        steps = ds.sizes["time"]
        ds.close()
        warm = []
        for _ in range(n_warm):
            t, ds = timed(open_once)
            warm.append(t)
            ds.close()
    out = {
        "peer": peer,
        "cold_s": cold,
        "warm_s": warm,
        "time_steps": steps,
        "warnings": len(caught),
        "cold_warnings": n_cold_warnings,
        "warning_texts": sorted({str(w.message)[:160] for w in caught}),
    }
    print(json.dumps(out), flush=True)


def sqlite_uri_keep(path: Path) -> str:
    """The URI of an existing SQLite catalog (``sqlite_uri`` would delete it)."""
    return f"sqlite:///{path}"


def run_child(
    peer: str, base: Path, n_warm: int, attempts: int = ATTEMPTS
) -> dict[str, Any] | None:
    """One peer in a new process; a process that crashes is run again, up to ``attempts``
    times (``crashes`` counts them); None if every attempt crashed."""
    cmd = [sys.executable, __file__, "--child", peer, "--data-dir", str(base)]
    cmd += ["--warm", str(n_warm)]
    for crashes in range(attempts):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode == 0:
            res: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
            res.update(process_s=time.perf_counter() - t0, crashes=crashes)
            return res
        say(f"[open-long] {peer}: the process crashed (exit {proc.returncode})")
    return None


def check_values(cat: Any, ds_id: str, files: list[str], years: int) -> dict[str, Any]:
    """The time axis equal to open_mfdataset's, and ``years`` years of values at each end."""
    import xarray as xr

    ours = cat.open_dataset(ds_id)
    theirs = xr.open_mfdataset(files, **mf_settings("mf"))
    assert ours.indexes["time"].equals(theirs.indexes["time"]), "time axes differ"
    xr.testing.assert_equal(ours["time"], theirs["time"])
    n = 365 * years
    for part in (slice(0, n), slice(-n, None)):
        xr.testing.assert_equal(ours["tas"][part].load(), theirs["tas"][part].load())
        xr.testing.assert_equal(ours["time_bnds"][part].load(), theirs["time_bnds"][part].load())
    theirs.close()
    ours.close()
    return {"values_equal": True, "compared_years_each_end": years}


def main(argv: list[str] | None = None) -> dict[str, object] | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=1000, help="files = model years (1000)")
    ap.add_argument(
        "--first-year", type=int, default=1850, help="first model year (1850; past 2262 ok)"
    )
    ap.add_argument("--grid", default="2x3", help="lat x lon points (2x3)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of new processes (3)")
    ap.add_argument("--warm", type=int, default=2, help="warm opens per process (2)")
    ap.add_argument(
        "--parallel", action="store_true", help="also open_mfdataset(..., parallel=True)"
    )
    ap.add_argument("--workers", type=int, default=2, help="scan worker processes (2)")
    ap.add_argument("--check-years", type=int, default=5, help="years compared at each end (5)")
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR / "open-long")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="only profile insitu's cold and warm open (cProfile, to stderr) in a new process",
    )
    ap.add_argument("--child", choices=PEERS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child and args.profile:
        profile_insitu(args.data_dir)
        return None
    if args.child:
        child(args.child, args.data_dir, args.warm)
        return None
    peers = [p for p in PEERS if args.parallel or p != "mf-par"]
    nlat, nlon = (int(x) for x in args.grid.split("x"))

    base = fresh_dir(args.data_dir)
    root = base / "archive"
    gen_s, paths = timed(lambda: write_dataset(root, args.files, args.first_year, nlat, nlon))
    files = [str(p) for p in paths]
    say(f"[open-long] wrote {len(files)} files ({len(files) * 365:,} days) in {gen_s:.1f} s")

    cat, ds_id, scan_s = one_dataset_catalog(base, root, args.files, args.workers)
    (base / "dataset_id").write_text(ds_id)
    (base / "files.txt").write_text("\n".join(files))
    say(f"[open-long] scanned in {scan_s:.1f} s; dataset {ds_id}")
    if args.profile:
        cmd = [sys.executable, __file__, "--child", "insitu", "--profile"]
        subprocess.run([*cmd, "--data-dir", str(base)], check=True)
        cat.close()
        if not args.keep:
            shutil.rmtree(base)
        return None

    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
    crashed = dict.fromkeys(peers, 0)
    for r in range(args.rounds):
        for peer in peers:  # round-robin: every peer sees the same machine, in turn
            res = run_child(peer, base, args.warm)
            if res is None:
                crashed[peer] += ATTEMPTS
                say(f"[open-long] round {r + 1} {peer}: {ATTEMPTS} processes crashed, no figure")
                continue
            crashed[peer] += res["crashes"]
            runs[peer].append(res)
            say(
                f"[open-long] round {r + 1} {peer}: cold {res['cold_s']:.2f} s, warm "
                f"{', '.join(f'{t:.3f}' for t in res['warm_s'])} s, "
                f"{res['warnings']} warnings"
            )

    out: dict[str, Any] = {
        "files": args.files,
        "time_steps": args.files * 365,
        "calendar": "noleap",
        "years": f"{args.first_year}-{args.first_year + args.files - 1}",
        "grid": args.grid,
        "generate_s": gen_s,
        "scan_s": scan_s,
        "rounds": args.rounds,
    }
    for peer, rs in runs.items():
        assert all(r["time_steps"] == args.files * 365 for r in rs), peer
        if not rs:
            out[peer] = {"crashed_processes": crashed[peer], "completed_processes": 0}
            continue
        out[peer] = {
            "cold_s_median": median([r["cold_s"] for r in rs]),
            "cold_s_all": [r["cold_s"] for r in rs],
            # one figure per process (its median), then the median over processes
            "warm_s_median": median([median(r["warm_s"]) for r in rs]),
            "warm_s_all": [r["warm_s"] for r in rs],
            "warnings_per_process": [r["warnings"] for r in rs],
            "warning_texts": sorted({t for r in rs for t in r["warning_texts"]}),
            "crashed_processes": crashed[peer],
            "completed_processes": len(rs),
        }
    ours = out["insitu"]
    theirs = [p for p in peers if not p.startswith("insitu") and runs[p]]
    for p in theirs:
        out[f"speedup_cold_vs_{p}"] = out[p]["cold_s_median"] / ours["cold_s_median"]
        out[f"speedup_warm_vs_{p}"] = out[p]["warm_s_median"] / ours["warm_s_median"]
    for p in [p for p in peers if runs[p]]:
        say(
            f"[open-long] {p}: cold median {out[p]['cold_s_median']:.2f} s, warm median "
            f"{out[p]['warm_s_median']:.3f} s, warnings per process "
            f"{out[p]['warnings_per_process']}"
        )

    out.update(check_values(cat, ds_id, files, args.check_years))
    say(f"[open-long] time axis and {args.check_years} years at each end: equal")

    if theirs:
        best = min(theirs, key=lambda p: out[p]["warm_s_median"])
        out["best_mf_warm"] = best
        out["speedup_warm_vs_best"] = out[f"speedup_warm_vs_{best}"]
        best_cold = min(theirs, key=lambda p: out[p]["cold_s_median"])
        out["best_mf_cold"] = best_cold
        out["speedup_cold_vs_best"] = out[f"speedup_cold_vs_{best_cold}"]
        out["target_speedup"] = TARGET_SPEEDUP
        if runs.get("insitu-default"):
            default = out["insitu-default"]
            out["speedup_warm_default_vs_best"] = (
                out[best]["warm_s_median"] / default["warm_s_median"]
            )
            out["speedup_cold_default_vs_best"] = (
                out[best_cold]["cold_s_median"] / default["cold_s_median"]
            )
    out["target_warm_s"] = TARGET_WARM_S
    out["target_met"] = (
        ours["warm_s_median"] < TARGET_WARM_S
        and (not theirs or out["speedup_warm_vs_best"] >= TARGET_SPEEDUP)
        and not any(ours["warnings_per_process"])
        and not any(out.get("insitu-default", {}).get("warnings_per_process", []))
    )
    say(
        f"[open-long] insitu warm {ours['warm_s_median'] * 1e3:.0f} ms (target < "
        f"{TARGET_WARM_S * 1e3:.0f} ms)"
        + (
            f"; {out['speedup_warm_vs_best']:.0f}x the best open_mfdataset warm "
            f"({out['best_mf_warm']}; target {TARGET_SPEEDUP:.0f}x)"
            if theirs
            else ""
        )
        + f"; no warnings: {not any(ours['warnings_per_process'])} -> "
        + ("met" if out["target_met"] else "MISSED")
    )
    cat.close()
    if not args.keep:
        shutil.rmtree(base)
    emit("open_long", out)
    return out


if __name__ == "__main__":
    main()
