"""Run the catalog benchmarks one after another and print a summary table.

Each benchmark runs in its own Python process (so none inherits another's imports, caches
or forkserver) and prints one JSON line on stdout; this script collects those lines into
bench/data/catalog-results-<time>.json (and catalog-results-latest.json) and prints the table.

    python bench/run_all.py                 # everything, full sizes (what `make bench` runs)
    python bench/run_all.py --quick         # small sizes: a smoke test in about a minute
    python bench/run_all.py --only scan,open
    python bench/run_all.py --fresh         # rebuild the cached 100k archive and 1M catalog

The 100,000-file archive of ``rescan`` and the 1,000,000-file catalog of ``search`` take
minutes to build, so they are kept under bench/data/ and reused by later runs unless
``--fresh`` is given. Exit status: 1 if a benchmark failed, also if a target was missed
with ``--strict``; 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import DATA_DIR, machine, versions  # noqa: E402

ORDER = ["parse", "scan", "rescan", "search", "open", "open_long"]

FULL: dict[str, list[str]] = {
    "parse": [],
    "scan": [],
    "rescan": [],
    "search": [],
    "open": [],
    "open_long": [],
}
QUICK: dict[str, list[str]] = {
    "parse": ["--files", "50000", "--repeat", "1"],
    "scan": ["--files", "1000", "--records", "12,1200", "--scale-files", "200"],
    "rescan": ["--files", "5000", "--repeat", "1"],
    "search": [
        "--datasets",
        "10000",
        "--files",
        "100000",
        "--searches",
        "100",
        "--text-searches",
        "20",
    ],
    "open": ["--files", "200", "--repeat", "3", "--mf-repeat", "1"],
    "open_long": ["--files", "200", "--first-year", "2200", "--rounds", "1", "--warm", "1"],
}
REUSE = {"search": ["--reuse"], "rescan": ["--reuse-catalog"]}


def run_one(name: str, extra: list[str]) -> dict[str, Any] | None:
    """Run bench/bench_<name>.py; its stderr goes to ours; return its JSON result."""
    cmd = [sys.executable, str(BENCH / f"bench_{name}.py"), *extra]
    print(f"\n=== {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"=== {name}: FAILED (exit {proc.returncode})", file=sys.stderr, flush=True)
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    result["wall_s"] = wall
    result["load_avg_before"] = load_before
    result["command"] = " ".join(["python", f"bench/bench_{name}.py", *extra])
    print(f"=== {name}: done in {wall:.0f} s", file=sys.stderr, flush=True)
    return result


def headline(name: str, r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, value, target, met) rows of one benchmark's result."""
    x = r["results"]
    met = "yes" if x.get("target_met") else "NO"
    if name == "parse":
        return [
            (
                f"parse + group {x['files']:,} paths",
                f"{x['parse_group_files_per_s']:,.0f} files/s",
                f">= {x['target_files_per_s']:,} files/s",
                met,
            ),
            ("parse only", f"{x['parse_files_per_s']:,.0f} files/s", "", ""),
            ("_choose_paths", f"{x['choose_paths_files_per_s']:,.0f} files/s", "", ""),
        ]
    if name == "scan":
        rows = [
            (
                f"scan {x['files']:,} files, R={x['records']}, {x['workers']} workers",
                f"{x['files_per_s']:,.0f} files/s ({x['scan_s']:.1f} s; best "
                f"{x.get('best_files_per_s', x['files_per_s']):,.0f})",
                f">= {x['target_files_per_s']:,} files/s",
                met,
            )
        ]
        if x.get("cpu_ms_per_file"):
            rows.append(
                (
                    "  CPU per file (workers=1 scan)",
                    f"{x['cpu_ms_per_file']:.2f} ms: <= "
                    f"{x['cpu_bound_2_cores_files_per_s']:,.0f} files/s on 2 idle cores",
                    "",
                    "",
                )
            )
        for run in x["runs"][1:]:
            rows.append(
                (
                    f"  R={run['records']} ({run['files']:,} files)",
                    f"{run['files_per_s']:,.0f} files/s",
                    "",
                    "",
                )
            )
        return rows
    if name == "rescan":
        return [
            (
                f"rescan {x['files']:,} unchanged files",
                f"{x['rescan_s']:.1f} s "
                f"(min of {len(x['rescan_s_all'])}: {x['rescan_s_min']:.1f} s)",
                f"< {x['target_rescan_s']:.0f} s",
                met,
            ),
            (
                "  first scan",
                f"{x['first_scan_s']:.0f} s ({x['first_scan_files_per_s']:,.0f} files/s)",
                "",
                "",
            ),
            (
                f"  rescan after touching {x['touched_files']:,}",
                f"{x['touched_rescan_s']:.1f} s",
                "",
                "",
            ),
        ]
    if name == "search":
        f, t, i = x["facet_search"]["miss"], x["text_search"]["miss"], x["index"]
        return [
            (
                f"facet search p95 ({x['facet_search']['n']} searches, memo missed)",
                f"{f['p95_ms']:.1f} ms",
                f"< {x['target_p95_ms']:.0f} ms",
                met,
            ),
            ("  p50 / p99", f"{f['p50_ms']:.1f} / {f['p99_ms']:.1f} ms", "", ""),
            (
                "  free text p50 / p95",
                f"{t['p50_ms']:.1f} / {t['p95_ms']:.1f} ms",
                f"< {x['target_p95_ms']:.0f} ms",
                "yes" if x["text_target_met"] else "NO",
            ),
            (
                "  index: new process / after a change",
                f"{i['cold']['build_s']:.1f} / {i['rebuild_after_change_s']:.2f} s",
                "- / < 2 s",
                "",
            ),
            ("  index memory per dataset", f"{i['arrays_bytes_per_dataset']:.0f} B", "<= 2 KB", ""),
        ]
    if name == "open":
        return [
            (
                f"open {x['files']:,}-file dataset vs open_mfdataset",
                f"{x['speedup_vs_mf_fast']:.0f}x ({x['insitu_open_s_median'] * 1e3:.0f} ms vs "
                f"{x['mf_fast_s_median']:.1f} s)",
                f">= {x['target_speedup']:.0f}x",
                met,
            ),
        ] + (
            [
                (
                    "  vs open_mfdataset defaults",
                    f"{x['speedup_vs_mf_default']:.0f}x ({x['mf_default_s_median']:.1f} s)",
                    "",
                    "",
                )
            ]
            if "speedup_vs_mf_default" in x
            else []
        )
    if name == "open_long":
        ours = x["insitu"]
        return [
            (
                f"open {x['files']:,} years of days (noleap, {x['years']}) vs open_mfdataset",
                f"warm {x['speedup_warm_vs_best']:.0f}x ({ours['warm_s_median'] * 1e3:.0f} ms "
                f"vs {x[x['best_mf_warm']]['warm_s_median']:.1f} s, {x['best_mf_warm']})",
                f">= {x['target_speedup']:.0f}x, < {x['target_warm_s']:.1f} s, no warning",
                met,
            ),
            (
                "  cold (new process, imports included)",
                f"{x['speedup_cold_vs_best']:.1f}x ({ours['cold_s_median']:.2f} s vs "
                f"{x[x['best_mf_cold']]['cold_s_median']:.1f} s, {x['best_mf_cold']})",
                "",
                "",
            ),
            ("  warnings per insitu process", str(ours["warnings_per_process"]), "", ""),
        ] + (
            [
                (
                    "  insitu.open_dataset(id), a new Catalog per call, warm",
                    f"{x['speedup_warm_default_vs_best']:.0f}x "
                    f"({x['insitu-default']['warm_s_median'] * 1e3:.0f} ms)",
                    "",
                    "",
                )
            ]
            if "speedup_warm_default_vs_best" in x
            else []
        )
    return []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(ORDER), help="comma-separated benchmarks")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument(
        "--fresh",
        action="store_true",
        help="rebuild the cached archive and catalog instead of reusing them",
    )
    ap.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()

    names = [n for n in ORDER if n in args.only.split(",")]
    sizes = QUICK if args.quick else FULL
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results: dict[str, Any] = {}
    failed = []
    for name in names:
        extra = list(sizes[name])
        if not args.fresh:
            extra += REUSE.get(name, [])
        elif name == "rescan":
            extra += ["--rebuild"]
        r = run_one(name, extra)
        if r is None:
            failed.append(name)
        else:
            results[name] = r

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    out = {
        "started": started,
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "results": results,
        "failed": failed,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for path in (
        DATA_DIR / f"catalog-results-{stamp}.json",
        DATA_DIR / "catalog-results-latest.json",
    ):
        path.write_text(json.dumps(out, indent=1))

    rows = [("benchmark", "measure", "value", "target", "met")]
    for name in names:
        if name in results:
            rows.extend(
                (name if i == 0 else "", *row)
                for i, row in enumerate(headline(name, results[name]))
            )
        else:
            rows.append((name, "FAILED", "", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    m = out["machine"]
    print(
        f"\ninsitu catalog benchmarks, {started}; {m['nproc']} cores ({m['cpu']}), "
        f"Python {m['python']}" + (" [quick sizes]" if args.quick else "")
    )
    for i, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"(results: {DATA_DIR / 'catalog-results-latest.json'})")
    missed = [n for n, r in results.items() if not r["results"].get("target_met")]
    if failed:
        return 1
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
