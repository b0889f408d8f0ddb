"""Benchmark 2: header scanning of small NetCDF4 files into a new SQLite catalog.

Builds CMIP6 DRS trees of tiny NetCDF4 files (time x 2 x 3 grid, CF and CMIP6 attributes;
one template file per variable and position in a dataset, copied; time values differ by
position), then times a fresh ``Catalog(...).scan(workers=W)`` into a new SQLite catalog.
The headline run uses R=12 records per file (scanned --repeat times, each into a new
catalog; the median is reported); the scaling runs use R = 120, 1200, 12000 with fewer
files, once each.

    python bench/bench_scan.py [--files 4000] [--workers 2] [--repeat 3]
                               [--records 12,120,1200,12000] [--scale-files 2000,1000,500]
                               [--no-workers1] [--keep]

Also scans the headline tree with workers=1, where everything runs in this process, to
measure the CPU time a file costs whatever else runs on the machine, and from it the
throughput two idle cores could reach at best. And it measures the peer in the same run:
the CPU time per file of reading headers with the fast HDF5 reader and with netCDF4-python
alone (``read_headers(..., fast=False)``), interleaved, best of 3, so their ratio holds on a
busy machine. Every timed scan also records the load average before it and how many cores
the whole machine kept busy while it ran (``busy_cores``, from /proc/stat: about 2.0 means
the scan had the machine; more load than that means it shared it).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_DIR,
    copy_tree_files,
    emit,
    fresh_dir,
    load_avg,
    random_masters,
    random_versions,
    say,
    sqlite_uri,
    timed,
    timed_cpu,
    write_cmip6_file,
)

TARGET_FILES_PER_S = 1_000


def month_label(index: int) -> str:
    """``YYYYMM`` of month ``index`` counted from 1850-01."""
    return f"{1850 + index // 12:04d}{index % 12 + 1:02d}"


def build_archive(
    root: Path, n_files: int, records: int, *, files_per_dataset: int = 10, seed: int = 7
) -> dict[str, int]:
    """A CMIP6 DRS tree of ``n_files`` tiny NetCDF4 files under ``root``.

    Each dataset has ``files_per_dataset`` files of ``records`` monthly records each
    (noleap calendar); file ``k`` of a dataset holds months ``k*R .. (k+1)*R-1``. Files
    are copies of one template per (variable, k), so different datasets share time
    values but files of one dataset do not.
    """
    rng = random.Random(seed)
    templates_dir = fresh_dir(root.parent / f"{root.name}-templates")
    fresh_dir(root)
    templates: dict[tuple[str, str, int], Path] = {}

    def template(var: str, table: str, k: int) -> Path:
        key = (var, table, k)
        if key not in templates:
            path = templates_dir / f"{var}_{table}_{k}.nc"
            step = 365.0 / 12
            times = [(k * records + i + 0.5) * step for i in range(records)]
            write_cmip6_file(
                path, variable=var, table=table, times=times, calendar="noleap", seed=len(templates)
            )
            templates[key] = path
        return templates[key]

    def pairs() -> Iterator[tuple[Path, Path]]:
        made = 0
        for m in random_masters(max(1, n_files // files_per_dataset), rng):
            for version in random_versions(rng):
                d = root / m.directory(version)
                for k in range(files_per_dataset):
                    tr = f"{month_label(k * records)}-{month_label((k + 1) * records - 1)}"
                    yield template(m.variable, m.table, k), d / m.filename(tr)
                    made += 1
                    if made == n_files:
                        return
        raise RuntimeError("not enough synthetic masters for the requested file count")

    n = copy_tree_files(pairs())
    size = sum(p.stat().st_size for p in templates.values()) // max(len(templates), 1)
    return {"files": n, "templates": len(templates), "template_bytes": size}


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (Linux)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def scan_once(root: Path, db: Path, workers: int) -> dict[str, float | int]:
    """A fresh catalog at ``db``, one collection at ``root``, one timed scan."""
    from insitu.catalog import Catalog
    from insitu.catalog.walk import walk_archive

    with Catalog(sqlite_uri(db)) as cat:
        cat.add_collection("bench", root)
        busy0, total0 = _cpu_jiffies()
        seconds, cpu, reports = timed_cpu(lambda: cat.scan("bench", workers=workers))
        busy1, total1 = _cpu_jiffies()
        rep = reports[0]
        assert rep.new == rep.seen and not rep.problems, rep.line()
    walk_s, _ = timed(lambda: walk_archive(str(root)))
    ncpu = os.cpu_count() or 1
    return {
        "files": rep.seen,
        "datasets": rep.datasets,
        "scan_s": seconds,
        "files_per_s": rep.seen / seconds,
        # CPU of this process only: with workers > 1 the headers are read elsewhere.
        "main_cpu_ms_per_file": cpu * 1e3 / rep.seen,
        "busy_cores": ncpu * (busy1 - busy0) / max(total1 - total0, 1),
        "walk_s": walk_s,
    }


def reader_peer(root: Path, n_files: int = 512, rounds: int = 3) -> dict[str, float]:
    """CPU ms per file of ``read_headers`` with the fast reader and with netCDF4-python
    only, on ``n_files`` files of ``root``: batches of 64 alternate, best of ``rounds``."""
    from insitu.catalog.headers import read_headers

    paths = sorted(str(p) for p in root.rglob("*.nc"))[:n_files]
    batches = [[(p, p) for p in paths[i : i + 64]] for i in range(0, len(paths), 64)]
    best = {"fast": float("inf"), "netcdf4": float("inf")}
    for _ in range(rounds):
        spent = {"fast": 0.0, "netcdf4": 0.0}
        for batch in batches:
            for kind in spent:
                c0 = time.process_time()
                read_headers(batch, fast=kind == "fast")
                spent[kind] += time.process_time() - c0
        best = {k: min(best[k], spent[k]) for k in best}
    ms = {k: v * 1e3 / len(paths) for k, v in best.items()}
    return {
        "files": len(paths),
        "fast_cpu_ms_per_file": ms["fast"],
        "netcdf4_cpu_ms_per_file": ms["netcdf4"],
        "speedup": ms["netcdf4"] / ms["fast"],
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=4000, help="files of the R=12 run (4000)")
    ap.add_argument("--workers", type=int, default=2, help="scan worker processes (2)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="scans of the headline tree, each into a new catalog; median kept (3)",
    )
    ap.add_argument(
        "--records",
        default="12,120,1200,12000",
        help="records per file; the first is the headline run (12,120,1200,12000)",
    )
    ap.add_argument(
        "--scale-files",
        default="2000,1000,500",
        help="file counts of the 2nd, 3rd, ... record settings (2000,1000,500)",
    )
    ap.add_argument(
        "--no-workers1",
        action="store_true",
        help="skip the workers=1 scan that measures the CPU cost per file",
    )
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR / "scan")
    ap.add_argument("--keep", action="store_true", help="keep the generated trees")
    args = ap.parse_args(argv)

    records = [int(r) for r in args.records.split(",") if r]
    counts = [args.files] + [int(c) for c in args.scale_files.split(",") if c]
    counts += [counts[-1]] * (len(records) - len(counts))
    base = args.data_dir
    base.mkdir(parents=True, exist_ok=True)

    # The first pool of a process starts insitu's forkserver (it imports netCDF4 once);
    # pay that on a small tree so that every timed run sees the same state.
    build_archive(base / "warmup", 64, 12, seed=99)
    warm_s, _ = timed(lambda: scan_once(base / "warmup", base / "warmup.db", args.workers))
    say(f"[scan] warm-up scan of 64 files (starts the forkserver): {warm_s:.2f} s")

    runs = []
    for r, n in zip(records, counts, strict=False):
        root = base / f"R{r}"
        gen_s, info = timed(lambda: build_archive(root, n, r))  # noqa: B023
        say(
            f"[scan] R={r}: generated {info['files']} files "
            f"({info['template_bytes']:,} bytes each) in {gen_s:.1f} s"
        )
        repeats = []
        for _ in range(args.repeat if r == records[0] else 1):
            before = load_avg()
            repeats.append(
                {**scan_once(root, base / f"R{r}.db", args.workers), "load_avg_before": before}
            )
        in_order = [x["files_per_s"] for x in repeats]
        busy_in_order = [x["busy_cores"] for x in repeats]
        repeats.sort(key=lambda x: x["scan_s"])
        run = {
            "records": r,
            **repeats[len(repeats) // 2],  # the median run
            "best_files_per_s": repeats[0]["files_per_s"],
            "worst_files_per_s": repeats[-1]["files_per_s"],
            "all_files_per_s": in_order,
            "all_busy_cores": busy_in_order,
            "file_bytes": info["template_bytes"],
            "workers": args.workers,
        }
        spread = (
            f" (runs: {', '.join(f'{v:,.0f}' for v in in_order)}; "
            f"stdev {statistics.stdev(in_order):,.0f})"
            if len(in_order) > 1
            else ""
        )
        say(
            f"[scan] R={r}: {run['files']} files, {run['datasets']} datasets in "
            f"{run['scan_s']:.2f} s = {run['files_per_s']:,.0f} files/s{spread}; "
            f"main process {run['main_cpu_ms_per_file']:.3f} ms CPU per file; machine busy "
            f"{run['busy_cores']:.2f} cores; load before {run['load_avg_before']:.2f} "
            f"(walk alone {run['walk_s']:.2f} s)"
        )
        if not args.no_workers1 and r == records[0]:
            one = scan_once(root, base / f"R{r}-w1.db", 1)
            run["workers1_files_per_s"] = one["files_per_s"]
            run["cpu_ms_per_file"] = one["main_cpu_ms_per_file"]
            run["cpu_bound_2_cores_files_per_s"] = 2e3 / one["main_cpu_ms_per_file"]
            say(
                f"[scan] R={r} workers=1: {one['files_per_s']:,.0f} files/s; "
                f"{one['main_cpu_ms_per_file']:.2f} ms CPU per file, so two idle cores "
                f"could reach at most {run['cpu_bound_2_cores_files_per_s']:,.0f} files/s"
            )
            peer = reader_peer(root)
            run["reader_peer"] = peer
            say(
                f"[scan] R={r} reading headers in this process ({peer['files']} files, best "
                f"of 3): fast reader {peer['fast_cpu_ms_per_file']:.3f} ms CPU per file, "
                f"netCDF4-python {peer['netcdf4_cpu_ms_per_file']:.3f} ms "
                f"({peer['speedup']:.2f}x)"
            )
        runs.append(run)
        if not args.keep:
            shutil.rmtree(root)
            shutil.rmtree(root.parent / f"{root.name}-templates")

    head = runs[0]
    res = {
        "files": head["files"],
        "records": head["records"],
        "workers": args.workers,
        "scan_s": head["scan_s"],
        "files_per_s": head["files_per_s"],
        "best_files_per_s": head["best_files_per_s"],
        "worst_files_per_s": head["worst_files_per_s"],
        "all_files_per_s": head["all_files_per_s"],
        "load_avg_before": head["load_avg_before"],
        "busy_cores": head["busy_cores"],
        "cpu_ms_per_file": head.get("cpu_ms_per_file"),
        "main_cpu_ms_per_file": head["main_cpu_ms_per_file"],
        "reader_peer": head.get("reader_peer"),
        "cpu_bound_2_cores_files_per_s": head.get("cpu_bound_2_cores_files_per_s"),
        "warmup_scan_64_files_s": warm_s,
        "target_files_per_s": TARGET_FILES_PER_S,
        "target_met": head["files_per_s"] >= TARGET_FILES_PER_S,
        "runs": runs,
    }
    say(
        f"[scan] headline {res['files_per_s']:,.0f} files/s (median of "
        f"{len(head['all_files_per_s'])}; best {res['best_files_per_s']:,.0f}, worst "
        f"{res['worst_files_per_s']:,.0f}); "
        f"target {TARGET_FILES_PER_S:,} -> "
        f"{'met' if res['target_met'] else 'MISSED'}"
    )
    emit("scan", res)
    return res


if __name__ == "__main__":
    main()
