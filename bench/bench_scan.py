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
throughput two idle cores could reach at best.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
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


def scan_once(root: Path, db: Path, workers: int) -> dict[str, float | int]:
    """A fresh catalog at ``db``, one collection at ``root``, one timed scan."""
    from insitu.catalog import Catalog
    from insitu.catalog.walk import walk_archive

    with Catalog(sqlite_uri(db)) as cat:
        cat.add_collection("bench", root)
        seconds, cpu, reports = timed_cpu(lambda: cat.scan("bench", workers=workers))
        rep = reports[0]
        assert rep.new == rep.seen and not rep.problems, rep.line()
    walk_s, _ = timed(lambda: walk_archive(str(root)))
    return {
        "files": rep.seen,
        "datasets": rep.datasets,
        "scan_s": seconds,
        "files_per_s": rep.seen / seconds,
        # CPU of this process only: with workers > 1 the headers are read elsewhere.
        "main_cpu_ms_per_file": cpu * 1e3 / rep.seen,
        "walk_s": walk_s,
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
        repeats.sort(key=lambda x: x["scan_s"])
        run = {
            "records": r,
            **repeats[len(repeats) // 2],  # the median run
            "best_files_per_s": repeats[0]["files_per_s"],
            "all_files_per_s": [x["files_per_s"] for x in repeats],
            "file_bytes": info["template_bytes"],
            "workers": args.workers,
        }
        say(
            f"[scan] R={r}: {run['files']} files, {run['datasets']} datasets in "
            f"{run['scan_s']:.2f} s = {run['files_per_s']:,.0f} files/s "
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
        "cpu_ms_per_file": head.get("cpu_ms_per_file"),
        "cpu_bound_2_cores_files_per_s": head.get("cpu_bound_2_cores_files_per_s"),
        "warmup_scan_64_files_s": warm_s,
        "target_files_per_s": TARGET_FILES_PER_S,
        "target_met": head["files_per_s"] >= TARGET_FILES_PER_S,
        "runs": runs,
    }
    say(
        f"[scan] headline {res['files_per_s']:,.0f} files/s (median of "
        f"{len(head['all_files_per_s'])}; best {res['best_files_per_s']:,.0f}); "
        f"target {TARGET_FILES_PER_S:,} -> "
        f"{'met' if res['target_met'] else 'MISSED'}"
    )
    emit("scan", res)
    return res


if __name__ == "__main__":
    main()
