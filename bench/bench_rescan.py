"""Benchmark 3: incremental rescan of an unchanged 100,000-file archive.

Builds (or reuses) a CMIP6 DRS tree of N tiny NetCDF4 files under bench/data/rescan/,
scans it once into a new SQLite catalog (the slow part: every header is read), then times
a second ``scan()`` that finds every file unchanged. Then it touches 1% of the files (new
mtime, same content) and times the rescan that re-reads just those.

    python bench/bench_rescan.py [--files 100000] [--workers 2] [--touch 0.01]
                                 [--reuse-catalog] [--rebuild] [--clean]

The archive is kept for the next run (it takes about a minute to copy); ``--clean``
removes it afterwards, ``--rebuild`` makes a new one. With ``--reuse-catalog`` the catalog
of the previous run is kept too: its first scan (minutes) is skipped and the numbers of
the scan that built it are reported, marked ``first_scan_cached``; an untimed scan first
brings it up to date.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA_DIR, emit, say, sqlite_uri, timed
from bench_scan import build_archive

TARGET_RESCAN_S = 10.0


def ensure_archive(root: Path, n_files: int, records: int, rebuild: bool) -> tuple[float, bool]:
    """Build the tree unless a complete one with the same parameters is there."""
    stamp = root.parent / f"{root.name}.json"
    want = {"files": n_files, "records": records, "version": 1}
    if not rebuild and root.is_dir() and stamp.is_file() and json.loads(stamp.read_text()) == want:
        return 0.0, True
    if stamp.exists():
        stamp.unlink()
    seconds, _ = timed(lambda: build_archive(root, n_files, records, seed=11))
    stamp.write_text(json.dumps(want))
    return seconds, False


def all_files(root: Path) -> list[str]:
    out = []
    for dirpath, _, names in os.walk(root):
        out.extend(os.path.join(dirpath, n) for n in names)
    return sorted(out)


def main(argv: list[str] | None = None) -> dict[str, object]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100_000, help="archive size (100000)")
    ap.add_argument("--records", type=int, default=12, help="records per file (12)")
    ap.add_argument("--workers", type=int, default=2, help="scan worker processes (2)")
    ap.add_argument("--repeat", type=int, default=3, help="unchanged rescans to time (3)")
    ap.add_argument(
        "--touch",
        type=float,
        default=0.01,
        help="fraction of files touched before the last rescan (0.01)",
    )
    ap.add_argument("--data-dir", type=Path, default=DATA_DIR / "rescan")
    ap.add_argument(
        "--reuse-catalog",
        action="store_true",
        help="keep the catalog of the previous run (skips the first scan)",
    )
    ap.add_argument("--rebuild", action="store_true", help="build a new archive")
    ap.add_argument("--clean", action="store_true", help="remove the archive afterwards")
    args = ap.parse_args(argv)

    from insitu.catalog import Catalog

    base = args.data_dir
    base.mkdir(parents=True, exist_ok=True)
    root = base / f"archive-{args.files}"
    gen_s, reused = ensure_archive(root, args.files, args.records, args.rebuild)
    say(f"[rescan] archive {root}: " + ("reused" if reused else f"built in {gen_s:.1f} s"))

    res: dict[str, object] = {
        "files": args.files,
        "workers": args.workers,
        "archive_build_s": gen_s,
        "archive_reused": reused,
    }
    db = base / f"catalog-{args.files}.db"
    db_stamp = db.with_suffix(".json")
    cached = None
    if args.reuse_catalog and reused and db.is_file() and db_stamp.is_file():
        cached = json.loads(db_stamp.read_text())
        try:
            with Catalog(f"sqlite:///{db}") as cat:
                sync_s, _ = timed(lambda: cat.scan("bench", workers=args.workers))
            say(
                f"[rescan] reused catalog; untimed catalog update scan {sync_s:.1f} s; first "
                f"scan (cached from {cached['time']}): {cached['first_scan_s']:.1f} s"
            )
            res.update(cached, first_scan_cached=True)
        except Exception as exc:  # e.g. a catalog written by an older schema
            say(f"[rescan] cannot reuse the catalog ({exc!r:.200}); scanning afresh")
            cached = None
    if not cached and db_stamp.exists():
        db_stamp.unlink()
    with Catalog(f"sqlite:///{db}" if cached else sqlite_uri(db)) as cat:
        if not cached:
            cat.add_collection("bench", root)
            first_s, (first,) = timed(lambda: cat.scan("bench", workers=args.workers))
            assert first.new == args.files and not first.problems, first.line()
            say(
                f"[rescan] first scan: {first_s:.1f} s ({args.files / first_s:,.0f} files/s), "
                f"{first.datasets} datasets"
            )
            first_res = {
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "first_scan_s": first_s,
                "first_scan_files_per_s": args.files / first_s,
                "datasets": first.datasets,
                "peak_rss_mb_after_first_scan": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                / 1024,
            }
            res.update(first_res, first_scan_cached=False)

        times = []
        for _ in range(args.repeat):
            t, (again,) = timed(lambda: cat.scan("bench", workers=args.workers))
            assert again.unchanged == args.files and again.new == again.changed == 0, again.line()
            times.append(t)
            say(f"[rescan] unchanged rescan: {t:.2f} s")
        res.update(rescan_s=times[0], rescan_s_all=times, rescan_s_min=min(times))

        paths = all_files(root)
        touched = random.Random(5).sample(paths, max(1, int(len(paths) * args.touch)))
        for p in touched:
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        t, (changed,) = timed(lambda: cat.scan("bench", workers=args.workers))
        assert changed.changed == len(touched), changed.line()
        say(f"[rescan] rescan after touching {len(touched)} files: {t:.2f} s")
        res.update(touched_files=len(touched), touched_rescan_s=t)
    if not cached:
        db_stamp.write_text(json.dumps(first_res))  # the catalog is in step with the archive

    res.update(target_rescan_s=TARGET_RESCAN_S, target_met=times[0] < TARGET_RESCAN_S)
    say(
        f"[rescan] unchanged rescan {times[0]:.2f} s; target < {TARGET_RESCAN_S:.0f} s -> "
        f"{'met' if res['target_met'] else 'MISSED'}"
    )
    if args.clean:
        shutil.rmtree(root)
        (root.parent / f"{root.name}.json").unlink()
        db_stamp.unlink(missing_ok=True)
        shutil.rmtree(root.parent / f"{root.name}-templates", ignore_errors=True)
    emit("rescan", res)
    return res


if __name__ == "__main__":
    main()
